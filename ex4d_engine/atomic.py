"""Atomic file writes: the one way ex4d writes a file or folder a user (or the API) can see.

The content goes to a hidden temporary sibling (same folder, so the rename is atomic on one file
system; same suffix, so tools that pick a format from the name still do) and is renamed onto the
final name only when it is complete. On any failure the temporary is removed: nothing half-written
ever carries the final name. Standard library only (the add-on gets it vendored).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]

#: Every temporary starts with this; ``remove_partials`` clears leftovers of a killed process.
PARTIAL_PREFIX = ".partial-"


def partial_name(final: PathLike) -> Path:
    final = Path(os.fspath(final))
    return final.with_name(f"{PARTIAL_PREFIX}{uuid.uuid4().hex[:8]}-{final.name}")


@contextlib.contextmanager
def atomic_path(final: PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; it is renamed onto ``final`` only if the block succeeds.

    ``directory=True``: the temporary is a fresh folder, and an existing ``final`` folder is replaced.
    """
    final = Path(os.fspath(final))
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_name(final)
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        if directory and final.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def atomic_write(final: PathLike, data: Union[bytes, str], mode: int = 0o644) -> None:
    """Write ``data`` (text is UTF-8) to ``final`` atomically, with permissions ``mode``."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(final) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)


def remove_partials(directory: PathLike) -> None:
    """Delete temporaries left in ``directory`` by a process that was killed mid-write."""
    directory = Path(os.fspath(directory))
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.name.startswith(PARTIAL_PREFIX):
                with contextlib.suppress(OSError):
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
