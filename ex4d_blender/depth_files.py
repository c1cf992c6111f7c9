"""Depth image folders (what ``ex4d recon --depth`` reads) -> the .npz the engine's upload takes.

Read with Blender's own image loader, so no OpenCV is needed: 16-bit PNG in millimetres (scaled to
metres like the engine's ``png_scale``) or float EXR, sorted by name, EXR before PNG as in
``ex4d_engine/depth/file.py``. Needs numpy (imported by the operator through ``deps.require``).
"""

from __future__ import annotations

import glob
import os

import bpy
import numpy as np

from .reporting import UserError

PNG_SCALE = 1.0 / 1000.0  # depth units per PNG count: millimetres -> metres (the engine's default)


def image_files(folder: str) -> list[str]:
    files = sorted(glob.glob(os.path.join(folder, "*.exr"))) + sorted(glob.glob(os.path.join(folder, "*.png")))
    files = sorted(files)
    if not files:
        raise UserError(f"No depth images in {folder} (expected .exr or 16-bit .png files)", code="not_found")
    return files


def read_depth_image(path: str) -> np.ndarray:
    """One depth frame (H, W) float32, top row first."""
    image = bpy.data.images.load(path, check_existing=False)
    try:
        image.colorspace_settings.name = "Non-Color"  # raw values, no view transform
        is_png = path.lower().endswith(".png")
        if is_png and not image.is_float:  # Blender loads 16-bit PNGs into a float buffer, 8-bit ones not
            raise UserError(f"Depth PNG {os.path.basename(path)} must be 16-bit (millimetres), it is 8-bit",
                            code="invalid_input")
        width, height = image.size
        pixels = np.empty(width * height * image.channels, np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    depth = pixels.reshape(height, width, -1)[::-1, :, 0]
    if is_png:
        depth = np.round(depth * 65535.0) * PNG_SCALE
    return np.ascontiguousarray(depth, dtype=np.float32)


def folder_to_npz(folder: str, out_path: str) -> str:
    """Write the folder's frames as ``out_path`` (key ``depth``, (T, H, W) float32); returns ``out_path``."""
    frames = [read_depth_image(path) for path in image_files(folder)]
    shapes = {frame.shape for frame in frames}
    if len(shapes) != 1:
        raise UserError(f"Depth images in {folder} differ in size: {sorted(shapes)}", code="invalid_input")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    tmp = out_path + ".part.npz"
    np.savez(tmp, depth=np.stack(frames))
    os.replace(tmp, out_path)
    return out_path
