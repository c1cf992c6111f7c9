"""The add-on inside real Blender (bpy 4.2 LTS, 4.5 LTS, 5.0): one Blender process per version."""

from __future__ import annotations

import numpy as np

from bpy_testing import check_value


def test_extension_installs_and_registers(addon_checks, blender_version):
    value = check_value(addon_checks(blender_version), "install")
    assert value["module"] == "bl_ext.user_default.ex4d"
    assert value["engine_url"] == "http://127.0.0.1:8420"
    for op in ("generate", "cancel", "import_scene", "import_video", "test_connection", "export_trajectory",
               "import_trajectory", "regenerate", "take_show", "toggle_overlay", "start_engine"):
        assert op in value["operators"]
    assert not value["torch_loaded"] and not value["ex4d_engine_loaded"]
    assert value["numpy_modules_at_enable"] == []  # features import them when they run (issue 16 item 1)


def test_camera_matches_blender_projection(addon_checks, blender_version):
    """sensor fit x landscape/portrait x shift x pixel aspect x resolution %, through a moved, scaled root."""
    value = check_value(addon_checks(blender_version), "camera_exactness")
    assert value["configs"] == 72
    assert value["max_err_px"] <= 0.01, [r for r in value["rows"] if r["max_err_px"] > 0.01]
    sizes = {(r["width"], r["height"]) for r in value["rows"]}
    assert sizes == {(640, 360), (360, 640), (320, 180), (180, 320)}


def test_keyed_rig_with_parent_track_to_and_lens(addon_checks, blender_version):
    value = check_value(addon_checks(blender_version), "keyed_rig")
    assert value["frames"] == 24
    assert value["max_err_px"] <= 0.01
    assert value["matrix_world_vs_basis"] > 0.5  # the parent moved the camera: F-curves alone would be wrong
    assert value["target_centre_err_px"] < 1e-3  # Track-To: the optical axis (cx, cy) hits the target
    assert abs(value["fx_first"] - 24.0 * 480 / 36.0) < 1e-6
    assert abs(value["fx_last"] - 60.0 * 480 / 36.0) < 1e-6  # lens animation reaches the trajectory
    assert value["frame_after"] == 7  # the artist's current frame is restored


def test_non_perspective_camera_is_a_clear_error(addon_checks, blender_version):
    message = check_value(addon_checks(blender_version), "non_perspective")
    assert message and "perspective" in message and "ortho" in message


def test_import_package_builds_the_scene(addon_checks, blender_version):
    value = check_value(addon_checks(blender_version), "import_package")
    info = value["expected"]
    assert value["result"] == ["FINISHED"]
    assert value["objects"] == ["EX4D Mesh", "EX4D Root", "EX4D Shot", "EX4D Source Camera"]
    assert value["resolution"] == [info["width"], info["height"], 100]
    assert abs(value["fps"] - info["fps"]) < 1e-9
    assert value["frame_range"] == [1, info["num_frames"]]
    assert value["num_vertices"] == info["width"] * info["height"]
    assert value["num_faces"] == info["mesh"]["num_faces"]
    assert max(value["eval_err"]) < 1e-6  # Mesh Cache plays the PC2 frame for frame
    assert value["world_err"] < 1e-6 and value["uv_err"] < 1e-6
    # The source camera reproduces the source K and sits at the engine origin.
    np.testing.assert_allclose(value["K_source"], info["K"], atol=1e-4)
    np.testing.assert_allclose(value["w2c_source"], np.eye(4), atol=1e-6)
    np.testing.assert_allclose(value["K_shot"], info["K"], atol=1e-4)
    np.testing.assert_allclose(value["w2c_shot"], np.eye(4), atol=1e-6)
    np.testing.assert_allclose(value["w2c_source_after_move"], np.eye(4), atol=1e-5)  # root moved + scaled
    assert value["scene_id"] == "s_test" and value["mesh_valid"]
    cache_on, after_err, frame = value["after_extraction"]
    assert cache_on and after_err < 1e-6 and frame == info["num_frames"]
    assert value["image_source"] == "MOVIE" and value["image_frames"] == info["num_frames"]
    assert value["view_transform"] == "Standard"


def test_visibility_sequence_and_overlay(addon_checks, blender_version):
    value = check_value(addon_checks(blender_version), "overlay")
    assert value["matches_frame_3"] and value["differs_from_frame_1"] and value["hidden_count"] > 0
    assert value["strength_on"] == 1.0 and value["strength_off"] == 0.0
    assert value["sequence"] == ["SEQUENCE", 5, "Non-Color"]


def test_movie_strips_on_free_channels(addon_checks, blender_version):
    value = check_value(addon_checks(blender_version), "strips")
    assert value["collection_attr"] == ("sequences" if blender_version == "4.2" else "strips")
    assert value["type"] == "MOVIE"
    assert value["first"] == [2, 1, 6, 5]  # channel 2, frames 1..5 (end exclusive)
    assert value["second"] == [3, 1, 5]  # overlapping: next free channel
    assert value["trimmed"] == [2, 10, 3]  # 5-frame file trimmed to a 3-frame shot, free at frame 10
    assert value["meta"] == ["k1", 3] and value["warning"] == "" and value["found"]


def test_trajectory_export_import_round_trip(addon_checks, blender_version):
    value = check_value(addon_checks(blender_version), "trajectory_io")
    for fmt in ("ex4d", "colmap"):
        assert value[fmt]["frames"] == 5
        assert value[fmt]["w2c_err"] < 1e-5 and value[fmt]["K_err"] < 1e-6, (fmt, value[fmt])
    # nerfstudio stores no lens shift (exported with allow_lossy): pose and focal survive.
    assert value["nerfstudio"]["w2c_err"] < 1e-5 and value["nerfstudio"]["focal_err"] < 1e-6


def test_engine_down_is_reported_in_the_ui(addon_checks, blender_version):
    value = check_value(addon_checks(blender_version), "engine_down")
    assert value["connection"][0] == "ERROR" and "Cannot reach the EX-4D engine" in value["connection"][1]
    assert "Cannot reach" in value["verdict"] and value["state"] == "error"
    # Generate checks the engine first: a clear error at once, and no failed take left behind (issue 16.3).
    assert value["generate"][0] == "ERROR" and "Generate: Cannot reach the EX-4D engine" in value["generate"][1]
    assert value["takes_added"] == 0
    assert value["state_after"] == "error" and value["line"].startswith("Engine problem (just now")


def test_version_mismatch_is_reported(addon_checks, blender_version):
    value = check_value(addon_checks(blender_version), "version_mismatch")
    assert value["connection"][0] == "ERROR"
    assert "Version mismatch" in value["verdict"] and "v2" in value["verdict"] and "v1" in value["verdict"]


def test_panels_draw_real_properties_and_operators(addon_checks, blender_version):
    value = check_value(addon_checks(blender_version), "ui_draw")
    assert value["errors"] == []
    assert value["panels"] == ["EX4D_PT_main", "EX4D_PT_scene", "EX4D_PT_sequencer", "EX4D_PT_shot", "EX4D_PT_takes"]


def test_takes_survive_save_and_reload(addon_checks, blender_version):
    value = check_value(addon_checks(blender_version), "takes_survive_reload")
    assert value["count_after"] == value["count_before"] >= 1
    assert value["take"] == ["j_123", "succeeded", "/tmp/x.mp4", 7]
    assert value["collection_kept"]


def test_no_torch_in_blender(addon_checks, blender_version):
    results = addon_checks(blender_version)
    assert results["_versions"]["blender"].startswith(blender_version)
    assert not results["_versions"]["torch_loaded"]


def test_broken_packages_name_the_problem_and_leave_nothing(addon_checks, blender_version):
    value = check_value(addon_checks(blender_version), "bad_packages")
    expected = {"not_zip": "not a zip file", "missing_file": "not found", "no_pc2": "missing positions.pc2",
                "no_scene_json": "no scene.json", "wrong_version": "version 2",
                "wrong_frames": "'hidden' has shape (5, 768), expected (7, 768)", "truncated_pc2": "truncated"}
    for case, text in expected.items():
        result = value["results"][case]
        assert result[0] == "ERROR" and "Import failed" in result[1] and text in result[1], (case, result)
    assert value["left_behind"] == []  # no half-imported folder
    assert value["objects"] == 0 and value["collections"] == 0  # and no half-built scene


def test_unregister_is_clean(addon_checks, blender_version):
    value = check_value(addon_checks(blender_version), "unregister")
    assert value == {"scene_prop": False, "operator": False, "panel": False}
