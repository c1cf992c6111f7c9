"""A GPU group of 1 through the whole USP path, against the plain single-GPU generator.

Builds the tiny random Wan model folder (:mod:`ex4d_engine.generation.wan.tiny_models`), then runs
the same request twice on one GPU:
  single  ``load_generator`` in this process (what a server worker of group size 1 runs);
  gang    ``GangGenerator(GangSpec(size=1, generator="wan", tiny=True))``: torchrun starts one rank,
          which joins NCCL, loads the same folder, installs :mod:`ex4d_engine.generation.wan.dit_parallel`
          (a group of 1: plain forward) and returns the video over the socket.
Writes ``OUT/usp_group_of_one.json``: timings, the attention backend and the difference between
the two videos (uint8). Needs a CUDA GPU and diffsynth 2.1.12 (docs/multigpu.md).

    python bench/usp_group_of_one.py --out OUT [--frames 9] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402


def request(frames: int, steps: int):
    from ex4d_engine.generation.base import GenerationRequest

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    colour = np.stack([np.roll(base, i, axis=1) for i in range(frames)])
    mask = np.full((frames, 48, 64), 255, np.uint8)
    mask[1:, :, -8:] = 0  # the right edge is to be generated after frame 0
    colour[mask == 0] = 0
    return GenerationRequest(colour=colour, mask=mask, fps=12.0, seed=7, steps=steps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    import torch

    from ex4d_engine.generation.wan.generator import load_generator
    from ex4d_engine.generation.wan.parallel import GangGenerator, GangSpec
    from ex4d_engine.generation.wan.tiny_models import register_tiny_models, write_tiny_model_folder

    folder = tempfile.mkdtemp(prefix="wan-tiny-")
    write_tiny_model_folder(folder, seed=0)
    register_tiny_models(folder)
    req = request(args.frames, args.steps)
    result: dict = {"frames": args.frames, "steps": args.steps, "gpu": torch.cuda.get_device_name(0)}

    start = time.perf_counter()
    from ex4d_engine.generation.wan.generator import SamplerSettings
    from ex4d_engine.generation.wan.tiny_models import TINY_SAMPLER

    single = load_generator(folder, device="cuda", compile_dit=False, settings=SamplerSettings(**TINY_SAMPLER))
    result["single_load_s"] = time.perf_counter() - start
    single.generate(req)  # warm-up
    start = time.perf_counter()
    video_single = single.generate(req)
    result["single_generate_s"] = time.perf_counter() - start
    del single
    torch.cuda.empty_cache()

    start = time.perf_counter()
    gang = GangGenerator(GangSpec(size=1, generator="wan", models_dir=folder, tiny=True, compile_dit=False), start_timeout_s=300)
    result["gang_start_s"] = time.perf_counter() - start
    result["gang_info"] = gang.info
    try:
        gang.generate(req)  # warm-up
        progress = []
        start = time.perf_counter()
        video_gang = gang.generate(req, progress=lambda f, s: progress.append(f))
        result["gang_generate_s"] = time.perf_counter() - start
        result["gang_progress_events"] = len(progress)
    finally:
        gang.close()

    diff = np.abs(video_single.astype(np.int16) - video_gang.astype(np.int16))
    mse = float((diff.astype(np.float64) ** 2).mean())
    result.update(shape=list(video_gang.shape), max_abs_diff=int(diff.max()), mean_abs_diff=float(diff.mean()),
                  psnr_db=float("inf") if mse == 0 else float(10 * np.log10(255 ** 2 / mse)),
                  identical=bool(mse == 0), video_std=float(video_single.std()))
    np.savez_compressed(os.path.join(args.out, "usp_group_of_one_frames.npz"), single=video_single[:3],
                        gang=video_gang[:3])
    with open(os.path.join(args.out, "usp_group_of_one.json"), "w") as handle:
        json.dump(result, handle, indent=1)
    print(json.dumps(result, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
