"""A stereo take through the real HTTP API: options.stereo -> packed result with the st3d box."""

from __future__ import annotations


def test_stereo_job_returns_a_packed_stereo_video(server, ready_scene, trajectory_for):
    from ex4d_engine.stereo_video import stereo_layout_of
    from ex4d_engine.video_io import probe

    stereo = {"interocular": 0.05, "convergence": 3.0, "mode": "OFFAXIS", "pivot": "CENTER", "layout": "tb"}
    submitted = server.submit_job(ready_scene, trajectory_for(ready_scene), generator="draft", stereo=stereo)
    assert submitted.status_code == 202, submitted.text
    job = server.wait_job(submitted.json()["id"], timeout_s=300)
    assert job["state"] == "succeeded", job
    result = server.get(job["result_url"])
    assert result.status_code == 200
    path = server.data_dir.parent / "stereo_result.mp4"
    path.write_bytes(result.content)
    info = probe(path)
    meta = ready_scene["metadata"]
    assert (info.width, info.height, info.num_frames) == (meta["width"], 2 * meta["height"], meta["num_frames"])
    assert stereo_layout_of(path) == "top and bottom"
    job_dir = server.data_dir / "jobs" / job["id"]
    assert probe(job_dir / "result_left.mp4").height == meta["height"]
    assert probe(job_dir / "result_right.mp4").height == meta["height"]


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
    assert job["result_url"] is None
