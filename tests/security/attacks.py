"""Crafted attack files for the security tests (issue 11): each is built here, from nothing."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np


def dash_manifest(target: Path) -> bytes:
    """A DASH manifest whose only segment is ``target`` on this machine (388 bytes in the report)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT1S" '
        'minBufferTime="PT1S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">\n'
        '<Period><AdaptationSet mimeType="video/mp4"><Representation id="1" bandwidth="1000">\n'
        f'<BaseURL>file:{target}</BaseURL></Representation></AdaptationSet></Period></MPD>\n'
    ).encode()


def hls_playlist(target: Path) -> bytes:
    return (f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\nfile:{target}\n"
            "#EXT-X-ENDLIST\n").encode()


def ffconcat(target: Path) -> bytes:
    return f"ffconcat version 1.0\nfile '{target}'\n".encode()


def npy_header_only(shape: tuple, dtype: str = "<f4") -> bytes:
    """A .npy header claiming ``shape`` followed by only 64 bytes of data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(64)


def npz_bomb(shape: tuple, key: str = "depth") -> bytes:
    """A small .npz whose one array (zeros, deflated) is ``prod(shape) * 4`` bytes unpacked."""
    buffer = io.BytesIO()
    chunk = np.zeros(1 << 20, np.float32).tobytes()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    total = int(np.prod(shape)) * 4
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            left = total
            while left > 0:
                member.write(chunk[:min(left, len(chunk))])
                left -= len(chunk)
    return buffer.getvalue()
