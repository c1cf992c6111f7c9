"""GPU code-path check of Wan stereo: joint and independent eyes with tiny random Wan weights.

Builds the tiny random Wan2.1-I2V + EX-4D folder (official file layout, ``tiny_models``), loads it
through the real ``load_generator`` on the device, generates a stereo shot of the bundled garden
scene both ways (``generate_stereo`` mode joint / independent) and measures both with the same
masked-PSNR consistency as ``bench/stereo_consistency.py``. The scene is the garden example's own
procedural scene (``procedural_scene``: frames + exact depth, no video decoding, so the GPU machine
needs no ffmpeg). The weights are random, so the pictures
are noise and the PSNRs only show that both paths ran end to end (a random diffusion model repaints
every pixel of each eye); the seconds are the code path's, not a real model's.

    python bench/stereo_wan_gpu.py [--device cuda] [--frames 17] [--out FILE]   # GPU machine
    python bench/stereo_wan_gpu.py --dry-run                                    # CPU, tiny: ~1 min

Prints one JSON line. Renderer: OpenGL (EGL; NVIDIA's driver on the GPU machine, llvmpipe on CPU).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def garden_scene(frames: int, width: int = 384, height: int = 256, focal: float = 500.0):
    """The garden example's scene (examples/make_example.py), rendered with its exact depth."""
    from ex4d_engine.intrinsics import Intrinsics
    from ex4d_engine.pipeline import ReconOptions, Scene
    from procedural_scene import render_source, source_K

    colour, depth = render_source(width, height, focal, frames)
    return Scene(colour, depth, Intrinsics(source_K(width, height, focal), "focal"), 24.0, "file", "exact",
                 ReconOptions(num_frames=frames, focal_px=focal, renderer="opengl", device="cpu"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="CPU, float32, 5 frames, 64x64 generation area")
    parser.add_argument("--frames", type=int, default=17, help="frames of the shot (4k+1)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--area", type=int, default=384 * 256, help="generation area in pixels")
    parser.add_argument("--out", help="also write the JSON line here")
    args = parser.parse_args()
    if args.dry_run:
        args.device, args.frames, args.steps, args.area = "cpu", 5, 2, 64 * 64
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available here; use --dry-run for the CPU check", file=sys.stderr)
        return 2
    began = time.perf_counter()

    from ex4d_engine.generation.base import GenerationRequest
    from ex4d_engine.generation.wan.generator import SamplerSettings, load_generator
    from ex4d_engine.generation.wan.tiny_models import register_tiny_models, write_tiny_model_folder
    from ex4d_engine.raster import get_rasterizer
    from ex4d_engine.stereo import generate_stereo, stereo_consistency
    from stereo_consistency import print_json_line, rig_and_eyes

    with tempfile.TemporaryDirectory() as folder:
        write_tiny_model_folder(folder, seed=0)
        register_tiny_models(folder)
        settings = SamplerSettings(window=args.frames, overlap=2, steps=args.steps, area=args.area)
        generator = load_generator(folder, profile="full", device=args.device, compile_dit=False, settings=settings,
                                   dtype=torch.bfloat16 if args.device.startswith("cuda") else torch.float32)
        build_s = time.perf_counter() - began
        rasterizer = get_rasterizer("opengl")
        scene = garden_scene(args.frames)
        rig, eyes = rig_and_eyes(scene, "30")
        # warm-up (CUDA kernels, allocator) so that neither mode's seconds carry it
        generator.generate(GenerationRequest(colour=np.zeros((args.frames, scene.height, scene.width, 3), np.uint8),
                                             mask=np.full((args.frames, scene.height, scene.width), 255, np.uint8),
                                             fps=scene.fps, seed=0))
        rows = {}
        for mode in ("independent", "joint"):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            shot = generate_stereo(scene, eyes, generator, mode=mode, seed=1, rasterizer=rasterizer)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            rows[mode] = {**stereo_consistency(scene, eyes, shot, rasterizer=rasterizer),
                          "seconds": round(seconds, 2), "reused_fraction": round(shot.reused_fraction, 4),
                          "shape": list(shot.left.shape)}
    result = {
        "bench": "stereo_wan_gpu",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU ({os.cpu_count()} cores)",
        "machine": platform.node(), "torch": torch.__version__,
        "renderer": getattr(rasterizer, "renderer_string", rasterizer.name),
        "generator": "wan (tiny random weights)", "clip": "garden", "path": "30", "rig": rig.to_dict(),
        "frames": args.frames, "steps": args.steps, "area": args.area,
        "independent": rows["independent"], "joint": rows["joint"],
        "gain_all_db": round(rows["joint"]["psnr_db"] - rows["independent"]["psnr_db"], 3),
        "model_build_s": round(build_s, 2), "total_s": round(time.perf_counter() - began, 2),
    }
    print_json_line(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
