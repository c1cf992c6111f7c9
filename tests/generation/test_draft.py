"""The draft preview on constructed scenes with exact ground truth: a textured wall (z = 10) behind a
red card (z = 3), seen from a camera moved sideways, through the real render and the real draft."""

from __future__ import annotations

import numpy as np
import pytest

from ex4d_engine.contract import Trajectory
from ex4d_engine.errors import InputError
from ex4d_engine.generation.base import GenerationRequest, SceneGeometry
from ex4d_engine.generation.draft import DraftGenerator
from ex4d_engine.intrinsics import Intrinsics
from ex4d_engine.pipeline import ReconOptions, Scene, generation_geometry, render_conditioning

H, W, F = 48, 64, 60.0
K = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1.0]])
WALL_Z, CARD_Z = 10.0, 3.0
CARD_COLOUR = (230, 40, 40)
HALF = 0.45  # the card's half size (world units)


def wall_colour(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth green/blue texture on the wall, in world coordinates (so any camera can be checked)."""
    return np.stack([60 + 30 * np.sin(1.3 * x + 0.5), 150 + 60 * np.sin(0.9 * x) * np.cos(1.1 * y),
                     120 + 60 * np.cos(1.7 * y + 0.4 * x)], -1)


def view(eye: np.ndarray, cards: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Exact colour (H, W, 3) uint8 and planar depth of a camera at ``eye`` looking along +z; cards = centres (x, y)."""
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    dx, dy = (u - K[0, 2]) / F, (v - K[1, 2]) / F
    depth = np.full((H, W), WALL_Z - eye[2])
    colour = wall_colour(eye[0] + dx * depth, eye[1] + dy * depth)
    for cx, cy in cards:
        s = CARD_Z - eye[2]
        x, y = eye[0] + dx * s, eye[1] + dy * s
        on = (np.abs(x - cx) < HALF) & (np.abs(y - cy) < HALF)
        colour[on], depth[on] = CARD_COLOUR, s
    return np.clip(colour + 0.5, 0, 255).astype(np.uint8), depth.astype(np.float32)


def shot(card_path: list[list[tuple[float, float]]], eye: np.ndarray):
    """Render the shot: source clip + depth, conditioning (faithful colour) from a camera at ``eye``, truth."""
    source = [view(np.zeros(3), cards) for cards in card_path]
    frames, depth = np.stack([s[0] for s in source]), np.stack([s[1] for s in source])
    scene = Scene(frames, depth, Intrinsics(K, "focal"), 24.0, "file", "units",
                  ReconOptions(renderer="opengl", device="cpu"))
    w2c = np.eye(4)
    w2c[:3, 3] = -eye
    t = len(card_path)
    trajectory = Trajectory(W, H, 24.0, np.repeat(K[None], t, 0), np.repeat(w2c[None], t, 0)).validate()
    cond = render_conditioning(scene, trajectory, preview=True, force_source_frame0=False)
    truth = np.stack([view(eye, cards)[0] for cards in card_path])
    return scene, trajectory, cond, truth


def disoccluded_wall(eye: np.ndarray, cards: list[tuple[float, float]]) -> np.ndarray:
    """(H, W) bool: this camera sees wall that the source camera could not (a card was in front of it)."""
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    dx, dy = (u - K[0, 2]) / F, (v - K[1, 2]) / F
    s = WALL_Z - eye[2]
    wx, wy = eye[0] + dx * s, eye[1] + dy * s
    seen_as_wall = view(eye, cards)[1] > CARD_Z + 1
    hidden_from_source = np.zeros((H, W), bool)
    for cx, cy in cards:  # the source ray to (wx, wy, WALL_Z) crosses z = CARD_Z at (wx, wy) * CARD_Z / WALL_Z
        hidden_from_source |= (np.abs(wx * CARD_Z / WALL_Z - cx) < HALF) & (np.abs(wy * CARD_Z / WALL_Z - cy) < HALF)
    return seen_as_wall & hidden_from_source


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


EYE = np.array([0.9, 0.0, 0.0])


def test_disocclusion_is_filled_from_the_wall_behind_not_from_the_card():
    path = [[(0.0, 0.0)]] * 4
    scene, trajectory, cond, truth = shot(path, EYE)
    region = disoccluded_wall(EYE, path[0]) & (cond.mask[1] == 0)
    assert region.sum() > 40, "the constructed view must uncover wall behind the card"
    geometry = generation_geometry(scene, trajectory)
    out = DraftGenerator().generate(GenerationRequest(cond.preview_colour, cond.mask, 24.0, geometry=geometry))
    flat = DraftGenerator().generate(GenerationRequest(cond.preview_colour, cond.mask, 24.0))
    filled, flat_filled, true = out[1][region], flat[1][region], truth[1][region]
    red = (filled[:, 0].astype(int) - filled[:, 1]) > 60
    assert red.mean() < 0.02, f"{red.mean():.0%} of the uncovered wall was painted with the card's colour"
    # better than an oracle painting the region's own true mean colour, and far better than the 2-D fill
    assert mean_abs(filled, true) < mean_abs(true, true.mean(axis=0)), mean_abs(filled, true)
    assert mean_abs(filled, true) < 0.6 * mean_abs(flat_filled, true), "geometry must beat the 2-D fill"
    visible = cond.mask == 255
    assert np.array_equal(out[visible], cond.preview_colour[visible])
    assert np.array_equal(flat[visible], cond.preview_colour[visible])


def test_what_other_frames_saw_is_gathered_before_anything_is_invented():
    # the card slides right, so every part of the wall it hides at frame i is seen at other frames
    path = [[(-1.2 + 0.4 * i, 0.0)] for i in range(7)]
    scene, trajectory, cond, truth = shot(path, EYE)
    out = DraftGenerator().generate(GenerationRequest(cond.preview_colour, cond.mask, 24.0,
                                                      geometry=generation_geometry(scene, trajectory)))
    errors = []
    for i, cards in enumerate(path):
        region = disoccluded_wall(EYE, cards) & (cond.mask[i] == 0)
        assert region.sum() > 20
        errors.append(mean_abs(out[i][region], truth[i][region]))
    # nearest-sample resampling of a smooth texture: a few levels; an invented fill is tens off
    assert max(errors) < 8, errors


def test_static_background_is_filled_the_same_in_every_frame():
    # a static card, plus a small card moving along the bottom: the static part's fill must not shimmer
    path = [[(0.0, -0.2), (-1.0 + 0.35 * i, 0.95)] for i in range(6)]
    scene, trajectory, cond, truth = shot(path, EYE)
    out = DraftGenerator().generate(GenerationRequest(cond.preview_colour, cond.mask, 24.0,
                                                      geometry=generation_geometry(scene, trajectory)))
    region = disoccluded_wall(EYE, [path[0][0]])
    region &= (cond.mask == 0).all(axis=0)
    assert region.sum() > 30
    over_time = out[:, region].astype(int)
    assert (over_time.max(axis=0) - over_time.min(axis=0)).max() <= 1, "the static background's fill changed"


def test_visible_pixels_come_out_exactly_as_given_with_and_without_geometry():
    rng = np.random.default_rng(3)
    path = [[(0.1 * i, 0.0)] for i in range(3)]
    scene, trajectory, cond, _ = shot(path, EYE)
    colour = rng.integers(0, 256, cond.preview_colour.shape, dtype=np.uint8)  # any colour: it is kept as is
    for geometry in (None, generation_geometry(scene, trajectory)):
        out = DraftGenerator().generate(GenerationRequest(colour, cond.mask, 24.0, geometry=geometry))
        visible = cond.mask == 255
        assert np.array_equal(out[visible], colour[visible])
        assert (out[~visible].astype(int).sum(-1) > 0).all(), "a hidden pixel was left black"


def test_a_static_scene_uses_frame_zero_for_every_camera():
    path = [[(0.0, 0.0)]]
    scene, trajectory, cond, truth = shot(path * 3, EYE)
    geometry = generation_geometry(scene, trajectory)
    static = SceneGeometry(geometry.frames[:1], geometry.depth[:1], geometry.K, geometry.camera_K, geometry.camera_w2c)
    a = DraftGenerator().generate(GenerationRequest(cond.preview_colour, cond.mask, 24.0, geometry=static))
    b = DraftGenerator().generate(GenerationRequest(cond.preview_colour, cond.mask, 24.0, geometry=geometry))
    assert static.static and np.array_equal(a, b)


@pytest.mark.parametrize("change, message", [
    (lambda g: {"depth": g.depth[:2]}, "geometry.depth"),
    (lambda g: {"frames": g.frames[..., :2]}, "geometry.frames"),
    (lambda g: {"depth": np.where(g.depth > 5, np.nan, g.depth).astype(np.float32)}, "finite and positive"),
    (lambda g: {"camera_w2c": g.camera_w2c[:1]}, "geometry cameras"),
])
def test_bad_geometry_is_refused_with_its_name(change, message):
    scene, trajectory, cond, _ = shot([[(0.0, 0.0)]] * 3, EYE)
    geometry = generation_geometry(scene, trajectory)
    fields = {k: getattr(geometry, k) for k in ("frames", "depth", "K", "camera_K", "camera_w2c")}
    fields.update(change(geometry))
    with pytest.raises(InputError, match=message):
        DraftGenerator().generate(GenerationRequest(cond.preview_colour, cond.mask, 24.0,
                                                    geometry=SceneGeometry(**fields)))


def test_run_writes_a_labelled_preview_with_the_draft(tiny_video, tmp_path):
    from ex4d_engine.cli import main
    from ex4d_engine.video_io import probe

    video, depth = tiny_video
    rc = main(["run", "--input_video", str(video), "--depth_file", str(depth), "--cam", "30", "--generator", "draft",
               "--output_dir", str(tmp_path), "--renderer", "opengl"])
    assert rc == 0
    assert not (tmp_path / "output_30.mp4").exists()
    info = probe(tmp_path / "preview_30.mp4")
    assert info.num_frames == 9 and (info.width, info.height) == (64, 64)  # the working size: multiples of 64


def test_a_background_surface_is_continued_along_its_own_slope_behind_an_occluder():
    from ex4d_engine.generation.continuation import DepthBinnedColour, continue_far_sides

    # a floor (disparity rising linearly below the horizon) meets a wall (z = 9); a box stands on the floor
    h, w, horizon = 80, 100, 30
    rows = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
    floor = (rows - horizon) / 150.0
    disparity = np.where(floor > 1 / 9, floor, 1 / 9).astype(np.float32)
    box = (slice(20, 70), slice(40, 60))
    disparity[box] = floor[69, 0]  # its front face touches the floor at its bottom row
    (from_left, ok_left), _, (from_top, ok_top), (from_bottom, ok_bottom) = continue_far_sides(disparity, 60)
    low, high = 60, 22  # a row where the floor runs behind the box, and one where the wall does
    assert ok_left[low, 40:60].all() and ok_left[high, 40:60].all()
    np.testing.assert_allclose(from_left[low, 40:60], floor[low, 0], rtol=1e-5)  # the floor's own depth there
    np.testing.assert_allclose(from_left[high, 40:60], 1 / 9, rtol=1e-5)
    assert ok_top[20:70, 45].all() and np.allclose(from_top[20:70, 45], 1 / 9)  # the wall comes down from above
    assert not ok_bottom[box].any(), "nothing nearer than the box continues behind it"
    assert not ok_left[:, :40].any() and not ok_left[:, 61:].any(), "a continuation stops where the source sees again"

    depth = 1.0 / disparity
    colour = np.zeros((h, w, 3), np.float32)
    colour[rows >= horizon + 17] = (40, 140, 40)  # the floor: green
    colour[rows < horizon + 17] = (200, 120, 60)  # the wall: orange
    colour[box] = (20, 20, 230)  # the box: blue
    occluder = np.zeros((h, w), bool)
    occluder[box] = True
    at_depth = DepthBinnedColour(depth, colour, sources=~occluder, max_side=w)
    behind = at_depth(np.array([low]), np.array([50]), np.array([1.0 / floor[low, 0]]))[0]
    assert np.abs(behind - (40, 140, 40)).max() < 30, behind


def test_a_rounded_silhouette_gets_its_hidden_back_and_a_flat_one_gets_none():
    from ex4d_engine.generation.continuation import limb_backs

    # a ball (radius 20 px, centre depth 3) in front of a wall (depth 9), a face-on card and an inclined flat face
    h, w = 60, 160
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    depth = np.full((h, w), 9.0, np.float32)
    ball_r, scale = 20.0, 0.025  # world units per pixel at the ball
    rho2 = (rows - 30) ** 2 + (cols - 30) ** 2
    ball = rho2 < ball_r ** 2
    depth[ball] = 3.0 - scale * np.sqrt(ball_r ** 2 - rho2[ball])
    card = (slice(15, 45), slice(70, 100))
    depth[card] = 4.0
    face = (slice(15, 45), slice(120, 150))
    depth[face] = np.linspace(3.5, 4.5, 30, dtype=np.float32)[None, :]  # recedes, at a constant rate
    r, c, back = limb_backs(depth)
    assert len(r) > 0
    assert ball[r, c].all(), "backs only behind the rounded object"
    assert (back > depth[r, c]).all(), "a back lies behind the front it belongs to"
    # a sphere's back is the mirror of its front about the silhouette's depth (the centre's depth here, up
    # to the silhouette pixel's own sampling: its centre lies up to sqrt(2 r) px * scale = 0.16 nearer)
    np.testing.assert_allclose(back, 2 * 3.0 - depth[r, c], atol=0.35)
    backed = np.zeros((h, w), bool)
    backed[r, c] = True
    assert backed[ball].mean() > 0.8, "the back is mirrored for as long as the front recedes towards the silhouette"


def test_a_magnified_surface_is_covered_and_resampled_where_each_pixel_centre_falls():
    from ex4d_engine.generation.layers import BackgroundLayer, splat

    # a textured plane at depth 4, seen from 2 units closer and a little aside: each source pixel covers 2x2
    # output pixels, at a fractional offset
    n, f, depth = 48, 40.0, 4.0
    k = np.array([[f, 0, n / 2], [0, f, n / 2], [0, 0, 1.0]])

    def texture(coord_r, coord_c):  # smooth, so that a correct resampling is nearly exact
        return np.stack([128 + 90 * np.sin(coord_c / 1.7), 128 + 90 * np.cos(coord_r / 2.1),
                         128 + 60 * np.sin((coord_r + coord_c) / 3.0)], -1)

    r, c = np.mgrid[0:n, 0:n].astype(np.float64)
    image = np.clip(texture(r + 0.5, c + 0.5) + 0.5, 0, 255).astype(np.uint8)
    points = np.stack([(c + 0.5 - n / 2) / f * depth, (r + 0.5 - n / 2) / f * depth, np.full_like(r, depth)])
    layer = BackgroundLayer(points.reshape(3, -1).astype(np.float32), image.reshape(-1, 3), np.zeros(3, np.float32),
                            image)
    w2c = np.eye(4)
    w2c[:3, 3] = (0.03, 0.0, -2.0)  # 0.6 output pixels aside
    # truth: output pixel centre (u, v) sees the source coordinate ((u, v) - n/2 - shift) / 2 + n/2
    shift = 0.03 * f / 2.0
    truth = texture((r + 0.5 - n / 2) / 2 + n / 2, (c + 0.5 - n / 2 - shift) / 2 + n / 2)
    points_only, covered_by_points = splat(layer, k, w2c, n, n, gap_passes=0)
    assert covered_by_points.mean() < 0.5  # points alone cover about one output pixel in four
    resampled, covered = splat(layer, k, w2c, n, n, gap_passes=0, grids=[(0, image)])
    assert covered.all(), "a magnified surface must leave no gaps"
    # where the points alone land, their nearest sample is up to half a source pixel off
    error = np.abs(resampled.astype(float) - truth)[covered_by_points].mean()
    error_nearest = np.abs(points_only.astype(float) - truth)[covered_by_points].mean()
    assert error < 0.5 * error_nearest, (error, error_nearest)


def test_a_continuation_carries_on_texture_that_runs_its_way_and_not_texture_that_changes():
    from ex4d_engine.generation.continuation import blend_continuations, continue_far_sides

    # a wall (z = 9) with vertical stripes (16 px wide), a box (z = 3) in front of it
    h, w = 120, 160
    disparity = np.full((h, w), 1 / 9, np.float32)
    box = (slice(50, 110), slice(60, 100))
    disparity[box] = 1 / 3
    cols = np.arange(w)
    stripes = np.where((cols // 16) % 2 == 0, 40.0, -40.0).astype(np.float32)
    residual = np.broadcast_to(stripes[None, :, None], (h, w, 3)).copy()
    residual[box] = 0.0
    from_left, _, from_top, _ = continue_far_sides(disparity, 80, residual)
    top_tex, top_err = from_top[2], from_top[3]
    # from above the stripes run straight down behind the box: the stripe's own colour, far down too
    assert from_top[1][60:110, 60:100].all()
    np.testing.assert_allclose(top_tex[100, 60:100, 0], stripes[60:100], atol=4)
    # from the left they change every 16 px: nothing carried a few stripes in
    assert from_left[1][60, 60:100].all()
    assert np.abs(from_left[2][60, 90:100]).max() < 10
    # where both meet, the one that predicts better (from above) dominates the blend
    mixed = blend_continuations([1 / from_left[0], 1 / from_top[0]], [from_left[1], from_top[1]],
                                [from_left[2], from_top[2]], [from_left[3], from_top[3]])
    np.testing.assert_allclose(mixed[0][80, 60:100, 0], stripes[60:100], atol=8)
    assert top_err[100, 70] < from_left[3][60, 95]
