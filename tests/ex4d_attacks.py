"""Crafted attack files for the security tests (issue 11): each is built here, from nothing."""

from __future__ import annotations

import io
import struct
import zlib
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
    """A small .npz whose one array (float32 zeros, deflated) is ``prod(shape) * 4`` bytes unpacked.

    Built fast: a deflate block of 16 MiB of zeros after a full flush is the same bytes every time,
    so the stream is that block repeated (a real deflate stream; zipfile and numpy read it).
    """
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    head = header.getvalue()
    total = int(np.prod(shape)) * 4
    chunk = bytes(1 << 24)
    count, rest = divmod(total, len(chunk))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert again == block
    stream = first + block * count + compressor.compress(chunk[:rest]) + compressor.flush()
    crc = zlib.crc32(head)
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(chunk[:rest], crc)
    size = len(head) + total
    assert size < 1 << 32, "no zip64 in this writer"
    name = f"{key}.npy".encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(stream), size, len(name), 0) + name
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(stream), size, len(name),
                          0, 0, 0, 0, 0o644 << 16, 0) + name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(stream), 0)
    return local + stream + central + end
