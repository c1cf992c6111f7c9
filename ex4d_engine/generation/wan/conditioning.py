"""The generator-side conditioning transform of EX-4D, reproduced so the released weights see
what they were trained on (ex4d_method.md §4, §7.2):

1. colour and mask are resized to the generation size (bilinear, as cv2.resize does by default);
2. each mask frame is eroded by a k x k square kernel, k drawn from {2..8} per frame -- seeded
   here (the seed used Python's unseeded ``random``);
3. the mask is binarised at 0.5;
4. colour in [0, 1] is multiplied by the mask and mapped x2-1, so hidden pixels become -1;
5. the mask is mapped x2-1 to {-1, +1}; the camera-video encoder maps it x2-1 *again* before the
   VAE, so the VAE sees {-3, +1}. That double mapping is the training-time quirk we keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Erosion kernel sizes, inclusive, as in the seed's ``random.randint(2, 8)``.
EROSION_MIN, EROSION_MAX = 2, 8


@dataclass(frozen=True)
class WindowConditioning:
    """One window's conditioning, at the generation size.

    Attributes:
        colour: (T, H, W, 3) float32 in [-1, 1]; hidden pixels are exactly -1.
        mask: (T, H, W) float32 in {-1, +1}; +1 = visible surface to keep.
        first_frame: (H, W, 3) uint8, the I2V image (frame 0 of the masked colour render).
    """

    colour: np.ndarray
    mask: np.ndarray
    first_frame: np.ndarray


def erosion_kernels(frame_indices: np.ndarray, seed: int) -> np.ndarray:
    """Kernel size per frame, a pure function of (seed, global frame index), so a frame gets the
    same erosion whichever window of a long shot it falls in."""
    sizes = np.empty(len(frame_indices), dtype=np.int64)
    for i, frame in enumerate(frame_indices):
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(frame)])
        sizes[i] = rng.integers(EROSION_MIN, EROSION_MAX + 1)
    return sizes


def binary_mask(mask: np.ndarray, width: int, height: int, kernels: np.ndarray) -> np.ndarray:
    """(T, H0, W0) uint8 0..255 -> (T, height, width) float32 in {0, 1}: resize, erode, binarise."""
    out = np.empty((mask.shape[0], height, width), dtype=np.float32)
    for t, frame in enumerate(mask):
        frame = cv2.resize(frame, (width, height))
        k = int(kernels[t])
        frame = cv2.erode(frame, np.ones((k, k), np.uint8), iterations=1)
        out[t] = (frame.astype(np.float32) / 255.0 > 0.5)
    return out


def build_conditioning(
    colour: np.ndarray,
    mask: np.ndarray,
    width: int,
    height: int,
    frame_indices: np.ndarray,
    seed: int,
) -> WindowConditioning:
    """Apply steps 1-5 (of the module docstring) to one window.

    Args:
        colour: (T, H0, W0, 3) uint8 colour render.
        mask: (T, H0, W0) uint8, 255 = visible.
        width, height: generation size.
        frame_indices: (T,) global frame index of each frame (seeds the erosion).
        seed: the request's seed.
    """
    kernels = erosion_kernels(frame_indices, seed)
    mask01 = binary_mask(mask, width, height, kernels)
    colour01 = np.stack([cv2.resize(f, (width, height)) for f in colour]).astype(np.float32) / 255.0
    masked = colour01 * mask01[..., None]
    first_frame = np.clip(np.rint(masked[0] * 255.0), 0, 255).astype(np.uint8)
    return WindowConditioning(colour=masked * 2 - 1, mask=mask01 * 2 - 1, first_frame=first_frame)


def vae_mask_input(mask_pm1):
    """The encoder's second x2-1: {-1, +1} -> {-3, +1}. Works on numpy arrays and torch tensors."""
    return mask_pm1 * 2 - 1
