"""``ex4d recon`` as a user runs it: outputs, and every bad input -> message, exit != 0, nothing half-written."""

import json

import numpy as np
import pytest
from ex4d_testing import run_cli

from ex4d_engine.contract import Trajectory


def recon(tmp_path, video, depth, *extra):
    out = tmp_path / "out"
    return run_cli("recon", "--input_video", video, "--depth_file", depth, "--output_dir", out, *extra), out


def test_recon_writes_the_seed_files(tmp_path, tiny_video):
    video, depth = tiny_video
    result, out = recon(tmp_path, video, depth, "--cam", "30", "--save_mesh", "--save_camera", "--focal", "50")
    assert result.returncode == 0, result.stderr
    for name in ("color_30.mp4", "mask_30.mp4", "camera_30.npz", "DW-Mesh.ply", "recon_30.json"):
        assert (out / name).is_file(), name
    from ex4d_engine.video_io import probe, read_mask_video

    info = probe(out / "color_30.mp4")
    assert (info.width, info.height, info.num_frames) == (64, 64, 9)  # 64x48 -> multiples of 64, aspect kept by crop
    assert info.fps == pytest.approx(24.0)
    mask = read_mask_video(out / "mask_30.mp4")
    assert set(np.unique(mask)) <= {0, 255} and (mask[0] == 255).all() and (mask[-1] == 0).any()
    record = json.loads((out / "recon_30.json").read_text())
    assert record["intrinsics_source"] == "focal" and record["K"][0][0] == 50
    with np.load(out / "camera_30.npz") as cam:
        assert cam["extrinsics"].shape == (9, 4, 4)
        assert np.allclose(cam["extrinsics"][0], np.diag([1, -1, -1, 1]))  # the seed's OpenGL-style negation
    assert (out / "DW-Mesh.ply").read_bytes().startswith(b"ply\nformat binary_little_endian")


def test_recon_with_a_trajectory_file_uses_its_stem(tmp_path, tiny_video):
    video, depth = tiny_video
    K = [[500.0, 0, 32], [0, 500.0, 32], [0, 0, 1]]
    w2c = np.repeat(np.eye(4)[None], 9, 0)
    w2c[:, 0, 3] = -np.linspace(0, 0.2, 9)
    path = tmp_path / "dolly_left.json"
    Trajectory(64, 64, 24.0, K, w2c).save(path)
    result, out = recon(tmp_path, video, depth, "--trajectory", path, "--mask_format", "png")
    assert result.returncode == 0, result.stderr
    assert (out / "color_dolly_left.mp4").is_file()
    assert len(list((out / "mask_dolly_left").glob("mask_*.png"))) == 9


def write_bad_trajectory(tmp_path, mutate):
    data = Trajectory(64, 64, 24.0, [[500.0, 0, 32], [0, 500.0, 32], [0, 0, 1]], np.repeat(np.eye(4)[None], 9, 0)).to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data).replace("NaN", "NaN"))
    return path


def set_nan(d):
    d["frames"][3]["w2c"][0][3] = float("nan")


def skew_rotation(d):
    d["frames"][2]["w2c"][0][0] = 1.5


def short_row(d):
    d["frames"][4]["K"][0] = [500.0, 0.0]


@pytest.mark.parametrize("mutate, expect", [
    (set_nan, "frames[3].w2c"), (skew_rotation, "frames[2].w2c"), (short_row, "frames[4].K[0]"),
])
def test_malformed_trajectory_is_refused(tmp_path, tiny_video, mutate, expect):
    video, depth = tiny_video
    result, out = recon(tmp_path, video, depth, "--trajectory", write_bad_trajectory(tmp_path, mutate))
    assert result.returncode == 2
    assert expect in result.stderr
    assert not out.exists() or not list(out.glob("color_*"))


def test_trajectory_longer_than_the_clip_is_refused(tmp_path, tiny_video):
    video, depth = tiny_video
    path = tmp_path / "long.json"
    Trajectory(64, 64, 24.0, [[500.0, 0, 32], [0, 500.0, 32], [0, 0, 1]], np.repeat(np.eye(4)[None], 12, 0)).save(path)
    result, out = recon(tmp_path, video, depth, "--trajectory", path)
    assert result.returncode == 2 and "12 frames" in result.stderr and "9 frames" in result.stderr


def nan_depth(d):
    d[2, 5, 5] = np.nan


def inf_depth(d):
    d[0, 1, 1] = np.inf


def zero_depth(d):
    d[1, 3, 3] = 0.0


@pytest.mark.parametrize("mutate, expect", [
    (nan_depth, "NaN"), (inf_depth, "infinity"), (zero_depth, "positive"),
])
def test_bad_depth_values_are_refused(tmp_path, tiny_video, mutate, expect):
    video, depth_file = tiny_video
    depth = np.load(depth_file)
    mutate(depth)
    bad = tmp_path / "bad_depth.npy"
    np.save(bad, depth)
    result, out = recon(tmp_path, video, bad)
    assert result.returncode == 2 and expect in result.stderr
    assert not out.exists() or not list(out.glob("color_*"))


def test_depth_of_the_wrong_shape_is_refused(tmp_path, tiny_video):
    video, _ = tiny_video
    bad = tmp_path / "small.npy"
    np.save(bad, np.ones((9, 10, 10), np.float32))
    result, out = recon(tmp_path, video, bad)
    assert result.returncode == 2 and "10x10" in result.stderr


def test_depth_with_too_few_frames_is_refused(tmp_path, tiny_video):
    video, depth_file = tiny_video
    bad = tmp_path / "short.npy"
    np.save(bad, np.load(depth_file)[:4])
    result, _ = recon(tmp_path, video, bad)
    assert result.returncode == 2 and "4 frames" in result.stderr


def test_missing_and_corrupt_videos_are_refused(tmp_path, tiny_video):
    _, depth = tiny_video
    result, out = recon(tmp_path, tmp_path / "nope.mp4", depth)
    assert result.returncode == 3 and "not found" in result.stderr
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    result, out = recon(tmp_path, corrupt, depth)
    assert result.returncode == 2 and "cannot decode" in result.stderr
    assert not out.exists() or not list(out.glob("color_*"))


def test_zero_frames_and_unknown_preset_are_refused(tmp_path, tiny_video):
    video, depth = tiny_video
    result, _ = recon(tmp_path, video, depth, "--num_frames", "0")
    assert result.returncode == 2 and "num_frames" in result.stderr
    result, out = recon(tmp_path, video, depth, "--cam", "orbit_left")
    assert result.returncode == 2 and "unknown camera preset 'orbit_left'" in result.stderr
    assert not out.exists() or not list(out.glob("color_*"))


def test_one_depth_frame_is_enough_for_a_static_scene(tmp_path, tiny_video):
    video, depth = tiny_video
    single = tmp_path / "frame0.npy"
    np.save(single, np.load(depth)[0])  # 2-D: (H, W)
    result, out = recon(tmp_path, video, single, "--cam", "30", "--only_first_frame")
    assert result.returncode == 0, result.stderr
    assert (out / "color_30.mp4").is_file()
    moving, _ = recon(tmp_path / "moving", video, single, "--cam", "30")
    assert moving.returncode == 2 and "has 1 frames, the video has 9" in moving.stderr


def test_flags_take_either_spelling(tmp_path, tiny_video):
    video, depth = tiny_video
    out = tmp_path / "out"
    result = run_cli("recon", "--input-video", video, "--depth-file", depth, "--output-dir", out, "--cam", "30")
    assert result.returncode == 0, result.stderr
    assert (out / "color_30.mp4").is_file()


@pytest.mark.parametrize("color_format", ["lossless", "png"])
def test_exact_colour_formats_keep_every_value(tmp_path, tiny_video, color_format):
    """The default mp4 is lossy; the exact formats give back the render bit for bit (what a generator sees)."""
    from ex4d_engine.video_io import read_video

    video, depth = tiny_video
    exact, out_exact = recon(tmp_path / "exact", video, depth, "--cam", "30", "--color_format", color_format,
                             "--mask_format", "png")
    lossy, out_lossy = recon(tmp_path / "lossy", video, depth, "--cam", "30")
    assert exact.returncode == 0 and lossy.returncode == 0, exact.stderr + lossy.stderr
    from ex4d_engine.cli.generate import read_inputs

    if color_format == "png":
        colour, _, fps = read_inputs(str(out_exact / "color_30"), str(out_exact / "mask_30"), 0)
        assert fps == pytest.approx(24.0)
    else:
        colour = read_video(out_exact / "color_30.mp4").frames
    lossy_colour = read_video(out_lossy / "color_30.mp4").frames
    # the same render both times: exact formats agree with each other where the lossy one drifts
    assert colour.shape == lossy_colour.shape
    assert np.abs(colour.astype(int) - lossy_colour.astype(int)).max() > 0  # the mp4 really is lossy
    if color_format == "lossless":
        png, _ = recon(tmp_path / "png", video, depth, "--cam", "30", "--color_format", "png")
        from ex4d_engine.cli.generate import _read_colour_pngs

        assert np.array_equal(colour, _read_colour_pngs(str(tmp_path / "png" / "out" / "color_30"), None)[0])
