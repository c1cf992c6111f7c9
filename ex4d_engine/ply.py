"""Binary PLY writer for ``DW-Mesh.ply`` (frame 0, vertex colours), as the seed's trimesh export."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import atomic_write


def write_ply(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray) -> None:
    """vertices (V, 3) float, faces (F, 3) int, colours (V, 3) uint8 -> binary little-endian PLY, atomically."""
    path = Path(path)
    v, f = len(vertices), len(faces)
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment written by ex4d (OpenCV axes: x right, y down, z forward)\n"
        f"element vertex {v}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {f}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode("ascii")
    vertex_rec = np.empty(v, dtype=[("p", "<f4", 3), ("c", "u1", 3)])
    vertex_rec["p"], vertex_rec["c"] = vertices, colours
    face_rec = np.empty(f, dtype=[("n", "u1"), ("i", "<i4", 3)])
    face_rec["n"], face_rec["i"] = 3, faces
    atomic_write(path, header + vertex_rec.tobytes() + face_rec.tobytes())
