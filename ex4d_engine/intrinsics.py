"""Source-camera intrinsics: the seed's fixed f = 500 px, or the user's FOV / focal, or a model's estimate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .contract import intrinsics_matrix
from .errors import InputError

#: The seed's focal length in pixels, whatever the resolution (its "compatibility default").
SEED_FOCAL_PX = 500.0


@dataclass(frozen=True)
class Intrinsics:
    """K plus where it came from: "seed_default", "fov", "focal" or "model"."""

    K: np.ndarray
    source: str

    @property
    def focal_px(self) -> float:
        return float(self.K[0, 0])

    @property
    def fov_x_deg(self) -> float:
        return math.degrees(2 * math.atan(self.K[0, 2] / self.K[0, 0]))


def resolve_intrinsics(
    width: int,
    height: int,
    *,
    fov_deg: Optional[float] = None,
    focal_px: Optional[float] = None,
    model_focal_px: Optional[float] = None,
) -> Intrinsics:
    """Pick K for a ``width`` x ``height`` working image, principal point at the centre.

    Args:
        fov_deg: horizontal field of view in degrees (0 < fov < 180).
        focal_px: focal length in pixels at the working resolution.
        model_focal_px: a depth model's estimate, used when the user asked for ``--fov auto``.
    """
    if fov_deg is not None and focal_px is not None:
        raise InputError("give either --fov or --focal, not both")
    if focal_px is not None:
        if not (math.isfinite(focal_px) and focal_px > 0):
            raise InputError(f"--focal must be a positive number of pixels, got {focal_px}")
        f, source = float(focal_px), "focal"
    elif fov_deg is not None:
        if not (math.isfinite(fov_deg) and 0 < fov_deg < 180):
            raise InputError(f"--fov must be between 0 and 180 degrees, got {fov_deg}")
        f, source = (width / 2) / math.tan(math.radians(fov_deg) / 2), "fov"
    elif model_focal_px is not None:
        f, source = float(model_focal_px), "model"
    else:
        f, source = SEED_FOCAL_PX, "seed_default"
    return Intrinsics(intrinsics_matrix(f, f, width / 2, height / 2), source)
