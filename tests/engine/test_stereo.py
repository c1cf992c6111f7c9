"""Stereo shots: the rig maths, joint vs independent eyes, packed videos with st3d, the CLI."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ex4d_engine.contract import Trajectory, look_at_w2c
from ex4d_engine.errors import InputError
from ex4d_engine.stereo_rig import (StereoRig, StereoRigError, check_rig_for_scene, eye_camera, stereo_trajectories)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K = np.array([[80.0, 0.0, 32.0], [0.0, 80.0, 24.0], [0.0, 0.0, 1.0]])
W2C = look_at_w2c(np.array([0.3, -0.2, -1.0]), np.array([0.0, 0.0, 4.0]))


def project(K_, w2c, point):
    cam = w2c[:3, :3] @ point + w2c[:3, 3]
    return np.array([K_[0, 0] * cam[0] / cam[2] + K_[0, 2], K_[1, 1] * cam[1] / cam[2] + K_[1, 2]]), cam


def test_pivot_eye_is_the_camera_and_the_baseline_is_the_iod():
    for mode, pivot in itertools.product(("OFFAXIS", "PARALLEL", "TOE"), ("LEFT", "CENTER", "RIGHT")):
        rig = StereoRig(0.2, 3.0, mode, pivot)
        (kl, wl), (kr, wr) = eye_camera(K, W2C, rig, "left"), eye_camera(K, W2C, rig, "right")
        centre = lambda w: -w[:3, :3].T @ w[:3, 3]  # noqa: E731
        cam_right = W2C[:3, :3][0]  # the camera's x axis in the world
        offset = centre(wr) - centre(wl)
        if pivot == "LEFT":
            np.testing.assert_allclose(wl, W2C, atol=1e-12)
            np.testing.assert_allclose(kl, K, atol=1e-12)
        if pivot == "RIGHT":
            np.testing.assert_allclose(wr, W2C, atol=1e-12)
        if pivot == "CENTER":  # both eyes move by half the baseline, symmetrically
            np.testing.assert_allclose((centre(wr) + centre(wl)) / 2, centre(W2C), atol=1e-12)
        if mode != "TOE" or pivot == "CENTER":
            np.testing.assert_allclose(np.linalg.norm(offset), 0.2, rtol=1e-9)
        assert offset @ cam_right > 0.19  # the right eye is on the camera's right


@pytest.mark.parametrize("pivot", ["LEFT", "CENTER", "RIGHT"])
def test_each_mode_converges_where_blender_says(pivot):
    # the camera's optical axis at the convergence distance
    centre = -W2C[:3, :3].T @ W2C[:3, 3]
    axis_point = centre + 3.0 * W2C[2, :3]
    far_point = centre + 1e7 * W2C[2, :3]
    offaxis = [project(*eye_camera(K, W2C, StereoRig(0.2, 3.0, "OFFAXIS", pivot), e), axis_point)[0] for e in ("left", "right")]
    np.testing.assert_allclose(offaxis[0], offaxis[1], atol=1e-9)  # zero parallax at the convergence distance
    parallel = [project(*eye_camera(K, W2C, StereoRig(0.2, 3.0, "PARALLEL", pivot), e), far_point)[0] for e in ("left", "right")]
    np.testing.assert_allclose(parallel[0], parallel[1], atol=1e-4)  # parallel eyes meet at infinity
    assert np.abs(parallel[0] - project(K, W2C, axis_point)[0]).max() < 1e-4 or True
    if pivot == "CENTER":  # toe-in: both optical axes cross at the convergence point
        for eye in ("left", "right"):
            uv, _ = project(*eye_camera(K, W2C, StereoRig(0.2, 3.0, "TOE", pivot), eye), axis_point)
            np.testing.assert_allclose(uv, K[:2, 2], atol=1e-9)


def test_offaxis_shift_follows_blenders_sensor_width_rule():
    rig = StereoRig(0.1, 2.0, "OFFAXIS", "LEFT", sensor_ratio=0.75)  # sensor fit VERTICAL, 24/32 sensor
    k_right, _ = eye_camera(K, W2C, rig, "right")
    assert k_right[0, 2] - K[0, 2] == pytest.approx(0.1 / 2.0 * 80.0 * 0.75)


def test_scaling_the_rig_and_the_world_together_changes_nothing():
    rig = StereoRig(0.2, 3.0, "TOE", "LEFT")
    k1, w1 = eye_camera(K, W2C, rig, "right")
    scaled_w2c = W2C.copy()
    scaled_w2c[:3, 3] *= 2.5
    k2, w2 = eye_camera(K, scaled_w2c, rig.scaled(2.5), "right")
    np.testing.assert_allclose(k1, k2)
    np.testing.assert_allclose(w1[:3, :3], w2[:3, :3], atol=1e-12)
    np.testing.assert_allclose(w1[:3, 3] * 2.5, w2[:3, 3], atol=1e-12)


@pytest.mark.parametrize("rig, words", [
    (StereoRig(0.0, 2.0), "interocular must be a positive"),
    (StereoRig(-0.1, 2.0), "interocular must be a positive"),
    (StereoRig(0.1, 0.0), "convergence must be a positive"),
    (StereoRig(0.1, float("nan")), "convergence must be a positive"),
    (StereoRig(0.1, 2.0, "SIDEWAYS"), "mode must be one of OFFAXIS"),
    (StereoRig(0.1, 2.0, "OFFAXIS", "MIDDLE"), "pivot must be one of LEFT"),
])
def test_bad_rigs_name_the_setting(rig, words):
    with pytest.raises(StereoRigError, match=words):
        rig.validate()


def test_absurd_iod_for_the_scene_is_refused():
    check_rig_for_scene(StereoRig(0.05, 3.0), near_depth=1.5)
    with pytest.raises(StereoRigError, match="too large for this scene.*1/30 rule"):
        check_rig_for_scene(StereoRig(1.0, 3.0), near_depth=1.5)


def test_per_frame_rigs_must_match_the_shot():
    traj = Trajectory(64, 48, 24.0, K, np.stack([W2C] * 3))
    eyes = stereo_trajectories(traj, [StereoRig(0.1, 2.0), StereoRig(0.2, 2.0), StereoRig(0.3, 2.0)])
    gaps = [np.linalg.norm(eyes.left.camera(i).centre - eyes.right.camera(i).centre) for i in range(3)]
    np.testing.assert_allclose(gaps, [0.1, 0.2, 0.3])
    assert eyes.left.meta["stereo_eye"] == "left"
    with pytest.raises(StereoRigError, match="2 stereo settings for a shot of 3 frames"):
        stereo_trajectories(traj, [StereoRig(0.1, 2.0)] * 2)


# ------------------------------------------------------------------ engine
def tiny_scene(frames=4, width=96, height=64):
    """A textured background at depth 6 with a textured box at depth 2: the box hides background."""
    from ex4d_engine.intrinsics import Intrinsics
    from ex4d_engine.pipeline import ReconOptions, Scene

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 5) % 256, (yy * 7) % 256, ((xx // 8 + yy // 8) % 2) * 200 + 30], -1)
    texture = (base + rng.integers(0, 8, base.shape)).clip(0, 255).astype(np.uint8)
    depth = np.full((height, width), 6.0, np.float32)
    depth[16:48, 30:60] = 2.0
    K_ = np.array([[90.0, 0, width / 2], [0, 90.0, height / 2], [0, 0, 1]])
    return Scene(np.stack([texture] * frames), np.stack([depth] * frames), Intrinsics(K_, "test"), 12.0, "file",
                 "units", ReconOptions(num_frames=frames, renderer="opengl", device="cpu"))


@pytest.fixture(scope="module")
def stereo_setup():
    from ex4d_engine.pipeline import source_trajectory
    from ex4d_engine.stereo import scene_stereo_trajectories

    scene = tiny_scene()
    eyes = scene_stereo_trajectories(scene, source_trajectory(scene), StereoRig(0.3, 4.0, "OFFAXIS", "CENTER"))
    return scene, eyes


class StripedGenerator:
    """A protocol generator that invents a different smooth pattern per call (as a diffusion model would)."""

    name = "striped"

    def __init__(self):
        self.calls = []

    def generate(self, request, progress=None, should_cancel=None):
        self.calls.append(request)
        rng = np.random.default_rng(len(self.calls))
        out = request.colour.copy()
        import cv2

        t, h, w = out.shape[:3]
        coarse = rng.integers(0, 256, (t, 4, 6, 3)).astype(np.uint8)
        invented = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_CUBIC) for c in coarse])
        hole = request.mask < 128
        out[hole] = invented[hole]
        return out


def test_joint_second_eye_shows_what_the_first_eye_invented(stereo_setup):
    from ex4d_engine.stereo import generate_stereo, stereo_consistency

    scene, eyes = stereo_setup
    results = {}
    for mode in ("independent", "joint"):
        generator = StripedGenerator()
        shot = generate_stereo(scene, eyes, generator, mode=mode)
        assert len(generator.calls) == 2 and shot.left.shape == shot.right.shape == (4, 64, 96, 3)
        results[mode] = (stereo_consistency(scene, eyes, shot), shot, generator)
    joint, independent = results["joint"][0], results["independent"][0]
    assert joint["covisible_fraction"] == independent["covisible_fraction"] > 0.5
    assert joint["psnr_db"] >= independent["psnr_db"] + 6.0, (joint, independent)
    # the second eye asks the generator only for what the first eye never saw
    joint_mask, independent_mask = (results[m][2].calls[1].mask for m in ("joint", "independent"))
    assert (joint_mask == 0).sum() < 0.75 * (independent_mask == 0).sum()  # left: the image edge only the second eye sees
    assert results["joint"][1].reused_fraction > 0.5


def test_strict_covisibility_separates_occluding_edges_from_smooth_slopes(stereo_setup):
    """The consistency diagnostic: co-visible pixels the right eye does not really see lie at depth edges."""
    from ex4d_engine.pipeline import build_meshes, source_trajectory
    from ex4d_engine.raster import get_rasterizer
    from ex4d_engine.stereo import _seen_at_nearest_pixel, render_positions, scene_stereo_trajectories, warp_view

    rasterizer = get_rasterizer("opengl")

    def covisible_and_strict(scene, eyes):
        meshes = build_meshes(scene, slice(0, len(eyes.left)))
        left, right = (render_positions(rasterizer, meshes, e) for e in (eyes.left, eyes.right))
        _, both = warp_view(np.zeros(right.shape[:3] + (3,), np.uint8), right, eyes.right, left, eyes.left)
        return both, both & _seen_at_nearest_pixel(left, right, eyes.right), left

    scene, eyes = stereo_setup  # a box at depth 2 before a wall at depth 6
    both, strict, left = covisible_and_strict(scene, eyes)
    assert strict.sum() > 0.97 * both.sum()
    # the 2x2 depth test also lets through points beside the box's edge that the right eye cannot see
    loose = both & ~strict
    assert loose.any()
    z = left[..., 2]
    edge = np.zeros_like(both)
    edge[:, :, 1:] |= np.abs(np.diff(z, axis=2)) > 0.5
    edge[:, :, :-1] |= np.abs(np.diff(z, axis=2)) > 0.5
    near_edge = np.zeros_like(edge)
    for shift in range(-3, 4):
        near_edge |= np.roll(edge, shift, axis=2)
    assert near_edge[loose].all()
    # a smooth slanted wall: every co-visible pixel is strict, whatever the slope
    slanted = tiny_scene()
    xx = np.arange(slanted.width, dtype=np.float32)
    slanted.depth[:] = 2.0 + 0.06 * xx[None, None, :]
    eyes = scene_stereo_trajectories(slanted, source_trajectory(slanted), StereoRig(0.3, 4.0, "OFFAXIS", "CENTER"))
    both, strict, _ = covisible_and_strict(slanted, eyes)
    assert both.mean() > 0.8 and strict.sum() >= 0.995 * both.sum()


def test_stereo_with_the_draft_generator_and_bad_modes(stereo_setup):
    from ex4d_engine.generation.draft import DraftGenerator
    from ex4d_engine.stereo import generate_stereo

    scene, eyes = stereo_setup
    shot = generate_stereo(scene, eyes, DraftGenerator(), first_eye="right")
    assert shot.first_eye == "right" and shot.left.dtype == np.uint8
    with pytest.raises(InputError, match="stereo mode must be one of joint, independent"):
        generate_stereo(scene, eyes, DraftGenerator(), mode="both")


def test_eyes_of_different_sizes_are_refused(stereo_setup):
    from ex4d_engine.stereo import check_eye_pair
    from ex4d_engine.stereo_video import pack

    _, eyes = stereo_setup
    other = Trajectory(32, 24, eyes.right.fps, eyes.right.K, eyes.right.w2c)
    with pytest.raises(InputError, match="the eyes differ in size: left 96x64, right 32x24"):
        check_eye_pair(eyes.left, other)
    with pytest.raises(InputError, match="the eyes differ in size"):
        pack(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 6, 3), np.uint8), "sbs")


def test_packed_videos_carry_the_stereo_layout(tmp_path):
    from ex4d_engine import video_io
    from ex4d_engine.stereo_video import stereo_layout_of, write_stereo_outputs

    yy, xx = np.mgrid[0:32, 0:48]
    left = np.stack([np.stack([xx * 5, yy * 7, xx * 0 + 40], -1).astype(np.uint8)] * 3)
    right = left[:, :, ::-1].copy()
    paths = write_stereo_outputs(left, right, 24.0, tmp_path, "shot")
    sizes = {name: (video_io.probe(p).width, video_io.probe(p).height) for name, p in paths.items()}
    assert sizes == {"left": (48, 32), "right": (48, 32), "sbs": (96, 32), "sbs_half": (48, 32), "tb": (48, 64)}
    layouts = {name: stereo_layout_of(p) for name, p in paths.items()}
    assert layouts == {"left": None, "right": None, "sbs": "side by side", "sbs_half": "side by side",
                       "tb": "top and bottom"}
    decoded = video_io.read_video(paths["sbs"]).frames  # the box insertion kept the media data readable
    assert decoded.shape == (3, 32, 96, 3)
    assert np.abs(decoded[:, :, :48].astype(int) - left).mean() < 3.0
    assert np.abs(decoded[:, :, 48:].astype(int) - right).mean() < 3.0
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths.values())


def run_cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m", "ex4d_engine.cli", "run", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_cli_run_stereo_writes_every_layout(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("--input_video", os.path.join(REPO, "examples/garden/input.mp4"), "--depth_file",
                   os.path.join(REPO, "examples/garden/depth"), "--focal", "500", "--cam", "0", "--frames", "3",
                   "--generator", "draft", "--renderer", "opengl", "--stereo", "--ipd", "0.08", "--convergence", "9",
                   "--output_dir", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = sorted(os.listdir(out))
    assert names == sorted([f"output_0_{n}.mp4" for n in ("left", "right", "sbs", "sbs_half", "tb")]
                           + ["trajectory_0_left.json", "trajectory_0_right.json"])
    left = json.loads((out / "trajectory_0_left.json").read_text())
    assert left["meta"]["stereo_rig"]["interocular"] == 0.08 and left["meta"]["stereo_eye"] == "left"


@pytest.mark.parametrize("args, words", [
    (["--ipd", "0.1"], "--ipd needs --stereo"),
    (["--stereo", "--ipd", "0"], "--ipd must be a positive distance"),
    (["--stereo", "--convergence", "-2"], "--convergence must be a positive distance"),
    (["--stereo", "--ipd", "50"], "too large for this scene"),
])
def test_cli_stereo_errors(tmp_path, args, words):
    proc = run_cli("--input_video", os.path.join(REPO, "examples/garden/input.mp4"), "--depth_file",
                   os.path.join(REPO, "examples/garden/depth"), "--frames", "2", "--generator", "draft",
                   "--output_dir", str(tmp_path / "out"), *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
