"""Import -> generate -> strip, cancel and bad token, inside real Blender against a real ``ex4d serve``."""

from __future__ import annotations

from bpy_testing import check_value


def test_bad_token_is_reported(e2e_checks, blender_version):
    value = check_value(e2e_checks(blender_version), "bad_token")
    assert value["connection"][0] == "ERROR"
    assert "rejected the token" in value["connection"][1] and "rejected the token" in value["verdict"]


def test_connection_handshake(e2e_checks, blender_version):
    value = check_value(e2e_checks(blender_version), "connection")
    assert value["connection"] == ["FINISHED"]
    assert value["verdict"].startswith("Connected: EX-4D engine") and "contract v1" in value["verdict"]
    assert "draft" in value["verdict"]


def test_import_by_uploading_a_video(e2e_checks, engine_clip, blender_version):
    value = check_value(e2e_checks(blender_version), "import_video")
    assert value["result"] == ["FINISHED"]
    assert value["collection"] and value["scene_id"], value
    assert value["frame_range"] == [1, engine_clip["num_frames"]]
    width, height = value["resolution"]  # the engine's working resolution (it may resize the clip)
    assert width >= 16 and height >= 16 and value["num_vertices"] == width * height


def test_generate_brings_back_a_strip(e2e_checks, engine_clip, blender_version):
    value = check_value(e2e_checks(blender_version), "generate")
    assert value["result"] == ["FINISHED"]
    take = value["take"]
    assert take["status"] == "succeeded", take
    assert take["result_exists"] and take["job_id"]
    strip = value["strip"]
    n = engine_clip["num_frames"]
    assert strip is not None and strip["type"] == "MOVIE"
    assert [strip["start"], strip["end"], strip["duration"]] == [1, 1 + n, n]
    assert strip["file_frames"] == n and strip["job_id"] == take["job_id"]
    assert strip["name"] == take["name"]
    # The conditioning videos (what the model saw) come back as muted strips above the shot.
    assert set(value["conditioning"]) == {"colour", "mask"}
    for channel, start, duration, muted in value["conditioning"].values():
        assert channel > strip["channel"] and start == 1 and duration == n and muted


def test_resume_a_take_after_reopening_the_file(e2e_checks, blender_version):
    value = check_value(e2e_checks(blender_version), "resume_after_reload")
    assert value["result"] == ["FINISHED"]
    assert value["take"]["status"] == "succeeded" and value["take"]["result_exists"] and value["strips"] == 1
    assert value["again"][0] == "ERROR" and "nothing to resume" in value["again"][1]


def test_cancel_a_queued_job(e2e_checks, blender_version):
    value = check_value(e2e_checks(blender_version), "cancel")
    assert value["cancel"] == ["FINISHED"]
    assert value["first"]["status"] == "succeeded", value["first"]
    assert value["second"]["status"] == "cancelled", value["second"]
    assert value["second_strips"] == 0 and not value["second"]["result_exists"]


def test_regenerate_and_compare_takes(e2e_checks, blender_version):
    value = check_value(e2e_checks(blender_version), "regenerate_and_compare")
    assert value["take"]["status"] == "succeeded"
    assert value["seed"][1] == value["seed"][0] + 1
    assert value["show"] == ["FINISHED"] and value["shown_unmuted"] and value["new_muted"]


def test_bad_token_on_generate_fails_the_take_readably(e2e_checks, blender_version):
    value = check_value(e2e_checks(blender_version), "bad_token_generate")
    assert value["take"]["status"] == "failed"
    assert "rejected the token" in value["take"]["message"]


def test_start_local_engine_from_preferences(e2e_checks, blender_version):
    value = check_value(e2e_checks(blender_version), "start_local_engine")
    assert value["started"] == ["FINISHED"]
    assert value["connection"] == ["FINISHED"], value  # token read from the engine's data dir
    assert value["verdict"].startswith("Connected") and value["running"]
    assert value["stopped"] and value["log_exists"]
