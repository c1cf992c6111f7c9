"""One command: seed-style and every speed preset, in one run on one GPU, with the ratio table.

Random full-size weights (bench/generation_gpu.py builds them on the GPU from one seed, so every
process gets the same weights), EX-4D's shot (49 frames, 512x512), same input and seed everywhere:

  seed      seed-style: peft LoRA unfused, eager, every model resident (25 steps, CFG 5)
  exact     ours, bf16, fused LoRA, compiled blocks           -> also keeps its latents as the reference
  original  exact's weights with EX-4D's DiffSynth fp32 paths (eager)
  default   FP8 (torchao) linears, compiled blocks, SDPA attention
  fast      default + MagCache (same process, same compiled blocks)
  turbo     + random rank-64 distill LoRA in the released key layout, 4 steps, CFG off, FP8
  balanced, low   streamed profiles with pinned memory + prefetch (3 steps each; s/step and peak)
  attention one attention call: SDPA (cuDNN) vs SageAttention when its wheel is installed

Deviation of each preset from exact: relative L2 of the final latents, PSNR of the decoded video,
and for default the relative L2 of the latents after every step. Random weights say nothing about
picture quality; the numbers bound numerical drift only.

    python bench/speed_presets.py --out OUT [--budget 500] [--configs seed,exact,fp8,turbo,profiles]
    python bench/speed_presets.py --dry-run --out /tmp/x   # tiny models on CPU: the code paths only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import generation_gpu as gg  # noqa: E402

GROUPS = ("seed", "exact", "fp8", "turbo", "profiles")
RESULTS = "speed_results.jsonl"
REFERENCE = os.path.join(tempfile.gettempdir(), "ex4d_speed_reference.pt")
ATTENTION = {"name": "sdpa"}  # --attention: the kernel every shot's DiT uses


def emit(out_dir: str, record: dict) -> None:
    record["device"] = torch.cuda.get_device_name() if gg.DEVICE == "cuda" else "cpu (dry run)"
    with open(os.path.join(out_dir, RESULTS), "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"[{record['config']}] {json.dumps(record)}", flush=True)


def reset_peak() -> None:
    if gg.DEVICE == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def build_pipeline(name: str, *, streamed: bool = False, vram_limit=None, unfused: bool = False,
                   fp8: bool = False, distill_path=None, compile_blocks: bool = True):
    """Random weights -> WanPipeline the way load_generator builds it, plus timings of each stage."""
    from ex4d_engine.generation.wan.adapter import WanPipeline, ensure_diffsynth
    from ex4d_engine.generation.wan.attention import select_attention
    from ex4d_engine.generation.wan.camera_encoder import CamVidEncoder
    from ex4d_engine.generation.wan.lora import fuse_lora, inject_unfused_lora
    from ex4d_engine.generation.wan.tiny_models import _save_tokenizer, tiny_checkpoint

    ensure_diffsynth()
    info = {}
    t0 = time.perf_counter()
    dit, t5, vae, clip = gg.build_models()
    ckpt = tiny_checkpoint(dit, hidden=gg.ENCODER_HIDDEN)
    info["build_s"] = time.perf_counter() - t0
    tokenizer = tempfile.mkdtemp()
    _save_tokenizer(tokenizer)
    pipe = WanPipeline.assemble(dit=dit, text_encoder=t5, vae=vae, image_encoder=clip, tokenizer_dir=tokenizer,
                                device=gg.DEVICE, dtype=torch.bfloat16, dit_streamed=streamed,
                                vram_limit_gib=vram_limit, t5_streamed=name != "seed")
    lora = {k: v for k, v in ckpt.items() if ".lora_" in k}
    t0 = time.perf_counter()
    if unfused:
        inject_unfused_lora(pipe.dit, lora)
    else:
        fuse_lora(pipe.dit, lora, compute_device=gg.DEVICE)
    if distill_path is not None:
        from ex4d_engine.generation.wan.distill_lora import fuse_distill_lora

        info["distill"] = fuse_distill_lora(pipe.dit, distill_path, compute_device=gg.DEVICE)
    gg.sync()
    info["lora_s"] = time.perf_counter() - t0
    if fp8:
        from ex4d_engine.generation.wan.generator import prepare_fp8
        from ex4d_engine.generation.wan.speed import get_preset

        t0 = time.perf_counter()
        info["fp8"] = prepare_fp8(pipe.dit, get_preset("default"), gg.DEVICE, not streamed, emulation=gg.DRY)
        gg.sync()
        info["fp8_s"] = time.perf_counter() - t0
        from ex4d_engine.generation.wan import fp8 as fp8_module

        info["fp8_granularity"] = fp8_module.GRANULARITY
    info["attention"] = select_attention(ATTENTION["name"])
    encoder = CamVidEncoder(16, gg.ENCODER_HIDDEN, dit.dim)
    encoder.load_state_dict({k: v for k, v in ckpt.items() if k.startswith("latent_")})
    pipeline = WanPipeline(pipe, encoder.to(gg.DEVICE, torch.bfloat16).eval())
    if compile_blocks and gg.DEVICE == "cuda" and not streamed and not unfused:
        pipeline.compile(dynamic=info.get("fp8") != "torchao")
    if streamed:
        info["prefetch"] = pipeline.enable_prefetch()
    print(f"  [{name}] built: {info}", flush=True)  # where the time went, even if a later stage times out
    return pipeline, info


def record_steps(pipeline) -> list:
    """Keep the latents after every scheduler step (the per-step deviation)."""
    scheduler = pipeline.pipe.scheduler
    kept = []

    def step(*args, **kwargs):
        out = type(scheduler).step(scheduler, *args, **kwargs)
        kept.append(out.detach().float().cpu())
        return out

    scheduler.step = step
    return kept


def run_shot(generator, request, label: str, flops_per_step: float = 0.0, rate: float = 0.0) -> tuple[dict, np.ndarray]:
    reset_peak()
    start = time.perf_counter()
    video = generator.generate(request)
    gg.sync()
    wall = time.perf_counter() - start
    t = generator.pipeline.times
    per_step = sorted(t.per_step[1:] or t.per_step)
    median = float(np.median(per_step))
    shot = dict(label=label, wall_s=wall, ray_encode_s=t.ray_encode, prepare_s=t.prepare, denoise_s=t.denoise,
                steps=t.steps, step_median_s=median, step_first_s=t.per_step[0], decode_s=t.decode,
                dit_vae_s=t.ray_encode + t.denoise + t.decode, finite=bool(np.isfinite(video).all()),
                run=dict(generator.last_run), **gg.memory_snapshot())
    if flops_per_step and rate and rate == rate:
        shot["dit_mfu_bf16"] = flops_per_step / median / (rate * 1e12)
    print(f"  {label}: wall {wall:.2f} s, DiT+VAE {shot['dit_vae_s']:.2f} s, {median:.3f} s/step", flush=True)
    return shot, video


def deviation(latents: torch.Tensor, video: np.ndarray, reference: dict) -> dict:
    ref_lat, ref_video = reference["latents"], reference["video"]
    rel = float((latents - ref_lat).norm() / ref_lat.norm())
    mse = float(np.mean((video.astype(np.float64) - ref_video.astype(np.float64)) ** 2))
    return dict(latents_rel_l2=rel, video_psnr_db=float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse),
                video_mean_abs_diff=float(np.abs(video.astype(np.int16) - ref_video.astype(np.int16)).mean()))


def make_generator(pipeline, speed: str, steps: int, streamed: bool = False, fp8: str = "off"):
    from ex4d_engine.generation.wan.generator import SamplerSettings, WanGenerator

    settings = SamplerSettings(steps=steps, area=gg.EX4D_AREA, tiled_vae=streamed)
    generator = WanGenerator(pipeline, settings, profile="full", speed=speed, fp8=fp8, streamed=streamed)
    generator.keep_latents = True
    return generator


def request_for(steps=None):
    from ex4d_engine.generation.base import GenerationRequest

    colour, mask = gg.test_input(gg.FRAMES, gg.SIDE)
    return GenerationRequest(colour=colour, mask=mask, fps=30.0, seed=0, steps=steps)


def flops() -> float:
    from ex4d_engine.generation.wan.sizes import pick_size

    width, height = pick_size(gg.SIDE, gg.SIDE, gg.EX4D_AREA)
    return 2 * gg.dit_flops(min(gg.FRAMES, 49), height, width)


def group_seed(args) -> None:
    rate = gg.matmul_tflops()
    pipeline, info = build_pipeline("seed", unfused=True)
    generator = make_generator(pipeline, "exact", args.steps)
    shot, video = run_shot(generator, request_for(), "seed", flops(), rate)
    emit(args.out, dict(config="seed", matmul_tflops=rate, **info, shot=shot))
    torch.save({"latents": pipeline.last_latents, "video": video}, REFERENCE + ".seed")


def group_exact(args) -> None:
    rate = gg.matmul_tflops()
    pipeline, info = build_pipeline("exact")
    generator = make_generator(pipeline, "exact", args.steps)
    t0 = time.perf_counter()
    generator.generate(request_for(steps=2))  # compile + T5 once (a server's first shot)
    info["warmup_2_steps_s"] = time.perf_counter() - t0
    kept = record_steps(pipeline)
    shot, video = run_shot(generator, request_for(), "exact", flops(), rate)
    reference = {"latents": pipeline.last_latents, "video": video, "steps": [k.clone() for k in kept]}
    torch.save(reference, REFERENCE)
    emit(args.out, dict(config="exact", matmul_tflops=rate, **info, shot=shot))
    if os.path.exists(REFERENCE + ".seed"):
        seed = torch.load(REFERENCE + ".seed", weights_only=False)
        emit(args.out, dict(config="seed_vs_exact", deviation=deviation(seed["latents"], seed["video"], reference)))
    kept.clear()
    if args.skip_original:
        return
    generator_original = make_generator(pipeline, "original", args.steps)
    shot, video = run_shot(generator_original, request_for(), "original", flops(), rate)
    emit(args.out, dict(config="original", shot=shot,
                        deviation=deviation(pipeline.last_latents, video, reference)))


def group_fp8(args) -> None:
    rate = gg.matmul_tflops()
    pipeline, info = build_pipeline("default", fp8=True)
    fp8 = info["fp8"]
    reference = torch.load(REFERENCE, weights_only=False) if os.path.exists(REFERENCE) else None
    generator = make_generator(pipeline, "default", args.steps, fp8=fp8)
    t0 = time.perf_counter()
    generator.generate(request_for(steps=2))
    info["warmup_2_steps_s"] = time.perf_counter() - t0
    kept = record_steps(pipeline)
    shot, video = run_shot(generator, request_for(), "default", flops(), rate)
    record = dict(config="default", matmul_tflops=rate, **info, shot=shot)
    if reference is not None:
        record["deviation"] = deviation(pipeline.last_latents, video, reference)
        record["deviation"]["per_step_latents_rel_l2"] = [
            float((a - b).norm() / b.norm()) for a, b in zip(kept, reference["steps"])]
    emit(args.out, record)
    generator_fast = make_generator(pipeline, "fast", args.steps, fp8=fp8)
    shot, video = run_shot(generator_fast, request_for(), "fast", flops(), rate)
    record = dict(config="fast", shot=shot)
    if reference is not None:
        record["deviation"] = deviation(pipeline.last_latents, video, reference)
    emit(args.out, record)


def group_turbo(args) -> None:
    from safetensors.torch import save_file

    from ex4d_engine.generation.wan.adapter import ensure_diffsynth
    from ex4d_engine.generation.wan.distill_lora import tiny_distill_lora

    ensure_diffsynth()
    rate = gg.matmul_tflops()
    # a random rank-64 LoRA for the full-size DiT in the released layout, written and read back
    from diffsynth.core.vram.initialization import skip_model_initialization
    from diffsynth.models.wan_video_dit import WanModel

    with skip_model_initialization(), torch.device("meta"):
        shape_model = WanModel(**gg.I2V_14B)
    path = os.path.join(tempfile.mkdtemp(), "wan2.1_i2v_lora_rank64_lightx2v_4step.safetensors")
    t0 = time.perf_counter()
    save_file(_materialise(tiny_distill_lora(shape_model, rank=64 if not gg.DRY else 8, scale=0.001)), path)
    write_s = time.perf_counter() - t0
    pipeline, info = build_pipeline("turbo", fp8=True, distill_path=path)
    info["write_distill_lora_s"] = write_s
    generator = make_generator(pipeline, "turbo", 4, fp8=info["fp8"])
    t0 = time.perf_counter()
    generator.generate(request_for())
    info["first_shot_s"] = time.perf_counter() - t0
    shot, video = run_shot(generator, request_for(), "turbo", flops() / 2, rate)
    record = dict(config="turbo", matmul_tflops=rate, **info, shot=shot)
    if os.path.exists(REFERENCE):
        record["deviation"] = deviation(pipeline.last_latents, video, torch.load(REFERENCE, weights_only=False))
    emit(args.out, record)


def _materialise(state: dict) -> dict:
    return {k: v.contiguous() for k, v in state.items()}


def group_profiles(args) -> None:
    from ex4d_engine.generation.wan.profiles import get_profile

    first = get_profile("balanced")
    pipeline, info = build_pipeline("balanced", streamed=True, vram_limit=first.vram_limit_gib)
    for name in ("balanced", "low"):
        limit = get_profile(name).vram_limit_gib
        for module in pipeline.dit.modules():
            if hasattr(module, "vram_limit") and hasattr(module, "offload"):
                module.vram_limit = limit
                module.offload()
        generator = make_generator(pipeline, "exact", args.short_steps, streamed=True)
        shot, _ = run_shot(generator, request_for(steps=args.short_steps), name)
        emit(args.out, dict(config=name, vram_limit_gib=limit, **info,
                            prefetched_layers=getattr(getattr(pipeline, "prefetcher", None), "copies", 0), shot=shot))


def attention_probe(args) -> None:
    """One self-attention call at the EX-4D shape: SDPA vs SageAttention (if installed)."""
    if gg.DEVICE != "cuda":
        return
    q, k, v = (torch.randn(1, 40, 13312, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    out = {"config": "attention"}
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    candidates = {"sdpa": lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)}
    try:
        from sageattention import sageattn

        candidates["sage"] = lambda: sageattn(q, k, v)
    except ImportError as exc:
        out["sage"] = f"not installed ({exc})"
    try:  # FlashAttention-4 (CuTe DSL): (batch, tokens, heads, dim) layout, may return (out, lse)
        from flash_attn.cute import flash_attn_func

        qt, kt, vt = (t.transpose(1, 2).contiguous() for t in (q, k, v))

        def flash4():
            y = flash_attn_func(qt, kt, vt)
            return (y[0] if isinstance(y, tuple) else y).transpose(1, 2)

        candidates["flash4"] = flash4
    except ImportError as exc:
        out["flash4"] = f"not installed ({exc})"
    for name, fn in candidates.items():
        try:
            for _ in range(3):
                fn()
            gg.sync()
            t0 = time.perf_counter()
            for _ in range(10):
                y = fn()
            gg.sync()
            out[f"{name}_ms"] = (time.perf_counter() - t0) * 100
            out[f"{name}_rel_err"] = float((y.float() - ref.float()).norm() / ref.float().norm())
        except Exception as exc:  # a kernel that does not run on this GPU is a result, not a crash
            out[name] = f"failed: {type(exc).__name__}: {exc}"[:300]
    emit(args.out, out)


def summarise(out_dir: str) -> dict:
    rows = {}
    path = os.path.join(out_dir, RESULTS)
    if os.path.exists(path):
        for line in open(path):
            record = json.loads(line)
            rows[record["config"]] = record
    seed = rows.get("seed", {}).get("shot", {}).get("dit_vae_s")
    print("\n| preset | steps | DiT+VAE s | whole shot s | s/step | x vs seed (DiT+VAE) | latents rel. L2 vs exact | video PSNR vs exact | peak GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ("seed", "exact", "original", "default", "fast", "turbo", "balanced", "low"):
        if name not in rows:
            print(f"| {name} | not run | | | | | | | |")
            continue
        shot, dev = rows[name]["shot"], rows[name].get("deviation")
        if name == "seed":
            dev = rows.get("seed_vs_exact", {}).get("deviation")
        ratio = f"{seed / shot['dit_vae_s']:.2f}x" if seed and name not in ("balanced", "low") else ""
        dev = dev or {}
        print(f"| {name} | {shot['steps']} | {shot['dit_vae_s']:.2f} | {shot['wall_s']:.2f} | {shot['step_median_s']:.3f} | "
              f"{ratio} | {dev.get('latents_rel_l2', float('nan')):.4f} | {dev.get('video_psnr_db', float('nan')):.2f} | "
              f"{shot.get('peak_device_gib', float('nan')):.1f} |")
    summary = {"rows": rows, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with open(os.path.join(out_dir, "speed_presets.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(GROUPS), help="comma list of " + ", ".join(GROUPS))
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--short-steps", type=int, default=3, help="steps for the streamed profiles")
    parser.add_argument("--budget", type=float, default=500.0, help="seconds for the whole run")
    parser.add_argument("--out", default=os.environ.get("OUT", "out"))
    parser.add_argument("--dry-run", action="store_true", help="tiny models on CPU: check the script only")
    parser.add_argument("--attention", default="sdpa", help="attention kernel of the shots (sdpa, flash4, sage, ...)")
    parser.add_argument("--fp8-granularity", default="row", choices=("row", "tensor"),
                        help="torchao FP8 scales: per row (the preset's) or per tensor")
    parser.add_argument("--skip-original", action="store_true", help="exact group: leave out the fp32 `original` shot")
    args = parser.parse_args()
    if args.dry_run:
        gg.use_tiny_models()
    os.makedirs(args.out, exist_ok=True)
    ATTENTION["name"] = args.attention
    from ex4d_engine.generation.wan import fp8 as fp8_module

    fp8_module.GRANULARITY = args.fp8_granularity
    if args.group:
        torch.manual_seed(0)
        {"seed": group_seed, "exact": group_exact, "fp8": group_fp8, "turbo": group_turbo,
         "profiles": group_profiles, "attention": attention_probe}[args.group](args)
        return 0
    deadline = time.monotonic() + args.budget
    if os.path.exists(os.path.join(args.out, RESULTS)):
        os.remove(os.path.join(args.out, RESULTS))
    for group in ["attention"] + args.configs.split(","):
        left = deadline - time.monotonic()
        if left < 20:
            print(f"[{group}] skipped: the budget is spent", flush=True)
            continue
        cmd = [sys.executable, __file__, "--group", group, "--steps", str(args.steps), "--short-steps",
               str(args.short_steps), "--out", args.out] + (["--dry-run"] if args.dry_run else []) + (
                   ["--skip-original"] if args.skip_original else []) + ["--attention", args.attention,
                                                                    "--fp8-granularity", args.fp8_granularity]
        start = time.monotonic()
        try:
            rc = subprocess.run(cmd, timeout=left, check=False).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        print(f"[{group}] finished in {time.monotonic() - start:.0f} s (rc {rc})", flush=True)
    summarise(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
