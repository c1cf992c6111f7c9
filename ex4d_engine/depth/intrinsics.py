"""The focal length of the source camera: the user's FOV, a model's estimate (``--fov auto``), or the seed's 500 px.

FOV here is always the *horizontal* field of view in degrees, across the working-resolution width,
with the principal point at the image centre (the seed's convention).
"""

from __future__ import annotations

import math
from typing import Optional, Union

from ..errors import InputError

#: The seed's fixed focal length (EX-4D recon.py): fx = fy = 500 px at the working resolution.
SEED_FOCAL_PX = 500.0
FOV_AUTO = "auto"

FovChoice = Union[None, str, float]


def focal_from_fov(fov_x_deg: float, width_px: int) -> float:
    """Focal length in pixels for a horizontal FOV: ``0.5 W / tan(fov / 2)``."""
    if not 1.0 <= fov_x_deg <= 179.0:
        raise InputError(f"field of view must be between 1 and 179 degrees, got {fov_x_deg}")
    return 0.5 * width_px / math.tan(math.radians(fov_x_deg) / 2.0)


def fov_from_focal(focal_px: float, width_px: int) -> float:
    """Horizontal FOV in degrees for a focal length in pixels."""
    return math.degrees(2.0 * math.atan(0.5 * width_px / focal_px))


def parse_fov(text: Optional[str]) -> FovChoice:
    """CLI text -> None (seed focal), "auto", or degrees as float."""
    if text is None or text == "":
        return None
    if text.strip().lower() == FOV_AUTO:
        return FOV_AUTO
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"--fov must be 'auto' or a horizontal field of view in degrees, got {text!r}") from None
    focal_from_fov(value, 1)  # range check
    return value


def resolve_focal_px(fov: FovChoice, width_px: int, estimated_focal_px: Optional[float],
                     backend: str = "") -> float:
    """The focal length to build the mesh with.

    Args:
        fov: None -> the seed's 500 px; "auto" -> the depth model's estimate; degrees -> from the FOV.
        width_px: working-resolution width.
        estimated_focal_px: what the depth backend estimated (``DepthEstimate.focal_px``), or None.
        backend: the backend name, for the error message.
    """
    if fov is None:
        return SEED_FOCAL_PX
    if fov == FOV_AUTO:
        if estimated_focal_px is None or not math.isfinite(estimated_focal_px) or estimated_focal_px <= 0:
            from . import focal_estimating_backends

            raise InputError(f"--fov auto needs a depth backend that estimates focal length "
                             f"({', '.join(focal_estimating_backends()) or 'none installed'}); "
                             f"backend {backend or '?'!r} does not. Give --fov DEGREES instead")
        return float(estimated_focal_px)
    if isinstance(fov, str):
        fov = parse_fov(fov)
        return resolve_focal_px(fov, width_px, estimated_focal_px, backend)
    return focal_from_fov(float(fov), width_px)
