"""``ex4d serve --ray``: a real server on loopback dispatching to a real local Ray cluster.

The cluster (``server.ray_local_cluster``) is a head plus three simulated nodes, each a separate
raylet declaring one logical GPU, with Ray's token authentication on; the draft generator runs on
the CPU. The tests start and stop the cluster themselves. Order matters: the shared-folder server
runs (and ends) first, then one server with two actors takes the rest, and the third node is the
spare a lost actor is replaced on.
"""

from __future__ import annotations

import concurrent.futures
import os
import sqlite3
import subprocess
import sys
import time

import pytest
import requests

pytest.importorskip("ray")

from ex4d_engine.video_io import probe  # noqa: E402
from server.ray_local_cluster import LocalRayCluster  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    local = LocalRayCluster(nodes=3, object_store_mb=80, log_path=tmp_path_factory.mktemp("ray") / "cluster.log")
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def farm(cluster, start_server):
    """A server with two actors (one GPU each); the cluster's third GPU is left for replacements."""
    proc = start_server("--ray", cluster.address, "--ray-actors", "2", env=cluster.env)
    _wait_actors(proc, 2)
    return proc


@pytest.fixture(scope="module")
def farm_scene(farm, clip) -> dict:
    return farm.make_ready_scene(clip)


def _health(server) -> dict:
    return requests.get(server.url + "/v1/health", timeout=10).json()


def _wait_actors(server, count: int, timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cluster = _health(server)["cluster"]
        if sum(a["state"] in ("idle", "busy") for a in cluster["actors"]) >= count:
            return cluster
        time.sleep(0.1)
    raise AssertionError(f"not {count} actors ready: {_health(server)['cluster']}\n{server.log()}")


def _node_of_pid(server) -> dict[int, str]:
    return {a["pid"]: a["node_id"] for a in _health(server)["cluster"]["actors"] if a["pid"]}


def _job_rows(server, ids) -> dict[str, sqlite3.Row]:
    with sqlite3.connect(server.data_dir / "ex4d.sqlite3") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(f"SELECT id, worker_pid, attempts FROM jobs WHERE id IN ({','.join('?' * len(ids))})",
                          list(ids)).fetchall()
    return {r["id"]: r for r in rows}


def _check_result(server, job_id: str, frames: int) -> None:
    response = server.get(f"/v1/jobs/{job_id}/result")
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    path = server.data_dir / "jobs" / job_id / "result.mp4"
    assert path.read_bytes() == response.content
    assert probe(path).num_frames == frames
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".partial-")]


# ---------------------------------------------------------------------- without a cluster
def test_a_lost_run_is_requeued_at_its_place_then_failed_at_max_attempts(tmp_path):
    from server.store import JobState, Store

    store = Store(tmp_path / "db.sqlite3")
    _, recon = store.create_scene(source_name="a.mp4", source_path="/x/a.mp4", depth_path=None, options={})
    later = store.create_scene(source_name="b.mp4", source_path="/x/b.mp4", depth_path=None, options={})[1]
    job, token = store.claim_next(1)
    assert job.id == recon.id
    assert store.retry_or_fail(job.id, "not-the-token", 2, "lost") is None  # only the owning run may
    assert store.retry_or_fail(job.id, token, 2, "the actor was lost") == JobState.queued
    again, token2 = store.claim_next(2)
    assert again.id == recon.id and again.attempts == 2  # back at its place, ahead of the later job
    assert store.retry_or_fail(job.id, token, 2, "stale") is None  # the first run's token is dead
    assert store.retry_or_fail(job.id, token2, 2, "the actor was lost") == JobState.failed
    failed = store.get_job(job.id)
    assert failed.error_code == "worker_crashed" and "tried 2 times" in failed.error_message
    assert store.get_scene(failed.scene_id).state.value == "failed"
    third, token3 = store.claim_next(3)
    assert third.id == later.id
    store.request_cancel(third.id)
    assert store.retry_or_fail(third.id, token3, 2, "lost") == JobState.cancelled


def test_transfer_writes_atomically_and_keeps_to_the_shared_folder(tmp_path):
    from server.ray_transfer import Transfer, fetch_inputs, send_outputs

    shared = tmp_path / "shared"
    shared.mkdir()
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"video")
    transfer = Transfer(shared)
    inputs, shared_out = transfer.send_inputs({"source.mp4": source}, "j_1-abc")
    node = tmp_path / "node"
    node.mkdir()
    fetch_inputs(inputs, node)
    assert (node / "source.mp4").read_bytes() == b"video"
    (node / "result.mp4").write_bytes(b"result")
    outputs = send_outputs(node, ["result.mp4", "missing.mp4"], shared_out)
    final = tmp_path / "data" / "jobs" / "j_1"
    assert transfer.receive_outputs(outputs, ["result.mp4"], final) == ["result.mp4"]
    assert (final / "result.mp4").read_bytes() == b"result" and len(list(final.iterdir())) == 1
    with pytest.raises(ValueError, match="outside the shared folder"):
        transfer.receive_outputs({"result.mp4": str(source)}, ["result.mp4"], final)
    with pytest.raises(ValueError, match="bad transfer file name"):
        transfer.send_inputs({"../evil": source}, "j_1-abd")
    transfer.clean("j_1-abc")
    assert list(shared.iterdir()) == []


@pytest.mark.parametrize("args, message, code", [
    (("--ray", "not an address"), "--ray must be 'auto' or the Ray head's HOST:PORT", 2),
    (("--ray", "auto", "--gpus", "0,1"), "--gpus 0,1 picks local GPUs; with --ray the cluster's GPUs are used", 2),
    (("--ray", "auto", "--group-size", "3"), "--group-size 3: a GPU group of 3 cannot split Wan's 40", 2),
    (("--ray-actors", "2",), "--ray-shared-dir and --ray-actors need --ray ADDRESS", 2),
    (("--ray", "127.0.0.1:1"), "cannot connect to the Ray cluster at '127.0.0.1:1': nothing answers there", 4),
])
def test_bad_ray_options_are_refused_before_start(args, message, code, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "EX4D_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "ex4d_engine.cli", "serve", "--port", "0", "--data-dir",
                             str(tmp_path / "d"), *args], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "d" / "server.json").exists()


# ---------------------------------------------------------------------- shared folder (first: it needs the GPUs)
def test_shared_folder_carries_the_files(cluster, start_server, clip, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    proc = start_server("--ray", cluster.address, "--ray-shared-dir", str(shared), env=cluster.env)
    try:
        assert len(_wait_actors(proc, 3)["actors"]) == 3  # one per GPU node; the head has none
        scene = proc.make_ready_scene(clip)
        assert (proc.data_dir / "scenes" / scene["id"] / "scene.ex4dscene.zip").is_file()
        job = proc.wait_job(proc.submit_job(scene).json()["id"])
        assert job["state"] == "succeeded", job
        _check_result(proc, job["id"], clip.num_frames)
        assert list(shared.iterdir()) == []  # each job's folder is removed after it
    finally:
        proc.stop()


# ---------------------------------------------------------------------- the farm
def test_health_shows_nodes_actors_and_their_gpus(farm):
    health = _health(farm)
    cluster = health["cluster"]
    assert cluster["connected"] and cluster["address"] == farm.args[1]
    gpu_nodes = [n for n in cluster["nodes"] if n["alive"] and n["gpus"] == 1]
    assert len(gpu_nodes) == 3
    actors = cluster["actors"]
    assert len(actors) == 2 and all(a["gpu_ids"] == ["0"] for a in actors)  # each node's own logical GPU 0
    assert len({a["node_id"] for a in actors}) == 2  # spread: one actor per node
    assert {a["node_id"] for a in actors} <= {n["node_id"] for n in gpu_nodes}
    assert [w["slot"] for w in health["workers"]] == [0, 1]
    assert all(w["device"].startswith("ray ") for w in health["workers"])


def test_jobs_spread_over_nodes(farm, farm_scene):
    ids = [farm.submit_job(farm_scene).json()["id"] for _ in range(6)]
    jobs = [farm.wait_job(i) for i in ids]
    assert [j["state"] for j in jobs] == ["succeeded"] * 6, jobs
    node_of = _node_of_pid(farm)
    nodes = {node_of[row["worker_pid"]] for row in _job_rows(farm, ids).values()}
    assert len(nodes) == 2, nodes
    for job_id in ids:
        _check_result(farm, job_id, farm_scene["metadata"]["num_frames"])


def test_20_jobs_from_5_clients_none_lost_none_duplicated(farm, farm_scene, trajectory_for):
    before = _health(farm)["cluster"]["counters"]

    def client(k: int) -> list[str]:
        ids = []
        for i in range(4):
            response = farm.submit_job(farm_scene, trajectory_for(farm_scene, shift=0.05 * (k + 1)), seed=k * 10 + i)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        return [farm.wait_job(i, timeout_s=300)["state"] + " " + i for i in ids]

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        outcomes = [o for result in pool.map(client, range(5)) for o in result]
    ids = [o.split()[1] for o in outcomes]
    assert len(set(ids)) == 20
    assert [o.split()[0] for o in outcomes] == ["succeeded"] * 20, outcomes
    after = _health(farm)["cluster"]["counters"]
    assert after["results_committed"] - before["results_committed"] == 20  # each result written exactly once
    assert after["results_discarded"] == before["results_discarded"]
    assert all(row["attempts"] == 1 for row in _job_rows(farm, ids).values())
    listed = farm.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
    assert sum(j["id"] in ids for j in listed) == 20


def _running_long_job(farm, make_clip, long_trajectory_for, frames: int) -> tuple[dict, dict]:
    """(job, scene): a job of ``frames`` frames on a static two-frame scene, once it is running (5 % done)."""
    tiny = make_clip(num_frames=2)
    response = farm.upload_scene(tiny, only_first_frame="true")
    assert farm.wait_job(response.json()["recon_job_id"])["state"] == "succeeded"
    scene = farm.get(f"/v1/scenes/{response.json()['id']}").json()
    job = farm.submit_job(scene, long_trajectory_for(scene, frames)).json()
    _wait_progress(farm, job["id"], 0.05)
    return job, scene


def test_cancel_reaches_the_actor(farm, make_clip, long_trajectory_for):
    job, _ = _running_long_job(farm, make_clip, long_trajectory_for, 600)

    asked = time.monotonic()
    assert farm.delete(f"/v1/jobs/{job['id']}").status_code == 202
    done = farm.wait_job(job["id"], timeout_s=10)
    took = time.monotonic() - asked
    assert done["state"] == "cancelled" and done["error"]["error"] == "cancelled"
    assert took < 2.0, f"cancel took {took:.2f}s"
    assert farm.get(f"/v1/jobs/{job['id']}/result").status_code == 404
    assert not (farm.data_dir / "jobs" / job["id"]).exists()


def test_node_killed_mid_job_the_job_finishes_on_another(farm, cluster, make_clip, long_trajectory_for):
    job, scene = _running_long_job(farm, make_clip, long_trajectory_for, 120)
    victim = _node_of_pid(farm)[_job_rows(farm, [job["id"]])[job["id"]]["worker_pid"]]
    lost_before = _health(farm)["cluster"]["counters"]["actors_lost"]

    cluster.kill_node(victim)
    asked = time.monotonic()
    while time.monotonic() - asked < 60:  # the server keeps answering while the cluster is degraded
        started = time.monotonic()
        health = _health(farm)
        assert time.monotonic() - started < 2.0
        if health["cluster"]["counters"]["actors_lost"] > lost_before:
            break
        time.sleep(0.1)
    done = farm.wait_job(job["id"], timeout_s=180)
    assert done["state"] == "succeeded" and done["attempts"] == 2, done
    row = _job_rows(farm, [job["id"]])[job["id"]]
    survivors = _wait_actors(farm, 2)  # the lost actor was replaced on the spare node
    node_of = {a["pid"]: a["node_id"] for a in survivors["actors"]}
    assert node_of[row["worker_pid"]] != victim
    assert victim not in {a["node_id"] for a in survivors["actors"]}
    replaced = [a for a in survivors["actors"] if a["restarts"] == 1]
    assert len(replaced) == 1
    assert any(why in replaced[0]["last_exit"] for why in ("left the cluster", "unreachable", "died"))
    deadline = time.monotonic() + 90  # Ray marks the node dead after its health checks fail
    while not any(n["node_id"] == victim and not n["alive"] for n in _health(farm)["cluster"]["nodes"]):
        assert time.monotonic() < deadline, _health(farm)["cluster"]["nodes"]
        time.sleep(0.5)
    _check_result(farm, job["id"], 120)
    assert farm.wait_job(farm.submit_job(scene).json()["id"])["state"] == "succeeded"  # still serving


def _wait_progress(server, job_id: str, at_least: float, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = server.get(f"/v1/jobs/{job_id}").json()
        if job["state"] == "running" and job["progress"] >= at_least:
            return
        assert job["state"] in ("queued", "running"), job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} made no progress:\n{server.log()}")
