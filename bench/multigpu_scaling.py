"""Multi-GPU scaling of the Wan2.1-I2V-14B DiT under diffsynth's unified sequence parallel (USP).

For each setting and group size N, one torchrun gang of N processes (one per GPU, NVLink multicast
off) builds the full-size DiT with random bf16 weights (same seed on every rank, so the same
weights), joins USP exactly as a server GPU group does (diffsynth ``initialize_usp`` +
``ex4d_engine.generation.wan.parallel.enable_usp``) and times denoising steps through diffsynth's
``model_fn_wan_video`` (CFG: two DiT forwards a step). The DiT is >95 % of a shot's time and the
only part USP splits; text encoder, CLIP and VAE run once per shot on rank 0's work alike.

Equivalence: the group of 1 runs the same step first without USP (the single-GPU path), then with;
every group's step output is compared with that single-GPU output (bf16 tolerance).

Settings: ``ex4d`` = 49 frames at 512x512 (13,312 tokens), ``480p81`` = 81 frames at 832x480
(32,760 tokens; Wan's own 480P clip length).

    python bench/multigpu_scaling.py --gpus 0,1,2,3,4,5,6,7 --sizes 1,2,4,8 --settings ex4d,480p81 --out OUT
    python bench/multigpu_scaling.py --dry-run --out OUT   # CPU: tiny DiT, group of 1, no USP (checks the script)

Writes ``OUT/scaling.json`` (per setting and size: s/step, speed-up, efficiency, peak GiB, max
difference to the single-GPU output) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ex4d_engine.generation.gpu_groups import MULTICAST_OFF_ENV, check_group_size  # noqa: E402

#: Wan2.1-I2V-14B DiT (diffsynth WanModel kwargs).
I2V_14B = dict(has_image_input=True, patch_size=[1, 2, 2], in_dim=36, dim=5120, ffn_dim=13824, freq_dim=256,
               text_dim=4096, out_dim=16, num_heads=40, num_layers=40, eps=1e-6)
SETTINGS = {"ex4d": (49, 512, 512), "480p81": (81, 480, 832)}  # frames, height, width
TEXT_TOKENS, CLIP_TOKENS = 512, 257
GIB = 1024 ** 3


# ---------------------------------------------------------------------- one rank
def build_random(cls, config: dict, device: str, dtype):
    """The model straight into uninitialised memory of ``dtype`` on ``device``, then random weights
    (fan-in scaled normal, unit norms): 33 GB of bf16 for the 14B DiT, never an fp32 copy."""
    import torch
    from diffsynth.core.vram.initialization import skip_model_initialization

    with skip_model_initialization():
        model = cls(**config)
    model = model.to(dtype=dtype).to_empty(device=device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, p[0].numel() ** -0.5)
            elif "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
    return model.eval().requires_grad_(False)


def rank_main(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    import torch.distributed as dist

    from ex4d_engine.generation.wan.adapter import ensure_diffsynth

    os.environ.update(MULTICAST_OFF_ENV)
    ensure_diffsynth()
    from diffsynth.models.wan_video_dit import WanModel
    from diffsynth.pipelines.wan_video import WanVideoPipeline, model_fn_wan_video

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    tiny = args.dry_run
    if tiny:
        from ex4d_engine.generation.wan.tiny_models import TINY_DIT

        config, device, dtype = dict(TINY_DIT), "cpu", torch.float32
        frames, height, width = 5, 64, 64
    else:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        config, device, dtype = I2V_14B, f"cuda:{local_rank}", torch.bfloat16
        frames, height, width = SETTINGS[args.setting]

    torch.manual_seed(0)  # identical random weights and inputs on every rank
    start = time.perf_counter()
    dit = build_random(WanModel, config, device, dtype)
    build_s = time.perf_counter() - start
    t, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    generator = torch.Generator(device).manual_seed(1)
    rand = lambda *shape: torch.randn(*shape, generator=generator, device=device, dtype=torch.float32).to(dtype)
    latents, y = rand(1, 16, t, h, w), rand(1, 20, t, h, w)
    contexts = [rand(1, TEXT_TOKENS, config["text_dim"]) for _ in range(2)]  # positive, negative prompt
    clip = rand(1, CLIP_TOKENS, 1280)
    timestep = torch.tensor([900.0], device=device, dtype=dtype)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def step(usp: bool):
        """One CFG denoising step: the two DiT forwards the pipeline makes."""
        outs = [model_fn_wan_video(dit=dit, latents=latents, timestep=timestep, context=c, clip_feature=clip, y=y,
                                   use_unified_sequence_parallel=usp) for c in contexts]
        return outs[1] + 5.0 * (outs[0] - outs[1])

    def timed(usp: bool) -> tuple[list[float], "torch.Tensor"]:
        with torch.no_grad():
            out = step(usp)  # warm-up (kernels, NCCL communicators)
            times = []
            for _ in range(args.steps):
                sync()
                if dist.is_initialized():
                    dist.barrier()
                begin = time.perf_counter()
                out = step(usp)
                sync()
                times.append(time.perf_counter() - begin)
        return times, out

    result = {"setting": args.setting, "size": world, "tokens": t * (h // 2) * (w // 2), "build_s": build_s}
    if world == 1:  # the single-GPU path first: the reference every group is compared with
        times, reference = timed(False)
        result["single_s_per_step"] = float(np.median(times))
        if device.startswith("cuda"):
            result["single_peak_gib"] = torch.cuda.max_memory_allocated() / GIB
        if rank == 0:
            np.save(os.path.join(args.out, f"reference_{args.setting}.npy"), reference.float().cpu().numpy())
    if not tiny:
        try:
            from diffsynth.utils.xfuser import get_sequence_parallel_world_size, initialize_usp

            from ex4d_engine.generation.wan.parallel import enable_usp

            initialize_usp("cuda")  # NCCL group + xfuser Ulysses degree = world size; set_device(rank)
            pipe = WanVideoPipeline(device=device, torch_dtype=dtype)
            pipe.dit = dit
            result["attention"] = enable_usp(pipe)
            assert get_sequence_parallel_world_size() == world
            torch.cuda.reset_peak_memory_stats()
            times, out = timed(True)
            result["s_per_step"] = float(np.median(times))
            result["peak_gib"] = torch.cuda.max_memory_allocated() / GIB
        except Exception as exc:  # noqa: BLE001 - a group of 1 still reports the single-GPU number
            if world > 1:
                raise
            import traceback

            traceback.print_exc()
            result["usp_error"] = f"{type(exc).__name__}: {exc}"[:600]
            result["s_per_step"], out = result["single_s_per_step"], reference
    else:
        result["s_per_step"] = result["single_s_per_step"]
        out = reference
    if rank == 0:
        ref = np.load(os.path.join(args.out, f"reference_{args.setting}.npy"))
        got = out.float().cpu().numpy()
        result["max_abs_diff"] = float(np.abs(got - ref).max())
        result["ref_abs_max"] = float(np.abs(ref).max())
        result["rel_l2"] = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-12))
        with open(os.path.join(args.out, f"run_{args.setting}_{world}.json"), "w") as handle:
            json.dump(result, handle)
        print(json.dumps(result), flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


# ---------------------------------------------------------------------- driver
def run_size(args, setting: str, gpus: list[str], size: int) -> dict:
    env = dict(os.environ, **MULTICAST_OFF_ENV, CUDA_VISIBLE_DEVICES=",".join(gpus[:size]), PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={size}",
               "--max-restarts=0", os.path.abspath(__file__), "--rank", "--setting", setting, "--steps",
               str(args.steps), "--out", args.out] + (["--dry-run"] if args.dry_run else [])
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=REPO, timeout=args.timeout_s)
    if proc.returncode != 0:
        return {"setting": setting, "size": size, "error": f"exit code {proc.returncode}"}
    with open(os.path.join(args.out, f"run_{setting}_{size}.json")) as handle:
        result = json.load(handle)
    result["wall_s"] = time.perf_counter() - start
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", default="0", help="CUDA indices to use, e.g. 0,1,2,3,4,5,6,7")
    parser.add_argument("--sizes", default="1", help="group sizes, e.g. 1,2,4,8 (1 must come first)")
    parser.add_argument("--settings", default="ex4d,480p81")
    parser.add_argument("--steps", type=int, default=3, help="timed CFG steps per run (after one warm-up)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--timeout-s", type=int, default=1800)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny DiT, group of 1, no USP")
    parser.add_argument("--rank", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.rank:
        return rank_main(args)

    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
    sizes = [int(s) for s in args.sizes.split(",")]
    settings = [s.strip() for s in args.settings.split(",")]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown or sizes[0] != 1 or any(s > len(gpus) for s in sizes) or (args.dry_run and sizes != [1]):
        parser.error(f"settings must be among {list(SETTINGS)}; sizes start with 1 (the reference), are at most "
                     f"the {len(gpus)} GPUs given, and are only 1 with --dry-run")
    for size in sizes:
        check_group_size(size)
    results = [run_size(args, setting, gpus, size) for setting in settings for size in sizes]
    for r in results:
        one = next((x for x in results if x["setting"] == r["setting"] and x["size"] == 1 and "error" not in x), None)
        if one and "error" not in r:
            r["speedup"] = one["single_s_per_step"] / r["s_per_step"]
            r["efficiency"] = r["speedup"] / r["size"]
    with open(os.path.join(args.out, "scaling.json"), "w") as handle:
        json.dump({"gpus": gpus, "steps": args.steps, "dry_run": args.dry_run, "results": results}, handle, indent=1)
    print("| setting | GPUs | tokens | s/step (CFG) | speed-up vs 1 GPU | efficiency | peak GiB/GPU | "
          "max abs diff vs 1 GPU (ref max) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['setting']} | {r['size']} | | failed: {r['error']} | | | | |")
            continue
        print(f"| {r['setting']} | {r['size']} | {r['tokens']} | {r['s_per_step']:.3f} | {r.get('speedup', 0):.2f}x | "
              f"{r.get('efficiency', 0):.0%} | {r.get('peak_gib', 0):.1f} | {r['max_abs_diff']:.3g} "
              f"({r['ref_abs_max']:.3g}) |" + (f" USP failed: {r['usp_error']}" if "usp_error" in r else ""))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
