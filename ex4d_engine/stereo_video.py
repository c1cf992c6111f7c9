"""Stereo videos VR players understand: packed layouts with the Spherical Video V2 ``st3d`` box.

Layouts: ``sbs`` (side by side, full width: 2W x H), ``sbs_half`` (side by side squeezed into W x H),
``tb`` (top-bottom, full: W x 2H). Left eye on the left / top. Each packed mp4 carries an ``st3d``
box (Google's Spherical Video V2 RFC: stereo_mode 1 = top-bottom, 2 = left-right) in its video
sample entry, so ffprobe reports the layout (side data "Stereo 3D") and players split the frame.
ffmpeg has no command-line switch for that box, so it is inserted after encoding, with the chunk
offsets fixed up when the movie header sits before the media data (``+faststart``).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from . import video_io
from .errors import InputError

LAYOUTS = ("sbs", "sbs_half", "tb")
#: st3d stereo_mode per layout (0 = mono, 1 = top-bottom, 2 = left-right).
ST3D_MODE = {"sbs": 2, "sbs_half": 2, "tb": 1}
_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl")
_VISUAL_ENTRIES = (b"avc1", b"avc3", b"hvc1", b"hev1", b"mp4v", b"av01", b"vp09")
_VISUAL_SAMPLE_ENTRY_HEADER = 78  # bytes of a VisualSampleEntry before its child boxes


def check_eyes(left: np.ndarray, right: np.ndarray) -> None:
    if left.shape != right.shape:
        raise InputError(f"the eyes differ in size: left {_size(left)}, right {_size(right)}; "
                         "both eyes must have the same frames, width and height")
    if left.ndim != 4 or left.shape[-1] != 3 or left.dtype != np.uint8 or right.dtype != np.uint8:
        raise InputError(f"eyes must be (T, H, W, 3) uint8, got {left.shape} {left.dtype}")


def pack(left: np.ndarray, right: np.ndarray, layout: str) -> np.ndarray:
    """Both eyes (T, H, W, 3) uint8 -> one packed video in ``layout``."""
    import cv2

    if layout not in LAYOUTS:
        raise InputError(f"stereo layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    check_eyes(left, right)
    if layout == "sbs":
        return np.concatenate([left, right], axis=2)
    if layout == "tb":
        return np.concatenate([left, right], axis=1)
    t, h, w = left.shape[:3]
    half = max(1, w // 2)
    squeeze = lambda video: np.stack([cv2.resize(f, (half, h), interpolation=cv2.INTER_AREA) for f in video])  # noqa: E731
    return np.concatenate([squeeze(left), squeeze(right)], axis=2)


def write_stereo_outputs(left: np.ndarray, right: np.ndarray, fps: float, out_dir: str | os.PathLike,
                         stem: str, layouts: tuple[str, ...] = LAYOUTS, crf: int = 10) -> dict[str, str]:
    """Write ``{stem}_left.mp4``, ``{stem}_right.mp4`` and ``{stem}_{layout}.mp4`` for each layout.

    Each file is written under a temporary name and renamed when complete. Returns name -> path.
    """
    check_eyes(left, right)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frames, layout in ([("left", left, None), ("right", right, None)]
                                 + [(layout, None, layout) for layout in layouts]):
        path = out_dir / f"{stem}_{name}.mp4"
        tmp = out_dir / f".{stem}_{name}.partial.mp4"
        try:
            video_io.write_video(tmp, frames if layout is None else pack(left, right, layout), fps, crf=crf)
            if layout is not None:
                add_st3d(tmp, ST3D_MODE[layout])
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        paths[name] = os.fspath(path)
    return paths


# ---------------------------------------------------------------- mp4 boxes
def _boxes(data: bytes | bytearray, start: int, end: int):
    """(type, start, header size, total size) of each box in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"malformed mp4 box {kind!r} at byte {pos}")
        yield kind, pos, header, size
        pos += size


def _bump_size(data: bytearray, pos: int, delta: int) -> None:
    size = struct.unpack_from(">I", data, pos)[0]
    if size in (0, 1):
        raise ValueError("64-bit or open-ended mp4 boxes are not supported here")
    struct.pack_into(">I", data, pos, size + delta)


def add_st3d(path: str | os.PathLike, stereo_mode: int) -> None:
    """Insert an ``st3d`` box (``stereo_mode``: 0 mono, 1 top-bottom, 2 left-right) into an mp4 in place."""
    data = bytearray(Path(path).read_bytes())
    st3d = struct.pack(">I4sB3sB", 13, b"st3d", 0, b"\0\0\0", stereo_mode)
    top = {kind: (pos, header, size) for kind, pos, header, size in _boxes(data, 0, len(data))}
    if b"moov" not in top:
        raise ValueError(f"{os.fspath(path)}: no moov box")
    moov_pos = top[b"moov"][0]
    moov_before_mdat = b"mdat" in top and moov_pos < top[b"mdat"][0]
    chain, entry = _find_visual_entry(data, [moov_pos], *top[b"moov"][:3])
    if entry is None:
        raise ValueError(f"{os.fspath(path)}: no video sample entry to carry the stereo layout")
    kind, pos, header, size = entry
    data[pos + size:pos + size] = st3d  # the last child of the sample entry
    for ancestor in chain + [pos]:
        _bump_size(data, ancestor, len(st3d))
    if moov_before_mdat:  # the media data moved by len(st3d): every chunk offset follows
        moov_size = struct.unpack_from(">I", data, moov_pos)[0]
        _shift_chunk_offsets(data, moov_pos, moov_size, len(st3d))
    tmp = Path(f"{os.fspath(path)}.st3d-{os.getpid()}")
    tmp.write_bytes(bytes(data))
    os.replace(tmp, path)


def _find_visual_entry(data, chain, pos, header, size):
    """Walk moov > trak > mdia > minf > stbl > stsd to the first video sample entry."""
    for kind, child, child_header, child_size in _boxes(data, pos + header, pos + size):
        if kind in _CONTAINERS:
            found_chain, entry = _find_visual_entry(data, chain + [child], child, child_header, child_size)
            if entry is not None:
                return found_chain, entry
        elif kind == b"stsd":
            entries_start = child + child_header + 8  # version/flags + entry count
            for entry in _boxes(data, entries_start, child + child_size):
                if entry[0] in _VISUAL_ENTRIES:
                    return chain + [child], entry
    return chain, None


def _shift_chunk_offsets(data: bytearray, pos: int, size: int, delta: int) -> None:
    for kind, child, header, child_size in _boxes(data, pos + 8, pos + size):
        if kind in _CONTAINERS:
            _shift_chunk_offsets(data, child, child_size, delta)
        elif kind in (b"stco", b"co64"):
            count = struct.unpack_from(">I", data, child + header + 4)[0]
            fmt, width = (">I", 4) if kind == b"stco" else (">Q", 8)
            base = child + header + 8
            for i in range(count):
                offset = struct.unpack_from(fmt, data, base + i * width)[0]
                struct.pack_into(fmt, data, base + i * width, offset + delta)


def stereo_layout_of(path: str | os.PathLike) -> str | None:
    """What ffmpeg's own demuxer reads from the file's stereo side data ("side by side", ...), or None."""
    import re
    import subprocess

    proc = subprocess.run([video_io.ffmpeg_exe(), "-hide_banner", "-i", os.fspath(path)], capture_output=True,
                          text=True)
    match = re.search(r"stereo3d:\s*([^\n,]+)", proc.stderr, re.I) or \
        re.search(r"Stereo 3D[^\n]*?:\s*([^\n,]+)", proc.stderr)
    return match.group(1).strip() if match else None


def _size(video: np.ndarray) -> str:
    return f"{video.shape[2]}x{video.shape[1]} x {video.shape[0]} frames" if video.ndim == 4 else str(video.shape)
