"""The seed's DepthCrafter post-processing constants, and focal-length choices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ex4d_engine.depth.conversion import (DEPTH_CLIP, NEAREST_DEPTH, channels_to_disparity,
                                          depthcrafter_output_to_depth, normalised_disparity_to_depth)
from ex4d_engine.intrinsics import SEED_FOCAL_PX, resolve_intrinsics
from ex4d_engine.errors import InputError


def test_depthcrafter_post_processing_on_known_values():
    # (T=2, H=1, W=3, C=3) outputs whose channel means are 0.2 .. 0.7 over the clip
    means = np.array([[[0.2, 0.45, 0.7]], [[0.325, 0.2, 0.7]]])
    out = np.repeat(means[..., None], 3, axis=-1) + np.array([-0.1, 0.0, 0.1])  # channel mean unchanged
    np.testing.assert_allclose(channels_to_disparity(out), means, atol=1e-6)
    depth = depthcrafter_output_to_depth(out)
    # min-max over the whole clip: 0.2 -> 0, 0.45 -> 0.5, 0.7 -> 1, 0.325 -> 0.25
    expected = np.array([[[1e4, 10000 / 1950, 10000 / 3900]], [[10000 / 975, 1e4, 10000 / 3900]]])
    np.testing.assert_allclose(depth, expected, rtol=1e-6)
    assert depth.dtype == np.float32


def test_constants_of_the_seed():
    assert NEAREST_DEPTH == pytest.approx(2.564, abs=1e-3)
    assert DEPTH_CLIP == (1e-4, 1e4)
    # d' = max(3900 d, 1e-5): d = 0 gives 10000 / 1e-5 = 1e9, clipped to 1e4
    assert normalised_disparity_to_depth(np.array([0.0, 1.0, 0.1])) == pytest.approx([1e4, 2.5641026, 25.641026])


def test_flat_output_does_not_divide_by_zero():
    depth = depthcrafter_output_to_depth(np.full((2, 4, 4, 3), 0.3))
    assert np.all(depth == pytest.approx(NEAREST_DEPTH))


def test_focal_choices():
    assert resolve_intrinsics(512, 512).focal_px == SEED_FOCAL_PX
    assert resolve_intrinsics(512, 512).source == "seed_default"
    # a 90 degree horizontal FOV puts the image edge at 45 degrees: f = (W / 2) / tan(45) = 256
    assert resolve_intrinsics(512, 384, fov_deg=90.0).focal_px == pytest.approx(256.0)
    assert resolve_intrinsics(512, 384, fov_deg=60.0).focal_px == pytest.approx(256 / math.tan(math.radians(30)))
    assert resolve_intrinsics(512, 384, model_focal_px=400.0).source == "model"
    K = resolve_intrinsics(1024, 512, focal_px=1000.0).K
    assert (K[0, 0], K[1, 1], K[0, 2], K[1, 2]) == (1000.0, 1000.0, 512.0, 256.0)
    assert resolve_intrinsics(1024, 512, focal_px=1000.0).fov_x_deg == pytest.approx(2 * math.degrees(math.atan(0.512)))


@pytest.mark.parametrize("kwargs", [{"fov_deg": 0.0}, {"fov_deg": 180.0}, {"fov_deg": -5.0}, {"focal_px": 0.0},
                                    {"focal_px": float("nan")}, {"fov_deg": 60.0, "focal_px": 500.0}])
def test_bad_intrinsics_are_refused(kwargs):
    with pytest.raises(InputError):
        resolve_intrinsics(512, 512, **kwargs)
