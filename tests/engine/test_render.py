"""Analytic checks of the renderers through the real pipeline."""

import math

import numpy as np
import pytest
import torch

from ex4d_engine.contract import Trajectory
from ex4d_engine.intrinsics import Intrinsics
from ex4d_engine.mesh import build_dwmesh
from ex4d_engine.pipeline import ReconOptions, Scene, render_conditioning, source_trajectory
from ex4d_engine.raster import get_rasterizer
from ex4d_engine.raster.base import mvp_matrices
from ex4d_engine.raster.nvdiffrast_backend import unavailable_reason

from ex4d_testing import psnr, smooth_texture

H, W, F = 96, 128, 110.0
K = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1]])


def make_scene(depth: np.ndarray, frames: np.ndarray) -> Scene:
    return Scene(frames, depth.astype(np.float32), Intrinsics(K, "focal"), 24.0, "file", "units",
                 ReconOptions(renderer="opengl", device="cpu"))


def one_camera(w2c: np.ndarray) -> Trajectory:
    return Trajectory(W, H, 24.0, K, w2c[None]).validate()


def rotation_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    R = np.eye(4)
    R[:3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
    return R


@pytest.fixture(scope="module")
def opengl():
    return get_rasterizer("opengl")


def test_source_pose_reproduces_the_source_frame(opengl):
    frames = smooth_texture(H, W)[None]
    depth = np.full((1, H, W), 4.0) + np.linspace(0, 2, W)[None, None, :]  # a slanted wall
    scene = make_scene(depth, frames)
    cond = render_conditioning(scene, source_trajectory(scene), rasterizer=opengl, force_source_frame0=False)
    visible = cond.mask[0] == 255
    assert visible.mean() > 0.9
    assert psnr(cond.colour[0][visible], frames[0][visible]) >= 40


def test_pure_rotation_equals_the_homography_warp(opengl):
    import cv2

    frames = smooth_texture(H, W, seed=3)[None]
    rng = np.random.default_rng(0)
    depth = rng.uniform(3.0, 3.3, size=(1, H, W))  # depth must not matter for a pure rotation
    depth = cv2.GaussianBlur(depth[0], (9, 9), 3)[None]
    scene = make_scene(depth, frames)
    w2c = rotation_y(4.0)
    cond = render_conditioning(scene, one_camera(w2c), rasterizer=opengl, force_source_frame0=False)
    # a pixel centre x of the new view shows the source point K R^-1 K^-1 x
    homography = K @ w2c[:3, :3] @ np.linalg.inv(K)
    shift = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])  # cv2 puts pixel centres at integers
    warped = cv2.warpPerspective(frames[0], np.linalg.inv(shift) @ homography @ shift @ np.eye(3), (W, H),
                                 flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    visible = cv2.erode(cond.mask[0], np.ones((5, 5), np.uint8)) == 255
    assert visible.mean() > 0.6
    assert psnr(cond.colour[0][visible], warped[visible]) >= 35


def test_box_in_front_of_a_wall_uncovers_the_expected_strip(opengl):
    wall, box, tx = 8.0, 4.0, 0.25
    depth = np.full((1, H, W), wall)
    rows, cols = slice(30, 66), slice(40, 70)
    depth[0, rows, cols] = box
    frames = smooth_texture(H, W, seed=5)[None]
    scene = make_scene(depth, frames)
    w2c = np.eye(4)
    w2c[0, 3] = -tx  # camera moves right by tx
    before = render_conditioning(scene, one_camera(np.eye(4)), rasterizer=opengl, force_source_frame0=False)
    cond = render_conditioning(scene, one_camera(w2c), rasterizer=opengl, force_source_frame0=False)
    black = cond.mask[0] == 0
    gap = F * tx * (1 / box - 1 / wall)  # disparity difference of box and wall, pixels
    for row in range(36, 60):
        # the hidden band at the box's right edge (2 px in the source view) widens by exactly the gap
        band_before = (before.mask[0][row, 60:80] == 0).sum()
        band_after = black[row, 55:80].sum()
        assert abs(band_after - band_before - gap) <= 1.0, (row, band_before, band_after, gap)
    # the right image border uncovers the skirt: a black strip of about f*tx/wall pixels
    edge = F * tx / wall
    strip = black[40:56, W - 12:].sum(axis=1)
    assert np.all(np.abs(strip - edge) <= 2.0), (strip, edge)
    # nothing else turns black in the middle of the wall
    assert not black[5:25, 10:100].any()


def test_static_scene_renders_frame0_mesh_for_every_camera(opengl, tiny_clip):
    frames, depth = tiny_clip
    scene = Scene(frames, depth, Intrinsics(np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]), "focal"), 24.0,
                  "file", "units", ReconOptions(only_first_frame=True, renderer="opengl", device="cpu"))
    trajectory = Trajectory(64, 48, 24.0, scene.K, np.repeat(np.eye(4)[None], 20, 0))  # longer than the clip
    cond = render_conditioning(scene, trajectory, rasterizer=opengl)
    assert cond.colour.shape == (20, 48, 64, 3)
    assert np.array_equal(cond.colour[5], cond.colour[19])
    assert cond.frame0_is_source and (cond.mask[0] == 255).all()


def reference_render(vertices, faces, attributes, mvp, width, height):
    """A slow, obvious z-buffer rasteriser with perspective-correct interpolation (for small meshes)."""
    homo = np.c_[vertices, np.ones(len(vertices))] @ mvp.T
    ndc = homo[:, :3] / homo[:, 3:]
    sx, sy = (ndc[:, 0] + 1) * width / 2, (ndc[:, 1] + 1) * height / 2
    out = np.zeros((height, width, 4))
    zbuf = np.full((height, width), np.inf)
    px, py = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    for tri in faces:
        a, b, c = tri
        if min(homo[a, 3], homo[b, 3], homo[c, 3]) <= 0:
            continue
        den = (sy[b] - sy[c]) * (sx[a] - sx[c]) + (sx[c] - sx[b]) * (sy[a] - sy[c])
        if abs(den) < 1e-12:
            continue
        l0 = ((sy[b] - sy[c]) * (px - sx[c]) + (sx[c] - sx[b]) * (py - sy[c])) / den
        l1 = ((sy[c] - sy[a]) * (px - sx[c]) + (sx[a] - sx[c]) * (py - sy[c])) / den
        l2 = 1 - l0 - l1
        inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
        z = l0 * ndc[a, 2] + l1 * ndc[b, 2] + l2 * ndc[c, 2]
        take = inside & (z < zbuf) & (np.abs(z) <= 1)
        if not take.any():
            continue
        zbuf[take] = z[take]
        wa, wb, wc = l0 / homo[a, 3], l1 / homo[b, 3], l2 / homo[c, 3]
        norm = wa + wb + wc
        out[take] = ((wa[..., None] * attributes[a] + wb[..., None] * attributes[b] + wc[..., None] * attributes[c])
                     / norm[..., None])[take]
    return out


def available_renderers():
    names = ["opengl"]
    if unavailable_reason() is None:
        names.append("nvdiffrast")
    return names


@pytest.mark.parametrize("renderer", available_renderers())
def test_renderer_matches_a_reference_rasteriser(renderer, tiny_clip):
    frames, depth = tiny_clip
    Ks = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    mesh = build_dwmesh(depth[:1], frames[:1], Ks)
    w2c = np.eye(4)
    w2c[:3, :3] = rotation_y(6.0)[:3, :3]
    w2c[0, 3] = -0.3
    mvp = mvp_matrices(Ks[None], w2c[None], 64, 48)
    got = get_rasterizer(renderer).render(mesh.vertices, mesh.faces, mesh.rgba, mvp, 64, 48).rgba[0].cpu().numpy()
    want = reference_render(mesh.vertices[0].double().numpy(), mesh.faces.numpy(), mesh.rgba[0].double().numpy(),
                            mvp[0], 64, 48)
    mask_got, mask_want = got[..., 3] > 125, want[..., 3] > 125
    assert (mask_got == mask_want).mean() >= 0.99
    both = mask_got & mask_want
    assert psnr(got[both][:, :3], want[both][:, :3]) >= 40
