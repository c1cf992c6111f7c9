"""Temporal stabilisation on a synthetic clip with known disparity and injected per-frame scale/shift jitter."""

from __future__ import annotations

import numpy as np
import pytest

from ex4d_engine.depth.stabilise import (affine_flicker, fit_affine, jitter_against_truth, stabilise_disparity,
                                         stabilise_keeping_scale)


def known_disparity(frames: int = 49, height: int = 72, width: int = 96) -> np.ndarray:
    """A ground plane (disparity grows downwards), a rippled wall term, and a near disc sliding right."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = []
    for t in range(frames):
        d = 0.2 + 0.6 * yy / height + 0.05 * np.sin(xx / 10 + 0.1 * t)
        disc = (xx - (20 + 1.2 * t)) ** 2 + (yy - height / 2) ** 2 < 12 ** 2
        out.append(np.where(disc, 1.5, d))
    return np.asarray(out, np.float32)


def jittered(truth: np.ndarray, scale_sigma: float, shift_sigma: float, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = truth.shape[0]
    scales = np.exp(rng.normal(0, scale_sigma, t))
    shifts = rng.normal(0, shift_sigma, t)
    noisy = truth * scales[:, None, None] + shifts[:, None, None] + rng.normal(0, noise, truth.shape)
    return noisy.astype(np.float32), rng


def test_removes_at_least_90_percent_of_scale_and_shift_jitter():
    truth = known_disparity()
    noisy, _ = jittered(truth, scale_sigma=0.15, shift_sigma=0.15, noise=0.0)
    before = jitter_against_truth(noisy, truth)
    after = jitter_against_truth(stabilise_disparity(noisy).disparity, truth)
    assert before > 0.1  # the injected jitter is large
    assert 1 - after / before >= 0.90, (before, after)


def test_removes_at_least_90_percent_of_the_jitter_above_the_noise_floor():
    """With per-pixel model noise too, no method can beat the noise; the *jitter* above it must go."""
    truth = known_disparity()
    noisy, rng = jittered(truth, scale_sigma=0.15, shift_sigma=0.15, noise=0.03)
    floor = jitter_against_truth(truth + rng.normal(0, 0.03, truth.shape), truth)
    before = jitter_against_truth(noisy, truth)
    after = jitter_against_truth(stabilise_disparity(noisy).disparity, truth)
    removed = 1 - (after - floor) / (before - floor)
    assert removed >= 0.90, (before, after, floor)


def test_flicker_metric_sees_jitter_and_its_removal():
    truth = known_disparity(frames=20)
    noisy, _ = jittered(truth, scale_sigma=0.05, shift_sigma=0.0, noise=0.0)
    assert affine_flicker(truth) < 0.005  # local motion only
    assert affine_flicker(noisy) > 0.02  # 5 % scale jitter reads as a few per cent
    assert affine_flicker(stabilise_disparity(noisy).disparity) < 0.1 * affine_flicker(noisy)


def test_fit_affine_recovers_the_map_despite_outliers():
    rng = np.random.default_rng(1)
    source = rng.uniform(0.1, 1.0, (64, 64))
    target = 2.5 * source + 0.3
    target[:, :20] = rng.uniform(0, 5, (64, 20))  # 31 % of the pixels are wrong (moving object, occlusion)
    s, b = fit_affine(source, target)
    assert s == pytest.approx(2.5, rel=1e-3) and b == pytest.approx(0.3, abs=1e-3)


def test_frame_zero_is_the_anchor_and_a_flat_frame_is_left_alone():
    truth = known_disparity(frames=3)
    truth[2] = 0.5  # flat: no scale can be fitted
    result = stabilise_disparity(truth * 2.0)
    assert result.scales[0] == 1.0 and result.shifts[0] == 0.0
    assert result.scales[2] == 1.0 and result.shifts[2] == 0.0
    np.testing.assert_allclose(result.disparity[0], truth[0] * 2.0, rtol=1e-6)


def test_keeping_scale_matches_the_clip_not_frame_zero():
    truth = known_disparity(frames=10)
    noisy = truth.copy()
    noisy[0] *= 3.0  # frame 0 alone is off by 3x
    kept = stabilise_keeping_scale(noisy)
    assert np.median(kept) == pytest.approx(np.median(noisy), rel=0.15)
