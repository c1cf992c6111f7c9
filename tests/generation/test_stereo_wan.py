"""Stereo shots through the real Wan code path (tiny random weights, CPU): the protocol is all it needs."""

from __future__ import annotations

import numpy as np


def test_joint_stereo_runs_the_wan_generator_for_both_eyes(tiny_generator):
    from ex4d_engine.intrinsics import Intrinsics
    from ex4d_engine.pipeline import ReconOptions, Scene, source_trajectory
    from ex4d_engine.stereo import generate_stereo, scene_stereo_trajectories
    from ex4d_engine.stereo_rig import StereoRig

    yy, xx = np.mgrid[0:48, 0:64]
    frame = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1).clip(0, 255).astype(np.uint8)
    depth = np.full((48, 64), 5.0, np.float32)
    depth[12:36, 20:44] = 2.0
    K = np.array([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])
    scene = Scene(np.stack([frame] * 5), np.stack([depth] * 5), Intrinsics(K, "test"), 12.0, "file", "units",
                  ReconOptions(num_frames=5, renderer="opengl", device="cpu"))
    eyes = scene_stereo_trajectories(scene, source_trajectory(scene), StereoRig(0.2, 3.0, "TOE", "CENTER"))
    stages = []
    shot = generate_stereo(scene, eyes, tiny_generator, mode="joint", seed=1,
                           progress=lambda fraction, stage: stages.append((fraction, stage)))
    assert shot.left.shape == shot.right.shape == (5, 48, 64, 3)
    assert shot.reused_fraction > 0.5
    assert any(stage.startswith("left eye") for _, stage in stages)
    assert any(stage.startswith("right eye") for _, stage in stages)
    assert stages[-1] == (1.0, "stereo shot ready")
    # the second eye's conditioning marks only what the first eye could not give it as missing
    second = shot.conditioning["right"]
    assert (second.mask == 0).mean() < 0.5 * (shot.conditioning["left"].mask == 0).mean() + 0.05


def test_the_gpu_check_of_wan_stereo_runs_dry_on_the_cpu(tmp_path):
    """bench/stereo_wan_gpu.py (the lead's GPU code-path check) end to end with --dry-run: one JSON line."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "stereo_wan.json"
    proc = subprocess.run([sys.executable, "bench/stereo_wan_gpu.py", "--dry-run", "--out", str(out)], cwd=repo,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == json.loads(out.read_text())
    assert result["bench"] == "stereo_wan_gpu" and result["device"].startswith("CPU")
    for mode in ("independent", "joint"):
        row = result[mode]
        assert row["shape"] == [5, 256, 384, 3] and row["seconds"] > 0
        assert 0.3 < row["covisible_fraction"] < 1 and 5 < row["psnr_db"] < 100
    assert result["joint"]["reused_fraction"] > 0.3 and result["independent"]["reused_fraction"] == 0
    assert result["gain_all_db"] == round(result["joint"]["psnr_db"] - result["independent"]["psnr_db"], 3)


def test_the_gpu_check_says_when_there_is_no_cuda():
    import subprocess
    import sys
    from pathlib import Path

    import torch

    if torch.cuda.is_available():
        return
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "bench/stereo_wan_gpu.py"], cwd=repo, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "--dry-run" in proc.stderr
