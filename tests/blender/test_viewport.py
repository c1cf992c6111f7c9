"""Issue 19: the imported DW-mesh reads as a 3D scene in the viewport (real bpy 4.2 / 4.5 / 5.0).

A real engine package (``engine_scene``: a box in front of a wall, skirt and back caps as the engine
builds them) is imported; one Blender process per version runs scripts/viewport_checks.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from bpy_testing import check_value

#: Coverage estimate vs the engine's mask, in visible-fraction points (0..1).
PER_PIXEL_TOLERANCE = 0.01  # one ray per pixel centre: the engine's own sampling
DEFAULT_TOLERANCE = 0.03  # ~2000 rays per frame


@pytest.fixture(scope="module")
def viewport_checks(bpy_run, extension_zip, engine_scene, tmp_path_factory):
    cache: dict[str, dict] = {}

    def get(version: str) -> dict:
        if version not in cache:
            work = tmp_path_factory.mktemp(f"viewport{version.replace('.', '')}")
            cache[version] = bpy_run(version, "viewport_checks.py", "--zip", extension_zip, "--package",
                                     engine_scene["package"], "--workdir", str(work))
        return cache[version]

    return get


def test_skirt_is_its_own_object_hidden_in_the_viewport(viewport_checks, blender_version):
    value = check_value(viewport_checks(blender_version), "import")
    # Split exactly: skirt faces touch the border ring, content faces never do, none is lost.
    assert value["skirt_faces"] + value["content_faces"] == value["total_faces"]
    assert value["skirt_faces_touch_ring"] and not value["content_faces_touch_ring"]
    assert value["skirt_in_own_collection"] and value["same_material"]
    assert value["skirt_cache_err"] < 1e-6  # its own point cache plays the engine positions
    assert value["content_cache_err"] < 1e-6  # every real vertex still plays the engine positions
    assert value["content_max_depth"] <= value["interior_max_depth"] + 1e-6  # bounds: no depth-100 ring
    # Hidden in the 3D view by default, kept in renders; one toggle shows it, the next hides it.
    assert value["mesh_in_view"] and not value["skirt_in_view"] and value["skirt_renders"]
    assert value["shown_after_toggle"] and value["hidden_after_second_toggle"]
    assert value["overlay_on_skirt"] == 1.0  # the hidden-face overlay still covers the skirt


def test_views_frame_the_content_not_the_skirt(viewport_checks, blender_version):
    value = check_value(viewport_checks(blender_version), "framing")
    low, high = np.array(value["box"][0]), np.array(value["box"][1])
    assert value["content_inside_box"] >= 0.98  # 1st..99th percentile box
    assert value["skirt_inside_box"] == 0
    assert (high - low).max() < value["border_depth"] / 10  # nothing like the depth-100 pyramid
    assert value["perspective"] == "PERSP"
    assert value["content_in_view"] >= 0.98 and value["clipped_in_view"] >= 0.99  # the content is in view
    assert 0.8 < value["fill"] <= 1.05  # and fills it (on its tighter side; ~1000 samples framed, +8 %)
    assert value["view_distance"] < value["border_depth"] / 4
    assert value["other_views_framed"] and value["color_type"] == "TEXTURE"
    # Clip range brackets the content as seen from the view, and the scene's depth range.
    clip_start, clip_end = value["clip"]
    near, far = value["depth_range"]
    assert value["depth_range"] == pytest.approx(value["content_depth"])
    assert clip_start < min(value["nearest"], near) and clip_end > value["farthest"]
    assert clip_end / clip_start < 1e5  # depth precision
    for camera in value["cameras"].values():
        assert camera["clip"][0] < near and camera["clip"][1] > value["border_depth"]  # the skirt renders
        assert 0.05 * far < camera["display_size"] < far  # a frustum that reads, not a wall
        assert camera["location_err"] < 1e-9  # the shot starts at the source camera


def test_shot_view_splits_once_and_shows_what_the_engine_renders(viewport_checks, blender_version):
    value = check_value(viewport_checks(blender_version), "shot_view")
    assert value["result"] == ["FINISHED"] and value["again"] == ["FINISHED"]
    assert value["areas_added"] == 1 and value["shot_areas"] == 1
    assert value["camera"] == "EX4D Shot" and value["perspective"] == "CAMERA"
    assert value["shading"] == "MATERIAL"
    assert value["skirt_in_shot_view"] and value["mesh_in_shot_view"]  # WYSIWYG there
    assert not value["skirt_in_main_view"]


def test_skirt_stays_hidden_after_save_and_reload(viewport_checks, blender_version):
    assert check_value(viewport_checks(blender_version), "reload") == {"skirt_visible": False}


def test_coverage_matches_the_engine_mask(viewport_checks, engine_scene, blender_version):
    from ex4d_engine.contract import Trajectory
    from ex4d_engine.pipeline import render_conditioning

    value = check_value(viewport_checks(blender_version), "coverage")
    trajectory = Trajectory.load(value["trajectory"])
    conditioning = render_conditioning(engine_scene["scene"], trajectory)  # the engine's rules, as sent
    engine = (conditioning.mask == 255).mean(axis=(1, 2))
    assert conditioning.frame0_is_source and engine[0] == 1.0  # the shot starts at the source camera
    per_pixel, default = np.array(value["per_pixel"]), np.array(value["default"])
    print(f"\ncoverage bpy {blender_version}: engine {np.round(engine, 3).tolist()}\n"
          f"  per-pixel rays max err {np.abs(per_pixel - engine).max():.4f} ({value['per_pixel_s']:.1f} s), "
          f"{value['samples']} rays max err {np.abs(default - engine).max():.4f} ({value['default_s']:.1f} s)")
    assert engine.max() - engine.min() > 0.3  # the shot really loses coverage
    np.testing.assert_allclose(per_pixel, engine, atol=PER_PIXEL_TOLERANCE)
    np.testing.assert_allclose(default, engine, atol=DEFAULT_TOLERANCE)
    # Flags: a marker on exactly the frames below 60 %, the curve keyed on every frame.
    below = [i + 1 for i, f in enumerate(default) if 100 * f < 60.0]
    assert [frame for frame, _name in value["markers"]] == below and below
    assert all(name.startswith("EX4D ") and name.endswith("%") for _frame, name in value["markers"])
    np.testing.assert_allclose(value["curve"], 100 * default, atol=1e-3)
    assert value["result"] == value["second"] == ["FINISHED"]
    # Second run: frames 1..6 every 2nd frame (and the last): only those are checked, flagged and keyed;
    # nothing of the first run is left behind.
    assert value["second_frames"] == [1, 3, 5, 6]
    np.testing.assert_allclose(value["second_visible"], default[[0, 2, 4, 5]], atol=1e-9)
    second_below = [f for f in value["second_frames"] if 100 * default[f - 1] < 60.0]
    assert [frame for frame, _ in value["markers_after"]] == second_below
    assert value["summary"].startswith(f"{len(second_below)}/4 frames")


def test_panel_offers_the_view_tools(viewport_checks, blender_version):
    value = check_value(viewport_checks(blender_version), "panel")
    assert value["buttons"] == {"TOGGLE_SKIRT": ["Skirt", False], "FRAME": ["Frame", None],
                                "SHOT_VIEW": ["Shot view", None], "COVERAGE": ["Check coverage", None]}
    # the sidebar shows the summary cut to its width (the full text behind the (i) button)
    assert value["summary"] and len(value["coverage_line"]) == 1
    assert value["summary"].startswith(value["coverage_line"][0].rstrip("…"))
