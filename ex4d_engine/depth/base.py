"""The depth backend interface and the registry of backends.

A backend turns (T, H, W, 3) uint8 frames into a :class:`DepthEstimate`. Backends import their
heavy libraries (torch, transformers, diffusers) only inside ``estimate``, so listing them
(``ex4d models``) stays cheap and works without those libraries installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import numpy as np

from ..errors import InputError, ResourceError

#: ``progress(fraction in [0, 1], message)``.
ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class DepthEstimate:
    """Depth of every frame.

    Attributes:
        depth: (T, H, W) float32 planar z-depth, finite and positive, in ``units``.
        focal_px: the focal length the model estimated for the working resolution, or None.
        units: what one depth unit means ("depthcrafter pseudo-units", "metres", "file units").
        backend: the backend name that produced it.
        flicker_before: global-affine flicker of the raw model output (see ``stabilise.affine_flicker``),
            or None where not measured.
        flicker_after: the same after temporal stabilisation, or None where not stabilised.
    """

    depth: np.ndarray
    focal_px: Optional[float]
    units: str
    backend: str
    flicker_before: Optional[float] = None
    flicker_after: Optional[float] = None


@dataclass(frozen=True)
class DepthSettings:
    """How to run a backend.

    Attributes:
        models_dir: folder holding model folders in the Hugging Face layout (``<models_dir>/<name>``);
            None falls back to ``$EX4D_MODELS_DIR``, then to the Hugging Face cache only.
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
        depthcrafter_repo: a DepthCrafter git checkout (``--depthcrafter-repo``); None falls back to
            ``$EX4D_DEPTHCRAFTER_REPO``.
        stabilise: align every frame's disparity to its neighbours (removes scale/shift flicker).
        batch_size: frames per forward pass for per-frame models.
    """

    models_dir: Optional[str] = None
    device: str = "auto"
    depthcrafter_repo: Optional[str] = None
    stabilise: bool = True
    batch_size: int = 8


@dataclass(frozen=True)
class ComponentStatus:
    """One thing a backend needs (a weights folder, a code checkout), found or not.

    Attributes:
        name: what it is ("weights depth-anything/Depth-Anything-V2-Small-hf", "DepthCrafter code").
        found: whether a usable copy was found.
        location: where it was found, or where it is looked for.
        licence: the licence of this component.
        get_command: the command a user with internet runs to get it.
        problem: why it is not usable ("" when found).
    """

    name: str
    found: bool
    location: str
    licence: str
    get_command: str
    problem: str = ""


class DepthBackend(Protocol):
    """What every model backend provides."""

    name: str
    description: str
    licence: str
    commercial_use: bool
    estimates_focal: bool

    def components(self, settings: DepthSettings) -> list[ComponentStatus]:
        """Everything this backend needs, each found or missing; never downloads."""

    def estimate(self, frames: np.ndarray, settings: DepthSettings,
                 progress: Optional[ProgressFn]) -> DepthEstimate:
        """Depth for (T, H, W, 3) uint8 frames; raises ResourceError when something is missing."""


_REGISTRY: dict[str, DepthBackend] = {}


def register_backend(backend: DepthBackend) -> DepthBackend:
    if backend.name in _REGISTRY:
        raise ValueError(f"depth backend {backend.name!r} registered twice")
    _REGISTRY[backend.name] = backend
    return backend


def registered_backends() -> list[DepthBackend]:
    return list(_REGISTRY.values())


def get_backend(name: str) -> DepthBackend:
    try:
        return _REGISTRY[name]
    except KeyError:
        names = ", ".join(["file", *_REGISTRY])
        raise InputError(f"unknown depth backend {name!r}; available: {names}") from None


def check_frames(frames: np.ndarray) -> None:
    """Frames must be (T, H, W, 3) uint8 with at least one frame."""
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", type(frames).__name__)
        raise InputError(f"frames must be a (frames, height, width, 3) array, got {shape}")
    if frames.dtype != np.uint8:
        raise InputError(f"frames must be uint8 RGB, got {frames.dtype}")
    if min(frames.shape[:3]) < 1:
        raise InputError(f"frames must not be empty, got shape {frames.shape}")


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a CUDA GPU is visible, else "cpu"; an explicit CUDA device must exist."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ResourceError(f"device {device!r} asked for, but torch sees no CUDA GPU; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise InputError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return device


def report(progress: Optional[ProgressFn], fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)
