"""The faithful preview render (issue 17 B2): colour divided by coverage, the seed-literal render untouched."""

import numpy as np

from ex4d_engine.contract import Trajectory
from ex4d_engine.intrinsics import Intrinsics
from ex4d_engine.pipeline import ReconOptions, Scene, render_conditioning

H, W, F = 48, 64, 60.0
K = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1.0]])
GREY = 200


def grey_scene_and_path():
    """One flat grey colour everywhere (a wall at 8 with a box at 3): any darkening is the render's."""
    depth = np.full((3, H, W), 8.0, np.float32)
    depth[:, 14:34, 20:40] = 3.0
    frames = np.full((3, H, W, 3), GREY, np.uint8)
    scene = Scene(frames, depth, Intrinsics(K, "focal"), 24.0, "file", "units",
                  ReconOptions(renderer="opengl", device="cpu"))
    w2c = np.repeat(np.eye(4)[None], 3, 0)
    w2c[:, 0, 3] = [0.0, -0.3, -0.6]
    return scene, Trajectory(W, H, 24.0, np.repeat(K[None], 3, 0), w2c).validate()


def test_preview_colour_undoes_the_silhouette_darkening_and_keeps_the_mask():
    scene, trajectory = grey_scene_and_path()
    seed = render_conditioning(scene, trajectory, force_source_frame0=False)
    faithful = render_conditioning(scene, trajectory, force_source_frame0=False, preview=True)
    assert seed.preview_colour is None
    assert np.array_equal(seed.mask, faithful.mask) and np.array_equal(seed.colour, faithful.colour)
    visible = faithful.mask == 255
    hidden = ~visible
    assert hidden[1:].any()
    # the seed-literal render darkens visible pixels next to holes (zeroed hidden-vertex colours) ...
    assert (seed.colour[visible] < GREY - 10).any()
    # ... the faithful one does not, and stays black where hidden
    assert np.abs(faithful.preview_colour[visible].astype(int) - GREY).max() <= 1
    assert (faithful.preview_colour[hidden] == 0).all()


def test_preview_frame0_is_the_source_frame_when_the_seed_rule_applies():
    scene, trajectory = grey_scene_and_path()
    w2c = trajectory.w2c.copy()
    w2c[0] = np.eye(4)
    trajectory = Trajectory(W, H, 24.0, trajectory.K, w2c).validate()
    cond = render_conditioning(scene, trajectory, preview=True)
    assert cond.frame0_is_source
    assert np.array_equal(cond.preview_colour[0], scene.frames[0]) and np.array_equal(cond.colour[0], scene.frames[0])
