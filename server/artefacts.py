"""Files under the data dir: where each artefact lives, atomic writes, and path-trick rejection.

Every path the server reads or writes is built here from a validated id and a fixed name, and
checked to resolve inside the data dir. Imports are the one exception: they are resolved (with
symlinks), must land inside a configured import root, and are then pinned into the scene folder
(``pin_import``) so the worker never reads a path that could have been swapped since.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Sequence

from ex4d_engine.atomic import PARTIAL_PREFIX, remove_partials  # noqa: F401  (re-exported)
from ex4d_engine.atomic import atomic_path as engine_atomic_path
from ex4d_engine.errors import InputError, NotFoundError, ResourceError, TooLargeError

#: Ids as ``store.new_id`` makes them; anything else never reaches the filesystem.
ID_PATTERN = r"^[sj]_[0-9a-f]{16}$"
_ID_RE = re.compile(ID_PATTERN)

SCENE_ARRAYS = "scene.npz"
SCENE_PACKAGE = "scene.ex4dscene.zip"
RESULT_VIDEO = "result.mp4"
#: A stereo job's eye videos, beside the packed RESULT_VIDEO.
EYE_VIDEOS = {"left": "result_left.mp4", "right": "result_right.mp4"}
CONDITIONING_VIDEOS = {"colour": "conditioning_colour.mp4", "mask": "conditioning_mask.mp4"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".gif", ".mxf", ".mts", ".m2ts",
                  ".ts", ".wmv", ".flv", ".ogv", ".y4m", ".3gp"}
DEPTH_SUFFIXES = {".npy", ".npz"}


class Artefacts:
    """The data dir layout: ``scenes/<scene_id>/...`` and ``jobs/<job_id>/...``."""

    def __init__(self, data_dir: str | os.PathLike):
        self.root = Path(os.path.realpath(data_dir))
        for sub in ("scenes", "jobs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def database(self) -> Path:
        return self.root / "ex4d.sqlite3"

    def scene_dir(self, scene_id: str, create: bool = False) -> Path:
        return self._dir("scenes", scene_id, create)

    def job_dir(self, job_id: str, create: bool = False) -> Path:
        return self._dir("jobs", job_id, create)

    def _dir(self, kind: str, item_id: str, create: bool) -> Path:
        if not _ID_RE.match(item_id):
            raise NotFoundError(f"{kind[:-1]} {item_id!r} not found")
        path = self.inside(self.root / kind / item_id)
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def inside(self, path: str | os.PathLike) -> Path:
        """``path`` resolved; raises if it escapes the data dir (symlinks included)."""
        resolved = Path(os.path.realpath(path))
        if resolved != self.root and self.root not in resolved.parents:
            raise InputError(f"path {os.fspath(path)!r} is outside the data dir")
        return resolved

    def existing(self, path: Path, what: str) -> Path:
        """A final (complete) artefact, or NotFoundError (also for one swapped for a link out of the data dir:
        the answer names neither path)."""
        try:
            path = self.inside(path)
        except InputError:
            raise NotFoundError(f"{what} not available") from None
        if path.name.startswith(PARTIAL_PREFIX) or not path.is_file():
            raise NotFoundError(f"{what} not available")
        return path

    def remove_orphans(self, scene_ids: set[str], job_ids: set[str]) -> list[str]:
        """Start-up: delete scene/job folders without a row (an upload cut off by a crash)."""
        removed = []
        shutil.rmtree(self.root / "tmp", ignore_errors=True)  # scratch of versions before 0.2
        for kind, known in (("scenes", scene_ids), ("jobs", job_ids)):
            for entry in (self.root / kind).iterdir():
                if entry.name not in known:
                    shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
                    removed.append(f"{kind}/{entry.name}")
        return removed

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def remove_tree(self, path: Path) -> None:
        shutil.rmtree(self.inside(path), ignore_errors=True)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """:func:`ex4d_engine.atomic.atomic_path`, with a full disk reported as ``resource_unavailable``."""
    try:
        with engine_atomic_path(final) as tmp:
            yield tmp
    except OSError as exc:
        raise disk_error(exc, final) from exc


def disk_error(exc: OSError, path: Path) -> Exception:
    """Map a full disk to ResourceError; other OS errors pass through."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResourceError(f"disk full while writing {path.name}: {exc.strerror}")
    return exc


def save_stream(source: BinaryIO, final: Path, max_bytes: int, field: str) -> int:
    """Copy an upload to ``final`` atomically, refusing more than ``max_bytes``. Returns the size."""
    size = 0
    with atomic_path(final) as tmp, open(tmp, "wb") as out:
        while chunk := source.read(1 << 20):
            size += len(chunk)
            if size > max_bytes:
                raise TooLargeError(f"{field} is larger than the limit of {max_bytes // (1 << 20)} MB", field)
            out.write(chunk)
    if size == 0:
        final.unlink()
        raise InputError(f"{field} is empty", field)
    return size


def resolve_import(path_text: str, roots: Sequence[Path], field: str) -> Path:
    """An import path, resolved with symlinks, that must be a file inside one of ``roots``."""
    if not roots:
        raise InputError(f"{field}: imports are disabled (the server has no --import-root)", field)
    if not path_text or "\x00" in path_text:
        raise InputError(f"{field} must be a file path", field)
    candidate = Path(path_text)
    if not candidate.is_absolute():
        raise InputError(f"{field} must be an absolute path, got {path_text!r}", field)
    resolved = Path(os.path.realpath(candidate))
    for root in roots:
        root_real = Path(os.path.realpath(root))
        if root_real in resolved.parents:
            if not resolved.is_file():
                raise InputError(f"{field}: no such file {path_text!r}", field)
            return resolved
    raise InputError(f"{field} {path_text!r} is not inside a configured import root", field)


def pin_import(resolved: Path, destination: Path, field: str) -> Path:
    """Make the validated import the scene's own file, so swapping it for a link later changes nothing.

    The file is opened without following any link in any part of its (already resolved) path, then
    hard-linked into the scene folder through that open file, or copied from it when a link is not
    possible (another filesystem, a file we do not own). Returns ``destination``.
    """
    fd = _open_no_follow(resolved, field)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{field}: not a regular file", field)
        try:
            os.link(f"/proc/self/fd/{fd}", destination, follow_symlinks=True)
        except OSError:
            with atomic_path(destination) as tmp, open(tmp, "wb") as out, os.fdopen(os.dup(fd), "rb") as source:
                shutil.copyfileobj(source, out, 1 << 22)
    finally:
        os.close(fd)
    return destination


def _open_no_follow(path: Path, field: str) -> int:
    """Open ``path`` read-only, refusing a symlink at any of its parts (ELOOP/ENOTDIR: it changed)."""
    parts = path.parts
    if not path.is_absolute() or ".." in parts:
        raise InputError(f"{field} must be an absolute path", field)
    nofollow = os.O_NOFOLLOW | os.O_CLOEXEC
    dir_fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | nofollow)
    try:
        for part in parts[1:-1]:
            try:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | nofollow, dir_fd=dir_fd)
            except OSError:
                raise InputError(f"{field}: the file changed after it was checked (a link or a missing "
                                 "folder in its path)", field) from None
            os.close(dir_fd)
            dir_fd = next_fd
        try:
            return os.open(parts[-1], os.O_RDONLY | nofollow, dir_fd=dir_fd)
        except OSError:
            raise InputError(f"{field}: the file changed after it was checked (now a link, or gone)", field) from None
    finally:
        os.close(dir_fd)


def suffix_of(name: Optional[str], allowed: set[str], field: str) -> str:
    suffix = Path(name or "").suffix.lower()
    if suffix not in allowed:
        raise InputError(f"{field} must be one of {', '.join(sorted(allowed))}; got {name!r}", field)
    return suffix

