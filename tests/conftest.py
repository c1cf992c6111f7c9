"""Shared fixtures: tiny real inputs, no network, fixed seeds. Helpers live in ex4d_testing.py."""

from __future__ import annotations

import numpy as np
import pytest
from ex4d_testing import smooth_texture


@pytest.fixture
def tiny_clip():
    """9 frames, 64x48 smooth texture sliding slowly; depth: a wall at 6 with a box at 3 (hidden faces exist)."""
    t, h, w = 9, 48, 64
    base = smooth_texture(h, w + t)
    frames = np.stack([base[:, i:i + w] for i in range(t)])
    depth = np.full((t, h, w), 6.0, np.float32)
    depth[:, 16:32, 20:36] = 3.0
    return frames, depth


@pytest.fixture
def tiny_video(tmp_path, tiny_clip):
    """The tiny clip written through ffmpeg (lossless mp4, 24 fps) plus its depth as .npy."""
    from ex4d_engine.video_io import write_video

    frames, depth = tiny_clip
    video = tmp_path / "tiny.mp4"
    write_video(video, frames, 24.0, crf=0)
    depth_file = tmp_path / "tiny_depth.npy"
    np.save(depth_file, depth)
    return video, depth_file
