"""One rank of the CPU (gloo) check of :mod:`ex4d_engine.generation.wan.dit_parallel`; run by
``tests/multigpu/test_dit_parallel.py`` under torchrun.

Every rank builds the same small random Wan DiT (4 heads, fp32) and the same inputs, computes the
single-process reference itself, then runs the parallel paths over the whole world and writes the
largest difference of each case to ``OUT/rank<r>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from ex4d_engine.generation.wan.adapter import ensure_diffsynth  # noqa: E402
from ex4d_engine.generation.wan.step_cache import MagCache  # noqa: E402

#: 4 heads (Ulysses 2 and 4), head dim 32 (RoPE parts 12/10/10), 3 blocks.
DIT = dict(has_image_input=True, patch_size=[1, 2, 2], in_dim=36, dim=128, ffn_dim=256, freq_dim=256, text_dim=32,
           out_dim=16, num_heads=4, num_layers=3, eps=1e-6)


class PlanCache(MagCache):
    """The engine's MagCache with a fixed skip plan (step 1 reuses step 0's residual)."""

    def __init__(self, plan=(False, True, False)):
        super().__init__(len(plan))
        self.plan = list(plan)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    ensure_diffsynth()
    from diffsynth.models.wan_video_dit import WanModel
    from diffsynth.pipelines.wan_video import model_fn_wan_video

    from ex4d_engine.generation.wan.dit_parallel import ParallelDiT, ParallelGroups

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    dit = WanModel(**DIT).eval().requires_grad_(False)
    with torch.no_grad():
        for p in dit.parameters():  # diffsynth zero-inits some layers: make every part matter
            p.normal_(0.0, 0.5 * p.shape[-1] ** -0.5 if p.ndim > 1 else 0.05)
    # EX-4D's ray latent enters through this hook: it must act on every rank's tokens alike
    ray = torch.randn(1, DIT["dim"], 3, 3, 5) * 0.1
    dit.patch_embedding.register_forward_hook(lambda module, inputs, out: out + ray)
    gen = torch.Generator().manual_seed(1)
    rand = lambda *shape: torch.randn(*shape, generator=gen)
    # 3 x 3 x 5 = 45 tokens: divides by neither 2 nor 4, so the padding path runs
    latents, y = rand(1, 16, 3, 6, 10), rand(1, 20, 3, 6, 10)
    contexts = [rand(1, 7, DIT["text_dim"]) for _ in range(2)]
    clips = [rand(1, 257, 1280) for _ in range(2)]
    timestep = torch.tensor([700.0])
    if args.compile:
        for block in dit.blocks:
            block.compile(dynamic=True)

    def call(fn, c, clip, t=timestep, cache=None):  # a merged call gets y twice, as diffsynth's CfgMerger makes it
        return fn(dit=dit, latents=latents, timestep=t, context=c, clip_feature=clip,
                  y=torch.cat([y] * c.shape[0]), tea_cache=cache)

    times = [torch.tensor([v]) for v in (900.0, 600.0, 300.0)]

    def cached_steps(fn, merged: bool):
        """Three steps with a step cache per branch; the outputs of both branches per step."""
        caches = [PlanCache(), PlanCache()]
        outs = []
        for t in times:
            if merged:
                outs.append(call(fn, torch.cat(contexts), torch.cat(clips), t, tuple(caches)))
            else:
                outs.append(torch.cat([call(fn, c, clip, t, cache) for c, clip, cache in zip(contexts, clips, caches)]))
        # CFG-parallel: each rank runs (and advances) only its own branch's cache
        assert sum(c.skipped for c in caches) == (1 if merged else 2), [c.skipped for c in caches]
        return torch.stack(outs)

    with torch.no_grad():
        single = [call(model_fn_wan_video, c, clip) for c, clip in zip(contexts, clips)]
        single_cached = cached_steps(model_fn_wan_video, merged=False)
        groups = ParallelGroups()
        parallel = ParallelDiT(dit, groups)
        fn = parallel.wrap(model_fn_wan_video)
        merged = call(fn, torch.cat(contexts), torch.cat(clips))  # CFG-parallel (even world) or Ulysses on batch 2
        one = call(fn, contexts[0], clips[0])  # no guidance: Ulysses over the whole group
        parallel_cached = cached_steps(fn, merged=True)  # CFG-parallel, each half with its branch's cache
        sequential_cached = cached_steps(fn, merged=False)  # Ulysses over the whole group, cache per branch
        parallel.remove()
        restored = call(model_fn_wan_video, contexts[1], clips[1])
    diff = lambda a, b: float((a - b).abs().max())
    result = {
        "rank": rank, "world": world, "cfg_split": groups.can_split_cfg, "scale": float(single[0].abs().max()),
        "merged_shape": list(merged.shape),
        "merged_positive": diff(merged[0:1], single[0]), "merged_negative": diff(merged[1:2], single[1]),
        "no_guidance": diff(one, single[0]), "restored": diff(restored, single[1]),
        "step_cache_merged": diff(parallel_cached, single_cached),
        "step_cache_sequential": diff(sequential_cached, single_cached),
        "step_cache_matters": diff(single_cached[1], call(model_fn_wan_video, torch.cat(contexts[:1]), clips[0], times[1])),
        "branches_differ": diff(single[0], single[1]),
    }
    with open(os.path.join(args.out, f"rank{rank}.json"), "w") as handle:
        json.dump(result, handle)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
