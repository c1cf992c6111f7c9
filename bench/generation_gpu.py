"""GPU benchmark of the Wan2.1-I2V-14B + EX-4D generator, with random full-size bf16 weights.

Side by side, at EX-4D's settings (49 frames, 512x512, 25 steps, CFG 5, shift 5):
  seed      the seed's way: fresh pipeline per shot, every model resident, peft LoRA unfused,
            no compile, untiled VAE;
  full      ours: resident pipeline, LoRA fused, DiT blocks compiled, prompt embeddings cached,
            T5 kept in host memory; shot 1 (compile + T5) then warm shot 2;
  balanced, low
            ours with the DiT streamed from host memory (a few steps: per-step time and peak);
  t5io      time to identify + load an 11.4 GB T5 state dict from .pth vs .safetensors.
Each config runs in its own process (clean peak-memory counters). The weights are random:
speed and memory only, nothing about picture quality. Weights are built on the GPU, never written.

    python bench/generation_gpu.py --config all --out OUT_DIR [--steps 25]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ex4d_engine.generation.wan.tiny_models import randomise  # noqa: E402

GIB = 1024 ** 3
I2V_14B = dict(has_image_input=True, patch_size=[1, 2, 2], in_dim=36, dim=5120, ffn_dim=13824, freq_dim=256,
               text_dim=4096, out_dim=16, num_heads=40, num_layers=40, eps=1e-6)
FRAMES, SIDE = 49, 512
ENCODER_HIDDEN = 1024
DEVICE = "cuda"
T5_CONFIG: dict = {}
DRY = "--dry-run" in sys.argv


def use_tiny_models() -> None:
    """--dry-run: the same code path on CPU with the tiny test models (checks the script, not speed)."""
    global I2V_14B, FRAMES, SIDE, EX4D_AREA, ENCODER_HIDDEN, DEVICE, T5_CONFIG
    from ex4d_engine.generation.wan.tiny_models import TINY_DIT, TINY_ENCODER_HIDDEN, TINY_T5

    I2V_14B, T5_CONFIG = dict(TINY_DIT), dict(TINY_T5)
    FRAMES, SIDE, ENCODER_HIDDEN, DEVICE = 5, 64, TINY_ENCODER_HIDDEN, "cpu"
    EX4D_AREA = SIDE * SIDE


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()
EX4D_AREA = SIDE * SIDE


def matmul_tflops() -> float:
    """Measured bf16 matmul rate, 8192^3, random data, median of 20."""
    if DEVICE != "cuda":
        return float("nan")
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    times = []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * n ** 3 / float(np.median(times)) / 1e12


def dit_flops(frames: int, height: int, width: int, context: int = 512 + 257) -> float:
    """Matmul FLOPs of one I2V-14B DiT forward (linears + attention), the MFU numerator."""
    d, ffn, layers = I2V_14B["dim"], I2V_14B["ffn_dim"], I2V_14B["num_layers"]
    tokens = ((frames - 1) // 4 + 1) * (height // 16) * (width // 16)
    per_block = (8 * tokens * d * d          # self-attn q, k, v, o
                 + 4 * tokens * tokens * d   # self-attn QK^T and PV
                 + 4 * tokens * d * d        # cross-attn q, o
                 + 4 * context * d * d       # cross-attn k, v (text) and k_img, v_img (CLIP)
                 + 4 * tokens * context * d  # cross attention
                 + 4 * tokens * d * ffn)     # ffn.0, ffn.2
    return layers * per_block




def build_big(cls, **kwargs):
    """Build a large diffsynth model straight into uninitialised bf16 GPU memory, then randomise."""
    from diffsynth.core.vram.initialization import skip_model_initialization

    with skip_model_initialization():
        model = cls(**kwargs)
    model = model.to(dtype=torch.bfloat16).to_empty(device=DEVICE)
    randomise(model)
    return model.eval().requires_grad_(False)


def build_models():
    from diffsynth.models.wan_video_dit import WanModel
    from diffsynth.models.wan_video_image_encoder import WanImageEncoder
    from diffsynth.models.wan_video_text_encoder import WanTextEncoder
    from diffsynth.models.wan_video_vae import WanVideoVAE

    torch.manual_seed(0)
    dit = build_big(WanModel, **I2V_14B)
    t5 = build_big(WanTextEncoder, **T5_CONFIG)
    if DRY:
        from ex4d_engine.generation.wan.tiny_models import TinyWanImageEncoder, TinyWanVideoVAE

        return dit, t5, TinyWanVideoVAE(), TinyWanImageEncoder()
    vae = WanVideoVAE().eval().requires_grad_(False)
    clip = WanImageEncoder().eval().requires_grad_(False)
    return dit, t5, vae, clip


def test_input(frames=FRAMES, side=SIDE):
    """A colour render with a hidden band that widens over time (frame 0 fully visible)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side]
    base = np.stack([xx * 255 // side, yy * 255 // side, (xx + yy) * 127 // side], -1).astype(np.uint8)
    colour = np.stack([np.clip(base.astype(int) + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
                       for _ in range(frames)])
    mask = np.full((frames, side, side), 255, np.uint8)
    for t in range(1, frames):
        mask[t, :, side - t * side // (2 * frames):] = 0
    return colour, mask


def memory_snapshot() -> dict:
    if DEVICE != "cuda":
        return {}
    free, total = torch.cuda.mem_get_info()
    reserved = torch.cuda.memory_reserved()
    return dict(
        peak_allocated_gib=torch.cuda.max_memory_allocated() / GIB,
        peak_reserved_gib=torch.cuda.max_memory_reserved() / GIB,
        # the device's peak use: allocator peak + what the process holds outside the allocator (context, cuBLAS)
        peak_device_gib=(torch.cuda.max_memory_reserved() + (total - free - reserved)) / GIB,
    )


@torch.no_grad()
def vae_probe(pipe) -> dict:
    """Decode time and peak, untiled vs tiled, with the DiT resident (the full profile's decode)."""
    latent = torch.randn(1, 16, (min(FRAMES, 49) - 1) // 4 + 1, SIDE // 8, SIDE // 8, device=DEVICE, dtype=torch.bfloat16)
    probe = {}
    for tiled in (False, True):
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        pipe.vae.decode(latent, device=DEVICE, tiled=tiled, tile_size=(30, 52), tile_stride=(15, 26))
        sync()
        probe[f"decode_{'tiled' if tiled else 'untiled'}_s"] = time.perf_counter() - t0
        probe[f"decode_{'tiled' if tiled else 'untiled'}_peak_device_gib"] = memory_snapshot().get("peak_device_gib")
    return probe


def run_config(name: str, steps: int, out_dir: str, area: int = 0) -> dict:
    from ex4d_engine.generation.base import GenerationRequest
    from ex4d_engine.generation.wan.adapter import WanPipeline, ensure_diffsynth
    from ex4d_engine.generation.wan.camera_encoder import CamVidEncoder
    from ex4d_engine.generation.wan.generator import SamplerSettings, WanGenerator
    from ex4d_engine.generation.wan.lora import fuse_lora, inject_unfused_lora
    from ex4d_engine.generation.wan.profiles import get_profile
    from ex4d_engine.generation.wan.tiny_models import _save_tokenizer, tiny_checkpoint

    ensure_diffsynth()
    result = dict(config=name, device=torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (dry run)",
                  torch=torch.__version__)
    result["matmul_tflops"] = rate = matmul_tflops()
    t0 = time.perf_counter()
    dit, t5, vae, clip = build_models()
    ckpt = tiny_checkpoint(dit, hidden=ENCODER_HIDDEN)  # full-size rank-16 LoRA + 1024-wide encoder in the ex4d.ckpt layout
    result["build_random_weights_s"] = time.perf_counter() - t0
    tokenizer = tempfile.mkdtemp()
    _save_tokenizer(tokenizer)
    profile = get_profile("full" if name == "seed" else name)
    t0 = time.perf_counter()
    pipe = WanPipeline.assemble(dit=dit, text_encoder=t5, vae=vae, image_encoder=clip, tokenizer_dir=tokenizer,
                                device=DEVICE, dtype=torch.bfloat16, dit_streamed=not profile.dit_resident,
                                vram_limit_gib=profile.vram_limit_gib, t5_streamed=name != "seed")
    t1 = time.perf_counter()
    if name == "seed":
        inject_unfused_lora(pipe.dit, {k: v for k, v in ckpt.items() if ".lora_" in k})
    else:
        fuse_lora(pipe.dit, {k: v for k, v in ckpt.items() if ".lora_" in k}, compute_device=DEVICE)
    sync()
    result["lora_s"] = time.perf_counter() - t1
    encoder = CamVidEncoder(16, ENCODER_HIDDEN, dit.dim)
    encoder.load_state_dict({k: v for k, v in ckpt.items() if k.startswith("latent_")})
    pipeline = WanPipeline(pipe, encoder.to(DEVICE, torch.bfloat16).eval())
    if name == "full" and DEVICE == "cuda":
        pipeline.compile()
    result["assemble_s"] = time.perf_counter() - t0
    area = area or EX4D_AREA
    result["area"] = area
    settings = SamplerSettings(steps=steps, tiled_vae=False if name == "seed" else profile.tiled_vae, area=area)
    generator = WanGenerator(pipeline, settings, profile=profile.name)
    colour, mask = test_input(FRAMES, SIDE)
    request = GenerationRequest(colour=colour, mask=mask, fps=30.0, seed=0, steps=steps)
    shots = 2 if name == "full" else 1
    result["shots"] = []
    from ex4d_engine.generation.wan.sizes import pick_size

    width, height = pick_size(SIDE, SIDE, area)
    result["size"] = [width, height]
    flops = 2 * dit_flops(min(FRAMES, settings.window), height, width)  # CFG: two forwards per step
    for shot in range(shots):
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        video = generator.generate(request)
        wall = time.perf_counter() - start
        times = pipeline.times
        per_step = sorted(times.per_step[1:] or times.per_step)
        median_step = float(np.median(per_step))
        result["shots"].append(dict(
            wall_s=wall, ray_encode_s=times.ray_encode, prepare_s=times.prepare, denoise_s=times.denoise,
            steps=times.steps, step_median_s=median_step, step_first_s=times.per_step[0], decode_s=times.decode,
            dit_vae_s=times.ray_encode + times.denoise + times.decode, windows=generator.windows_run,
            dit_mfu=flops / median_step / (rate * 1e12), finite=bool(np.isfinite(video).all()),
            output_std=float(video.std()), **memory_snapshot()))
        print(f"[{name}] shot {shot + 1}: {result['shots'][-1]}", flush=True)
    if name == "full":
        result["vae_probe"] = vae_probe(pipeline.pipe)
        print(f"[{name}] vae probe: {result['vae_probe']}", flush=True)
    result["frames"] = FRAMES
    suffix = ("_area" + str(area) if area != EX4D_AREA else "") + ("_frames" + str(FRAMES) if FRAMES != 49 else "")
    with open(os.path.join(out_dir, f"gen_{name}{suffix}.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def run_t5io(out_dir: str) -> dict:
    """Identify + load an umT5-XXL-sized bf16 state dict from .pth and from .safetensors."""
    from ex4d_engine.generation.wan.adapter import ensure_diffsynth

    ensure_diffsynth()
    from diffsynth.core.loader.file import hash_model_file, load_state_dict
    from diffsynth.models.wan_video_text_encoder import WanTextEncoder
    from safetensors.torch import save_file

    t5 = build_big(WanTextEncoder, **T5_CONFIG)
    state = {k: v.cpu() for k, v in t5.state_dict().items()}
    del t5
    result = dict(config="t5io", gbytes=sum(v.numel() * v.element_size() for v in state.values()) / 1e9)
    folder = tempfile.mkdtemp(dir="/tmp")
    pth, st = os.path.join(folder, "t5.pth"), os.path.join(folder, "t5.safetensors")
    t0 = time.perf_counter(); torch.save(state, pth); result["write_pth_s"] = time.perf_counter() - t0
    t0 = time.perf_counter(); save_file(state, st); result["write_safetensors_s"] = time.perf_counter() - t0
    del state
    for label, path in (("pth", pth), ("safetensors", st)):
        t0 = time.perf_counter(); hash_model_file(path); t1 = time.perf_counter()
        loaded = load_state_dict(path, torch_dtype=torch.bfloat16, device=DEVICE); sync()
        t2 = time.perf_counter()
        result[f"{label}_hash_s"], result[f"{label}_load_to_gpu_s"] = t1 - t0, t2 - t1
        del loaded
    for p in (pth, st):
        os.remove(p)
    with open(os.path.join(out_dir, "gen_t5io.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"[t5io] {result}", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="all", help="seed, full, balanced, low, t5io or all (comma list)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--short-steps", type=int, default=4, help="steps for balanced/low")
    parser.add_argument("--out", default=os.environ.get("OUT", "out"))
    parser.add_argument("--timeout", type=int, default=240, help="seconds per config (all)")
    parser.add_argument("--area", type=int, default=0, help="generation area for ours (default: EX-4D's 512x512)")
    parser.add_argument("--frames", type=int, default=49, help="frames of the test render (>49: a long shot)")
    parser.add_argument("--dry-run", action="store_true", help="tiny models on CPU: check the script only")
    args = parser.parse_args()
    if args.dry_run:
        use_tiny_models()
    global FRAMES
    FRAMES = args.frames if not args.dry_run else FRAMES
    os.makedirs(args.out, exist_ok=True)
    configs = ["seed", "full", "balanced", "low", "t5io"] if args.config == "all" else args.config.split(",")
    if len(configs) > 1:
        for name in configs:
            cmd = [sys.executable, __file__, "--config", name, "--steps", str(args.steps),
                   "--short-steps", str(args.short_steps), "--out", args.out, "--area", str(args.area), "--frames", str(args.frames)] + (["--dry-run"] if DRY else [])
            try:
                subprocess.run(cmd, timeout=args.timeout, check=False)
            except subprocess.TimeoutExpired:
                print(f"[{name}] timed out after {args.timeout} s", flush=True)
        return 0
    name = configs[0]
    if name == "t5io":
        run_t5io(args.out)
    else:
        run_config(name, args.steps if name in ("seed", "full") else args.short_steps, args.out, args.area)
    return 0


if __name__ == "__main__":
    sys.exit(main())
