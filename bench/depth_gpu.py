"""Depth on the GPU: 49 frames at 512x512 through each backend's real code path, random full-size weights.

Run on a CUDA machine from the repo root:  python3 bench/depth_gpu.py --out depth_gpu.json
Random weights time the real compute and memory; they say nothing about depth quality.

Measures, for Depth Anything V2 Small (the licence-clean default, fp16):
  load (from_pretrained of the saved folder), image processor, model forward, stabilisation +
  conversion, and the whole ``backend.estimate`` call, at batch sizes 8 and 49; peak GPU memory.
For Depth Pro (fp16): the whole ``estimate`` call. For DepthCrafter: its UNet shape (diffusers
``UNetSpatioTemporalConditionModel`` with the SVD config, fp16) for one denoising step on the
seed's 49x512x512 window, times the seed's 5 steps (VAE and image encoder not included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

FRAMES, SIZE = 49, 512
REPEATS = 3
ONLY_TOTAL = False
BATCHES = (8, 49)
DEVICE = "cuda"  # --smoke runs the same code on the CPU with a short clip, to check the script before a GPU call


def sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def reset_peak() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2 ** 30 if DEVICE == "cuda" else float("nan")


def clip_frames() -> np.ndarray:
    """A smooth texture sliding sideways, (49, 512, 512, 3) uint8."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE + FRAMES].astype(np.float64)
    chans = [127.5 + 100 * np.sin(rng.uniform(0.01, 0.05) * xx + p) * np.cos(rng.uniform(0.01, 0.05) * yy - p)
             for p in rng.uniform(0, 6.28, 3)]
    base = np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)
    return np.stack([base[:, i:i + SIZE] for i in range(FRAMES)])


def read_clip(path: str) -> np.ndarray:
    """The first 49 frames of a real clip as RGB, centre-cropped/resized to 512x512 (cv2: no ffmpeg needed)."""
    import cv2

    cap = cv2.VideoCapture(path)
    frames = []
    while len(frames) < FRAMES:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(bgr[..., ::-1], (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    cap.release()
    if len(frames) < FRAMES:
        raise SystemExit(f"{path}: only {len(frames)} frames decoded, need {FRAMES}")
    return np.stack(frames)


def timed(fn, repeats: int):
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_depth_anything(root: Path, frames: np.ndarray) -> dict:
    import torch

    from depth_models import save_depth_anything_v2_small
    from ex4d_engine.depth import DepthSettings, get_backend
    from ex4d_engine.depth.depth_anything import DEPTH_ANYTHING_V2_SMALL, predict_frames
    from ex4d_engine.depth.hf_models import load_depth_model
    from ex4d_engine.depth.stabilise import stabilise_disparity
    from ex4d_engine.depth.conversion import relative_disparity_to_depth

    folder = root / "Depth-Anything-V2-Small-hf"
    params = save_depth_anything_v2_small(folder)
    res: dict = {"params": params}
    res["load_s"], (processor, model) = timed(
        lambda: load_depth_model(folder, DEPTH_ANYTHING_V2_SMALL, device=DEVICE, dtype_name="float16" if DEVICE == "cuda" else "float32"), 1)
    res["processor"] = type(processor).__name__
    res["preprocess_49_s"], inputs = timed(lambda: processor(images=list(frames), return_tensors="pt"), 2)
    res["model_input"] = list(inputs["pixel_values"].shape)
    pixel_values = inputs["pixel_values"].to(DEVICE, next(model.parameters()).dtype)
    if not ONLY_TOTAL:  # the breakdown; the CPU run (--cpu) times the whole call only
        for batch in BATCHES:
            def forward():
                with torch.inference_mode():
                    for s in range(0, FRAMES, batch):
                        model(pixel_values=pixel_values[s:s + batch])
            forward()
            res[f"forward_49_batch{batch}_s"], _ = timed(forward, REPEATS)
        res["predict_frames_49_s"], raw = timed(
            lambda: predict_frames(processor, model, frames, batch_size=8, device=DEVICE), min(2, REPEATS))
        start = time.perf_counter()
        relative_disparity_to_depth(stabilise_disparity(raw).disparity)
        res["stabilise_and_convert_s"] = time.perf_counter() - start
    backend = get_backend("depth-anything")
    for batch in BATCHES:
        settings = DepthSettings(models_dir=str(root), device=DEVICE, batch_size=batch)
        reset_peak()
        res[f"estimate_total_batch{batch}_s"], est = timed(lambda: backend.estimate(frames, settings, None), min(2, REPEATS))
        res[f"peak_gib_batch{batch}"] = peak_gib()
    res["flicker_before"], res["flicker_after"] = est.flicker_before, est.flicker_after
    res["depth_shape"] = list(est.depth.shape)
    del model
    return res


def bench_depth_pro(root: Path, frames: np.ndarray) -> dict:
    import torch

    from depth_models import save_depth_pro
    from ex4d_engine.depth import DepthSettings, get_backend

    res: dict = {"params": save_depth_pro(root / "DepthPro-hf")}
    backend = get_backend("depth-pro")
    settings = DepthSettings(models_dir=str(root), device=DEVICE, batch_size=8)
    backend.estimate(frames[:8], settings, None)  # warm-up
    reset_peak()
    res["estimate_total_batch8_s"], est = timed(lambda: backend.estimate(frames, settings, None), 1)
    res["peak_gib"] = peak_gib()
    res["focal_px"] = est.focal_px
    return res


def bench_depthcrafter_unet() -> dict:
    import torch
    from diffusers import UNetSpatioTemporalConditionModel

    with torch.device("cuda"):  # fast random init; a few buffers use torch.Tensor(...) and stay on the CPU,
        unet = UNetSpatioTemporalConditionModel()  # hence the explicit .to below (the SVD img2vid UNet config)
    unet = unet.to("cuda", torch.float16).eval()
    res: dict = {"params": sum(p.numel() for p in unet.parameters())}
    latent = SIZE // 8
    sample = torch.randn(1, FRAMES, 8, latent, latent, device="cuda", dtype=torch.float16)
    context = torch.randn(1, 1, 1024, device="cuda", dtype=torch.float16)
    time_ids = torch.tensor([[7.0, 127.0, 0.02]], device="cuda", dtype=torch.float16)

    def step():
        with torch.inference_mode():
            return unet(sample, torch.tensor([1.0], device="cuda"), context, added_time_ids=time_ids).sample

    step()
    reset_peak()
    res["unet_step_49x512_s"], _ = timed(step, 3)
    res["unet_5_steps_s"] = 5 * res["unet_step_49x512_s"]
    res["peak_gib"] = peak_gib()
    return res


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="depth_gpu.json")
    parser.add_argument("--video", help="a real clip (first 49 frames, resized to 512x512) instead of a synthetic one")
    parser.add_argument("--smoke", action="store_true", help="CPU, 4 frames at 128 px, no DepthCrafter UNet")
    parser.add_argument("--cpu", action="store_true", help="CPU, full 49x512x512, Depth Anything only, one repeat")
    args = parser.parse_args()
    global DEVICE, FRAMES, SIZE, REPEATS, BATCHES, ONLY_TOTAL
    if args.smoke:
        DEVICE, FRAMES, SIZE = "cpu", 4, 128
    if args.cpu:
        DEVICE, REPEATS, BATCHES, ONLY_TOTAL = "cpu", 1, (8,), True
    import torch

    from ex4d_engine.depth.hf_models import import_transformers

    transformers = import_transformers()
    report = {"gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu", "torch": torch.__version__,
              "transformers": transformers.__version__, "frames": FRAMES, "size": SIZE}
    frames = read_clip(args.video) if args.video else clip_frames()
    report["clip"] = args.video or "synthetic sliding texture"
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("depth_anything_v2_small", lambda: bench_depth_anything(Path(tmp), frames)),
                         ("depth_pro", lambda: bench_depth_pro(Path(tmp), frames)),
                         ("depthcrafter_unet", bench_depthcrafter_unet)):
            if (args.smoke or args.cpu) and name != "depth_anything_v2_small":
                continue
            start = time.perf_counter()
            try:
                report[name] = fn()
            except Exception as exc:  # one failing part must not lose the others' numbers
                traceback.print_exc()
                report[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            report[name]["section_wall_s"] = time.perf_counter() - start
            print(name, json.dumps(report[name]), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
