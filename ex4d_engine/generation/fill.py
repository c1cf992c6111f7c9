"""2-D filling of unknown pixels from known ones (push-pull), used by the draft preview.

Push-pull (Gortler et al. 1996): average the known pixels down an image pyramid, then fill every
unknown pixel from the coarsest level that has something there, upsampled smoothly. Linear time,
no iterations, and a hole is filled from *its own* surroundings at every scale.
"""

from __future__ import annotations

import numpy as np


def push_pull(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Fill where ``weight`` is 0 from where it is > 0.

    Args:
        values: (H, W, C) float32.
        weight: (H, W) float32 in [0, 1]; 1 = known, 0 = unknown (in between: partly trusted).
    Returns:
        (H, W, C) float32; known pixels keep their value (weight 1), unknown ones get a smooth fill.
        Where nothing at all is known the result is 0.
    """
    import cv2

    values = np.ascontiguousarray(values, dtype=np.float32)
    weight = np.clip(np.ascontiguousarray(weight, dtype=np.float32), 0.0, 1.0)
    if values.ndim != 3:
        raise ValueError(f"values must be (H, W, C), got {values.shape}")
    premult = values * weight[..., None]
    levels = [(premult, weight)]
    while max(levels[-1][1].shape) > 1:
        p, w = levels[-1]
        h, wd = w.shape
        size = ((wd + 1) // 2, (h + 1) // 2)
        p_small = _as3(cv2.resize(p, size, interpolation=cv2.INTER_AREA), p.shape[-1])
        w_small = cv2.resize(w, size, interpolation=cv2.INTER_AREA)
        # the sum of the children's weights, clipped at 1 (an average would fade every level)
        w_next = np.minimum(4.0 * w_small, 1.0)
        scale = np.where(w_small > 0, w_next / np.maximum(w_small, 1e-12), 0.0).astype(np.float32)
        levels.append((p_small * scale[..., None], w_next))
    p, w = levels[-1]
    filled = np.where(w[..., None] > 0, p / np.maximum(w, 1e-12)[..., None], 0.0).astype(np.float32)
    for p, w in reversed(levels[:-1]):
        h, wd = w.shape
        up = _as3(cv2.resize(filled, (wd, h), interpolation=cv2.INTER_LINEAR), p.shape[-1])
        filled = p + (1.0 - w)[..., None] * up
    return filled


def _as3(image: np.ndarray, channels: int) -> np.ndarray:
    # cv2 drops a trailing channel axis of size 1
    return image.reshape(image.shape[0], image.shape[1], channels)
