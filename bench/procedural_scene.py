"""A procedural scene with moving objects and exact ground truth from any camera (numpy ray tracer).

World = the source camera's OpenCV frame (x right, y down, z forward), as in the engine. The bundled
garden example's surfaces and shading (examples/make_example.py): a striped back wall (z = 9), a
chequered floor (y = 1.2), a static box, plus two moving objects: a ball rolling right and a cube floating left, further back. Wall and floor are
infinite, so a novel camera also has ground truth outside the source frustum; rays that hit nothing
see a sky gradient.

    frames, depth = render_source(width, height, focal, num_frames)   # what a clip + exact depth is
    image = render_view(K, w2c, width, height, time)                    # ground truth of a novel view
"""

from __future__ import annotations

import numpy as np

WALL_Z = 9.0
FLOOR_Y = 1.2
BOX = (np.array([-1.6, 0.2, 3.5]), np.array([-0.6, 1.2, 4.5]))


def _ball(time: float) -> tuple[np.ndarray, float]:
    return np.array([-0.2 + 1.6 * time, 0.65, 3.0]), 0.55


def _cube(time: float) -> tuple[np.ndarray, np.ndarray]:
    c = 1.5 - 2.4 * time
    return np.array([c - 0.35, -0.9, 5.5]), np.array([c + 0.35, -0.2, 6.2])


#: Surface ids of :func:`trace` (0 = sky).
SURFACES = ("sky", "wall", "floor", "box", "cube", "ball")


def trace(origin: np.ndarray, dirs: np.ndarray, time: float, surfaces: bool = False):
    """Colour (N, 3) float 0..1 and hit parameter (N,) (inf = sky) of rays origin + s * dirs at time in [0, 1];
    with ``surfaces``, also the (N,) int8 index into :data:`SURFACES` of what each ray hits."""
    n = len(dirs)
    hit = np.full(n, np.inf)
    colour = np.zeros((n, 3))
    surface = np.zeros(n, np.int8)
    o = np.asarray(origin, dtype=np.float64)

    def take(name: str, s: np.ndarray, shade) -> None:
        closer = (s > 1e-6) & (s < hit)
        if not closer.any():
            return
        hit[closer] = s[closer]
        colour[closer] = shade(o + dirs[closer] * s[closer][:, None])
        surface[closer] = SURFACES.index(name)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        take("wall", (WALL_Z - o[2]) / dirs[:, 2], lambda p: np.stack([  # the garden's wall
            0.55 + 0.35 * np.sin(p[:, 0] * 2.5), 0.45 + 0.2 * np.cos(p[:, 1] * 1.5),
            0.35 + 0.3 * np.sin(p[:, 0] * 1.1 + 1)], 1))
        take("floor", (FLOOR_Y - o[1]) / dirs[:, 1], lambda p: np.where(
            ((np.floor(p[:, 0] * 1.5) + np.floor(p[:, 2] * 1.5)) % 2 == 0)[:, None], [0.25, 0.55, 0.25], [0.85, 0.8, 0.6]))
        take("box", _box_hit(o, dirs, *BOX), lambda p: np.stack([
            0.2 + 0.6 * ((p[:, 1] * 4) % 1 > 0.5), 0.3 + 0.5 * ((p[:, 0] * 4) % 1 > 0.5), np.full(len(p), 0.85)], 1))
        lo, hi = _cube(time)
        take("cube", _box_hit(o, dirs, lo, hi), lambda p: np.stack([
            np.full(len(p), 0.15), 0.35 + 0.4 * ((p[:, 0] * 5 + p[:, 1] * 5) % 1 > 0.5), 0.7 + 0.2 * np.sin(p[:, 2] * 6)], 1))
        centre, radius = _ball(time)
        oc = o - centre
        b = (dirs * oc).sum(-1)
        a = (dirs * dirs).sum(-1)
        disc = b * b - a * ((oc * oc).sum() - radius ** 2)
        take("ball", np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / a, np.inf), lambda p: np.stack([
            0.9 + 0.1 * np.sin((p[:, 1] - centre[1]) * 20 + time * 12),
            0.3 + 0.3 * np.sin((p[:, 0] - centre[0]) * 18 - time * 20),
            0.2 + 0.1 * np.cos(p[:, 2] * 9)], 1))
    sky = ~np.isfinite(hit)
    if sky.any():
        up = np.clip(-dirs[sky, 1] / np.linalg.norm(dirs[sky], axis=1), -1, 1)
        colour[sky] = np.stack([0.55 - 0.2 * up, 0.7 - 0.1 * up, 0.9 + 0.05 * up], 1)
    return (colour, hit, surface) if surfaces else (colour, hit)


def _box_hit(o: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    t0, t1 = (lo - o) / dirs, (hi - o) / dirs
    near = np.nanmax(np.minimum(t0, t1), axis=-1)
    far = np.nanmin(np.maximum(t0, t1), axis=-1)
    return np.where((near <= far) & (far > 0), near, np.inf)


def _camera_rays(K: np.ndarray, w2c: np.ndarray, width: int, height: int, supersample: int):
    s = supersample
    u = (np.arange(width * s) + 0.5) / s
    v = (np.arange(height * s) + 0.5) / s
    uu, vv = np.meshgrid(u, v)
    cam = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], np.ones_like(uu)], -1).reshape(-1, 3)
    c2w = np.linalg.inv(w2c)
    return c2w[:3, 3], cam @ c2w[:3, :3].T


def render_view(K: np.ndarray, w2c: np.ndarray, width: int, height: int, time: float, supersample: int = 2) -> np.ndarray:
    """Ground-truth (H, W, 3) uint8 image of the scene at ``time`` seen by camera (K, w2c), box-filtered."""
    origin, dirs = _camera_rays(np.asarray(K, float), np.asarray(w2c, float), width, height, supersample)
    colour, _ = trace(origin, dirs, time)
    s = supersample
    colour = colour.reshape(height, s, width, s, 3).mean(axis=(1, 3))
    return (np.clip(colour, 0, 1) * 255 + 0.5).astype(np.uint8)


def surface_ids(K: np.ndarray, w2c: np.ndarray, width: int, height: int, time: float) -> np.ndarray:
    """(H, W) int8: what this camera sees at each pixel centre, as an index into :data:`SURFACES`."""
    origin, dirs = _camera_rays(np.asarray(K, float), np.asarray(w2c, float), width, height, 1)
    return trace(origin, dirs, time, surfaces=True)[2].reshape(height, width)


def source_visible(K: np.ndarray, w2c: np.ndarray, width: int, height: int, time: float,
                   source_K_: np.ndarray) -> np.ndarray:
    """(H, W) bool: the surface this camera sees at pixel centres lies inside the source camera's frustum."""
    origin, dirs = _camera_rays(np.asarray(K, float), np.asarray(w2c, float), width, height, 1)
    _, hit = trace(origin, dirs, time)
    with np.errstate(invalid="ignore"):
        p = origin + dirs * hit[:, None]
        z = p[:, 2]
        u = source_K_[0, 0] * p[:, 0] / z + source_K_[0, 2]
        v = source_K_[1, 1] * p[:, 1] / z + source_K_[1, 2]
        inside = np.isfinite(hit) & (z > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    return inside.reshape(height, width)


def source_K(width: int, height: int, focal: float) -> np.ndarray:
    return np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]])


def render_source(width: int, height: int, focal: float, num_frames: int, supersample: int = 2):
    """The source clip: (T, H, W, 3) uint8 frames and (T, H, W) float32 exact planar depth (pixel centres)."""
    K, eye = source_K(width, height, focal), np.eye(4)
    frames, depth = [], []
    for i in range(num_frames):
        time = i / max(1, num_frames - 1)
        frames.append(render_view(K, eye, width, height, time, supersample))
        origin, dirs = _camera_rays(K, eye, width, height, 1)
        depth.append(trace(origin, dirs, time)[1].reshape(height, width))  # dirs have z = 1: hit = planar depth
    return np.stack(frames), np.stack(depth).astype(np.float32)
