"""Helpers shared by the tests (importable as ``ex4d_testing``; pytest's pythonpath includes tests/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def smooth_texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colourful (H, W, 3) uint8 image (interpolation-friendly, so warps compare well)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.02, 0.08), rng.uniform(0.02, 0.08), rng.uniform(0, 6.28)
        channels.append(127.5 + 100 * np.sin(fx * xx + phase) * np.cos(fy * yy - phase))
    return np.clip(np.stack(channels, -1), 0, 255).round().astype(np.uint8)


def run_cli(*args, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``ex4d`` as a user would (a separate process), capturing output."""
    return subprocess.run([sys.executable, "-m", "ex4d_engine.cli", *map(str, args)], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=timeout)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def stop_process(proc) -> int:
    """Stop a server process the way Ctrl+C does (SIGINT), killing it if it hangs; returns its exit code."""
    import signal
    import subprocess

    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode if proc is not None else 0


def gradient_shot(frames: int, height: int, width: int, hidden_from_x: int) -> tuple[np.ndarray, np.ndarray]:
    """(colour, mask) of a moving gradient whose columns from ``hidden_from_x`` are hidden after frame 0."""
    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.stack([xx * 4, yy * 4, (xx + yy) * 2], -1).clip(0, 255).astype(np.uint8)
    colour = np.stack([np.roll(frame, t, axis=1) for t in range(frames)])
    mask = np.full((frames, height, width), 255, np.uint8)
    mask[1:, :, hidden_from_x:] = 0
    colour[mask == 0] = 0
    return colour, mask
