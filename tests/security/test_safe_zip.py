"""Issue 11 item 2: zip-slip and zip bombs, against the one helper (ex4d_engine/safe_zip.py) and the
engine's package reader. The add-on's extract_package is attacked in tests/blender/test_package_safety.py."""

from __future__ import annotations

import io
import os
import stat
import zipfile

import pytest

from ex4d_engine import safe_zip
from ex4d_engine.errors import InputError


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries:
            if isinstance(name, zipfile.ZipInfo):
                archive.writestr(name, data)
            else:
                archive.writestr(name, data)
    return path


@pytest.mark.parametrize("name", ["../x", "../../x", "a/../../x", "/etc/x", "C:/x", "a\\..\\x", "a//b", "./a",
                                  "a\x00b"])
def test_bad_names_are_refused(name):
    with pytest.raises(safe_zip.UnsafeArchiveError):
        safe_zip.check_member_name(name)


@pytest.mark.parametrize("name", ["../../escaped.txt", "/tmp/absolute-escape.txt"])
def test_zip_slip_writes_nothing_outside(tmp_path, name):
    archive_path = _zip(tmp_path / "evil.zip", [("ok.txt", b"fine"), (name, b"pwned")])
    target = tmp_path / "a" / "b"
    target.mkdir(parents=True)
    with zipfile.ZipFile(archive_path) as archive, pytest.raises(safe_zip.UnsafeArchiveError):
        safe_zip.extract_all(archive, str(target))
    assert not (tmp_path / "escaped.txt").exists() and not os.path.exists("/tmp/absolute-escape.txt")
    assert list(target.iterdir()) == []  # every name is checked before anything is written


def test_symlink_entry_is_refused(tmp_path):
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive_path = _zip(tmp_path / "link.zip", [(link, "/etc/passwd")])
    with zipfile.ZipFile(archive_path) as archive, pytest.raises(safe_zip.UnsafeArchiveError, match="symbolic link"):
        safe_zip.extract_all(archive, str(tmp_path / "out"))


def test_planted_symlink_in_the_target_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "sub").symlink_to(outside)
    archive_path = _zip(tmp_path / "a.zip", [("sub/x.txt", b"pwned")])
    with zipfile.ZipFile(archive_path) as archive, pytest.raises(safe_zip.UnsafeArchiveError, match="outside"):
        safe_zip.extract_all(archive, str(target))
    assert list(outside.iterdir()) == []


def test_zip_bomb_is_refused_before_writing(tmp_path):
    """a small zip that unpacks to 256 MiB: refused from the declared sizes, nothing written."""
    archive_path = tmp_path / "bomb.zip"
    zeros = bytes(1 << 24)
    with zipfile.ZipFile(archive_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("big.bin", "w", force_zip64=True) as member:
            for _ in range(16):
                member.write(zeros)
    assert archive_path.stat().st_size < 2 << 20
    with zipfile.ZipFile(archive_path) as archive:
        with pytest.raises(safe_zip.UnsafeArchiveError, match="more than the limit of 64 MiB"):
            safe_zip.extract_all(archive, str(tmp_path / "out"), max_bytes=64 << 20)
        with pytest.raises(safe_zip.UnsafeArchiveError, match="over the limit"):
            safe_zip.read(archive, "big.bin", 1 << 20)
    assert not (tmp_path / "out" / "big.bin").exists()


def test_lying_declared_size_is_caught_while_writing(tmp_path):
    """A central directory that understates the size: zipfile stops at the declared size (CRC error)."""
    archive_path = _zip(tmp_path / "liar.zip", [("a.bin", bytes(1 << 20))])
    data = bytearray(archive_path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("a.bin")
    info.file_size = 10  # what the rest of the code trusts
    with zipfile.ZipFile(archive_path) as archive:
        archive.getinfo("a.bin").file_size = 10
        with pytest.raises((zipfile.BadZipFile, safe_zip.UnsafeArchiveError)):
            safe_zip.extract_all(archive, str(tmp_path / "out"), max_bytes=100)
    assert not (tmp_path / "out" / "a.bin").exists() or (tmp_path / "out" / "a.bin").stat().st_size <= 100


def test_good_archive_extracts(tmp_path):
    archive_path = _zip(tmp_path / "good.zip", [("a.txt", b"a"), ("dir/b.txt", b"bb")])
    with zipfile.ZipFile(archive_path) as archive:
        paths = safe_zip.extract_all(archive, str(tmp_path / "out"))
    assert sorted(os.path.relpath(p, tmp_path / "out") for p in paths) == ["a.txt", "dir/b.txt"]
    assert (tmp_path / "out" / "dir" / "b.txt").read_bytes() == b"bb"
    assert stat.S_IMODE((tmp_path / "out" / "a.txt").stat().st_mode) == 0o600


def test_engine_package_reader_refuses_a_bomb(tmp_path):
    from ex4d_engine.scene_package import read_scene_package

    path = tmp_path / "bomb.ex4dscene.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("scene.json", "{}")
        archive.writestr("mesh.npz", b"")
        with archive.open("positions.pc2", "w", force_zip64=True) as member:
            for _ in range(8):
                member.write(bytes(1 << 24))
    with pytest.raises(InputError, match="unsafe scene package"):
        read_scene_package(path, max_bytes=64 << 20)
