"""GPU check of the real loading path with the tiny random models (seconds of GPU time).

The big benchmark (generation_gpu.py) builds random weights in memory; this one goes through
everything a user's run goes through on CUDA: files on disk -> diffsynth detection ->
``load_generator`` (GPU-size check, ex4d.ckpt check, LoRA fuse, compile) for each VRAM profile,
plus the unfused peft LoRA, and compares their outputs.

    python bench/generation_gpu_smoke.py [cuda|cpu] [--presets]

``--presets``: instead, load each speed preset (exact, original, default, fast, turbo; the balanced
and low profiles with the pinned prefetch) through ``load_generator`` and report FP8 mode, cache
skips and the difference to exact (compile off: the code paths, in seconds).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402



def tiny_request(frames: int):
    """A moving 64x64 gradient whose right part is hidden after frame 0."""
    from ex4d_engine.generation.base import GenerationRequest

    yy, xx = np.mgrid[0:64, 0:64]
    frame = np.stack([xx * 4, yy * 4, (xx + yy) * 2], -1).clip(0, 255).astype(np.uint8)
    colour = np.stack([np.roll(frame, t, axis=1) for t in range(frames)])
    mask = np.full((frames, 64, 64), 255, np.uint8)
    mask[1:, :, 40:] = 0
    return GenerationRequest(colour=colour, mask=mask, fps=24.0, seed=0)

def main() -> int:
    from ex4d_engine.generation.wan.generator import SamplerSettings, load_generator
    from ex4d_engine.generation.wan.tiny_models import register_tiny_models, write_tiny_model_folder

    device = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "cuda"
    if "--presets" in sys.argv:
        return presets(device)
    folder = tempfile.mkdtemp()
    write_tiny_model_folder(folder)
    register_tiny_models(folder)
    settings = SamplerSettings(window=9, overlap=2, steps=3, area=64 * 64)
    request = tiny_request(13)
    results, videos = {}, {}
    runs = [("full", True, True), ("full_nocompile", True, False), ("unfused", False, False),
            ("balanced", True, False), ("low", True, False)]
    for name, fuse, compile_dit in runs:
        profile = name if name in ("balanced", "low") else "full"
        start = time.perf_counter()
        generator = load_generator(folder, profile=profile, device=device, fuse_lora=fuse,
                                   compile_dit=compile_dit and device == "cuda", settings=settings,
                                   dtype=torch.bfloat16)
        loaded = time.perf_counter()
        videos[name] = generator.generate(request)
        again = generator.generate(request)
        results[name] = dict(load_s=loaded - start, shot_s=time.perf_counter() - loaded,
                             shape=list(videos[name].shape), repeatable=bool(np.array_equal(videos[name], again)),
                             checkpoint=generator.pipeline.checkpoint_summary)
        del generator
        if device == "cuda":
            torch.cuda.empty_cache()
    reference = videos["full_nocompile"].astype(np.int16)
    for name, video in videos.items():
        results[name]["mean_abs_diff_vs_full_nocompile"] = float(np.abs(video.astype(np.int16) - reference).mean())
    for name, r in results.items():
        print(f"[smoke] {name}: {json.dumps(r)}", flush=True)
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "generation_gpu_smoke.json"), "w") as f:
            json.dump(results, f, indent=1)
    return 0


def presets(device: str) -> int:
    from ex4d_engine.generation.wan.generator import SamplerSettings, load_generator
    from ex4d_engine.generation.wan.tiny_models import register_tiny_models, write_tiny_model_folder

    folder = tempfile.mkdtemp()
    write_tiny_model_folder(folder)
    register_tiny_models(folder)
    settings = SamplerSettings(window=9, overlap=2, area=64 * 64)
    request = tiny_request(9)
    results, videos = {}, {}
    runs = [("exact", "full"), ("original", "full"), ("default", "full"), ("fast", "full"), ("turbo", "full"),
            ("exact", "balanced"), ("exact", "low")]
    for speed, profile in runs:
        name = speed if profile == "full" else profile
        start = time.perf_counter()
        try:
            generator = load_generator(folder, profile=profile, device=device, compile_dit=False, settings=settings,
                                       dtype=torch.bfloat16, speed=speed)
            videos[name] = generator.generate(request)
            results[name] = dict(seconds=time.perf_counter() - start, fp8=generator.fp8, run=generator.last_run,
                                 prefetch_copies=getattr(getattr(generator.pipeline, "prefetcher", None), "copies", None))
            del generator
        except Exception as exc:  # report every preset, even when one breaks
            results[name] = dict(error=f"{type(exc).__name__}: {exc}"[:500])
        if device == "cuda":
            torch.cuda.empty_cache()
    reference = videos.get("exact")
    for name, video in videos.items():
        if reference is not None:
            results[name]["mean_abs_diff_vs_exact"] = float(np.abs(video.astype(np.int16) - reference.astype(np.int16)).mean())
    for name, r in results.items():
        print(f"[smoke-presets] {name}: {json.dumps(r)}", flush=True)
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "speed_smoke.json"), "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
