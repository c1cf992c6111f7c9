"""CFG-parallel x Ulysses (:mod:`ex4d_engine.generation.wan.dit_parallel`) on the CPU: real torchrun
gangs of 2 and 4 ranks over gloo run a small random Wan DiT through diffsynth's ``model_fn_wan_video``
and must give what one process gives (fp32, so exactly up to reduction order)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ex4d_engine.errors import InputError
from ex4d_engine.generation.wan.dit_parallel import Layout, plan_layout

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("dit_parallel_worker.py")


def _run(tmp_path: Path, ranks: int, *extra: str, timeout: int = 600) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
                           str(WORKER), "--out", str(tmp_path), *extra], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(ranks)]


def _check(results: list[dict], ranks: int) -> None:
    for r in results:
        assert r["world"] == ranks and r["cfg_split"]
        assert r["merged_shape"] == [2, 16, 3, 6, 10]
        tol = 1e-5 * r["scale"]
        # the test can fail: the two guidance branches differ by far more than the tolerance
        assert r["branches_differ"] > 100 * tol
        assert r["merged_positive"] <= tol and r["merged_negative"] <= tol  # CFG halves (x Ulysses 2 at 4 ranks)
        assert r["no_guidance"] <= tol  # Ulysses over the whole group, 45 tokens padded
        assert r["restored"] == 0.0  # remove() gives back the plain DiT
        # a step cache (MagCache's interface, fixed plan) per branch: same steps skipped, same outputs
        assert r["step_cache_matters"] > 100 * tol  # the skipped step really reused an old residual
        assert r["step_cache_merged"] <= tol and r["step_cache_sequential"] <= tol


@pytest.mark.parametrize("ranks", [2, 4])
def test_parallel_dit_equals_one_process(tmp_path, ranks):
    _check(_run(tmp_path, ranks), ranks)


@pytest.mark.skipif(os.environ.get("EX4D_COMPILE_TESTS") != "1",
                    reason="inductor on CPU takes ~7 min here; set EX4D_COMPILE_TESTS=1 (the GPU bench checks it too)")
def test_compiled_parallel_dit_equals_one_process(tmp_path):
    _check(_run(tmp_path, 2, "--compile", timeout=1500), 2)


@pytest.mark.parametrize("size, guidance, layout", [
    (1, True, Layout(1, 1)), (2, True, Layout(2, 1)), (2, False, Layout(1, 2)), (4, True, Layout(2, 2)),
    (4, False, Layout(1, 4)), (8, True, Layout(2, 4)), (8, False, Layout(1, 8)), (5, True, Layout(1, 5)),
])
def test_plan_layout_splits_guidance_over_halves_of_even_groups(size, guidance, layout):
    assert plan_layout(size, guidance) == layout
    assert layout.size == size


@pytest.mark.parametrize("size, guidance", [(3, True), (16, False), (6, True)])
def test_plan_layout_refuses_ulysses_degrees_that_do_not_divide_the_heads(size, guidance):
    with pytest.raises(InputError, match=f"a GPU group of {size} cannot split Wan's 40 attention heads"):
        plan_layout(size, guidance)


def test_cfg_merger_keeps_each_branch_step_cache():
    """diffsynth's CfgMerger clears the per-branch inputs, step caches included; ours keeps them as a pair."""
    import torch

    from ex4d_engine.generation.wan.dit_parallel import branch_cache_cfg_merger

    posi_cache, nega_cache = object(), object()
    shared = {"cfg_merge": True, "y": torch.ones(1, 2)}
    posi = {"context": torch.zeros(1, 3), "tea_cache": posi_cache}
    nega = {"context": torch.ones(1, 3), "tea_cache": nega_cache}
    shared, posi, nega = branch_cache_cfg_merger().process(None, shared, posi, nega)
    assert shared["tea_cache"] == (posi_cache, nega_cache)
    assert shared["context"].tolist() == [[0, 0, 0], [1, 1, 1]] and shared["y"].shape == (2, 2)
    assert posi == {} and nega == {}
    plain = {"cfg_merge": False}
    assert branch_cache_cfg_merger().process(None, plain, {"tea_cache": posi_cache}, {})[0] == {"cfg_merge": False}
