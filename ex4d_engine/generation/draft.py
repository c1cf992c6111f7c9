"""The draft generator: classical inpainting of the masked pixels (OpenCV), seconds, no weights.

It makes the whole chain produce a watchable video without the 14B model: previews, tests, CI.
Hidden pixels are filled by Telea inpainting at a reduced resolution (fast, and smooth fills
look better than sharp smears), then pasted back only where the mask is black.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .base import CancelCheck, GenerationRequest, ProgressCallback, check_cancel

#: Inpainting works on images whose long side is at most this (speed; the fill is smooth anyway).
WORK_LONG_SIDE = 256


class DraftGenerator:
    name = "draft"

    def __init__(self, radius: int = 5) -> None:
        self.radius = radius

    def generate(
        self,
        request: GenerationRequest,
        progress: Optional[ProgressCallback] = None,
        should_cancel: Optional[CancelCheck] = None,
    ) -> np.ndarray:
        import cv2

        request.check()
        colour, mask = request.colour, request.mask
        t, h, w = mask.shape
        scale = min(1.0, WORK_LONG_SIDE / max(h, w))
        small = (max(1, round(w * scale)), max(1, round(h * scale)))
        out = colour.copy()
        grow = np.ones((3, 3), np.uint8)
        for i in range(t):
            check_cancel(should_cancel)
            # pixels next to a hole are darkened by the render's alpha ramp: refill them too
            hole = cv2.dilate((mask[i] < 128).astype(np.uint8), grow, iterations=2).astype(bool)
            if hole.any():
                if hole.all():  # nothing to inpaint from: mid grey
                    out[i] = 128
                else:
                    img = cv2.resize(colour[i], small, interpolation=cv2.INTER_AREA)
                    holes = cv2.resize(hole.astype(np.uint8) * 255, small, interpolation=cv2.INTER_NEAREST)
                    holes = cv2.dilate(holes, grow)  # never sample the dark seam
                    filled = cv2.inpaint(img, holes, self.radius, cv2.INPAINT_TELEA)
                    filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
                    out[i][hole] = filled[hole]
            if progress is not None:
                progress((i + 1) / t, "inpainting")
        return out


def load_generator(models_dir=None, profile=None, **_options) -> DraftGenerator:
    """The registry's loader (``protocol.GENERATORS``): the draft needs no weights and no profile."""
    return DraftGenerator()
