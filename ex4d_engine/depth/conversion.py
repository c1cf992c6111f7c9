"""Relative disparity -> positive planar depth, with the seed's DepthCrafter constants.

EX-4D (``utils/depth_utils.py``) turns DepthCrafter's output into depth as: mean of the 3 output
channels; min-max normalise over the whole clip (near = 1, far = 0); d' = max(3900 d, 1e-5);
depth = 10000 / d', clipped to [1e-4, 1e4]. The nearest pixel of a clip is therefore at
10000 / 3900 = 2.564 units; the seed's orbit radius and far plane assume that scale, so every
relative (scale-free) backend goes through the same conversion.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

#: d' = max(DISPARITY_SCALE * d, MIN_DISPARITY) for d in [0, 1] (the seed: "compatible with da output").
DISPARITY_SCALE = 3900.0
MIN_DISPARITY = 1e-5
#: depth = DEPTH_NUMERATOR / d'.
DEPTH_NUMERATOR = 10000.0
DEPTH_CLIP = (1e-4, 1e4)
#: Depth of the nearest pixel of a clip: 10000 / 3900.
NEAREST_DEPTH = DEPTH_NUMERATOR / DISPARITY_SCALE


def channels_to_disparity(frames_out: np.ndarray) -> np.ndarray:
    """DepthCrafter's (T, H, W, C) output -> (T, H, W) by the mean of the channels (the seed's ``sum / C``)."""
    if frames_out.ndim != 4:
        raise InputError(f"expected (frames, height, width, channels) model output, got {frames_out.shape}")
    return (frames_out.sum(-1) / frames_out.shape[-1]).astype(np.float32)


def normalise_clip(disparity: np.ndarray) -> np.ndarray:
    """Min-max normalise over the whole clip (not per frame) to [0, 1]."""
    lo, hi = float(np.min(disparity)), float(np.max(disparity))
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise InputError("model output contains NaN or infinity")
    if hi - lo <= 0:
        # A flat output has no relative depth at all: put everything at the nearest depth rather than divide by 0.
        return np.ones_like(disparity, dtype=np.float32)
    return ((disparity - lo) / (hi - lo)).astype(np.float32)


def normalised_disparity_to_depth(normalised: np.ndarray) -> np.ndarray:
    """d in [0, 1] -> depth = 10000 / max(3900 d, 1e-5), clipped to [1e-4, 1e4]; float32."""
    scaled = np.maximum(DISPARITY_SCALE * normalised.astype(np.float64), MIN_DISPARITY)
    return np.clip(DEPTH_NUMERATOR / scaled, *DEPTH_CLIP).astype(np.float32)


def relative_disparity_to_depth(disparity: np.ndarray) -> np.ndarray:
    """A clip of relative disparity (any affine scale, near = large) -> depth in DepthCrafter pseudo-units."""
    return normalised_disparity_to_depth(normalise_clip(disparity))


def depthcrafter_output_to_depth(frames_out: np.ndarray) -> np.ndarray:
    """The seed's full post-processing of DepthCrafter's (T, H, W, 3) output in [0, 1]."""
    return relative_disparity_to_depth(channels_to_disparity(frames_out))
