"""Video files in and out, through the ffmpeg binary that imageio-ffmpeg ships.

fps and frame counts are measured, never assumed. Writers go to a temporary name and are
renamed only when ffmpeg succeeded, so a failed write never leaves a file that looks finished.
Masks are written losslessly (H.264 ``-qp 0`` in ``gray``) so they stay exactly 0/255 on disk;
the seed's crf-23 masks came back grey.

Every probe and decode opens the file with ffmpeg's format and protocol whitelists
(:data:`SAFE_INPUT_ARGS`): only real container formats, only the ``file`` protocol. A playlist or
reference format (DASH, HLS, ffconcat, ...) uploaded under a video name would otherwise make ffmpeg
read other files on the machine into the scene (docs/security.md).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Optional

import numpy as np

from .atomic import atomic_path
from .errors import InputError, NotFoundError

#: Colour quality as the seed's ``save_video(quality=8)``: libx264 crf 10.
DEFAULT_COLOUR_CRF = 10

#: Demuxers allowed for input: self-contained containers and raw elementary streams. Never a playlist
#: or reference format (dash, hls, concat, webm_dash_manifest, image2, tee, ...), which open other files.
SAFE_DEMUXERS = ("mov", "mp4", "matroska", "webm", "avi", "mpeg", "mpegts", "gif", "mxf", "asf", "flv", "ogg",
                 "yuv4mpegpipe", "h264", "hevc", "m4v", "mpegvideo")
#: ffmpeg input options put before every ``-i`` of an untrusted file.
SAFE_INPUT_ARGS = ("-protocol_whitelist", "file", "-format_whitelist", ",".join(SAFE_DEMUXERS))


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    num_frames: int


class FrameStack:
    """``num_frames``, ``height`` and ``width`` of anything holding (T, H, W, 3) ``frames``."""

    frames: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])


@dataclass
class VideoClip(FrameStack):
    """Decoded frames. ``frames``: (T, H, W, 3) uint8 RGB; ``source_size``: (width, height) on disk."""

    frames: np.ndarray
    fps: float
    source_size: tuple[int, int]



def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def working_size(width: int, height: int, multiple: int = 64, max_long_side: int = 1024) -> tuple[int, int]:
    """The seed's working resolution: each side rounded to ``multiple``, long side at most ``max_long_side``.

    1920x1080 -> 1024x576, 512x512 -> 512x512, 640x360 -> 640x384.
    """
    w = max(multiple, int(round(width / multiple)) * multiple)
    h = max(multiple, int(round(height / multiple)) * multiple)
    if max(w, h) > max_long_side:
        scale = max_long_side / max(width, height)
        w = max(multiple, int(round(width * scale / multiple)) * multiple)
        h = max(multiple, int(round(height * scale / multiple)) * multiple)
    return w, h


def resize_keep_aspect(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize (T, H, W, C) frames to exactly ``width`` x ``height`` without squashing.

    Scales uniformly so the image covers the target, then crops the centre: the aspect ratio is
    kept exactly, at most half a 64-px block is cropped per side (the seed stretched instead).
    """
    import cv2

    t, h0, w0 = frames.shape[:3]
    if (w0, h0) == (width, height):
        return frames
    scale = max(width / w0, height / h0)
    sw, sh = max(width, int(np.ceil(w0 * scale - 1e-9))), max(height, int(np.ceil(h0 * scale - 1e-9)))
    x0, y0 = (sw - width) // 2, (sh - height) // 2
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    out = np.empty((t, height, width) + frames.shape[3:], dtype=frames.dtype)
    for i in range(t):
        resized = cv2.resize(frames[i], (sw, sh), interpolation=interp)
        out[i] = resized[y0:y0 + height, x0:x0 + width].reshape(out.shape[1:])
    return out


def probe(path: str | os.PathLike) -> VideoInfo:
    """Size, fps and the exact frame count (decoded, not estimated from the header)."""
    import imageio_ffmpeg

    path = _existing(path)
    try:
        reader = imageio_ffmpeg.read_frames(_input_url(path), input_params=list(SAFE_INPUT_ARGS))
        meta = next(reader)
        reader.close()
        count = _count_frames(path)
    except (OSError, RuntimeError, StopIteration) as exc:
        raise _decode_error(path, exc) from None
    width, height = meta["size"]
    return VideoInfo(int(width), int(height), float(meta["fps"]), int(count))


def read_video(
    path: str | os.PathLike,
    *,
    max_frames: Optional[int] = None,
    size: Optional[tuple[int, int]] = None,
) -> VideoClip:
    """Decode RGB frames; optionally keep the first ``max_frames`` and resize to ``size`` (w, h) without squashing."""
    import imageio_ffmpeg

    path = _existing(path)
    frames = []
    try:
        reader = imageio_ffmpeg.read_frames(_input_url(path), pix_fmt="rgb24", input_params=list(SAFE_INPUT_ARGS))
        meta = next(reader)
        width, height = (int(v) for v in meta["size"])
        for raw in reader:
            frames.append(np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3))
            if max_frames is not None and len(frames) >= max_frames:
                break
        reader.close()
    except (OSError, RuntimeError, StopIteration) as exc:
        raise _decode_error(path, exc) from None
    if not frames:
        raise InputError(f"video {path} has 0 frames")
    fps = float(meta.get("fps") or 0.0)
    if not np.isfinite(fps) or fps <= 0:
        raise InputError(f"video {path} reports no usable frame rate ({meta.get('fps')!r})")
    stack = np.stack(frames)
    if size is not None:
        stack = resize_keep_aspect(stack, *size)
    return VideoClip(stack, fps, (width, height))


def read_mask_video(path: str | os.PathLike, *, max_frames: Optional[int] = None) -> np.ndarray:
    """Read a mask video as (T, H, W) uint8; values are re-binarised at 127 (lossy masks from other tools).

    A video that is not a mask (coloured, or mostly grey levels far from black and white) is refused:
    re-binarising a colour render would silently make a nonsense mask.
    """
    clip = read_video(path, max_frames=max_frames)
    frames = clip.frames.astype(np.int16)
    colourful = np.abs(frames - frames.mean(axis=-1, keepdims=True)).max(axis=-1) > MASK_TOLERANCE
    grey = frames.mean(axis=-1)
    undecided = (grey > MASK_TOLERANCE) & (grey < 255 - MASK_TOLERANCE)
    if colourful.mean() > MASK_BAD_FRACTION or undecided.mean() > MASK_BAD_FRACTION:
        raise InputError(f"{os.fspath(path)} is not a mask video: {100 * colourful.mean():.0f}% of its pixels are "
                         f"coloured and {100 * undecided.mean():.0f}% mid-grey; a mask is black (to generate) and "
                         "white (visible) -- did you pass the colour render?")
    return np.where(grey > 127, 255, 0).astype(np.uint8)


#: A lossy mask's pixels stray this far from grey / from black and white at most ...
MASK_TOLERANCE = 40
#: ... except at edges: a mask may have this fraction of such pixels.
MASK_BAD_FRACTION = 0.05


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    *,
    crf: int = DEFAULT_COLOUR_CRF,
) -> None:
    """Write (T, H, W, 3) uint8 RGB as H.264 yuv420p mp4 (plays everywhere, Blender included)."""
    frames = np.asarray(frames)
    _check_frames(frames, channels=3)
    h, w = frames.shape[1:3]
    # yuv420p needs even sizes: pad by edge replication rather than silently rescaling.
    pad = ((0, 0), (0, h % 2), (0, w % 2), (0, 0))
    if any(p[1] for p in pad):
        frames = np.pad(frames, pad, mode="edge")
    _encode(path, frames, fps, "rgb24", ["-c:v", "libx264", "-crf", str(crf), "-pix_fmt", "yuv420p"])


def write_lossless_video(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
    """Write (T, H, W, 3) uint8 RGB losslessly (H.264 RGB, qp 0): every value comes back exactly.

    For conditioning that another tool reads back (``--color_format lossless``); larger than the default mp4
    and not every player shows it, which is why it is not the default.
    """
    frames = np.asarray(frames)
    _check_frames(frames, channels=3)
    _encode(path, frames, fps, "rgb24", ["-c:v", "libx264rgb", "-qp", "0", "-pix_fmt", "rgb24"])


def write_mask_video(path: str | os.PathLike, masks: np.ndarray, fps: float) -> None:
    """Write (T, H, W) uint8 masks losslessly (H.264 qp 0, gray): 0 and 255 come back exactly."""
    masks = np.asarray(masks)
    _check_frames(masks, channels=None)
    _encode(path, masks, fps, "gray", ["-c:v", "libx264", "-qp", "0", "-pix_fmt", "gray"])


def write_png_sequence(directory: str | os.PathLike, frames: np.ndarray, prefix: str = "frame") -> None:
    """Write frames as ``{prefix}_00000.png`` ... into a new directory (renamed into place when complete)."""
    import cv2

    with atomic_path(directory, directory=True) as tmp:
        for i, frame in enumerate(np.asarray(frames)):
            image = frame[..., ::-1] if frame.ndim == 3 else frame  # cv2 wants BGR
            if not cv2.imwrite(str(tmp / f"{prefix}_{i:05d}.png"), np.ascontiguousarray(image)):
                raise OSError(f"could not write PNG into {directory}")


# ---------------------------------------------------------------------- safe input
def _input_url(path: str) -> str:
    """``file:<absolute path>``: a name like ``http:x.mp4`` or ``-i`` is never read as a URL or an option."""
    return "file:" + os.path.abspath(path)


def _count_frames(path: str) -> int:
    """Decode the first video stream to nowhere and read ffmpeg's final frame count."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", *SAFE_INPUT_ARGS, "-i", _input_url(path),
           "-map", "0:v:0", "-vf", "null", "-f", "null", "-"]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace"))
    counts = re.findall(rb"frame=\s*(\d+)", proc.stderr)
    if not counts:
        raise RuntimeError("ffmpeg reported no frame count")
    return int(counts[-1])


def _detected_format(path: str) -> Optional[str]:
    """The demuxer ffmpeg's probe picks for ``path`` (opening nothing else: the whitelists stay on)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "debug", *SAFE_INPUT_ARGS, "-i", _input_url(path)]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    found = re.search(rb"Format (\S+) probed", proc.stderr)
    return found.group(1).decode(errors="replace") if found else None


def _decode_error(path: str, exc: BaseException) -> InputError:
    if os.path.isfile(path):
        detected = _detected_format(path)
        if detected is not None and not any(name in SAFE_DEMUXERS for name in detected.split(",")):
            return InputError(f"video {path} is a {detected!r} file, not a video container: playlist and "
                              f"reference formats are refused (allowed: {', '.join(SAFE_DEMUXERS)})")
    return InputError(f"cannot decode video {path}: {_first_line(exc)}")


# ---------------------------------------------------------------------- helpers
def _encode(path: str | os.PathLike, frames: np.ndarray, fps: float, pix_fmt_in: str, codec_args: list[str]) -> None:
    if not (np.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be positive, got {fps}")
    h, w = frames.shape[1:3]
    rate = str(Fraction(float(fps)).limit_denominator(1001))  # 29.97 -> 30000/1001, exact
    with atomic_path(path) as tmp:
        cmd = [
            ffmpeg_exe(), "-y", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", pix_fmt_in, "-s", f"{w}x{h}", "-framerate", rate, "-i", "-",
            *codec_args, "-r", rate, "-movflags", "+faststart", "-f", "mp4", str(tmp),
        ]
        proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise OSError(f"ffmpeg failed writing {path}: {proc.stderr.decode(errors='replace').strip()[-400:]}")


def _check_frames(frames: np.ndarray, channels: Optional[int]) -> None:
    want = 4 if channels else 3
    if frames.ndim != want or (channels and frames.shape[-1] != channels) or frames.dtype != np.uint8:
        shape = "(T, H, W, 3)" if channels else "(T, H, W)"
        raise InputError(f"frames must be {shape} uint8, got {frames.shape} {frames.dtype}")
    if frames.shape[0] < 1:
        raise InputError("cannot write a video with 0 frames")


def _existing(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise NotFoundError(f"video file not found: {path}")
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
