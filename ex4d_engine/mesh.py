"""Depth Watertight Mesh (DW-mesh): one grid mesh per frame, hidden faces kept but labelled.

Built exactly as EX-4D's ``recon.py`` does (docs/dwmesh.md walks through it):

1. the depth map's border ring is pushed to ``border_depth`` (100): a side skirt;
2. one vertex per pixel, unprojected with K as planar z-depth (world = source camera, OpenCV);
3. two triangles per pixel quad, split along the TR-BL diagonal: all (BL, TL, TR) first, then all
   (BL, TR, BR); then two back caps closing the frustum at the border depth;
4. a face whose smallest interior angle is below ``min_angle_deg`` (2.5 deg) is *hidden*: it stays
   in the mesh (so the mesh stays watertight and occludes), but its three vertices get colour and
   alpha 0, so it renders as "must be generated".

The face list is the same for every frame; only positions and labels change. Everything is
vectorised torch and runs on the CPU or a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

#: The seed's constants.
BORDER_DEPTH = 100.0
MIN_ANGLE_DEG = 2.5


@dataclass(frozen=True)
class MeshOptions:
    """How DW-meshes are built.

    Attributes:
        border_depth: depth the border ring is pushed to (the skirt), seed: 100.
        min_angle_deg: faces with a smaller interior angle are hidden, seed: 2.5.
        pixel_offset: where a vertex sits inside its pixel. 0.5 (default) = the pixel centre, so
            rendering from the source camera reproduces the source pixels exactly; 0.0 = the seed's
            integer coordinates (its renders are shifted by half a pixel).
    """

    border_depth: float = BORDER_DEPTH
    min_angle_deg: float = MIN_ANGLE_DEG
    pixel_offset: float = 0.5


@dataclass
class DWMeshSequence:
    """DW-meshes of T frames sharing one face list.

    Attributes:
        vertices: (T, V, 3) float32 world positions, V = H*W, vertex index = row*W + col.
        faces: (F, 3) int32, F = 2(H-1)(W-1) + 2 (the last two are the back caps).
        rgba: (T, V, 4) float32 vertex colour and alpha in 0..255; 0 on hidden vertices.
        hidden_faces: (T, F) bool, the min-angle test failed.
        hidden_vertices: (T, V) bool, the vertex touches a hidden face (its alpha is 0).
        width, height: the pixel grid.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    rgba: torch.Tensor
    hidden_faces: torch.Tensor
    hidden_vertices: torch.Tensor
    width: int
    height: int

    @property
    def num_frames(self) -> int:
        return int(self.vertices.shape[0])


def grid_faces(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The DW-mesh face list for an H x W pixel grid: (2(H-1)(W-1) + 2, 3) int32."""
    rows = torch.arange(height - 1, device=device)
    cols = torch.arange(width - 1, device=device)
    tl = (rows[:, None] * width + cols[None, :]).reshape(-1)
    tr, bl = tl + 1, tl + width
    br = bl + 1
    # seed: A = (TL, BL, TR), B = (TR, BL, BR), then every face permuted [1, 0, 2]
    face_a = torch.stack([bl, tl, tr], dim=1)
    face_b = torch.stack([bl, tr, br], dim=1)
    tl_c, tr_c, bl_c, br_c = 0, width - 1, (height - 1) * width, height * width - 1
    caps = torch.tensor([[tr_c, tl_c, br_c], [br_c, tl_c, bl_c]], device=device)
    return torch.cat([face_a, face_b, caps]).to(torch.int32)


def pad_border(depth: torch.Tensor, border_depth: float = BORDER_DEPTH) -> torch.Tensor:
    """Copy of (T, H, W) depth with rows 0, H-1 and columns 0, W-1 set to ``border_depth``."""
    padded = depth.clone()
    padded[:, 0, :] = border_depth
    padded[:, -1, :] = border_depth
    padded[:, :, 0] = border_depth
    padded[:, :, -1] = border_depth
    return padded


def unproject(depth: torch.Tensor, K: torch.Tensor, pixel_offset: float = 0.5) -> torch.Tensor:
    """(T, H, W) planar depth -> (T, H*W, 3) points in the camera frame of K (OpenCV axes)."""
    t, h, w = depth.shape
    dtype = depth.dtype
    u = torch.arange(w, device=depth.device, dtype=dtype) + pixel_offset
    v = torch.arange(h, device=depth.device, dtype=dtype) + pixel_offset
    dir_x = ((u - float(K[0, 2])) / float(K[0, 0]))[None, None, :].expand(t, h, w)
    dir_y = ((v - float(K[1, 2])) / float(K[1, 1]))[None, :, None].expand(t, h, w)
    points = torch.stack([dir_x * depth, dir_y * depth, depth], dim=-1)
    return points.reshape(t, h * w, 3)


def min_face_angle_deg(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Smallest interior angle (degrees) of every face: (T, V, 3), (F, 3) -> (T, F)."""
    f = faces.long()
    p0, p1, p2 = vertices[:, f[:, 0]], vertices[:, f[:, 1]], vertices[:, f[:, 2]]

    def angle(at: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        e1, e2 = a - at, b - at
        cos = (e1 * e2).sum(-1) / (e1.norm(dim=-1) * e2.norm(dim=-1)).clamp_min(1e-20)
        return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))

    return torch.minimum(torch.minimum(angle(p0, p1, p2), angle(p1, p2, p0)), angle(p2, p0, p1))


def build_dwmesh(
    depth: torch.Tensor | np.ndarray,
    colours: torch.Tensor | np.ndarray,
    K: np.ndarray,
    options: MeshOptions = MeshOptions(),
    device: Optional[torch.device | str] = None,
    frames_per_chunk: int = 8,
) -> DWMeshSequence:
    """Build the DW-mesh of every frame.

    Args:
        depth: (T, H, W) planar depth, finite and positive (validated by the caller).
        colours: (T, H, W, 3) uint8 RGB source frames.
        K: (3, 3) intrinsics of the source camera (contract pixel convention).
        options: see :class:`MeshOptions`.
        device: where to compute ("cpu", "cuda"); default: where ``depth`` lives.
        frames_per_chunk: frames processed at once (bounds memory of the angle test).
    """
    depth = torch.as_tensor(depth)
    device = torch.device(device) if device is not None else depth.device
    depth = depth.to(device=device, dtype=torch.float32)
    colours = torch.as_tensor(colours).to(device)
    t, h, w = depth.shape
    if colours.shape != (t, h, w, 3):
        raise ValueError(f"colours must be {(t, h, w, 3)}, got {tuple(colours.shape)}")
    K_t = torch.as_tensor(np.asarray(K, dtype=np.float64))
    faces = grid_faces(h, w, device)

    vertices = unproject(pad_border(depth, options.border_depth), K_t, options.pixel_offset)
    hidden_faces = torch.empty((t, faces.shape[0]), dtype=torch.bool, device=device)
    for start in range(0, t, frames_per_chunk):
        stop = min(t, start + frames_per_chunk)
        hidden_faces[start:stop] = min_face_angle_deg(vertices[start:stop], faces) < options.min_angle_deg

    hidden_count = torch.zeros((t, h * w), dtype=torch.int32, device=device)
    f, per_face = faces.long(), hidden_faces.to(torch.int32)
    for corner in range(3):  # a vertex is hidden if any face it belongs to is hidden
        hidden_count.scatter_add_(1, f[:, corner].expand(t, -1), per_face)
    hidden_vertices = hidden_count > 0

    visible = (~hidden_vertices).to(torch.float32)[..., None]
    rgb = colours.reshape(t, h * w, 3).to(torch.float32)
    rgba = torch.cat([rgb, torch.full_like(rgb[..., :1], 255.0)], dim=-1) * visible
    return DWMeshSequence(vertices, faces, rgba, hidden_faces, hidden_vertices, w, h)
