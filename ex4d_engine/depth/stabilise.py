"""Temporal stabilisation of per-frame disparity, and a flicker metric.

Per-frame depth models give each frame its own unknown scale and shift in disparity space, so a
mesh built from them "breathes". We remove that by a robust affine alignment of every frame to its
already-aligned predecessor: ``aligned_t = s_t * d_t + b_t`` with ``(s_t, b_t)`` fitted by least
squares on inlier pixels (reduced-major-axis slope, started from a median/MAD estimate, inliers
re-chosen 3 times at 2.5 robust sigmas), so moving objects and disocclusions do not pull the fit. Frame 0 keeps its own
scale. Chaining to the previous frame (not to frame 0) follows scene changes over long clips.

Flicker (``affine_flicker``) is the part of the frame-to-frame change explained by one global
affine map: for consecutive frames, fit ``d_{t-1} ~ s d_t + b`` robustly and take
``mean|(s - 1) d_t + b| / mean|d_{t-1}|``; averaged over the clip. It is 0 for a clip whose only
changes are local (motion); a clip with 5 % scale jitter scores about 0.05.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

#: Pixels used per fit (a regular subsample): plenty for two unknowns and fast at 1024 px.
FIT_SAMPLES = 40_000
#: Inlier threshold in robust sigmas (1.4826 MAD of the residual).
INLIER_SIGMAS = 2.5
REFIT_ITERATIONS = 3


@dataclass(frozen=True)
class StabilisedDisparity:
    """Aligned disparity and the per-frame map applied: ``disparity[t] = scales[t] * raw[t] + shifts[t]``.

    Attributes:
        disparity: (T, H, W) float32.
        scales: (T,) float64.
        shifts: (T,) float64.
    """

    disparity: np.ndarray
    scales: np.ndarray
    shifts: np.ndarray


def _subsample(image: np.ndarray) -> np.ndarray:
    flat = image.reshape(-1)
    step = max(1, flat.size // FIT_SAMPLES)
    return flat[::step].astype(np.float64)


def fit_affine(source: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Robust ``(s, b)`` with ``s * source + b ~ target`` over the pixels where both are finite.

    Returns (1, 0) when the fit is undefined (flat source, too few pixels, non-positive scale).
    """
    x, y = _subsample(source), _subsample(target)
    valid = np.isfinite(x) & np.isfinite(y)
    x, y = x[valid], y[valid]
    if x.size < 16:
        return 1.0, 0.0
    # Median/MAD start: immune to up to half the pixels being outliers.
    mx, my = np.median(x), np.median(y)
    madx, mady = np.median(np.abs(x - mx)), np.median(np.abs(y - my))
    if madx <= 0:
        return 1.0, 0.0
    s = mady / madx
    b = my - s * mx
    for _ in range(REFIT_ITERATIONS):
        residual = s * x + b - y
        sigma = 1.4826 * np.median(np.abs(residual - np.median(residual)))
        inliers = np.abs(residual) <= INLIER_SIGMAS * max(sigma, 1e-12 * (abs(my) + 1.0))
        if inliers.sum() < 16:
            break
        xi, yi = x[inliers], y[inliers]
        sx, sy = np.std(xi), np.std(yi)
        if sx <= 0 or np.mean((xi - xi.mean()) * (yi - yi.mean())) <= 0:
            break
        # Geometric-mean (reduced major axis) slope, not ordinary least squares: both frames carry the same
        # model noise, and OLS would shrink the scale by var(signal)/var(signal+noise) at every link of the chain.
        s = float(sy / sx)
        b = float(yi.mean() - s * xi.mean())
    if not (np.isfinite(s) and np.isfinite(b)) or s <= 0:
        return 1.0, 0.0
    return float(s), float(b)


def stabilise_disparity(disparity: np.ndarray) -> StabilisedDisparity:
    """Align each frame of (T, H, W) disparity to the aligned previous frame; frame 0 is the anchor."""
    if disparity.ndim != 3 or disparity.shape[0] < 1:
        raise InputError(f"disparity must have shape (frames, height, width), got {disparity.shape}")
    frames = disparity.shape[0]
    out = np.empty(disparity.shape, dtype=np.float32)
    scales, shifts = np.ones(frames), np.zeros(frames)
    out[0] = disparity[0]
    for t in range(1, frames):
        s, b = fit_affine(disparity[t], out[t - 1])
        scales[t], shifts[t] = s, b
        out[t] = s * disparity[t] + b
    return StabilisedDisparity(out, scales, shifts)


def affine_flicker(disparity: np.ndarray) -> float:
    """Mean global-affine frame-to-frame change of (T, H, W) disparity, relative to its magnitude (0 = none)."""
    if disparity.ndim != 3:
        raise InputError(f"disparity must have shape (frames, height, width), got {disparity.shape}")
    if disparity.shape[0] < 2:
        return 0.0
    values = []
    for t in range(1, disparity.shape[0]):
        current, previous = _subsample(disparity[t]), _subsample(disparity[t - 1])
        s, b = fit_affine(disparity[t], disparity[t - 1])
        magnitude = np.mean(np.abs(previous)) + 1e-12
        values.append(np.mean(np.abs((s - 1.0) * current + b)) / magnitude)
    return float(np.mean(values))


def jitter_against_truth(estimate: np.ndarray, truth: np.ndarray) -> float:
    """RMS error of ``estimate`` after the one best affine map for the whole clip, relative to ``truth``.

    With known (T, H, W) true disparity, this is what per-frame scale/shift jitter costs: a clip that is
    right up to a single global scale and shift scores 0.
    """
    x, y = estimate.reshape(-1).astype(np.float64), truth.reshape(-1).astype(np.float64)
    a = np.stack([x, np.ones_like(x)], axis=1)
    (s, b), *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(np.sqrt(np.mean((s * x + b - y) ** 2)) / (np.sqrt(np.mean(y ** 2)) + 1e-12))


def stabilise_keeping_scale(disparity: np.ndarray) -> np.ndarray:
    """Stabilise, then map the whole clip back onto the raw output with one affine fit.

    For metric models: frame-to-frame jitter goes, the clip's overall metric scale stays that of the
    model's average frame rather than of frame 0.
    """
    aligned = stabilise_disparity(disparity).disparity
    s, b = fit_affine(aligned, disparity)
    return (s * aligned + b).astype(np.float32)
