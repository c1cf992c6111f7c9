"""Make the bundled example: a small procedural clip with exactly known depth.

    python examples/make_example.py            # writes examples/garden/{input.mp4, depth/, scene.json}

A static camera (f = 500 px, the seed's default, principal point at the centre, 384x256, 30 fps,
49 frames) looks at a striped back wall (z = 9), a chequered floor (y = 1.2, y points down), a box and
a ball that rolls across the view. Depth is planar z-depth, analytic, stored as 16-bit PNGs in
millimetres (PNG's predictors compress smooth depth well; 1 mm resolution).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FPS, FRAMES, FOCAL = 384, 256, 30.0, 49, 500.0
OUT = Path(__file__).resolve().parent / "garden"


def rays(width: int, height: int, offset: float = 0.5, supersample: int = 1) -> np.ndarray:
    """Ray directions with z = 1 (so the hit parameter *is* planar depth), (H*s, W*s, 3)."""
    s = supersample
    u = (np.arange(width * s) + offset) / s
    v = (np.arange(height * s) + offset) / s
    uu, vv = np.meshgrid(u, v)
    return np.stack([(uu - width / 2) / FOCAL, (vv - height / 2) / FOCAL, np.ones_like(uu)], axis=-1)


def render(d: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Colour (float 0..1) and depth for ray directions d at time t in [0, 1]."""
    h, w = d.shape[:2]
    depth = np.full((h, w), np.inf)
    colour = np.zeros((h, w, 3))

    def take(hit_t: np.ndarray, shade) -> None:
        closer = (hit_t > 0) & (hit_t < depth)
        depth[closer] = hit_t[closer]
        p = d[closer] * hit_t[closer][:, None]
        colour[closer] = shade(p)

    # back wall z = 9: warm vertical stripes over a sky gradient
    take(np.full((h, w), 9.0), lambda p: np.stack([
        0.55 + 0.35 * np.sin(p[:, 0] * 2.5), 0.45 + 0.2 * np.cos(p[:, 1] * 1.5), 0.35 + 0.3 * np.sin(p[:, 0] * 1.1 + 1)], 1))
    # floor y = 1.2 (below the camera, y down)
    with np.errstate(divide="ignore", invalid="ignore"):
        take(np.where(d[..., 1] > 1e-6, 1.2 / d[..., 1], np.inf), lambda p: np.where(
            ((np.floor(p[:, 0] * 1.5) + np.floor(p[:, 2] * 1.5)) % 2 == 0)[:, None], [0.25, 0.55, 0.25], [0.85, 0.8, 0.6]))
    # a box: x in [-1.6, -0.6], y in [0.2, 1.2], z in [3.5, 4.5]
    lo, hi = np.array([-1.6, 0.2, 3.5]), np.array([-0.6, 1.2, 4.5])
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = lo / d, hi / d
    t_near = np.minimum(t0, t1).max(-1)
    t_far = np.maximum(t0, t1).min(-1)
    take(np.where(t_near <= t_far, t_near, np.inf), lambda p: np.stack([
        0.2 + 0.6 * ((p[:, 1] * 4) % 1 > 0.5), 0.3 + 0.5 * ((p[:, 0] * 4) % 1 > 0.5), np.full(len(p), 0.85)], 1))
    # a ball rolling right: radius 0.55 at y = 0.65, z = 3
    centre = np.array([-0.2 + 1.6 * t, 0.65, 3.0])
    b = (d * centre).sum(-1)
    dd = (d * d).sum(-1)
    disc = b * b - dd * ((centre * centre).sum() - 0.55 ** 2)
    with np.errstate(invalid="ignore"):
        take(np.where(disc >= 0, (b - np.sqrt(disc)) / dd, np.inf), lambda p: np.stack([
            0.9 + 0.1 * np.sin((p[:, 1] - centre[1]) * 20 + t * 12), 0.3 + 0.3 * np.sin((p[:, 0] - centre[0]) * 18 - t * 20),
            0.2 + 0.1 * np.cos(p[:, 2] * 9)], 1))
    return colour, depth


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import cv2

    from ex4d_engine.video_io import write_video

    centre_rays, fine_rays = rays(WIDTH, HEIGHT), rays(WIDTH, HEIGHT, supersample=3)
    frames, depth_dir = [], OUT / "depth"
    depth_dir.mkdir(parents=True, exist_ok=True)
    for i in range(FRAMES):
        t = i / (FRAMES - 1)
        colour, _ = render(fine_rays, t)
        colour = colour.reshape(HEIGHT, 3, WIDTH, 3, 3).mean(axis=(1, 3))  # 3x3 supersampling
        _, depth = render(centre_rays, t)
        frames.append((np.clip(colour, 0, 1) * 255 + 0.5).astype(np.uint8))
        cv2.imwrite(str(depth_dir / f"depth_{i:05d}.png"), np.round(depth * 1000).astype(np.uint16))
    write_video(OUT / "input.mp4", np.stack(frames), FPS, crf=16)
    meta = {"width": WIDTH, "height": HEIGHT, "fps": FPS, "num_frames": FRAMES, "focal_px": FOCAL,
            "depth": "depth/depth_*.png, 16-bit, millimetres (planar z-depth)", "licence": "CC0, made by make_example.py"}
    (OUT / "scene.json").write_text(json.dumps(meta, indent=1))
    size = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
