"""nvdiffrast rasteriser (CUDA), as the seed renders: rasterize -> interpolate -> antialias.

nvdiffrast is NVIDIA's, under a non-commercial licence, and not on PyPI: it is optional and only
imported here, lazily. All frames go in one instanced call (one face list, per-frame positions).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from .base import RenderResult


def unavailable_reason() -> Optional[str]:
    """None if nvdiffrast can run here, else why not."""
    if not torch.cuda.is_available():
        return "CUDA is not available"
    try:
        import nvdiffrast.torch  # noqa: F401
    except Exception as exc:
        return f"cannot import nvdiffrast ({exc})"
    return None


class NvdiffrastRasterizer:
    name = "nvdiffrast"

    def __init__(self, device: str = "cuda", frames_per_batch: int = 49) -> None:
        import nvdiffrast.torch as dr

        self._dr = dr
        self.device = torch.device(device)
        self._ctx = dr.RasterizeCudaContext(device=self.device)
        self.frames_per_batch = frames_per_batch

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
        dr, dev = self._dr, self.device
        n = len(mvp)
        tri = faces.to(dev, torch.int32).contiguous()
        mvp_t = torch.as_tensor(np.asarray(mvp), dtype=torch.float32, device=dev)
        out = torch.empty((n, height, width, 4), dtype=torch.float32, device=dev)
        for start in range(0, n, self.frames_per_batch):
            stop = min(n, start + self.frames_per_batch)
            idx = slice(0, 1) if vertices.shape[0] == 1 else slice(start, stop)
            verts = vertices[idx].to(dev, torch.float32)
            attr = attributes[idx].to(dev, torch.float32)
            if vertices.shape[0] == 1:
                verts = verts.expand(stop - start, -1, -1)
                attr = attr.expand(stop - start, -1, -1)
            homo = torch.cat([verts, torch.ones_like(verts[..., :1])], dim=-1)
            pos = torch.einsum("bij,bvj->bvi", mvp_t[start:stop], homo).contiguous()
            rast, _ = dr.rasterize(self._ctx, pos, tri, resolution=[height, width])
            colour, _ = dr.interpolate(attr.contiguous(), rast, tri)
            out[start:stop] = dr.antialias(colour, rast, pos, tri)
            if progress is not None:
                progress(stop)
        return RenderResult(out)
