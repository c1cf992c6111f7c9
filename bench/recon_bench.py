"""Benchmark depth -> DW-mesh -> colour/mask for 49 frames, and check the two renderers agree.

    python bench/recon_bench.py [--renderers opengl,nvdiffrast] [--sizes 512x512,832x480] [--json out.json]

Times (median of --repeats, after one warm-up) the whole of ``render_conditioning``: DW-mesh build on
the mesh device (CUDA when present), rasterisation, thresholding, copy of the uint8 conditioning to
the host. The scene is synthetic (smooth texture, a slanted wall with boxes: hidden faces exist) and
the path the seed's ``--cam 30`` orbit. With both renderers present it also reports their agreement
(fraction of equal mask pixels, colour PSNR on pixels visible in both) on that path and on ``180``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ex4d_engine.intrinsics import resolve_intrinsics  # noqa: E402
from ex4d_engine.pipeline import ReconOptions, Scene, preset_trajectory, render_conditioning  # noqa: E402
from ex4d_engine.raster import get_rasterizer  # noqa: E402


def synthetic_scene(width: int, height: int, frames: int = 49) -> Scene:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = np.stack([127 + 100 * np.sin(xx / 17 + c) * np.cos(yy / 23 - c) for c in (0.0, 2.0, 4.0)], -1)
    colours, depths = [], []
    for t in range(frames):
        depth = 6.0 + 2.0 * xx / width
        depth[height // 4: height // 2, width // 5 + t: 2 * width // 5 + t] = 3.0  # a box sliding right
        depth[2 * height // 3:, 3 * width // 5:] = 4.5
        depths.append(depth)
        colours.append(np.roll(texture, t, axis=1))
    intr = resolve_intrinsics(width, height)
    return Scene(np.stack(colours).clip(0, 255).astype(np.uint8), np.stack(depths), intr, 30.0, "synthetic",
                 "units", ReconOptions())


def time_render(scene: Scene, trajectory, rasterizer, repeats: int) -> tuple[float, object]:
    render_conditioning(scene, trajectory, rasterizer=rasterizer)  # warm-up (context, kernels)
    times, cond = [], None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        cond = render_conditioning(scene, trajectory, rasterizer=rasterizer)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), cond


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--renderers", default="opengl,nvdiffrast")
    parser.add_argument("--sizes", default="512x512,832x480")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    machine = {"cpu": platform.processor() or platform.machine(), "cores": __import__("os").cpu_count(),
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
               "torch": torch.__version__, "python": platform.python_version()}
    results = {"machine": machine, "timings": [], "agreement": []}
    rasterizers = {}
    for name in args.renderers.split(","):
        try:
            rasterizers[name] = get_rasterizer(name)
        except Exception as exc:  # a missing backend is reported, not fatal
            print(f"{name}: unavailable ({exc})")
    for name, r in rasterizers.items():
        if name == "opengl":
            print(f"opengl: {r.renderer_string}")
            machine["gl_renderer"] = r.renderer_string
    for size in args.sizes.split(","):
        width, height = map(int, size.split("x"))
        scene = synthetic_scene(width, height)
        renders = {}
        for cam in ("30", "180"):
            trajectory = preset_trajectory(scene, cam)
            for name, rasterizer in rasterizers.items():
                seconds, cond = time_render(scene, trajectory, rasterizer, args.repeats if cam == "30" else 1)
                renders[(cam, name)] = cond
                if cam == "30":
                    row = {"renderer": name, "size": size, "frames": 49, "seconds": round(seconds, 4)}
                    results["timings"].append(row)
                    print(json.dumps(row))
            if len(rasterizers) == 2:
                a, b = renders[(cam, "nvdiffrast")], renders[(cam, "opengl")]
                equal = float((a.mask == b.mask).mean())
                both = (a.mask == 255) & (b.mask == 255)
                row = {"size": size, "cam": cam, "mask_equal": round(equal, 6),
                       "colour_psnr_db": round(psnr(a.colour[both], b.colour[both]), 2),
                       "visible_fraction": round(float(both.mean()), 4)}
                results["agreement"].append(row)
                print(json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
