"""Tiny trajectories for the contract and interchange tests (no files, no network)."""

from __future__ import annotations

import numpy as np
import pytest

from ex4d_engine.contract import Trajectory, intrinsics_matrix, look_at_w2c


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform random rotation from a normalised Gaussian quaternion (independent of the code under test)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


@pytest.fixture
def rotation_sampler():
    """``random_rotation`` for tests (with --import-mode=importlib, test modules cannot import conftest)."""
    return random_rotation


def orbit_w2c(frames: int, radius: float = 2.5) -> np.ndarray:
    """Cameras on an arc around the point (0, 0, radius), frame 0 at the origin looking +z."""
    angles = np.linspace(0.0, np.pi / 3, frames)
    eyes = np.stack([radius * np.sin(angles), -0.2 * radius * (1 - np.cos(angles)), radius * (1 - np.cos(angles))], 1)
    return np.stack([look_at_w2c(eye, (0.0, 0.0, radius)) for eye in eyes])


@pytest.fixture
def centred_trajectory() -> Trajectory:
    """5 frames, 64x48, square pixels, centred principal point: every format stores it exactly."""
    K = intrinsics_matrix(40.0, 40.0, 32.0, 24.0)
    return Trajectory(64, 48, 24.0, K, orbit_w2c(5), {"made_by": "test"}).validate()


@pytest.fixture
def tiny_trajectory() -> Trajectory:
    """4 frames, portrait 48x64, fx != fy, lens shift, zoom (per-frame K) and arbitrary rotations."""
    rng = np.random.default_rng(7)
    w2c = np.tile(np.eye(4), (4, 1, 1))
    for i in range(4):
        w2c[i, :3, :3] = random_rotation(rng)
        w2c[i, :3, 3] = rng.normal(size=3) * 3
    K = np.stack([intrinsics_matrix(50.0 + 5 * i, 45.5 + 5 * i, 21.25, 35.0 - i) for i in range(4)])
    return Trajectory(48, 64, 12.5, K, w2c, {"scene_frames": [1, 4]}).validate()
