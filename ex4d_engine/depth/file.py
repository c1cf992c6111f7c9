"""Depth from a file: ``.npz`` / ``.npy`` array (T, H, W), an EXR sequence or a 16-bit PNG sequence.

Validated against the clip: frame count and size must match (after the same resize the video
gets), every value finite and positive. Depth is planar z-depth in the file's own units.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

from ..errors import InputError, NotFoundError


def load_depth_file(path: str | os.PathLike, *, png_scale: float = 1.0 / 1000.0) -> np.ndarray:
    """Read depth as (T, H, W) float32, unvalidated.

    Args:
        path: ``.npz`` (key ``depth``, or the only array), ``.npy``, a directory of ``.exr`` or
            16-bit ``.png`` files (sorted by name), or a glob pattern of them.
        png_scale: depth units per PNG count (default millimetres -> metres, the common convention).
    """
    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    if suffix in (".npz", ".npy"):
        if not os.path.isfile(path):
            raise NotFoundError(f"depth file not found: {path}")
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read depth file {path}: {exc}") from None
        if isinstance(data, np.lib.npyio.NpzFile):
            keys = list(data.keys())
            key = "depth" if "depth" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise InputError(f"depth file {path} has arrays {keys}; name the depth array 'depth'")
            data = data[key]
        return _as_stack(np.asarray(data), path)
    files = _image_files(path)
    return _as_stack(np.stack([_read_image(f, png_scale) for f in files]), path)


def validate_depth(depth: np.ndarray, num_frames: int, height: int, width: int, source: str = "depth") -> np.ndarray:
    """Check shape and values against the clip; return float32 (T, H, W) of exactly ``num_frames``.

    A longer depth stack is cut to the clip (the clip may have been cut to ``num_frames``).
    """
    if depth.ndim != 3:
        raise InputError(f"{source} must have shape (frames, height, width), got {depth.shape}")
    t, h, w = depth.shape
    if (h, w) != (height, width):
        raise InputError(f"{source} is {w}x{h} but the video works at {width}x{height}; "
                         "give depth at the video's own or its working resolution")
    if t < num_frames:
        raise InputError(f"{source} has {t} frames, the video has {num_frames}")
    depth = depth[:num_frames].astype(np.float32, copy=False)
    finite = np.isfinite(depth)
    if not finite.all():
        frame = int(np.argwhere(~finite)[0][0])
        raise InputError(f"{source} contains NaN or infinity (first in frame {frame})")
    if (depth <= 0).any():
        frame = int(np.argwhere(depth <= 0)[0][0])
        raise InputError(f"{source} must be positive everywhere; frame {frame} has a value <= 0 "
                         f"(min {float(depth.min()):.4g})")
    return depth


def _as_stack(array: np.ndarray, path: str) -> np.ndarray:
    if array.ndim == 2:
        array = array[None]
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3 or not np.issubdtype(array.dtype, np.number):
        raise InputError(f"depth in {path} must be a numeric (frames, height, width) array, got {array.shape} {array.dtype}")
    return array.astype(np.float32)


def _image_files(path: str) -> list[str]:
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.exr")) + glob.glob(os.path.join(path, "*.png")))
    else:
        files = sorted(glob.glob(path))
    if not files:
        raise NotFoundError(f"no depth found at {path} (expected .npz, .npy, or a folder of .exr / 16-bit .png)")
    return files


def _read_image(file: str, png_scale: float) -> np.ndarray:
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # OpenCV reads EXR only when asked to
    import cv2

    image = cv2.imread(file, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise InputError(f"cannot read depth image {file}")
    if image.ndim == 3:
        image = image[..., 0]
    if file.lower().endswith(".png"):
        if image.dtype != np.uint16:
            raise InputError(f"depth PNG {file} must be 16-bit, got {image.dtype}")
        return image.astype(np.float32) * png_scale
    return image.astype(np.float32)
