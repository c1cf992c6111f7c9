"""Unpack zip archives from outside without writing outside the target folder or filling the disk.

The one set of rules for every place that unpacks a scene package (engine, server, Blender add-on;
the add-on gets this module vendored at build time, so: standard library only).

* A member name must be relative, without ``..``, backslashes, drive letters or NUL, and its
  destination must resolve inside the target folder (a symlink planted there does not count).
* Link entries (a Unix symlink stored in the zip) and anything but plain files are refused.
* The total unpacked size is capped (:data:`MAX_UNPACKED_BYTES`, 16 GiB; callers pass a tighter
  cap when they know the expected size). The cap is checked against the sizes the archive
  declares before anything is written, and again while bytes are written (zipfile never yields more
  than the declared size, the second check is for the paranoid).
"""

from __future__ import annotations

import os
import stat
import zipfile
from typing import Iterable, Optional

#: Cap on what one archive may unpack to, stated in docs/scene_package.md and docs/security.md.
MAX_UNPACKED_BYTES = 16 << 30
_CHUNK = 1 << 22


class UnsafeArchiveError(ValueError):
    """The archive breaks a rule above; the message names the member and the rule."""


def check_member_name(name: str) -> str:
    """``name`` if it is a plain relative path inside the archive, else UnsafeArchiveError."""
    if not name or "\x00" in name or "\\" in name:
        raise UnsafeArchiveError(f"zip member {name!r}: empty, NUL or backslash in the name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"zip member {name!r}: absolute names are refused")
    parts = name.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeArchiveError(f"zip member {name!r}: '..', '.' and empty path parts are refused")
    return name


def member(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    """The entry ``name``: a plain file with a safe name, or UnsafeArchiveError / KeyError if absent."""
    check_member_name(name)
    info = archive.getinfo(name)
    mode = info.external_attr >> 16
    if info.is_dir():
        raise UnsafeArchiveError(f"zip member {name!r} is a directory, a file was expected")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: writers that store permission bits only
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a plain file"
        raise UnsafeArchiveError(f"zip member {name!r} is {kind}: refused")
    return info


def destination(root: str, name: str) -> str:
    """Where ``name`` goes under ``root``; raises unless it resolves inside ``root``."""
    check_member_name(name)
    real_root = os.path.realpath(root)
    target = os.path.realpath(os.path.join(real_root, *name.split("/")))
    if os.path.commonpath([real_root, target]) != real_root or target == real_root:
        raise UnsafeArchiveError(f"zip member {name!r} would be written outside the target folder")
    return target


def declared_size(archive: zipfile.ZipFile, names: Iterable[str], max_bytes: int = MAX_UNPACKED_BYTES) -> int:
    """Sum of the declared unpacked sizes of ``names`` (each checked with :func:`member`), within the cap."""
    total = 0
    for name in names:
        total += member(archive, name).file_size
        if total > max_bytes:
            raise UnsafeArchiveError(f"the archive unpacks to more than the limit of {_human(max_bytes)} "
                                     f"(at member {name!r})")
    return total


class Budget:
    """Bytes left to unpack; shared by the members of one archive (and archives nested in it)."""

    def __init__(self, max_bytes: int = MAX_UNPACKED_BYTES):
        self.max_bytes = max_bytes
        self.used = 0

    def take(self, n: int, name: str) -> None:
        self.check(n, name)
        self.used += n

    def check(self, n: int, name: str) -> None:
        """Raise if ``n`` more bytes would go over the cap."""
        if self.used + n > self.max_bytes:
            raise UnsafeArchiveError(f"the archive unpacks to more than the limit of {_human(self.max_bytes)} "
                                     f"(at member {name!r})")


def extract(archive: zipfile.ZipFile, name: str, root: str, budget: Optional[Budget] = None) -> str:
    """Write member ``name`` under ``root`` (folders made as needed); returns its path."""
    budget = budget or Budget()
    info = member(archive, name)
    budget.check(info.file_size, name)
    target = destination(root, name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    # O_EXCL | O_NOFOLLOW: never write through a link or over a file planted at the destination
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with archive.open(info) as source, os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            budget.take(len(chunk), name)
            out.write(chunk)
    return target


def extract_all(archive: zipfile.ZipFile, root: str, names: Optional[Iterable[str]] = None,
                max_bytes: int = MAX_UNPACKED_BYTES) -> list[str]:
    """Extract ``names`` (default: every file entry) under ``root`` after checking all of them first."""
    names = [i.filename for i in archive.infolist() if not i.is_dir()] if names is None else list(names)
    declared_size(archive, names, max_bytes)
    budget = Budget(max_bytes)
    return [extract(archive, name, root, budget) for name in names]


def read(archive: zipfile.ZipFile, name: str, max_bytes: int) -> bytes:
    """The bytes of member ``name``, refusing more than ``max_bytes`` (a small JSON, a header)."""
    info = member(archive, name)
    if info.file_size > max_bytes:
        raise UnsafeArchiveError(f"zip member {name!r} unpacks to {_human(info.file_size)}, "
                                 f"over the limit of {_human(max_bytes)}")
    with archive.open(info) as source:
        data = source.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeArchiveError(f"zip member {name!r} is larger than the limit of {_human(max_bytes)}")
    return data


def copy_stream(source, target, size: int, budget: Budget, name: str) -> None:
    """Copy ``size`` bytes from an open file to another, counting them against ``budget``."""
    left = size
    while left > 0:
        chunk = source.read(min(_CHUNK, left))
        if not chunk:
            break
        budget.take(len(chunk), name)
        target.write(chunk)
        left -= len(chunk)


def _human(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.3g} {unit}"
    return f"{n} bytes"


__all__ = ["MAX_UNPACKED_BYTES", "UnsafeArchiveError", "Budget", "check_member_name", "member", "destination",
           "declared_size", "extract", "extract_all", "read", "copy_stream"]
