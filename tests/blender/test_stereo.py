"""Stereo takes in real Blender: the add-on's eyes against Blender's own multi-view render (Cycles)."""

from __future__ import annotations

import pytest

from bpy_testing import check_value


@pytest.fixture(scope="module")
def stereo_checks(bpy_run, extension_zip, tmp_path_factory):
    cache: dict[str, dict] = {}

    def get(version: str) -> dict:
        if version not in cache:
            import subprocess

            import imageio_ffmpeg

            work = tmp_path_factory.mktemp(f"stereo{version.replace('.', '')}")
            # the packed test clip is made here, by the host's ffmpeg (a chroot Blender cannot run it)
            subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                            "testsrc=size=64x24:rate=24", "-frames:v", "4", "-pix_fmt", "yuv420p",
                            str(work / "sbs.mp4")], check=True)
            cache[version] = bpy_run(version, "stereo_render.py", "--zip", extension_zip, "--workdir", str(work),
                                     timeout=900)
        return cache[version]

    return get


def test_eyes_match_blender_multiview_render(stereo_checks, blender_version):
    """Every convergence mode x pivot, vertical fit + shift + pixel aspect, scaled camera: <= 0.01 px."""
    value = check_value(stereo_checks(blender_version), "stereo_render")
    assert value["configs"] == 13
    modes = {(r["mode"], r["pivot"]) for r in value["rows"]}
    assert len(modes) == 9
    for row in value["rows"]:
        assert row["left_err_px"] <= 0.01 and row["right_err_px"] <= 0.01, row
        assert row["left_silhouette_share"] < 0.02 and row["right_silhouette_share"] < 0.02, row
        assert row["eye_gap"] > 0.1, row  # the two eyes really differ
    assert value["max_err_px"] <= 0.01


def test_stereo_take_errors_say_how_to_fix(stereo_checks, blender_version):
    messages = check_value(stereo_checks(blender_version), "errors")
    assert "Output Properties > Stereoscopy" in messages["off"] and "Stereo 3D" in messages["off"]
    assert "Multi-View" in messages["multiview"] and "Stereo 3D" in messages["multiview"]
    assert "interocular" in messages["interocular"] and "positive" in messages["interocular"]


def test_stereo_strip_is_multiview(stereo_checks, blender_version):
    value = check_value(stereo_checks(blender_version), "strip")
    assert value == {"use_multiview": True, "views_format": "STEREO_3D", "display_mode": "SIDEBYSIDE",
                     "squeezed": True}


def test_take_records_ipd_convergence_mode_and_job_options_are_in_depth_units(stereo_checks, blender_version):
    value = check_value(stereo_checks(blender_version), "take")
    options = value["options"]
    assert options["interocular"] == pytest.approx(0.035) and options["convergence"] == pytest.approx(1.25)
    assert (options["mode"], options["pivot"], options["layout"], options["generation"]) == ("TOE", "CENTER", "tb",
                                                                                              "joint")
    record = value["record"]  # read back after save + reload of the .blend
    assert record["interocular"] == pytest.approx(0.07) and record["convergence"] == pytest.approx(2.5)
    assert (record["mode"], record["pivot"], record["layout"]) == ("TOE", "CENTER", "tb")
    assert value["line"] == "Stereo TOE, IPD 0.07, convergence 2.5 (tb)"
    assert "animates its stereo settings" in value["animated"]
