"""Depth for a clip: from a file (``file``) or from a depth model backend.

``estimate_depth`` is the one entry point the pipeline, CLI and server call for model
backends; ``file`` is handled by :mod:`ex4d_engine.depth.file`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class DepthEstimate:
    """Depth of every frame.

    Attributes:
        depth: (T, H, W) float32 planar z-depth, finite and positive, in ``units``.
        focal_px: the focal length the model estimated for the working resolution, or None.
        units: what one depth unit means ("depthcrafter pseudo-units", "metres", "file units").
        backend: the backend name that produced it.
    """

    depth: np.ndarray
    focal_px: Optional[float]
    units: str
    backend: str


def available_backends() -> list[str]:
    return ["file"]


def estimate_depth(
    backend: str,
    frames: np.ndarray,
    *,
    models_dir: Optional[str] = None,
    device: str = "auto",
    progress: Optional[Callable[[float, str], None]] = None,
) -> DepthEstimate:
    """Run a depth model backend on (T, H, W, 3) uint8 frames."""
    raise InputError(f"unknown depth backend {backend!r}; available: {', '.join(available_backends())}")
