"""``ex4d trajectory convert|validate`` through a real subprocess (the package may not be pip-installed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ex4d_engine.contract import Trajectory
from ex4d_engine.interchange import load_colmap, load_nerfstudio, load_seed_npz, save_seed_npz

REPO = Path(__file__).resolve().parents[2]


def ex4d(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ex4d_engine.cli", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def test_convert_through_every_format_and_back(tmp_path, centred_trajectory):
    source = tmp_path / "cams.json"
    centred_trajectory.save(source)
    npz, ns, colmap, back = tmp_path / "camera_x.npz", tmp_path / "camera_path.json", tmp_path / "sparse", tmp_path / "back.json"
    for args in (
        (source, npz),
        (npz, ns, "--width", 64, "--height", 48, "--fps", 24),
        (ns, colmap),
        (colmap, back, "--fps", 24),
    ):
        result = ex4d("trajectory", "convert", *args)
        assert result.returncode == 0, result.stderr
        assert f"wrote {args[1]}: 5 frames, 64x48, 24 fps" in result.stdout
    assert load_seed_npz(npz, fps=24).w2c.shape == (5, 4, 4)
    assert json.loads(ns.read_text())["camera_type"] == "perspective"
    assert len(load_colmap(colmap)) == 5
    again = Trajectory.load(back)
    assert np.allclose(again.w2c, centred_trajectory.w2c, atol=1e-6)  # float32 hop in the middle
    assert np.allclose(again.K, centred_trajectory.K, atol=1e-6)
    assert (again.width, again.height, again.fps) == (64, 48, 24.0)


def test_explicit_formats(tmp_path, centred_trajectory):
    source = tmp_path / "cams.json"
    centred_trajectory.save(source)
    out = tmp_path / "path.json"  # a .json name that would otherwise mean ex4d
    result = ex4d("trajectory", "convert", source, out, "--from", "ex4d", "--to", "nerfstudio")
    assert result.returncode == 0, result.stderr
    assert np.allclose(load_nerfstudio(out).w2c, centred_trajectory.w2c, atol=1e-9)


def test_validate_prints_a_summary(tmp_path, centred_trajectory):
    path = tmp_path / "cams.npz"
    save_seed_npz(centred_trajectory, path)
    result = ex4d("trajectory", "validate", path, "--fps", 24)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"{path}: valid" in out
    assert "frames: 5 at 24 fps (0.208 s)" in out
    assert "size: 64x48 px" in out
    assert "focal: fx 40-40 px, fy 40-40 px" in out
    centres = centred_trajectory.c2w[:, :3, 3]
    length = np.linalg.norm(np.diff(centres, axis=0), axis=1).sum()
    assert f"path length: {length:.6g} world units" in out


def test_bad_file_exits_2_and_writes_nothing(tmp_path, centred_trajectory):
    bad = tmp_path / "cams.json"
    doc = centred_trajectory.to_dict()
    doc["frames"][3]["w2c"][0][0] = 7.0
    bad.write_text(json.dumps(doc))
    for action in (("validate", bad), ("convert", bad, tmp_path / "out.npz")):
        result = ex4d("trajectory", *action)
        assert result.returncode == 2, result.stderr
        assert "frames[3].w2c rotation is not orthonormal" in result.stderr and str(bad) in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["cams.json"]


def test_lossy_export_is_refused_and_leaves_nothing(tmp_path, tiny_trajectory):
    source = tmp_path / "cams.json"
    tiny_trajectory.save(source)
    out = tmp_path / "camera_path.json"
    result = ex4d("trajectory", "convert", source, out)
    assert result.returncode == 2
    assert "cannot write" in result.stderr and "fx != fy" in result.stderr and "--allow-lossy" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["cams.json"]
    result = ex4d("trajectory", "convert", source, out, "--allow-lossy")
    assert result.returncode == 0, result.stderr
    assert out.exists()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (("validate", "{tmp}/missing.json"), 3, "trajectory file not found"),
        (("validate", "{tmp}/cams.txt"), 2, "cannot tell the trajectory format"),
        (("validate", "{tmp}/cams.json", "--fps", "30"), 2, "stores its own fps"),
        (("validate", "{tmp}/broken.npz"), 2, "not a readable .npz"),
    ],
)
def test_errors(tmp_path, centred_trajectory, args, code, message):
    centred_trajectory.save(tmp_path / "cams.json")
    (tmp_path / "cams.txt").write_text("1 2 3")
    (tmp_path / "broken.npz").write_bytes(b"junk")
    result = ex4d("trajectory", *(a.format(tmp=tmp_path) for a in args))
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("ex4d: error: ") and message in result.stderr
