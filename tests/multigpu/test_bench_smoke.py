"""bench/multigpu_scaling.py --dry-run: the driver, torchrun launch and result files work on the CPU
(tiny DiT, group of 1, no USP); the real run needs a multi-GPU machine (docs/multigpu.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_scaling_bench_dry_run_writes_results(tmp_path):
    proc = subprocess.run([sys.executable, "bench/multigpu_scaling.py", "--dry-run", "--steps", "1", "--settings",
                           "ex4d", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "scaling.json").read_text())["results"]
    assert [(r["setting"], r["size"]) for r in results] == [("ex4d", 1)]
    assert results[0]["s_per_step"] > 0 and results[0]["max_abs_diff"] == 0.0
    assert "| ex4d | 1 |" in proc.stdout


def test_scaling_bench_refuses_sizes_that_do_not_split_the_heads(tmp_path):
    proc = subprocess.run([sys.executable, "bench/multigpu_scaling.py", "--gpus", "0,1,2", "--sizes", "1,3",
                           "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "cannot split Wan's 40 attention heads" in proc.stderr
