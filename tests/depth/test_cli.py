"""``ex4d depth`` and ``ex4d models`` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from ex4d_engine.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_depth_writes_a_file_recon_accepts(tiny_video, tiny_models_dir, tmp_path, capsys):
    video, _ = tiny_video
    out = tmp_path / "out" / "depth.npz"
    code = main(["depth", "--input_video", str(video), "--backend", "depth-anything", "--output", str(out),
                 "--models_dir", str(tiny_models_dir), "--device", "cpu"])
    assert code == 0
    with np.load(out) as data:
        depth = data["depth"]
        assert str(data["backend"]) == "depth-anything"
    # the tiny clip is 64x48: working resolution 64x64 (multiples of 64), 9 frames
    assert depth.shape == (9, 64, 64) and depth.dtype == np.float32 and (depth > 0).all()
    from ex4d_engine.depth.file import load_depth_file, validate_depth

    validate_depth(load_depth_file(out), 9, 64, 64)
    assert "flicker" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["depth.npz"]  # no temporary left


def test_depth_without_weights_fails_with_exit_4_and_writes_nothing(tiny_video, tmp_path, capsys):
    video, _ = tiny_video
    out = tmp_path / "depth.npz"
    code = main(["depth", "--input_video", str(video), "--output", str(out), "--models_dir", str(tmp_path / "none"),
                 "--device", "cpu"])
    assert code == 4
    assert "hf download depth-anything/Depth-Anything-V2-Small-hf" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.glob("*.npz")) == []


def test_depth_output_must_be_npz(tiny_video, tmp_path, capsys):
    video, _ = tiny_video
    assert main(["depth", "--input_video", str(video), "--output", str(tmp_path / "d.exr")]) == 2
    assert ".npz" in capsys.readouterr().err


def test_models_lists_every_backend_found_or_missing(tiny_models_dir):
    result = subprocess.run([sys.executable, "-m", "ex4d_engine.cli", "models", "--models_dir", str(tiny_models_dir)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for name in ("file", "depth-anything", "depth-pro", "depthcrafter"):
        assert f"\n{name} " in "\n" + text
    lines = {line.split()[0]: line for line in text.splitlines() if line and not line[0].isspace() and " " in line}
    assert "READY" in lines["depth-anything"] and "READY" in lines["depth-pro"]
    assert "MISSING" in lines["depthcrafter"]
    assert "Apache-2.0" in text and "apple-amlr" in text and "NON-COMMERCIAL" in text
    assert "git clone https://github.com/Tencent/DepthCrafter" in text


def test_models_list_alias_shows_download_commands(tmp_path, capsys):
    assert main(["models", "list", "--models-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert f"hf download depth-anything/Depth-Anything-V2-Small-hf --local-dir {tmp_path}/Depth-Anything-V2-Small-hf" in text
    assert "MISSING" in text.splitlines()[3]
