"""The whole flow against a real server: upload -> scene -> package -> job -> events -> result; cancel;
20 concurrent submissions."""

from __future__ import annotations

import io
import json
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import requests


def test_health_needs_no_token_and_reports_engine(server):
    health = requests.get(server.url + "/v1/health", timeout=10)
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["api_version"] == 1 and body["contract_version"] == 1
    assert body["version"] == __import__("ex4d_engine").__version__
    assert len(body["workers"]) == 1
    deadline = time.monotonic() + 60
    while body["workers"][0]["state"] == "starting" and time.monotonic() < deadline:  # a fresh worker announces itself
        time.sleep(0.1)
        body = requests.get(server.url + "/v1/health", timeout=10).json()
    assert body["workers"][0]["state"] == "idle"  # nothing was queued yet
    generators = {g["name"]: g for g in body["generators"]}
    assert generators["draft"]["available"] is True
    wan = generators["wan"]
    assert wan["available"] == (not wan["models_missing"]) and bool(wan["reason"]) == (not wan["available"])
    assert "file" in body["depth_backends"]
    assert isinstance(body["queue_length"], int)


def test_openapi_is_published(server):
    schema = server.get("/openapi.json").json()  # with the token, like every route but health
    for path in ("/v1/health", "/v1/scenes", "/v1/scenes/{scene_id}/package", "/v1/jobs", "/v1/jobs/{job_id}",
                 "/v1/jobs/{job_id}/events", "/v1/jobs/{job_id}/result", "/v1/jobs/{job_id}/conditioning/{which}"):
        assert path in schema["paths"], path
    assert server.get("/docs").status_code == 200


def test_full_flow_upload_scene_package_job_events_result(server, clip, trajectory_for):
    from ex4d_engine.scene_package import read_scene_package
    from ex4d_engine.video_io import probe

    response = server.upload_scene(clip)
    assert response.status_code == 202, response.text
    scene = response.json()
    assert scene["state"] == "pending" and scene["package_url"] is None
    recon = server.wait_job(scene["recon_job_id"])
    assert recon["state"] == "succeeded" and recon["kind"] == "recon" and recon["progress"] == 1.0

    scene = server.get(f"/v1/scenes/{scene['id']}").json()
    assert scene["state"] == "ready"
    meta = scene["metadata"]
    assert (meta["width"], meta["height"], meta["num_frames"], meta["fps"]) == (64, 64, clip.num_frames, 12.0)
    assert len(scene["source_trajectory"]["frames"]) == clip.num_frames

    package = server.get(scene["package_url"])
    assert package.status_code == 200 and package.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(package.content)) as archive:
        assert {"scene.json", "mesh.npz", "positions.pc2", "source.mp4"} <= set(archive.namelist())
    package_file = server.data_dir.parent / "scene.ex4dscene.zip"
    package_file.write_bytes(package.content)
    package_meta, mesh, positions = read_scene_package(package_file)
    assert package_meta["num_frames"] == clip.num_frames and positions.shape == (clip.num_frames, 64 * 64, 3)

    trajectory = trajectory_for(scene, fps=24.0)
    submitted = server.submit_job(scene, trajectory, generator="draft", seed=3)
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert job["state"] in ("queued", "running") and job["kind"] == "generate"

    events = list(_sse_events(server, job["id"]))
    states = [e["state"] for e in events]
    assert states[-1] == "succeeded", events[-1]
    assert all(a <= b for a, b in zip([e["progress"] for e in events], [e["progress"] for e in events][1:]))
    assert set(states) <= {"queued", "running", "succeeded"}

    done = server.get(f"/v1/jobs/{job['id']}").json()
    assert done["result_url"] == f"/v1/jobs/{job['id']}/result"
    assert done["error"] is None and done["started_at"] and done["finished_at"]
    assert done["preview"] is True, "a draft result is a preview and the job says so"
    result = server.get(done["result_url"])
    assert result.status_code == 200 and result.headers["content-type"] == "video/mp4"
    result_file = server.data_dir.parent / "result.mp4"
    result_file.write_bytes(result.content)
    info = probe(result_file)
    assert (info.width, info.height, info.num_frames, info.fps) == (64, 64, clip.num_frames, 24.0)
    for which in ("colour", "mask"):
        url = done["conditioning_urls"][which]
        video = server.get(url)
        assert video.status_code == 200, url
        path = server.data_dir.parent / f"{which}.mp4"
        path.write_bytes(video.content)
        assert probe(path).num_frames == clip.num_frames
    assert not list((server.data_dir / "jobs" / job["id"]).glob(".partial-*"))
    # engine scratch lives beside its output and is gone when the job is done
    assert not [p for p in server.data_dir.rglob(".partial-*")]


def test_mask_shows_what_the_model_saw(server, ready_scene, trajectory_for):
    """The mask has holes where the camera moved behind the depth step, and is full at the source frame."""
    from ex4d_engine.video_io import read_mask_video

    job = server.submit_job(ready_scene, trajectory_for(ready_scene, shift=0.05)).json()
    assert server.wait_job(job["id"])["state"] == "succeeded"
    path = server.data_dir.parent / "mask_check.mp4"
    path.write_bytes(server.get(f"/v1/jobs/{job['id']}/conditioning/mask").content)
    mask = read_mask_video(path)
    assert (mask[0] == 255).all()
    assert (mask[-1] == 0).any() and (mask[-1] == 255).any()


def test_cancel_queued_and_running_jobs(server, static_scene, long_trajectory_for):
    long = long_trajectory_for(static_scene, 600)
    running = server.submit_job(static_scene, long).json()
    queued = server.submit_job(static_scene, long).json()
    server.wait_job(running["id"], states=("running",))
    _wait_progress(server, running["id"], 0.05)

    cancelled = server.delete(f"/v1/jobs/{queued['id']}")
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"

    asked = time.monotonic()
    response = server.delete(f"/v1/jobs/{running['id']}")
    assert response.status_code == 202 and response.json()["state"] == "running"
    job = server.wait_job(running["id"], timeout_s=10)
    took = time.monotonic() - asked
    assert job["state"] == "cancelled" and job["error"]["error"] == "cancelled"
    assert took < 2.0, f"cancel took {took:.2f}s"
    assert server.get(f"/v1/jobs/{running['id']}/result").status_code == 404
    assert not (server.data_dir / "jobs" / running["id"] / "result.mp4").exists()

    again = server.delete(f"/v1/jobs/{running['id']}")
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert server.wait_job(server.submit_job(static_scene).json()["id"])["state"] == "succeeded"  # still serving


def test_jobs_list_filters_by_state(server, ready_scene):
    job = server.submit_job(ready_scene).json()
    server.wait_job(job["id"])
    listed = server.get("/v1/jobs", params={"state": "succeeded", "limit": 1000}).json()["jobs"]
    assert job["id"] in [j["id"] for j in listed]
    assert all(j["state"] == "succeeded" for j in listed)
    assert server.get("/v1/jobs", params={"state": "bogus"}).status_code == 422
    scenes = server.get("/v1/scenes").json()["scenes"]
    assert ready_scene["id"] in [s["id"] for s in scenes]


def test_twenty_concurrent_submissions_all_finish_in_order(server, ready_scene, trajectory_for):
    trajectory = trajectory_for(ready_scene)

    def submit(i: int) -> dict:
        response = server.submit_job(ready_scene, trajectory, seed=i)
        assert response.status_code == 202, response.text
        return response.json()

    with ThreadPoolExecutor(20) as pool:
        jobs = list(pool.map(submit, range(20)))
    assert len({j["id"] for j in jobs}) == 20
    finished = [server.wait_job(j["id"], timeout_s=180) for j in jobs]
    assert [j["state"] for j in finished] == ["succeeded"] * 20, [j["error"] for j in finished]
    # one worker, FIFO: start order is submission order
    by_created = sorted(finished, key=lambda j: j["created_at"])
    started = [j["started_at"] for j in by_created]
    assert started == sorted(started)


# ---------------------------------------------------------------------- helpers
def _sse_events(server, job_id: str):
    with requests.get(f"{server.url}/v1/jobs/{job_id}/events", headers=server.headers, stream=True,
                      timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = {}
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                event = json.loads(line[6:])
            elif line == "" and event:
                yield event
                event = {}


def _wait_progress(server, job_id: str, at_least: float, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.get(f"/v1/jobs/{job_id}").json()["progress"] >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError("no progress")


def test_models_stay_resident_between_jobs(server, ready_scene):
    before = requests.get(server.url + "/v1/health", timeout=10).json()
    for _ in range(2):
        assert server.wait_job(server.submit_job(ready_scene).json()["id"])["state"] == "succeeded"
    after = requests.get(server.url + "/v1/health", timeout=10).json()
    assert after["workers"][0]["pid"] == before["workers"][0]["pid"]  # the same process ran every job
    assert after["workers"][0]["restarts"] == before["workers"][0]["restarts"]
    assert next(g for g in after["generators"] if g["name"] == "draft")["loaded"] is True


def test_preload_loads_generators_at_start(start_server):
    preloaded = start_server("--preload")
    health = requests.get(preloaded.url + "/v1/health", timeout=10).json()
    assert next(g for g in health["generators"] if g["name"] == "draft")["loaded"] is True


def test_depth_backend_without_weights_is_refused_at_submit_with_the_reason(start_server, clip, tmp_path_factory):
    empty = tmp_path_factory.mktemp("no-models")
    engine = start_server("--models-dir", str(empty), env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(empty)})
    # health offers only what can run: no weights anywhere, so only depth from a file
    assert requests.get(engine.url + "/v1/health", timeout=10).json()["depth_backends"] == ["file"]
    scenes_before = {p.name for p in (engine.data_dir / "scenes").iterdir()}
    with open(clip.video, "rb") as video:
        response = engine.post("/v1/scenes", files={"video": ("clip.mp4", video)},
                               data={"depth_source": "depth-anything", "num_frames": "9"})
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "resource_unavailable" and body["field"] == "depth_source"
    assert "depth-anything" in body["message"] and "missing" in body["message"] and "hf download" in body["message"]
    assert {p.name for p in (engine.data_dir / "scenes").iterdir()} == scenes_before  # nothing left behind


def test_two_workers_share_one_queue(start_server, clip, trajectory_for):
    """--gpus 0,1: one worker process per GPU (here both fall back to the CPU), one FIFO queue."""
    engine = start_server("--gpus", "0,1")
    health = engine.wait_worker_idle()
    assert [w["slot"] for w in health["workers"]] == [0, 1]
    assert len({w["pid"] for w in health["workers"]}) == 2
    scene = engine.make_ready_scene(clip)
    jobs = [engine.submit_job(scene, trajectory_for(scene), seed=i).json() for i in range(6)]
    done = [engine.wait_job(j["id"]) for j in jobs]
    assert [j["state"] for j in done] == ["succeeded"] * 6
    started = [j["started_at"] for j in done]
    assert started == sorted(started)  # taken in submission order
