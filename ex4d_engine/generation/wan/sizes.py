"""Generation size: the 480P pixel area at the input's aspect ratio, in multiples of 16."""

from __future__ import annotations

import math

from ...errors import InputError

#: Wan2.1-I2V-14B-480P was trained around 832x480 pixels.
AREA_480P = 832 * 480
#: The DiT patchifies 8x-downsampled latents by 2, so sides must be multiples of 16.
SIDE_MULTIPLE = 16


def pick_size(width: int, height: int, area: int = AREA_480P) -> tuple[int, int]:
    """(width, height), multiples of 16, of about ``area`` pixels, nearest to width/height's aspect.

    For every height h (multiple of 16) the width closest to area/h is taken; of those pairs the
    one with the smallest aspect error |log(w/h) - log(aspect)| wins, then the one nearest in area.
    A 1920x1080 input gives 832x480, a square one 640x624.
    """
    if width <= 0 or height <= 0:
        raise InputError(f"video size must be positive, got {width}x{height}")
    aspect = width / height
    if not (1 / 8 <= aspect <= 8):
        raise InputError(f"aspect ratio {width}x{height} is outside 1:8..8:1")
    best = None
    for h in range(SIDE_MULTIPLE, 8 * int(math.sqrt(area)), SIDE_MULTIPLE):
        w = max(SIDE_MULTIPLE, SIDE_MULTIPLE * round(area / h / SIDE_MULTIPLE))
        key = (round(abs(math.log(w / h / aspect)), 9), abs(w * h - area), -w)
        if best is None or key < best[0]:
            best = (key, (w, h))
    return best[1]


def window_frames(frames: int, max_window: int) -> int:
    """Frames one generation window uses for a clip of ``frames``: 4k+1, at most ``max_window``.

    Short clips are padded up to the next 4k+1 (the VAE packs 4 frames per latent after the first).
    """
    if frames < 1:
        raise InputError("a clip needs at least 1 frame")
    if max_window < 1 or (max_window - 1) % 4:
        raise InputError(f"window must be 4k+1 frames, got {max_window}")
    if frames >= max_window:
        return max_window
    return 4 * math.ceil((frames - 1) / 4) + 1
