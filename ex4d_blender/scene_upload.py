"""Send a scene imported from a file (``ex4d demo``'s package, a colleague's package) to the engine.

The engine makes scenes from a clip and its depth (``POST /v1/scenes``). A package holds the clip
(``source.mp4`` at the working resolution) and, per frame, every pixel's vertex in the source camera's
frame (``positions.pc2``): its z is the depth the engine used. So the upload is the package's own clip,
that depth and its focal length, and the engine rebuilds the same scene. Needs numpy.
"""

from __future__ import annotations

import os

import numpy as np

from ._engine.protocol import SceneOptions
from .mesh_import import read_pc2_header
from .reporting import UserError


def source_of(collection, work_dir: str) -> tuple[str, str, SceneOptions]:
    """(video path, depth .npz path, upload options) for an imported EX-4D collection."""
    folder = collection.get("ex4d_folder", "")
    video = os.path.join(folder, "source.mp4")
    pc2 = os.path.join(folder, "positions.pc2")
    if not (os.path.isfile(video) and os.path.isfile(pc2)):
        package = collection.get("ex4d_package", "")
        raise UserError(f"The files of '{collection.name}' are gone ({folder}); import the package "
                        f"{os.path.basename(package) or ''} again", code="not_found")
    width, height = int(collection["ex4d_width"]), int(collection["ex4d_height"])
    num_points, num_frames = read_pc2_header(pc2)
    if num_points != width * height:
        raise UserError(f"'{collection.name}' has {num_points} vertices, not one per pixel of {width}x{height}: "
                        "it cannot be sent back to the engine", code="invalid_input")
    positions = np.memmap(pc2, dtype="<f4", mode="r", offset=32, shape=(num_frames, height, width, 3))
    depth = np.ascontiguousarray(positions[..., 2], dtype=np.float32)
    if not np.all(np.isfinite(depth)) or depth.min() <= 0:
        raise UserError(f"'{collection.name}' has points behind the source camera: it cannot be sent back",
                        code="invalid_input")
    out = os.path.join(work_dir, f"{collection.name.replace(' ', '_')}-depth.npz")
    np.savez(out + ".part.npz", depth=depth)
    os.replace(out + ".part.npz", out)
    K = np.asarray(collection["ex4d_K"], dtype=np.float64).reshape(3, 3)
    options = SceneOptions(num_frames=num_frames, focal_px=float(K[0, 0]))
    return video, out, options

