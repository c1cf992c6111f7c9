"""Named camera paths (the seed's ``--cam`` values and ours) -> contract Trajectory.

All paths start at the source camera (frame 0 = identity) and look at a pivot on the optical
axis at ``r = nearest frame-0 depth + 0.15`` (the seed's ``random_camera_traj``). World y points
down, so "rising" is negative y.

* ``<integer degrees>`` (e.g. ``30``, ``-60``, ``90``): the seed's orbit of radius r around the
  pivot, yaw 0 -> deg, rising 0.2 r (1 - |cos|).
* ``180``: the seed's default sweep. The camera stays in the source's z = 0 plane and slides
  right to x = +r, back, left to -r, back; its yaw towards the pivot only reaches +-45 deg.
* ``sweep_90`` (alias ``180_outer``): the seed's removed ``180_outer``: the orbit formula over a
  full turn of the parameter, so the yaw truly goes 0 -> +90 -> 0 -> -90 -> 0 (what the seed's
  README means by "-90 to 90").
* ``zoom_in`` / ``zoom_out``: dolly along the optical axis, towards the pivot to half the pivot
  distance, or back away by the pivot distance; the view direction does not change.

``rounds`` reproduces a seed quirk: the parameter range is scaled by N/49 (N >= 49) or 49/N
(N < 49), so other frame counts travel further. ``seed_rounds=False`` turns it off.
"""

from __future__ import annotations

import math
import re

import numpy as np

from .contract import Trajectory, look_at_w2c
from .errors import InputError

PIVOT_OFFSET = 0.15
RISE = 0.2
ZOOM_IN_FRACTION = 0.5
ZOOM_OUT_FRACTION = 1.0

NAMED_PRESETS = ("180", "sweep_90", "180_outer", "zoom_in", "zoom_out")


def preset_names_help() -> str:
    return "an integer angle in degrees (orbit, e.g. 30, -60, 90), 180, sweep_90, zoom_in or zoom_out"


def is_preset(name: str) -> bool:
    return name in NAMED_PRESETS or re.fullmatch(r"[+-]?\d+", name) is not None


def pivot_radius(depth_frame0: np.ndarray, border_depth: float = 100.0) -> float:
    """The seed's pivot distance: min of frame-0 depth *after* border padding, plus 0.15."""
    interior = np.asarray(depth_frame0)[1:-1, 1:-1]
    nearest = min(float(interior.min()) if interior.size else border_depth, border_depth)
    return nearest + PIVOT_OFFSET


def seed_rounds(num_frames: int) -> float:
    return num_frames / 49 if num_frames >= 49 else 49 / num_frames


def preset_eyes(name: str, num_frames: int, radius: float, use_seed_rounds: bool = True) -> np.ndarray:
    """Camera centres (N, 3) of a preset, world (= source OpenCV) coordinates."""
    if not is_preset(name):
        raise InputError(f"unknown camera preset {name!r}; use {preset_names_help()}")
    if num_frames < 1:
        raise InputError(f"num_frames must be >= 1, got {num_frames}")
    n, r = num_frames, radius
    rounds = seed_rounds(n) if use_seed_rounds else 1.0
    if name in ("zoom_in", "zoom_out"):
        end = ZOOM_IN_FRACTION * r if name == "zoom_in" else -ZOOM_OUT_FRACTION * r
        z = np.linspace(0.0, end, n)
        return np.stack([np.zeros(n), np.zeros(n), z], axis=1)
    if name == "180":
        theta = np.linspace(0.0, 2 * math.pi * rounds, n)
        return np.stack([r * np.sin(theta), RISE * r * (np.cos(theta) - 1), np.zeros(n)], axis=1)
    if name in ("sweep_90", "180_outer"):
        theta = np.linspace(0.0, 2 * math.pi * rounds, n)
    else:
        theta = np.linspace(0.0, math.radians(int(name)) * rounds, n)
    c = np.abs(np.cos(theta))
    return np.stack([r * np.sin(theta), RISE * r * (c - 1), r - r * c], axis=1)


def make_preset(
    name: str,
    *,
    num_frames: int,
    K: np.ndarray,
    width: int,
    height: int,
    fps: float,
    radius: float,
    use_seed_rounds: bool = True,
) -> Trajectory:
    """Build the named preset as a validated Trajectory (one K for every frame)."""
    eyes = preset_eyes(name, num_frames, radius, use_seed_rounds)
    target = np.array([0.0, 0.0, radius])
    if name in ("zoom_in", "zoom_out"):
        w2c = np.repeat(np.eye(4)[None], num_frames, axis=0)
        w2c[:, :3, 3] = -eyes
    else:
        w2c = np.stack([look_at_w2c(eye, target) for eye in eyes])
    meta = {"preset": name, "pivot_radius": radius, "seed_rounds": use_seed_rounds}
    return Trajectory(width, height, fps, np.asarray(K, dtype=np.float64), w2c, meta).validate()
