"""Shots longer than one generation window.

Windows of ``window`` frames start every ``window - overlap`` frames; the last one is only as long
as needed (4k+1 frames, ending on the last frame, overlapping its neighbour by at least ``overlap``). Window k > 0 is
conditioned on what window k-1 generated at its first frame: that frame becomes the I2V image
with an all-white mask. In the overlap, the two windows are cross-faded linearly, so the seam
is spread over ``overlap`` frames instead of falling between two frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from .sizes import window_frames


@dataclass(frozen=True)
class Window:
    start: int
    stop: int  # exclusive

    @property
    def frames(self) -> int:
        return self.stop - self.start


def plan_windows(total: int, window: int, overlap: int) -> list[Window]:
    """Windows covering frames [0, total). One window when total <= window."""
    if total < 1:
        raise InputError("a shot needs at least 1 frame")
    if total <= window:
        return [Window(0, total)]
    if not (1 <= overlap < window):
        raise InputError(f"overlap must be 1..{window - 1} frames, got {overlap}")
    step = window - overlap
    windows = []
    start = 0
    while True:
        if start + window >= total:
            frames = window_frames(total - start, window)
            windows.append(Window(total - frames, total))
            break
        windows.append(Window(start, start + window))
        start += step
    return windows


def blend_weights(overlap: int) -> np.ndarray:
    """Weight of the *new* window over an overlap of ``overlap`` frames: strictly inside (0, 1],
    rising linearly, so the first shared frame leans on the old window and the last on the new."""
    return np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)


def merge_window(canvas: np.ndarray, written: int, window: Window, frames: np.ndarray) -> int:
    """Write ``frames`` (window.frames, H, W, 3 uint8) into ``canvas``; frames before ``written``
    are cross-faded. Returns the new count of written frames."""
    shared = max(0, written - window.start)
    if shared:
        w = blend_weights(shared)[:, None, None, None]
        old = canvas[window.start:written].astype(np.float32)
        new = frames[:shared].astype(np.float32)
        canvas[window.start:written] = np.clip(np.rint(old * (1 - w) + new * w), 0, 255).astype(np.uint8)
    canvas[written:window.stop] = frames[shared:]
    return window.stop


def seam_jump(video: np.ndarray, boundaries: list[int]) -> tuple[float, float]:
    """Mean absolute frame-to-frame change (0..255) at the given frame indices vs everywhere else.

    A measured seam score: near 1 means the seams are no more visible than ordinary motion.
    """
    diffs = np.abs(np.diff(video.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    at = [diffs[b - 1] for b in boundaries if 0 < b < len(video)]
    rest = np.delete(diffs, [b - 1 for b in boundaries if 0 < b < len(video)])
    return float(np.mean(at)) if at else 0.0, float(np.mean(rest)) if len(rest) else 0.0
