"""The worker pool over GPU groups (``--gpus 0,1,2,3 --group-size 2``), against a real server on loopback.

This machine has no GPU, so each "group" is a worker whose CUDA_VISIBLE_DEVICES names GPUs that do
not exist: it falls back to the CPU and runs the draft generator -- the pool logic (grouping, env,
one FIFO queue, crash isolation) is exactly what runs on a GPU host.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import requests

from server.settings import Settings
from server.worker import worker_environment

MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def _health(server) -> dict:
    return requests.get(server.url + "/v1/health", timeout=10).json()


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        pairs = [item.split(b"=", 1) for item in handle.read().split(b"\0") if b"=" in item]
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def _wait_slot(server, slot: int, states, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker = _health(server)["workers"][slot]
        if worker["state"] in states and (worker["pid"] or worker["state"] == "restarting"):
            return worker
        time.sleep(0.02)
    raise AssertionError(f"worker {slot} not {states}: {_health(server)['workers']}\n{server.log()}")


# ---------------------------------------------------------------------- settings (no server)
@pytest.mark.parametrize("gpus, size, groups", [
    ("0,1,2,3", 2, ["0,1", "2,3"]),
    ("0,1,2,3", 1, ["0", "1", "2", "3"]),
    ("4,5,6,7,0,1,2,3", 4, ["4,5,6,7", "0,1,2,3"]),
    ("0,1,2,3,4,5,6,7", 8, ["0,1,2,3,4,5,6,7"]),
    ("0,1,2,3,4,5,6,7,8,9", 10, ["0,1,2,3,4,5,6,7,8,9"]),
    (" 0, 1 ", 2, ["0,1"]),
    ("cpu", 1, ["cpu"]),
    ("auto", 1, ["auto"]),
])
def test_gpus_split_into_groups_in_order(gpus, size, groups):
    assert Settings(gpus=gpus, group_size=size).worker_devices() == groups


def test_worker_environment_names_the_group_and_turns_multicast_off():
    assert worker_environment("2,3") == {**MULTICAST_OFF, "CUDA_VISIBLE_DEVICES": "2,3"}
    assert worker_environment("cpu") == MULTICAST_OFF  # no GPU list to restrict to
    assert worker_environment("auto") == MULTICAST_OFF


def _serve(*args: str, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EX4D_TOKEN"}
    return subprocess.run([sys.executable, "-m", "ex4d_engine.cli", "serve", "--port", "0", "--data-dir",
                           str(tmp_path / "d"), *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("args, message", [
    (("--gpus", "0,1,2", "--group-size", "2"), "--group-size 2 does not divide the 3 GPUs of --gpus 0,1,2"),
    (("--gpus", "0,1,2,3,4,5", "--group-size", "3"), "--group-size 3: a GPU group of 3 cannot split Wan's 40 "
                                                     "attention heads"),
    (("--gpus", "0,1,2,3,4,5,6", "--group-size", "7"), "the group size must be 1 or an even divisor of 40: 1, 2, 4, 8"),
    (("--gpus", "0,1,2,3,4,5,6,7,8,9", "--group-size", "5"), "--group-size 5: a GPU group of 5 is odd"),
    (("--gpus", "cpu", "--group-size", "2"), "--group-size 2 needs GPU indices"),
    (("--gpus", "0,1,1,2", "--group-size", "2"), "--gpus lists GPU 1 more than once"),
    (("--gpus", "0,1", "--group-size", "0"), "group_size: Input should be greater than or equal to 1"),
])
def test_bad_gpus_or_group_size_is_refused_before_anything_starts(tmp_path, args, message):
    proc = _serve(*args, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert not (tmp_path / "d" / "ex4d.sqlite3").exists()  # nothing was started


# ---------------------------------------------------------------------- a real pool of two groups
@pytest.fixture(scope="module")
def pool(start_server):
    return start_server("--gpus", "0,1,2,3", "--group-size", "2")


@pytest.fixture(scope="module")
def pool_scene(pool, make_clip) -> dict:
    """A static scene on the pool's server: any trajectory length works, so jobs can be made long."""
    response = pool.upload_scene(make_clip(num_frames=2), only_first_frame="true")
    assert response.status_code == 202, response.text
    assert pool.wait_job(response.json()["recon_job_id"])["state"] == "succeeded"
    return pool.get(f"/v1/scenes/{response.json()['id']}").json()


def test_one_worker_per_group_with_its_own_environment(pool):
    workers = pool.wait_worker_idle()["workers"]
    assert [(w["slot"], w["gpu_group"], w["cuda_visible_devices"]) for w in workers] == [
        (0, [0, 1], "0,1"), (1, [2, 3], "2,3")]
    assert len({w["pid"] for w in workers}) == 2
    for worker in workers:
        env = _environ(worker["pid"])  # what the process was started with
        assert {k: env.get(k) for k in MULTICAST_OFF} == MULTICAST_OFF
        assert worker["last_exit"] is None and worker["restarts"] == 0


def test_jobs_spread_across_both_groups(pool, pool_scene, long_trajectory_for):
    jobs = [pool.submit_job(pool_scene, long_trajectory_for(pool_scene, 60), seed=i).json() for i in range(6)]
    busy_together = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        workers = _health(pool)["workers"]
        if all(w["state"] == "busy" for w in workers) and len({w["job_id"] for w in workers}) == 2:
            busy_together = True
        states = [pool.get(f"/v1/jobs/{j['id']}").json()["state"] for j in jobs]
        if all(s in ("succeeded", "failed", "cancelled") for s in states):
            break
        time.sleep(0.02)
    assert states == ["succeeded"] * 6, states
    assert busy_together, "the two groups never ran jobs at the same time"
    with sqlite3.connect(pool.data_dir / "ex4d.sqlite3") as db:
        ran_on = {row[0] for row in db.execute(
            f"SELECT worker_pid FROM jobs WHERE id IN ({','.join('?' * len(jobs))})", [j["id"] for j in jobs])}
    assert ran_on == {w["pid"] for w in _health(pool)["workers"]}


def test_a_crash_looping_group_does_not_stop_the_other(pool, pool_scene, long_trajectory_for):
    # Group 1 dies four times, each (but the first) right after it starts: its back-off grows 0, 1, 2, 4 s.
    killed = []
    while len(killed) < 4:
        worker = _wait_slot(pool, 1, ("starting", "idle", "busy"), timeout_s=30)
        if worker["pid"] in killed:  # the row still shows the one we killed
            time.sleep(0.02)
            continue
        os.kill(worker["pid"], signal.SIGKILL)
        killed.append(worker["pid"])
    looping = _wait_slot(pool, 1, ("restarting",))
    assert looping["restarts"] == 4 and looping["last_exit"] == "killed by SIGKILL"

    # Group 0 keeps finishing jobs meanwhile ...
    job = pool.submit_job(pool_scene, long_trajectory_for(pool_scene, 3)).json()
    assert pool.wait_job(job["id"], timeout_s=30)["state"] == "succeeded"
    # ... and a crash of group 0 is restarted at once, not after group 1's 4 s back-off.
    old = _health(pool)["workers"][0]["pid"]
    os.kill(old, signal.SIGKILL)
    killed_at = time.monotonic()
    deadline = killed_at + 20
    while time.monotonic() < deadline:
        worker = _health(pool)["workers"][0]
        if worker["pid"] not in (None, old) and worker["state"] == "idle":
            break
        time.sleep(0.02)
    back_after = time.monotonic() - killed_at
    assert worker["state"] == "idle" and worker["last_exit"] == "killed by SIGKILL", worker
    assert _health(pool)["workers"][1]["state"] == "restarting"  # still waiting out its back-off
    print(f"group 0 back after {back_after:.2f} s")
    assert back_after < 2.0, f"group 0 waited {back_after:.1f} s for group 1's back-off"
    job = pool.submit_job(pool_scene, long_trajectory_for(pool_scene, 3)).json()
    assert pool.wait_job(job["id"], timeout_s=30)["state"] == "succeeded"

    # Group 1 comes back on its own once the back-off has passed, and says why it was restarted.
    recovered = _wait_slot(pool, 1, ("idle",), timeout_s=30)
    assert recovered["restarts"] == 4 and recovered["last_exit"] == "killed by SIGKILL"
    assert recovered["gpu_group"] == [2, 3]

