"""Depth for a clip: from a file (``file``) or from a depth model backend.

``estimate_depth`` is the one entry point the pipeline, CLI and server call for model
backends; ``file`` is handled by :mod:`ex4d_engine.depth.file`.

Backends (``ex4d models`` lists what each needs and whether it is found):

- ``depth-anything``: Depth Anything V2 Small via transformers, Apache-2.0, per frame + temporal
  stabilisation. The licence-clean default.
- ``depth-pro``: Apple Depth Pro via transformers, metric depth and focal length (``--fov auto``);
  weights are research-only (Apple AMLR licence).
- ``depthcrafter``: the seed's DepthCrafter, from the user's checkout and weights; research-only.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from .base import (ComponentStatus, DepthBackend, DepthEstimate, DepthSettings, get_backend,
                   register_backend, registered_backends)
from .depth_anything import DepthAnythingBackend
from .depth_pro import DepthProBackend
from .depthcrafter import DepthCrafterBackend

__all__ = ["ComponentStatus", "DepthBackend", "DepthEstimate", "DepthSettings", "DEFAULT_BACKEND",
           "available_backends", "estimate_depth", "focal_estimating_backends", "get_backend",
           "registered_backends"]

#: The licence-clean backend used when the user names none.
DEFAULT_BACKEND = "depth-anything"

for _backend in (DepthAnythingBackend(), DepthProBackend(), DepthCrafterBackend()):
    register_backend(_backend)


def available_backends() -> list[str]:
    """Every backend name, ``file`` first (the lead's pipeline reads depth files itself)."""
    return ["file", *(b.name for b in registered_backends())]


def backend_problem(name: str, models_dir: Optional[str] = None) -> str:
    """Why backend ``name`` cannot run here ("" when it can): missing weights, code or Python package."""
    if name == "file":
        return ""
    backend = get_backend(name)
    missing = [c for c in backend.components(DepthSettings(models_dir=models_dir)) if not c.found]
    if missing:
        return "; ".join(f"{c.name} missing ({c.get_command})" for c in missing)
    return ""


def runnable_backends(models_dir: Optional[str] = None) -> list[str]:
    """The backends that can run here now (``file`` always can)."""
    return [name for name in available_backends() if not backend_problem(name, models_dir)]


def focal_estimating_backends() -> list[str]:
    return [b.name for b in registered_backends() if b.estimates_focal]


def estimate_depth(
    backend: str,
    frames: np.ndarray,
    *,
    models_dir: Optional[str] = None,
    device: str = "auto",
    progress: Optional[Callable[[float, str], None]] = None,
    depthcrafter_repo: Optional[str] = None,
    stabilise: bool = True,
) -> DepthEstimate:
    """Run a depth model backend on (T, H, W, 3) uint8 frames.

    Args:
        backend: a name from :func:`available_backends` other than ``file``.
        frames: (T, H, W, 3) uint8 RGB at the working resolution (any size is accepted).
        models_dir: folder of model folders in the Hugging Face layout; None -> ``$EX4D_MODELS_DIR``,
            then the Hugging Face cache. Never downloads.
        device: "auto", "cpu", "cuda" or "cuda:N".
        progress: called as ``progress(fraction, message)``.
        depthcrafter_repo: DepthCrafter checkout for ``depthcrafter`` (else ``$EX4D_DEPTHCRAFTER_REPO``).
        stabilise: temporal stabilisation for per-frame backends (on by default).

    Raises:
        InputError: unknown backend or malformed frames. ResourceError: weights, code or GPU missing.
    """
    if backend == "file":
        from ..errors import InputError

        raise InputError("backend 'file' reads a depth file; load it with ex4d_engine.depth.file, not estimate_depth")
    settings = DepthSettings(models_dir=models_dir, device=device, depthcrafter_repo=depthcrafter_repo,
                             stabilise=stabilise)
    return get_backend(backend).estimate(frames, settings, progress)
