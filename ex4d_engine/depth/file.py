"""Depth from a file: ``.npz`` / ``.npy`` array (T, H, W), an EXR sequence or a 16-bit PNG sequence.

Validated against the clip: frame count and size must match (after the same resize the video
gets), every value finite and positive. Depth is planar z-depth in the file's own units.

``.npy`` / ``.npz`` come from outside (uploads): their header is read first and its shape and dtype
checked against the clip before any data is read, and only the frames the clip needs are read,
at most :data:`MAX_DEPTH_BYTES`. A header claiming petabytes costs nothing (issue 11).
"""

from __future__ import annotations

import glob
import os
import zipfile
from pathlib import Path
from typing import BinaryIO, Iterable, Optional

import numpy as np

from ..errors import InputError, NotFoundError, TooLargeError

#: Cap on the depth data read from one file: float64 at the largest clip the server takes is ~4.9 GB.
MAX_DEPTH_BYTES = 8 << 30


class DepthTooLargeError(TooLargeError):
    """The depth data needed is over :data:`MAX_DEPTH_BYTES` (``too_large``: exit 2, HTTP 413)."""


def load_depth_file(path: str | os.PathLike, *, png_scale: float = 1.0 / 1000.0,
                    sizes: Optional[Iterable[tuple[int, int]]] = None, max_frames: Optional[int] = None,
                    max_bytes: int = MAX_DEPTH_BYTES) -> np.ndarray:
    """Read depth as (T, H, W) float32; values unvalidated (see :func:`validate_depth`).

    Args:
        path: ``.npz`` (key ``depth``, or the only array), ``.npy``, a directory of ``.exr`` or
            16-bit ``.png`` files (sorted by name), or a glob pattern of them.
        png_scale: depth units per PNG count (default millimetres -> metres, the common convention).
        sizes: the (width, height) pairs the clip accepts; a ``.npy``/``.npz`` of another size is
            refused from its header, before its data is read.
        max_frames: read at most this many frames of a ``.npy``/``.npz`` (the rest is never read).
        max_bytes: cap on the array data read (DepthTooLargeError above it).
    """
    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    if suffix in (".npz", ".npy"):
        if not os.path.isfile(path):
            raise NotFoundError(f"depth file not found: {path}")
        try:
            return _load_array_file(path, suffix, sizes, max_frames, max_bytes)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"cannot read depth file {path}: {exc}") from None
    files = _image_files(path)
    return _as_stack(np.stack([_read_image(f, png_scale) for f in files]), path)


def _load_array_file(path: str, suffix: str, sizes, max_frames: Optional[int], max_bytes: int) -> np.ndarray:
    if suffix == ".npy":
        with open(path, "rb") as handle:
            return _read_npy(handle, path, os.path.getsize(path), sizes, max_frames, max_bytes)
    from .. import safe_zip

    with zipfile.ZipFile(path) as archive:
        keys = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
        key = "depth" if "depth" in keys else (keys[0] if len(keys) == 1 else None)
        if key is None:
            raise InputError(f"depth file {path} has arrays {keys}; name the depth array 'depth'")
        try:
            info = safe_zip.member(archive, f"{key}.npy")
        except safe_zip.UnsafeArchiveError as exc:
            raise InputError(f"depth file {path}: {exc}") from None
        with archive.open(info) as handle:
            return _read_npy(handle, path, info.file_size, sizes, max_frames, max_bytes)


def _read_npy(handle: BinaryIO, path: str, available: int, sizes, max_frames: Optional[int],
              max_bytes: int) -> np.ndarray:
    """Header first (shape, dtype, checked), then only the frames needed."""
    version = np.lib.format.read_magic(handle)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(handle)
    offset = handle.tell()
    if dtype.hasobject or dtype.fields is not None or dtype.shape != () or dtype.kind not in "fiu":
        raise InputError(f"depth in {path} must be a plain float or integer array, got dtype {dtype}")
    stack = _stack_shape(shape)
    if stack is None:
        raise InputError(f"depth in {path} must be a numeric (frames, height, width) array, got {shape} {dtype}")
    t, h, w = stack
    allowed = set(sizes) if sizes is not None else None
    if allowed is not None and (w, h) not in allowed:
        wanted = " or ".join(f"{a}x{b}" for a, b in sorted(allowed))
        raise InputError(f"depth in {path} is {w}x{h}; the video needs {wanted}")
    total = t * h * w * dtype.itemsize
    if available < offset + total:
        raise InputError(f"depth file {path} is truncated: its header says {shape} {dtype} "
                         f"({total} bytes), the file holds {max(0, available - offset)}")
    frames = t if max_frames is None or fortran_order else min(t, max_frames)
    needed = frames * h * w * dtype.itemsize
    if needed > max_bytes:
        raise DepthTooLargeError(f"depth in {path} needs {needed / (1 << 30):.3g} GiB ({frames}x{h}x{w} "
                                 f"{dtype}), over the limit of {max_bytes / (1 << 30):.3g} GiB")
    data = handle.read(needed)
    if len(data) != needed:
        raise InputError(f"depth file {path} is truncated")
    array = np.frombuffer(data, dtype=dtype)
    if fortran_order:  # rare (np.save of a transposed array): all frames were read, within the cap
        array = array.reshape(shape[::-1]).transpose()
    return _as_stack(array.reshape(frames, h, w), path)


def _stack_shape(shape: tuple) -> Optional[tuple[int, int, int]]:
    """(T, H, W) of an array ``_as_stack`` accepts: (H, W), (T, H, W) or (T, H, W, 1)."""
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3 or (len(shape) == 4 and shape[-1] == 1):
        return tuple(shape[:3])
    return None


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
