"""Issue 11 item 2 against the add-on: crafted scene packages (zip-slip through scene.json member
names, absolute names, link entries, a zip bomb) fed to the real ``extract_package`` in bpy 4.2.
Nothing may be written outside the import folder, nothing half-imported may stay."""

from __future__ import annotations

import json
import os
import stat
import uuid
import zipfile

import pytest
from bpy_testing import run_in_bpy
from package_factory import build_package


def _rewrite(good: str, out: str, scene_update: dict, extra: list, drop: tuple = ()) -> None:
    """Copy ``good`` to ``out`` with scene.json updated and ``extra`` (ZipInfo or name, data, method) added."""
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if info.filename in drop:
                continue
            data = source.read(info)
            if info.filename == "scene.json":
                data = json.dumps({**json.loads(data), **scene_update}).encode()
            target.writestr(info, data, compress_type=info.compress_type)
        for name, data, method in extra:
            target.writestr(name, data, compress_type=method)


@pytest.fixture(scope="module")
def attack_results(tmp_path_factory):
    base = tmp_path_factory.mktemp("safety")
    packages = base / "packages"
    packages.mkdir()
    good = str(base / "good.ex4dscene.zip")
    build_package(good)
    with zipfile.ZipFile(good) as archive:
        pc2, video = archive.read("positions.pc2"), archive.read("source.mp4")
    outside = base / f"abs-{uuid.uuid4().hex}"
    link = zipfile.ZipInfo("link.mp4")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    cases = {
        "slip_pc2": ({"point_cache": "../../escaped.pc2"}, [("../../escaped.pc2", pc2, zipfile.ZIP_STORED)]),
        "slip_video": ({"source_video": "../../escaped.mp4"}, [("../../escaped.mp4", video, zipfile.ZIP_DEFLATED)]),
        "absolute": ({"source_video": f"{outside}/abs.mp4"}, [(f"{outside}/abs.mp4", video, zipfile.ZIP_STORED)]),
        "link": ({"source_video": "link.mp4"}, [(link, str(base / "secret"), zipfile.ZIP_STORED)]),
    }
    for case, (update, extra) in cases.items():
        _rewrite(good, str(packages / f"{case}.ex4dscene.zip"), update, extra)
    # zip bomb: source.mp4 replaced by 256 MiB of deflated zeros (a 32x24x5 scene needs well under 1 MiB)
    bomb = str(packages / "bomb.ex4dscene.zip")
    _rewrite(good, bomb, {}, [], drop=("source.mp4",))
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("source.mp4", "w", force_zip64=True) as member:
            for _ in range(16):
                member.write(bytes(16 << 20))
    assert os.path.getsize(bomb) < 2 << 20
    os.replace(good, packages / "good.ex4dscene.zip")
    data_dir = base / "deep" / "er" / "imports"
    results = run_in_bpy("4.2", "package_safety.py", [str(packages), str(data_dir)], str(base / "home"))
    return results, base, data_dir, outside


@pytest.mark.parametrize("case,text", [
    ("slip_pc2", "'..', '.' and empty path parts are refused"), ("slip_video", "'..', '.' and empty path parts"),
    ("absolute", "absolute names are refused"), ("link", "is a symbolic link: refused"),
    ("bomb", "unpacks to more than the limit")])
def test_attack_is_refused(attack_results, case, text):
    results, *_ = attack_results
    ok, message = results[f"{case}.ex4dscene.zip"]
    assert not ok and "Unsafe package" in message and text in message, message


def test_nothing_written_outside_and_nothing_half_imported(attack_results):
    results, base, data_dir, outside = attack_results
    assert results["good.ex4dscene.zip"] == [True, ["mesh", "positions.pc2", "scene.json", "source.mp4"]]
    written = sorted(os.path.relpath(os.path.join(d, f), base) for d, _, files in os.walk(base) for f in files
                     if "escaped" in f or f == "abs.mp4")
    assert written == [] and not outside.exists()
    assert sorted(os.listdir(data_dir)) == ["good"]  # only the good import, no temporary folders left
