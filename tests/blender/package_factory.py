"""Tiny scene packages written straight from docs/scene_package.md (main venv: numpy + imageio-ffmpeg).

Used by the add-on tests that must not depend on the engine's package writer; the end-to-end test
uses the real engine/server instead.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile

import numpy as np


def grid_faces(width: int, height: int) -> np.ndarray:
    """(2 (H-1)(W-1), 3) int32 triangles of a pixel grid, vertex index = row * W + col."""
    rows, cols = np.mgrid[0:height - 1, 0:width - 1]
    a = (rows * width + cols).ravel()
    b, c, d = a + 1, a + width, a + width + 1
    return np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)]).astype(np.int32)


def make_depth(width: int, height: int, num_frames: int) -> np.ndarray:
    """(T, H, W) depth: a plane at 2 with a nearer box (1.5) whose position drifts per frame."""
    depth = np.full((num_frames, height, width), 2.0, dtype=np.float32)
    for t in range(num_frames):
        x0 = width // 4 + t
        depth[t, height // 4: 3 * height // 4, x0: x0 + width // 3] = 1.5
    return depth


def make_frames(width: int, height: int, num_frames: int) -> np.ndarray:
    """(T, H, W, 3) uint8: smooth colour ramps (H.264 keeps them to ~1 level) that change per frame."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for t in range(num_frames):
        r = 40 + 170 * x / max(width - 1, 1)
        g = 40 + 170 * y / max(height - 1, 1)
        b = np.full_like(r, 60 + 25 * t)
        frames.append(np.stack([r, g, b], -1))
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def write_mp4(path: str, frames: np.ndarray, fps: float) -> None:
    import imageio.v2 as imageio

    writer = imageio.get_writer(path, fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1,
                                ffmpeg_params=["-crf", "12"], ffmpeg_log_level="error")
    for frame in frames:
        writer.append_data(frame)
    writer.close()


def build_package(path: str, width: int = 32, height: int = 24, num_frames: int = 5, fps: float = 24.0,
                  focal_px: float | None = None, scene_id: str = "") -> dict:
    """Write a scene package to ``path``; returns its scene.json."""
    focal_px = focal_px or 0.9 * width
    K = np.array([[focal_px, 0.0, width / 2], [0.0, focal_px, height / 2], [0.0, 0.0, 1.0]])
    depth = make_depth(width, height, num_frames)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = cols + 0.5, rows + 0.5
    positions = np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], -1)
    positions = positions.reshape(num_frames, -1, 3).astype(np.float32)
    faces = grid_faces(width, height)
    uv = np.stack([(cols + 0.5) / width, 1.0 - (rows + 0.5) / height], -1).reshape(-1, 2).astype(np.float32)
    # Hidden faces: those spanning a depth jump (the engine's stretched, min-angle faces).
    face_depth = depth.reshape(num_frames, -1)[:, faces]
    hidden_faces = (face_depth.max(-1) - face_depth.min(-1)) > 0.1
    hidden = np.zeros((num_frames, width * height), dtype=bool)
    for t in range(num_frames):
        hidden[t, faces[hidden_faces[t]].ravel()] = True
    scene = {
        "format": "ex4d.scene", "version": 1, "contract_version": 1,
        "width": width, "height": height, "fps": fps, "num_frames": num_frames, "K": K.tolist(),
        "intrinsics_source": "focal", "depth_source": "file", "depth_units": "depth-map units",
        "scene_scale": 1.0, "pixel_offset": 0.5, "border_depth": 100.0, "min_angle_deg": 2.5,
        "only_first_frame": False,
        "mesh": {"grid_width": width, "grid_height": height, "num_vertices": width * height,
                 "num_faces": len(faces)},
        "source_video": "source.mp4", "point_cache": "positions.pc2", "mesh_file": "mesh.npz",
        "engine_version": "test",
    }
    if scene_id:
        scene["scene_id"] = scene_id
    npz = io.BytesIO()
    np.savez_compressed(npz, vertices=positions[0], faces=faces, uv=uv, hidden=hidden, hidden_faces=hidden_faces)
    pc2 = struct.pack("<12siiffi", b"POINTCACHE2\0", 1, width * height, 0.0, 1.0, num_frames) + positions.tobytes()
    video = path + ".source.mp4"
    write_mp4(video, make_frames(width, height, num_frames), fps)
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w") as archive:
        archive.writestr("scene.json", json.dumps(scene), compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("mesh.npz", npz.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("positions.pc2", pc2, compress_type=zipfile.ZIP_STORED)
        archive.write(video, "source.mp4", compress_type=zipfile.ZIP_STORED)
    os.replace(tmp, path)
    os.remove(video)
    return scene
