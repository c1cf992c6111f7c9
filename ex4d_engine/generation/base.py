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
class GenerationRequest:
    """What a generator gets.

    Attributes:
        colour: (T, H, W, 3) uint8 masked colour render; frame 0 is the source frame.
        mask: (T, H, W) uint8, 255 = visible DW-mesh surface, 0 = to be generated.
        fps: frame rate the result must be written at.
        seed: every random choice (noise, mask erosion) follows it.
        steps, prompt, negative_prompt, profile: generator options; None = the generator's default.
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
