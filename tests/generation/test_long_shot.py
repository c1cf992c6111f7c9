"""Long-shot windows and their overlap blending."""

from __future__ import annotations

import numpy as np
import pytest

from ex4d_engine.errors import InputError
from ex4d_engine.generation.wan.long_shot import Window, blend_weights, merge_window, plan_windows, seam_jump


@pytest.mark.parametrize("total", [1, 5, 49, 50, 97, 100, 181])
def test_windows_cover_every_frame_with_4k_plus_1_windows(total):
    windows = plan_windows(total, 49, 8)
    assert windows[0].start == 0 and windows[-1].stop == total
    for prev, nxt in zip(windows, windows[1:]):
        assert nxt.start <= prev.stop - 8, "consecutive windows overlap by at least 8 frames"
        assert nxt.start > prev.start
    if total > 49:
        assert all((w.frames - 1) % 4 == 0 and w.frames <= 49 for w in windows)


def test_window_plan_examples():
    # 100 frames in 49-frame windows overlapping by 8: [0, 49), then [49 - 8, 41 + 49) = [41, 90); the 10 frames
    # left need a last window that ends at 100, overlaps by >= 8 and has 4k+1 frames: 90 - 8 = 82 would give 18,
    # so it starts earlier, at 100 - 21 = 79 (21 = 4 * 5 + 1 frames, overlap 11)
    assert plan_windows(100, 49, 8) == [Window(0, 49), Window(41, 90), Window(79, 100)]
    with pytest.raises(InputError, match="overlap"):
        plan_windows(100, 49, 49)


def test_blend_is_a_linear_crossfade():
    canvas = np.zeros((12, 2, 2, 3), np.uint8)
    written = merge_window(canvas, 0, Window(0, 8), np.full((8, 2, 2, 3), 0, np.uint8))
    written = merge_window(canvas, written, Window(5, 12), np.full((7, 2, 2, 3), 200, np.uint8))
    assert written == 12
    values = canvas[:, 0, 0, 0].astype(int).tolist()
    assert values[:5] == [0] * 5 and values[8:] == [200] * 4
    assert values[5:8] == [50, 100, 150], "3 shared frames fade 1/4, 2/4, 3/4 towards the new window"
    assert np.allclose(blend_weights(3), [0.25, 0.5, 0.75])


def test_seam_jump_finds_a_cut():
    video = np.zeros((10, 4, 4, 3), np.uint8)
    video[5:] = 100
    at, rest = seam_jump(video, [5])
    assert at == 100 and rest == 0
