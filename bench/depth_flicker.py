"""Flicker on a real clip, before and after temporal stabilisation (CPU, seconds).

No real depth weights can run here, so the per-frame model is a *classical stand-in*: a smooth
disparity-like map computed from each real frame (blurred inverse luminance plus the seed's
"lower is nearer" ground prior). Its frame-to-frame changes are the clip's real content changes.
Per-frame models add a random scale and shift to every frame; we inject that (5 % scale, 5 % shift,
log-normal / normal, fixed seed) and measure:

- ``affine_flicker`` (stabilise.py) of the stand-in, the jittered stand-in, and both after stabilisation;
- ``jitter_against_truth``: error after one global affine fit to the un-jittered stand-in.

Usage: python bench/depth_flicker.py [--video PATH] [--out depth_flicker.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "ex4d_flower" / "input.mp4"


def stand_in_disparity(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) disparity-like maps from (T, H, W, 3) uint8 frames; classical, per frame."""
    import cv2

    t, h, w = frames.shape[:3]
    ground = np.linspace(0.3, 1.0, h)[:, None] * np.ones((1, w))
    out = np.empty((t, h, w), np.float32)
    for i, frame in enumerate(frames):
        lum = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        out[i] = 0.5 * ground + 0.5 * cv2.GaussianBlur(1.0 - lum, (0, 0), sigmaX=6)
    return out


def main() -> None:
    from ex4d_engine.depth.stabilise import affine_flicker, jitter_against_truth, stabilise_disparity
    from ex4d_engine.video_io import probe, read_video, working_size

    parser = argparse.ArgumentParser()
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--out", default="")
    parser.add_argument("--scale_jitter", type=float, default=0.05)
    parser.add_argument("--shift_jitter", type=float, default=0.05)
    args = parser.parse_args()

    info = probe(args.video)
    frames = read_video(args.video, max_frames=49, size=working_size(info.width, info.height)).frames
    truth = stand_in_disparity(frames)
    rng = np.random.default_rng(0)
    t = len(truth)
    scales = np.exp(rng.normal(0, args.scale_jitter, t))
    shifts = rng.normal(0, args.shift_jitter * float(truth.mean()), t)
    jittered = (truth * scales[:, None, None] + shifts[:, None, None]).astype(np.float32)

    start = time.perf_counter()
    stabilised = stabilise_disparity(jittered).disparity
    seconds = time.perf_counter() - start
    result = {
        "video": args.video, "frames": int(t), "size": [int(frames.shape[2]), int(frames.shape[1])],
        "injected": {"scale_sigma": args.scale_jitter, "shift_sigma_rel": args.shift_jitter},
        "flicker_stand_in": affine_flicker(truth),
        "flicker_stand_in_stabilised": affine_flicker(stabilise_disparity(truth).disparity),
        "flicker_jittered": affine_flicker(jittered),
        "flicker_jittered_stabilised": affine_flicker(stabilised),
        "jitter_vs_truth_before": jitter_against_truth(jittered, truth),
        "jitter_vs_truth_after": jitter_against_truth(stabilised, truth),
        "stabilise_seconds": seconds,
    }
    result["jitter_removed"] = 1 - result["jitter_vs_truth_after"] / result["jitter_vs_truth_before"]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
