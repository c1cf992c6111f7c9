"""What every rasteriser takes and gives, and the one projection they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import numpy as np
import torch

#: The seed's clip planes (``getprojection(fovx, fovy, n=1e-3, f=1e3)``): geometry past 1000 is clipped.
NEAR = 1e-3
FAR = 1e3


@dataclass
class RenderResult:
    """(T, H, W, 4) float32 interpolated vertex RGBA (0..255), alpha 0 where nothing was hit.

    A torch tensor on the renderer's device, so thresholding happens there and only the uint8
    conditioning crosses to the host.
    """

    rgba: torch.Tensor


def clip_from_camera(K: np.ndarray, width: int, height: int, near: float = NEAR, far: float = FAR) -> np.ndarray:
    """4x4 OpenCV camera -> clip space for the contract's K (corner-origin pixels).

    NDC x = 2u/W - 1 and y = 2v/H - 1, so NDC y = -1 is image row 0: nvdiffrast writes that row
    first and so does ``glReadPixels``; neither needs a flip. Depth maps [near, far] to [-1, 1].
    """
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    return np.array(
        [
            [2 * fx / width, 0.0, 2 * cx / width - 1, 0.0],
            [0.0, 2 * fy / height, 2 * cy / height - 1, 0.0],
            [0.0, 0.0, (far + near) / (far - near), -2 * far * near / (far - near)],
            [0.0, 0.0, 1.0, 0.0],
        ]
    )


def mvp_matrices(K: np.ndarray, w2c: np.ndarray, width: int, height: int) -> np.ndarray:
    """(F, 3, 3) K and (F, 4, 4) w2c -> (F, 4, 4) world -> clip matrices (float64)."""
    return np.stack([clip_from_camera(K[i], width, height) @ w2c[i] for i in range(len(w2c))])


class Rasterizer(Protocol):
    name: str

    def render(
        self,
        vertices: torch.Tensor,
        faces: torch.Tensor,
        attributes: torch.Tensor,
        mvp: np.ndarray,
        width: int,
        height: int,
        progress: Optional[Callable[[int], None]] = None,
    ) -> RenderResult:
        """Rasterise frame i's mesh (``vertices[i]``, ``attributes[i]``) with ``mvp[i]``.

        Args:
            vertices: (T, V, 3) float32 world positions; T may be 1 (a static mesh for every camera).
            faces: (F, 3) int32, shared by all frames.
            attributes: (T, V, 4) float32 RGBA per vertex.
            mvp: (N, 4, 4) world -> clip per output frame (N == T, or T == 1).
            progress: called with the number of frames done.
        """
        ...
