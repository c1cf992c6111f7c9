"""Size picking, the seeded conditioning transform and its exact values."""

from __future__ import annotations

import numpy as np
import pytest

from ex4d_engine.errors import InputError
from ex4d_engine.generation.wan.conditioning import (EROSION_MAX, EROSION_MIN, build_conditioning,
                                                     erosion_kernels, vae_mask_input)
from ex4d_engine.generation.wan.sizes import AREA_480P, pick_size, window_frames


@pytest.mark.parametrize("size, expected", [((1920, 1080), (832, 480)), ((1080, 1920), (480, 832))])
def test_pick_size_gives_wans_own_480p_sizes(size, expected):
    # Wan2.1-I2V-480P's released size for 16:9 is 832x480 (and 480x832 portrait)
    assert pick_size(*size) == expected
    assert AREA_480P == 832 * 480


def test_pick_size_square_is_the_exact_area_split_into_two_neighbouring_multiples_of_16():
    # sqrt(832 * 480) = 631.9 lies between 624 and 640, and 624 * 640 is exactly the 480P area: a square clip
    # can do no better than these two sides (the wider one first, the tie-break towards width)
    assert pick_size(512, 512) == (640, 624)


@pytest.mark.parametrize("width, height", [(1920, 1080), (1000, 333), (333, 1000), (720, 576), (4096, 1716), (97, 61)])
def test_pick_size_multiples_of_16_near_480p_area_and_aspect(width, height):
    w, h = pick_size(width, height)
    assert w % 16 == 0 and h % 16 == 0
    assert abs(w * h - AREA_480P) / AREA_480P < 0.1
    # no other multiple-of-16 height with its area-nearest width has a closer aspect
    assert abs(np.log(w / h) - np.log(width / height)) < 0.04


def test_pick_size_rejects_bad_sizes():
    with pytest.raises(InputError, match="positive"):
        pick_size(0, 480)
    with pytest.raises(InputError, match="aspect"):
        pick_size(5000, 100)


def test_window_frames_is_4k_plus_1():
    assert [window_frames(n, 49) for n in (1, 2, 5, 6, 48, 49, 200)] == [1, 5, 5, 9, 49, 49, 49]
    with pytest.raises(InputError):
        window_frames(10, 48)


def test_erosion_is_seeded_per_frame():
    idx = np.arange(200)
    a, b, c = erosion_kernels(idx, 1), erosion_kernels(idx, 1), erosion_kernels(idx, 2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() == EROSION_MIN and a.max() == EROSION_MAX
    # a frame's kernel does not depend on which window it is in
    assert np.array_equal(erosion_kernels(idx[50:60], 1), a[50:60])


def test_conditioning_values():
    t, h, w = 3, 32, 32
    colour = np.full((t, h, w, 3), 200, np.uint8)
    mask = np.full((t, h, w), 255, np.uint8)
    mask[1:, :, 16:] = 0      # right half hidden after frame 0
    mask[2, 5, 5] = 100       # below 0.5 after resize: hidden
    cond = build_conditioning(colour, mask, w, h, np.arange(t), seed=0)
    assert set(np.unique(cond.mask)) == {-1.0, 1.0}
    assert (cond.mask[0] == 1).all(), "an all-white frame 0 stays white after erosion"
    hidden = cond.mask == -1
    assert np.all(cond.colour[hidden] == -1.0), "hidden colour is exactly -1"
    assert np.allclose(cond.colour[~hidden], 200 / 255 * 2 - 1)
    # erosion grows the hidden area by at least 1 column (k >= 2 shifts the edge left)
    assert (cond.mask[1, :, 15] == -1).all()
    assert cond.first_frame.dtype == np.uint8 and (cond.first_frame == 200).all()
    assert set(np.unique(vae_mask_input(cond.mask))) == {-3.0, 1.0}


def test_conditioning_resizes_to_generation_size():
    colour = np.zeros((2, 48, 64, 3), np.uint8)
    mask = np.full((2, 48, 64), 255, np.uint8)
    cond = build_conditioning(colour, mask, 96, 80, np.arange(2), seed=0)
    assert cond.colour.shape == (2, 80, 96, 3) and cond.mask.shape == (2, 80, 96)
