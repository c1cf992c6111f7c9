"""The Blender scene package (docs/scene_package.md): scene.json, mesh.npz, positions.pc2, source.mp4."""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from . import __version__, safe_zip
from .atomic import atomic_path
from .contract import CONTRACT_VERSION
from .errors import InputError
from .mesh import DWMeshSequence
from .video_io import write_video

if TYPE_CHECKING:
    from .scene import Scene

#: zlib level 1 for the point cache: ~70% smaller, a second or two per 49 frames at 512^2 (higher levels gain
#: little on float32 and cost several times the time).
POSITIONS_DEFLATE_LEVEL = 1
PACKAGE_FORMAT = "ex4d.scene"
PACKAGE_VERSION = 1
PC2_HEADER = struct.Struct("<12siiffi")


def write_pc2(handle: BinaryIO, positions: np.ndarray, start_frame: float = 0.0, sample_rate: float = 1.0) -> None:
    """Write (T, V, 3) positions as a PC2 point cache (Blender's Mesh Cache modifier format)."""
    t, v, _ = positions.shape
    handle.write(PC2_HEADER.pack(b"POINTCACHE2\0", 1, v, start_frame, sample_rate, t))
    handle.write(np.ascontiguousarray(positions, dtype="<f4").tobytes())


def read_pc2(handle: BinaryIO) -> np.ndarray:
    magic, version, v, _, _, t = PC2_HEADER.unpack(handle.read(PC2_HEADER.size))
    if magic != b"POINTCACHE2\0" or version != 1:
        raise ValueError("not a PC2 version 1 file")
    return np.frombuffer(handle.read(t * v * 12), dtype="<f4").reshape(t, v, 3)


def vertex_uvs(width: int, height: int) -> np.ndarray:
    """(H*W, 2) Blender UVs (origin bottom-left) of each pixel centre."""
    u = (np.arange(width) + 0.5) / width
    v = 1.0 - (np.arange(height) + 0.5) / height
    uu, vv = np.meshgrid(u, v)
    return np.stack([uu.ravel(), vv.ravel()], axis=1).astype(np.float32)


def scene_metadata(scene: "Scene", meshes: DWMeshSequence, scene_id: str | None = None) -> dict:
    opts = scene.options.mesh
    meta = {
        "format": PACKAGE_FORMAT,
        "version": PACKAGE_VERSION,
        "contract_version": CONTRACT_VERSION,
        "width": scene.width,
        "height": scene.height,
        "fps": scene.fps,
        "num_frames": scene.num_frames,
        "K": scene.K.tolist(),
        "intrinsics_source": scene.intrinsics.source,
        "depth_source": scene.depth_source,
        "depth_units": scene.depth_units,
        "scene_scale": scene.scene_scale,
        "pixel_offset": opts.pixel_offset,
        "border_depth": opts.border_depth,
        "min_angle_deg": opts.min_angle_deg,
        "only_first_frame": scene.options.only_first_frame,
        "mesh": {
            "grid_width": meshes.width,
            "grid_height": meshes.height,
            "num_vertices": int(meshes.vertices.shape[1]),
            "num_faces": int(meshes.faces.shape[0]),
        },
        "source_video": "source.mp4",
        "point_cache": "positions.pc2",
        "mesh_file": "mesh.npz",
        "engine_version": __version__,
    }
    if scene_id is not None:  # the server's id: lets the add-on generate from a package imported from file
        meta["scene_id"] = scene_id
    return meta


def write_scene_package(scene: "Scene", path: str | os.PathLike, meshes: DWMeshSequence,
                        scene_id: str | None = None) -> None:
    """Write the package zip atomically. ``meshes`` must hold every frame (or frame 0 when static)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vertices = meshes.vertices.detach().cpu().numpy()
    if vertices.shape[0] == 1 and scene.num_frames > 1:  # static scene: every sample is frame 0
        vertices = np.broadcast_to(vertices, (scene.num_frames,) + vertices.shape[1:])
    hidden = meshes.hidden_vertices.detach().cpu().numpy()
    hidden_faces = meshes.hidden_faces.detach().cpu().numpy()
    with atomic_path(path) as tmp, tempfile.TemporaryDirectory(prefix=".partial-", dir=path.parent) as work, \
            zipfile.ZipFile(tmp, "w", allowZip64=True, compresslevel=POSITIONS_DEFLATE_LEVEL) as archive:
        archive.writestr("scene.json", json.dumps(scene_metadata(scene, meshes, scene_id), indent=1),
                         compress_type=zipfile.ZIP_DEFLATED)
        mesh_bytes = io.BytesIO()
        np.savez_compressed(mesh_bytes, vertices=vertices[0], faces=meshes.faces.cpu().numpy().astype(np.int32),
                            uv=vertex_uvs(meshes.width, meshes.height), hidden=hidden, hidden_faces=hidden_faces)
        archive.writestr("mesh.npz", mesh_bytes.getvalue(), compress_type=zipfile.ZIP_STORED)
        positions = zipfile.ZipInfo("positions.pc2", date_time=(2020, 1, 1, 0, 0, 0))
        positions.compress_type = zipfile.ZIP_DEFLATED  # exact, and 3-4x smaller: float32 grids deflate well
        with archive.open(positions, "w", force_zip64=True) as handle:
            write_pc2(handle, vertices)
        video = os.path.join(work, "source.mp4")
        write_video(video, scene.frames, scene.fps)
        archive.write(video, "source.mp4", compress_type=zipfile.ZIP_STORED)


def read_scene_package(path: str | os.PathLike, max_bytes: int = safe_zip.MAX_UNPACKED_BYTES
                       ) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """(scene.json, mesh.npz arrays, PC2 positions) -- for tests and tools.

    A package from elsewhere is read under the ``safe_zip`` rules: plain members with safe names,
    at most ``max_bytes`` unpacked in all (the nested mesh.npz included).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            total = safe_zip.declared_size(archive, ["scene.json", "mesh.npz", "positions.pc2"], max_bytes)
            meta = json.loads(safe_zip.read(archive, "scene.json", 16 << 20))
            mesh_bytes = safe_zip.read(archive, "mesh.npz", max_bytes)
            with zipfile.ZipFile(io.BytesIO(mesh_bytes)) as npz:
                safe_zip.declared_size(npz, npz.namelist(), max_bytes - total)
            with np.load(io.BytesIO(mesh_bytes), allow_pickle=False) as data:
                mesh = {key: data[key] for key in data.files}
            positions = read_pc2(io.BytesIO(safe_zip.read(archive, "positions.pc2", max_bytes)))
    except safe_zip.UnsafeArchiveError as exc:
        raise InputError(f"unsafe scene package {os.fspath(path)}: {exc}") from None
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise InputError(f"cannot read scene package {os.fspath(path)}: {exc}") from None
    return meta, mesh, positions
