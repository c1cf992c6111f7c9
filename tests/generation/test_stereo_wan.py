"""Stereo shots through the real Wan code path (tiny random weights, CPU): the protocol is all it needs."""

from __future__ import annotations

import numpy as np


def test_joint_stereo_runs_the_wan_generator_for_both_eyes(tiny_generator):
    from ex4d_engine.intrinsics import Intrinsics
    from ex4d_engine.pipeline import ReconOptions, Scene, source_trajectory
    from ex4d_engine.stereo import generate_stereo, scene_stereo_trajectories
    from ex4d_engine.stereo_rig import StereoRig

    yy, xx = np.mgrid[0:48, 0:64]
    frame = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1).clip(0, 255).astype(np.uint8)
    depth = np.full((48, 64), 5.0, np.float32)
    depth[12:36, 20:44] = 2.0
    K = np.array([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])
    scene = Scene(np.stack([frame] * 5), np.stack([depth] * 5), Intrinsics(K, "test"), 12.0, "file", "units",
                  ReconOptions(num_frames=5, renderer="opengl", device="cpu"))
    eyes = scene_stereo_trajectories(scene, source_trajectory(scene), StereoRig(0.2, 3.0, "TOE", "CENTER"))
    stages = []
    shot = generate_stereo(scene, eyes, tiny_generator, mode="joint", seed=1,
                           progress=lambda fraction, stage: stages.append((fraction, stage)))
    assert shot.left.shape == shot.right.shape == (5, 48, 64, 3)
    assert shot.reused_fraction > 0.5
    assert any(stage.startswith("left eye") for _, stage in stages)
    assert any(stage.startswith("right eye") for _, stage in stages)
    assert stages[-1] == (1.0, "stereo shot ready")
    # the second eye's conditioning marks only what the first eye could not give it as missing
    second = shot.conditioning["right"]
    assert (second.mask == 0).mean() < 0.5 * (shot.conditioning["left"].mask == 0).mean() + 0.05
