"""The generator protocol shared by the draft and the Wan generators, the CLI and the server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import numpy as np

from ..errors import InputError, JobCancelledError

#: progress(fraction in [0, 1], stage name) -- called from the thread doing the work.
ProgressCallback = Callable[[float, str], None]
#: should_cancel() -> True when the user asked to stop; checked between steps.
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class SceneGeometry:
    """What the engine knows about a shot besides its colour + mask render (optional, typed).

    Generators that can use geometry (the draft preview) read it; the others ignore it. World =
    the source camera's OpenCV frame (docs/coordinates.md), as for every DW-mesh.

    Attributes:
        frames: (S, h, w, 3) uint8 source frames whose DW-meshes were rendered; S = T (output frame i
            saw the mesh of ``frames[i]``) or 1 (a static scene: frame 0's mesh for every camera).
        depth: (S, h, w) float32 planar depth of those frames (finite, > 0).
        K: (3, 3) intrinsics of the source camera.
        camera_K: (T, 3, 3) intrinsics of each output frame (the trajectory's).
        camera_w2c: (T, 4, 4) world-to-camera of each output frame.
    """

    frames: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    camera_K: np.ndarray
    camera_w2c: np.ndarray

    @property
    def static(self) -> bool:
        return int(self.depth.shape[0]) == 1

    def check(self, num_frames: int) -> None:
        frames, depth = self.frames, self.depth
        if depth.ndim != 3 or depth.shape[0] not in (1, num_frames):
            raise InputError(f"geometry.depth must be (1 or {num_frames}, h, w), got {depth.shape}")
        if frames.shape != depth.shape + (3,) or frames.dtype != np.uint8:
            raise InputError(f"geometry.frames must be {depth.shape + (3,)} uint8, got {frames.shape} {frames.dtype}")
        if not (np.isfinite(depth).all() and (depth > 0).all()):
            raise InputError("geometry.depth must be finite and positive")
        if np.shape(self.K) != (3, 3):
            raise InputError(f"geometry.K must be (3, 3), got {np.shape(self.K)}")
        if np.shape(self.camera_K) != (num_frames, 3, 3) or np.shape(self.camera_w2c) != (num_frames, 4, 4):
            raise InputError(f"geometry cameras must be ({num_frames}, 3, 3) K and ({num_frames}, 4, 4) w2c, got "
                             f"{np.shape(self.camera_K)} and {np.shape(self.camera_w2c)}")


@dataclass(frozen=True)
class GenerationRequest:
    """What a generator gets.

    Attributes:
        colour: (T, H, W, 3) uint8 masked colour render; frame 0 is the source frame.
        mask: (T, H, W) uint8, 255 = visible DW-mesh surface, 0 = to be generated.
        fps: frame rate the result must be written at.
        seed: every random choice (noise, mask erosion) follows it.
        steps, prompt, negative_prompt, profile: generator options; None = the generator's default.
        geometry: depth, cameras and source frames of the shot, when the caller has them (the draft
            preview fills from them; without them it falls back to a 2-D fill). Wan ignores it.
        speed: speed preset of the Wan generator (exact, original, default, fast, turbo; None = the
            generator's); the draft generator ignores it.
    """

    colour: np.ndarray
    mask: np.ndarray
    fps: float
    seed: int = 0
    steps: Optional[int] = None
    prompt: Optional[str] = None
    negative_prompt: Optional[str] = None
    profile: Optional[str] = None
    geometry: Optional[SceneGeometry] = None
    speed: Optional[str] = None

    def check(self) -> None:
        colour, mask = self.colour, self.mask
        if colour.ndim != 4 or colour.shape[-1] != 3 or colour.dtype != np.uint8:
            raise InputError(f"colour must be (T, H, W, 3) uint8, got {colour.shape} {colour.dtype}")
        if mask.shape != colour.shape[:3] or mask.dtype != np.uint8:
            raise InputError(f"mask must be {colour.shape[:3]} uint8 to match colour, got {mask.shape} {mask.dtype}")
        if colour.shape[0] < 1:
            raise InputError("colour has 0 frames")
        if not (self.fps > 0):
            raise InputError(f"fps must be positive, got {self.fps}")
        if self.geometry is not None:
            self.geometry.check(colour.shape[0])


class Generator(Protocol):
    """A resident generator: load once, call ``generate`` for many shots."""

    name: str

    def generate(
        self,
        request: GenerationRequest,
        progress: Optional[ProgressCallback] = None,
        should_cancel: Optional[CancelCheck] = None,
    ) -> np.ndarray:
        """Return the generated video, (T, H, W, 3) uint8, same T, H, W as the request."""
        ...


def check_cancel(should_cancel: Optional[CancelCheck]) -> None:
    """Raise :class:`JobCancelledError` if the caller asked to stop."""
    if should_cancel is not None and should_cancel():
        raise JobCancelledError("cancelled by the user")
