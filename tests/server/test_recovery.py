"""Reliability against a real server: kill -9 mid-job and restart, worker crash, disk full,
one server per data dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _wait_running(server, job_id: str, progress: float = 0.05, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = server.get(f"/v1/jobs/{job_id}").json()
        if job["state"] == "running" and job["progress"] >= progress:
            return job
        assert job["state"] in ("queued", "running"), job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never ran")


def _worker_pid(server) -> int:
    return requests.get(server.url + "/v1/health", timeout=10).json()["workers"][0]["pid"]


def test_kill9_mid_job_then_restart_requeues_and_finishes(start_server, make_clip, long_trajectory_for):
    server = start_server()
    clip = make_clip(num_frames=2)
    response = server.upload_scene(clip, only_first_frame="true")
    assert server.wait_job(response.json()["recon_job_id"])["state"] == "succeeded"
    scene = server.get(f"/v1/scenes/{response.json()['id']}").json()
    long = long_trajectory_for(scene, 500)

    interrupted = server.submit_job(scene, long).json()
    waiting = server.submit_job(scene, long_trajectory_for(scene, 5)).json()
    _wait_running(server, interrupted["id"])
    worker = _worker_pid(server)
    server.kill9()
    deadline = time.monotonic() + 5
    while _pid_alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(worker), "the worker outlived the killed server"
    job_dir = server.data_dir / "jobs" / interrupted["id"]
    assert not (job_dir / "result.mp4").exists()  # nothing that looks finished

    server.start()
    first = server.get(f"/v1/jobs/{interrupted['id']}").json()
    assert first["state"] in ("queued", "running") and first["error"] is None
    done = server.wait_job(interrupted["id"], timeout_s=120)
    assert done["state"] == "succeeded" and done["attempts"] == 2, done
    assert server.wait_job(waiting["id"])["state"] == "succeeded"
    assert server.get(f"/v1/jobs/{interrupted['id']}/result").status_code == 200
    assert not list(job_dir.glob(".partial-*"))

    # interrupted a second time: failed with the reason, not retried forever
    twice = server.submit_job(scene, long).json()
    _wait_running(server, twice["id"])
    server.kill9()
    server.start()
    _wait_running(server, twice["id"])
    server.kill9()
    server.start()
    failed = server.get(f"/v1/jobs/{twice['id']}").json()
    assert failed["state"] == "failed" and failed["error"]["error"] == "interrupted", failed
    assert "server restart" in failed["error"]["message"]
    assert server.wait_job(server.submit_job(scene, long_trajectory_for(scene, 3)).json()["id"])["state"] \
        == "succeeded"


def test_worker_crash_fails_the_job_and_the_server_keeps_serving(server, static_scene, long_trajectory_for):
    job = server.submit_job(static_scene, long_trajectory_for(static_scene, 500)).json()
    _wait_running(server, job["id"])
    os.kill(_worker_pid(server), signal.SIGKILL)
    failed = server.wait_job(job["id"], timeout_s=20)
    assert failed["state"] == "failed" and failed["error"]["error"] == "worker_crashed"
    assert "worker process died (killed by SIGKILL)" in failed["error"]["message"]
    health = server.wait_worker_idle()
    assert health["workers"][0]["restarts"] == 1
    after = server.submit_job(static_scene, long_trajectory_for(static_scene, 3)).json()
    assert server.wait_job(after["id"])["state"] == "succeeded"


def test_too_little_disk_fails_jobs_cleanly(start_server, clip):
    server = start_server(env={"EX4D_MIN_FREE_MB": str(1 << 40)})  # more than any disk has
    response = server.upload_scene(clip)
    assert response.status_code == 202
    scene = response.json()
    job = server.wait_job(scene["recon_job_id"])
    assert job["state"] == "failed" and job["error"]["error"] == "resource_unavailable"
    assert "not enough free disk space" in job["error"]["message"]
    after = server.get(f"/v1/scenes/{scene['id']}").json()
    assert after["state"] == "failed" and after["error"]["message"] == job["error"]["message"]
    assert server.get(f"/v1/scenes/{scene['id']}/package").status_code == 409
    assert not (server.data_dir / "scenes" / scene["id"] / "scene.ex4dscene.zip").exists()
    assert requests.get(server.url + "/v1/health", timeout=10).json()["status"] == "ok"


def test_second_server_on_the_same_data_dir_is_refused(server):
    proc = subprocess.run([sys.executable, "-m", "ex4d_engine.cli", "serve", "--port", "0", "--data-dir",
                           str(server.data_dir)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4, proc.stderr
    assert "another ex4d server is using the data dir" in proc.stderr


def test_ctrl_c_gives_the_running_job_back_to_the_queue(start_server, make_clip, long_trajectory_for):
    server = start_server()
    response = server.upload_scene(make_clip(num_frames=2), only_first_frame="true")
    assert server.wait_job(response.json()["recon_job_id"])["state"] == "succeeded"
    scene = server.get(f"/v1/scenes/{response.json()['id']}").json()
    job = server.submit_job(scene, long_trajectory_for(scene, 500)).json()
    _wait_running(server, job["id"])
    worker = _worker_pid(server)
    began = time.monotonic()
    assert server.stop() == 130  # SIGINT: uvicorn shuts down, the CLI reports the interrupt
    assert time.monotonic() - began < 15
    assert not _pid_alive(worker)
    assert not (server.data_dir / "server.json").exists()
    server.start()
    back = server.get(f"/v1/jobs/{job['id']}").json()
    assert back["state"] in ("queued", "running") and back["error"] is None
    done = server.wait_job(job["id"], timeout_s=120)
    assert done["state"] == "succeeded" and done["attempts"] == 1, done
