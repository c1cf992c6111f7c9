"""bench/multigpu_scaling.py --dry-run: the driver, the torchrun gang, the 1- and 2-rank paths and the result
files work on the CPU (gloo, small 4-head DiT, eager); the real run needs a multi-GPU machine (docs/multigpu.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_scaling_bench_dry_run_writes_results(tmp_path):
    proc = subprocess.run([sys.executable, "bench/multigpu_scaling.py", "--dry-run", "--sizes", "1,2", "--steps", "1",
                           "--settings", "ex4d", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "scaling.json").read_text())["results"]
    runs = {(r["gpus"], r["kind"], r["path"]): r for r in results}
    assert {(1, "cfg", "single"), (1, "no_cfg", "single"), (2, "cfg", "CFG-parallel 2 x Ulysses 1"),
            (2, "no_cfg", "Ulysses 2")} <= set(runs)
    for (gpus, _, _), r in runs.items():
        assert r["s_per_step"] > 0 and "error" not in r
        if gpus == 2:  # fp32 on the CPU: the parallel step gives the single-process numbers
            assert r["vs_single"]["max_abs"] <= 1e-5 * r["vs_single"]["ref_abs_max"]
    assert "| ex4d | 30 | cfg | 2 | CFG-parallel 2 x Ulysses 1 |" in proc.stdout


def test_scaling_bench_refuses_sizes_that_do_not_split_the_heads(tmp_path):
    proc = subprocess.run([sys.executable, "bench/multigpu_scaling.py", "--gpus", "0,1,2", "--sizes", "1,3",
                           "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "cannot split Wan's 40 attention heads" in proc.stderr
