"""A stereo take through the real HTTP API: options.stereo -> packed result with the st3d box, and each eye."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from ex4d_engine.video_io import read_video


@pytest.fixture(scope="module")
def stereo_job(server, ready_scene, trajectory_for):
    """One succeeded stereo job (top-bottom), shared by the tests that only read it."""
    stereo = {"interocular": 0.05, "convergence": 3.0, "mode": "OFFAXIS", "pivot": "CENTER", "layout": "tb"}
    submitted = server.submit_job(ready_scene, trajectory_for(ready_scene), generator="draft", stereo=stereo)
    assert submitted.status_code == 202, submitted.text
    job = server.wait_job(submitted.json()["id"], timeout_s=300)
    assert job["state"] == "succeeded", job
    return job


def _download(server, url: str, name: str):
    response = server.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    path = server.data_dir.parent / name
    path.write_bytes(response.content)
    return path


def test_stereo_job_returns_a_packed_stereo_video(server, ready_scene, stereo_job):
    from ex4d_engine.stereo_video import stereo_layout_of
    from ex4d_engine.video_io import probe

    path = _download(server, stereo_job["result_url"], "stereo_result.mp4")
    info = probe(path)
    meta = ready_scene["metadata"]
    assert (info.width, info.height, info.num_frames) == (meta["width"], 2 * meta["height"], meta["num_frames"])
    assert stereo_layout_of(path) == "top and bottom"


def test_each_eye_is_served_and_is_its_half_of_the_packed_video(server, ready_scene, stereo_job):
    job_id = stereo_job["id"]
    assert stereo_job["eye_urls"] == {"left": f"/v1/jobs/{job_id}/result/left",
                                      "right": f"/v1/jobs/{job_id}/result/right"}
    meta = ready_scene["metadata"]
    packed = read_video(_download(server, stereo_job["result_url"], "packed.mp4")).frames.astype(np.int16)
    eyes = {}
    for eye in ("left", "right"):
        eyes[eye] = read_video(_download(server, stereo_job["eye_urls"][eye], f"{eye}.mp4")).frames.astype(np.int16)
        assert eyes[eye].shape == (meta["num_frames"], meta["height"], meta["width"], 3)
    # top-bottom: left eye on top; both went through H.264 once, so they match to codec noise
    assert np.abs(eyes["left"] - packed[:, :meta["height"]]).mean() < 3.0
    assert np.abs(eyes["right"] - packed[:, meta["height"]:]).mean() < 3.0
    assert np.abs(eyes["left"] - eyes["right"]).mean() > 2 * np.abs(eyes["left"] - packed[:, :meta["height"]]).mean()


def test_eye_results_keep_the_api_rules(server, ready_scene, trajectory_for, stereo_job):
    job_id = stereo_job["id"]
    # token: none or a wrong one is 401; the Host guard holds for the new route too
    assert requests.get(server.url + stereo_job["eye_urls"]["left"], timeout=10).status_code == 401
    wrong = requests.get(server.url + stereo_job["eye_urls"]["left"], headers={"Authorization": "Bearer nope"},
                         timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    rebound = requests.get(server.url + stereo_job["eye_urls"]["left"],
                           headers={"Host": "evil.example", **server.headers}, timeout=10)
    assert rebound.status_code == 400 and rebound.json()["error"] == "bad_request"
    # only the two eyes; no path tricks
    for eye in ("middle", "LEFT", "%2e%2e", "%2e%2e%2fresult", "left.mp4"):
        response = server.get(f"/v1/jobs/{job_id}/result/{eye}")
        assert response.status_code in (404, 422), (eye, response.text)
        assert response.json()["error"] in ("not_found", "invalid_input"), (eye, response.text)
    # a mono job has no eyes: null eye_urls, 404 with the reason
    mono = server.submit_job(ready_scene, trajectory_for(ready_scene), generator="draft")
    mono_job = server.wait_job(mono.json()["id"], timeout_s=300)
    assert mono_job["state"] == "succeeded" and mono_job["eye_urls"] is None
    response = server.get(f"/v1/jobs/{mono_job['id']}/result/left")
    assert response.status_code == 404 and "mono" in response.json()["message"]
    assert server.get("/v1/jobs/j_0123456789abcdef/result/left").status_code == 404


def test_an_eye_swapped_for_a_link_out_of_the_data_dir_is_not_served(server, stereo_job, tmp_path):
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"private bytes, not a video of this job")
    eye_file = server.data_dir / "jobs" / stereo_job["id"] / "result_right.mp4"
    eye_file.unlink()
    eye_file.symlink_to(secret)
    response = server.get(stereo_job["eye_urls"]["right"])
    assert response.status_code in (404, 422), response.text
    assert b"private bytes" not in response.content
    assert str(server.data_dir) not in response.text and str(tmp_path) not in response.text


def test_bad_stereo_options_are_refused_with_the_field(server, ready_scene, trajectory_for):
    for stereo, field in (({"interocular": 0, "convergence": 3.0}, "interocular"),
                          ({"interocular": 0.05, "convergence": -1}, "convergence"),
                          ({"interocular": 0.05, "convergence": 3.0, "mode": "SIDEWAYS"}, "mode"),
                          ({"interocular": 0.05, "convergence": 3.0, "layout": "anaglyph"}, "layout")):
        response = server.submit_job(ready_scene, trajectory_for(ready_scene), generator="draft", stereo=stereo)
        assert response.status_code == 422, response.text
        assert field in response.text


def test_absurd_interocular_fails_the_job_with_the_reason(server, ready_scene, trajectory_for):
    stereo = {"interocular": 50.0, "convergence": 3.0}
    submitted = server.submit_job(ready_scene, trajectory_for(ready_scene), generator="draft", stereo=stereo)
    assert submitted.status_code == 202
    job = server.wait_job(submitted.json()["id"], timeout_s=300)
    assert job["state"] == "failed"
    assert "too large for this scene" in job["error"]["message"] and job["error"]["error"] == "invalid_input"
    assert job["result_url"] is None and job["eye_urls"] is None
    assert server.get(f"/v1/jobs/{job['id']}/result/left").status_code == 404
