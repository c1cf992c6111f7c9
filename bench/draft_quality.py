"""The draft preview against exact ground truth: PSNR on filled and visible pixels, flicker, time.

    PYTHONPATH=. .venv/bin/python bench/draft_quality.py            # 512x512, 49 frames, presets 30 and -30
    PYTHONPATH=. .venv/bin/python bench/draft_quality.py --size 128 --frames 13 --out /tmp/q.json   # quick

A procedural scene with moving objects (bench/procedural_scene.py: wall, floor, a static box, a
rolling ball and a floating cube) is ray-traced from the source camera (the clip + exact depth) and
from every camera of each novel trajectory (the ground truth). The engine renders the conditioning
(OpenGL, the seed-literal colour and the faithful preview colour) and each method fills it:

* ``legacy_draft``: the draft before issue 20 (Telea inpainting at 256 px over a dilated ring), kept here verbatim;
* ``mean_colour``: every hole pixel = the frame's mean visible colour;
* ``draft_2d``: the new draft without geometry (push-pull from the visible pixels);
* ``draft``: the new draft with geometry, on the faithful preview colour (what ``ex4d run``/demo/serve do);
* ``draft_seed_colour``: the same on the seed-literal colour (to separate the render's gain from the fill's);
* ``oracle_outside_surface_mean`` / ``oracle_outside_surface_lowpass``: upper bounds, not methods. The new
  draft, with every hidden pixel *outside* the source frustum (which nothing in the clip shows) painted
  by an oracle that knows the true surface there: its mean true colour over those pixels of the frame
  (the best constant per surface), or its true colour low-passed within the surface (Gaussian, 1/32 of
  the side: shading without texture). No fill that does not invent texture can expect to beat the
  first there; their ``psnr_filled`` says what the whole filled set can reach with today's inside fill.

Metrics over frames 1.. (frame 0 is the source): ``psnr_filled`` on pixels the mask marks hidden,
``psnr_visible`` on the others (the filled ones also split into surfaces inside the source frustum --
disocclusions, which other frames or the far side can explain -- and outside it, which nothing can), ``visible_exact`` (visible pixels == the conditioning colour given),
``flicker``: mean |(out[t+1] - out[t]) - (truth[t+1] - truth[t])| over pixels filled in both frames
(0..255; how much the fill changes over time beyond what the true video does). The timing of the
new draft is its ``generate`` call for the whole shot (49 frames at 512^2 by default), best of
``--repeats``: wall time, the process's CPU time, and the machine's load average at that time.

``--timing_only`` skips the quality part (the ray-traced ground truth takes minutes) and only times the draft.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procedural_scene import render_source, render_view, source_K, source_visible, surface_ids  # noqa: E402

from ex4d_engine import pipeline  # noqa: E402
from ex4d_engine.generation.base import GenerationRequest  # noqa: E402
from ex4d_engine.generation.draft import DraftGenerator  # noqa: E402
from ex4d_engine.intrinsics import Intrinsics  # noqa: E402


def legacy_draft(colour: np.ndarray, mask: np.ndarray, radius: int = 5, work_long_side: int = 256) -> np.ndarray:
    """The draft generator as it was before issue 20 (ex4d_engine/generation/draft.py at 7a65a1b)."""
    import cv2

    t, h, w = mask.shape
    scale = min(1.0, work_long_side / max(h, w))
    small = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = colour.copy()
    grow = np.ones((3, 3), np.uint8)
    for i in range(t):
        hole = cv2.dilate((mask[i] < 128).astype(np.uint8), grow, iterations=2).astype(bool)
        if hole.any():
            if hole.all():
                out[i] = 128
            else:
                img = cv2.resize(colour[i], small, interpolation=cv2.INTER_AREA)
                holes = cv2.resize(hole.astype(np.uint8) * 255, small, interpolation=cv2.INTER_NEAREST)
                holes = cv2.dilate(holes, grow)
                filled = cv2.inpaint(img, holes, radius, cv2.INPAINT_TELEA)
                filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
                out[i][hole] = filled[hole]
    return out


def mean_colour_fill(colour: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = colour.copy()
    for i in range(len(mask)):
        vis = mask[i] >= 128
        if vis.any() and not vis.all():
            out[i][~vis] = colour[i][vis].mean(axis=0).round().astype(np.uint8)
    return out


def oracle_outside(out: np.ndarray, mask: np.ndarray, truth: np.ndarray, in_source: np.ndarray,
                   surfaces: np.ndarray, blur: float = 0.0) -> np.ndarray:
    """``out`` with every hidden pixel outside the source frustum replaced by what an oracle that knows
    the true surface there would paint without inventing texture: the surface's mean true colour over
    those pixels of the frame (``blur`` 0: the best constant per surface and frame), or, with
    ``blur`` > 0 (pixels), the true colour low-passed within the surface (its shading, not its texture).
    """
    import cv2

    out = out.copy()
    for i in range(len(mask)):
        outside = (mask[i] < 128) & ~in_source[i]
        for surface in np.unique(surfaces[i][outside]):
            region = outside & (surfaces[i] == surface)
            if blur <= 0:
                out[i][region] = truth[i][region].mean(axis=0).round().astype(np.uint8)
                continue
            weight = cv2.GaussianBlur(region.astype(np.float32), (0, 0), blur)
            colour = cv2.GaussianBlur(truth[i].astype(np.float32) * region[..., None], (0, 0), blur)
            out[i][region] = np.clip(colour[region] / np.maximum(weight[region], 1e-6)[:, None] + 0.5, 0, 255)
    return out


def psnr(a: np.ndarray, b: np.ndarray):
    """PSNR in dB (rounded); None when there are no pixels (JSON has no infinity)."""
    if a.size == 0:
        return None
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else round(float(10 * np.log10(255.0 ** 2 / mse)), 2)


def metrics(out: np.ndarray, given: np.ndarray, mask: np.ndarray, truth: np.ndarray, in_source: np.ndarray) -> dict:
    out, given, mask, truth, in_source = out[1:], given[1:], mask[1:], truth[1:], in_source[1:]
    hidden, visible = mask < 128, mask >= 128
    both = hidden[1:] & hidden[:-1]
    d_out = out[1:].astype(np.float64) - out[:-1]
    d_truth = truth[1:].astype(np.float64) - truth[:-1]
    return {
        "psnr_filled": psnr(out[hidden], truth[hidden]),
        "psnr_filled_in_source_frustum": psnr(out[hidden & in_source], truth[hidden & in_source]),
        "psnr_filled_outside": psnr(out[hidden & ~in_source], truth[hidden & ~in_source]),
        "psnr_visible": psnr(out[visible], truth[visible]),
        "visible_exact": bool(np.array_equal(out[visible], given[visible])),
        "flicker": round(float(np.abs(d_out - d_truth)[both].mean()), 3),
    }


def cached(folder, name, make):
    """make() -> a tuple of arrays, kept as folder/name.npz when a folder is given."""
    if not folder:
        return make()
    path = Path(folder) / f"{name}.npz"
    if path.is_file():
        with np.load(path) as data:
            return tuple(data[f"a{i}"] for i in range(len(data.files)))
    arrays = make()
    Path(folder).mkdir(parents=True, exist_ok=True)
    np.savez(path, **{f"a{i}": a for i, a in enumerate(arrays)})
    return arrays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--presets", default="30,-30")
    parser.add_argument("--repeats", type=int, default=2, help="timing runs of the new draft (best is kept)")
    parser.add_argument("--timing_only", action="store_true", help="only time the new draft (no ground truth)")
    parser.add_argument("--cache", help="folder to keep the ray-traced source and ground truth in between runs")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "draft_quality.json"))
    args = parser.parse_args()

    size, focal = args.size, args.size * 500 / 512  # the seed's f = 500 px at 512
    t0 = time.perf_counter()
    frames, depth = cached(args.cache, f"source_{size}_{args.frames}", lambda: render_source(size, size, focal, args.frames))
    print(f"source: {args.frames} frames {size}x{size} in {time.perf_counter() - t0:.1f} s", flush=True)
    scene = pipeline.Scene(frames, depth, Intrinsics(source_K(size, size, focal), "focal"), 24.0, "file", "units",
                           pipeline.ReconOptions(renderer="opengl", device="cpu"))
    meshes = pipeline.build_meshes(scene)
    from ex4d_engine.raster import get_rasterizer

    rasterizer = get_rasterizer("opengl")
    draft = DraftGenerator()
    report = {"scene": "bench/procedural_scene.py (wall, floor, static box, rolling ball, floating cube)",
              "size": [size, size], "frames": args.frames, "focal_px": focal, "renderer": rasterizer.renderer_string,
              "trajectories": {}}
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    for preset in [] if args.timing_only else presets:
        trajectory = pipeline.preset_trajectory(scene, preset, use_seed_rounds=False)
        cond = pipeline.render_conditioning(scene, trajectory, rasterizer=rasterizer, meshes=meshes, preview=True)
        truth, in_source = cached(args.cache, f"truth_{size}_{args.frames}_{preset}", lambda: (
            np.stack([render_view(trajectory.K[i], trajectory.w2c[i], size, size, i / max(1, args.frames - 1))
                      for i in range(args.frames)]),
            np.stack([source_visible(trajectory.K[i], trajectory.w2c[i], size, size,
                                     i / max(1, args.frames - 1), scene.K) for i in range(args.frames)])))
        surfaces, = cached(args.cache, f"surfaces_{size}_{args.frames}_{preset}", lambda: (np.stack([
            surface_ids(trajectory.K[i], trajectory.w2c[i], size, size, i / max(1, args.frames - 1))
            for i in range(args.frames)]),))
        geometry = pipeline.generation_geometry(scene, trajectory)
        seed_c, preview_c, mask = cond.colour, cond.preview_colour, cond.mask
        runs = {
            "legacy_draft": (lambda: legacy_draft(seed_c, mask), seed_c),
            "mean_colour": (lambda: mean_colour_fill(seed_c, mask), seed_c),
            "draft_2d": (lambda: draft.generate(GenerationRequest(seed_c, mask, 24.0)), seed_c),
            "draft_seed_colour": (lambda: draft.generate(GenerationRequest(seed_c, mask, 24.0, geometry=geometry)), seed_c),
            "draft": (lambda: draft.generate(GenerationRequest(preview_c, mask, 24.0, geometry=geometry)), preview_c),
        }
        outputs = {}  # the oracles keep the new draft's output inside the source frustum
        runs["oracle_outside_surface_mean"] = (
            lambda: oracle_outside(outputs["draft"], mask, truth, in_source, surfaces), preview_c)
        runs["oracle_outside_surface_lowpass"] = (
            lambda: oracle_outside(outputs["draft"], mask, truth, in_source, surfaces, blur=size / 32), preview_c)
        hidden = mask[1:] < 128
        entry = {"hidden_fraction": round(float(hidden.mean()), 4),
                 "hidden_in_source_frustum_fraction": round(float((hidden & in_source[1:]).sum() / max(1, hidden.sum())), 4),
                 "methods": {}}
        for name, (fn, given) in runs.items():
            started = time.perf_counter()
            out = outputs[name] = fn()
            m = metrics(out, given, mask, truth, in_source)
            m["seconds"] = round(time.perf_counter() - started, 2)
            entry["methods"][name] = m
            print(f"{preset:>6} {name:>18}: {m}", flush=True)
        report["trajectories"][preset] = entry
        if os.environ.get("EX4D_BENCH_DUMP"):
            np.savez_compressed(os.path.join(os.environ["EX4D_BENCH_DUMP"], f"draft_{preset}.npz"), truth=truth,
                                seed=seed_c, preview=preview_c, mask=mask,
                                draft=outputs["draft"], legacy=outputs["legacy_draft"])

    # the timing target: the whole shot through the new draft with geometry
    preset = presets[0]
    trajectory = pipeline.preset_trajectory(scene, preset, use_seed_rounds=False)
    cond = pipeline.render_conditioning(scene, trajectory, rasterizer=rasterizer, meshes=meshes, preview=True)
    request = GenerationRequest(cond.preview_colour, cond.mask, 24.0, geometry=pipeline.generation_geometry(scene, trajectory))
    timings, cpu, loads = [], [], []
    for _ in range(max(1, args.repeats)):
        loads.append(os.getloadavg()[0])
        started, started_cpu = time.perf_counter(), time.process_time()
        draft.generate(request)
        timings.append(round(time.perf_counter() - started, 2))
        cpu.append(round(time.process_time() - started_cpu, 2))

    # wall time on a shared machine depends on the other jobs; the process's CPU time does not (much)
    report["timing"] = {"preset": preset, "frames": args.frames, "size": [size, size], "wall_seconds": timings,
                        "best_wall_seconds": min(timings), "cpu_seconds": cpu, "best_cpu_seconds": min(cpu),
                        "load_average_1min_before": [round(x, 2) for x in loads], "cpu_count": os.cpu_count()}
    report["machine"] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                         "python": platform.python_version()}
    report["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report["command"] = "PYTHONPATH=. .venv/bin/python bench/draft_quality.py " + " ".join(sys.argv[1:])
    print(json.dumps(report["timing"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
