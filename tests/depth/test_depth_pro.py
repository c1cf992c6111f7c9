"""Depth Pro backend: a tiny random model (FOV head wired to 60 degrees) through the real loader."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ex4d_engine.depth import estimate_depth
from ex4d_engine.intrinsics import resolve_intrinsics
from ex4d_engine.errors import ResourceError

from .conftest import TINY_DEPTH_PRO_FOV_DEG


def test_metric_depth_and_focal_length(tiny_models_dir, moving_frames):
    est = estimate_depth("depth-pro", moving_frames, models_dir=str(tiny_models_dir), device="cpu")
    width = moving_frames.shape[2]
    expected_focal = 0.5 * width / math.tan(math.radians(TINY_DEPTH_PRO_FOV_DEG) / 2)
    assert est.focal_px == pytest.approx(expected_focal, rel=1e-3)
    assert est.depth.shape == moving_frames.shape[:3] and est.depth.dtype == np.float32
    assert np.isfinite(est.depth).all() and (est.depth > 0).all()
    assert est.units == "metres" and est.backend == "depth-pro"
    # --fov auto takes the model's focal length
    assert resolve_intrinsics(width, moving_frames.shape[1], model_focal_px=est.focal_px).focal_px == \
        pytest.approx(expected_focal, rel=1e-3)


def test_stabilisation_keeps_the_metric_scale(tiny_models_dir, moving_frames):
    on = estimate_depth("depth-pro", moving_frames, models_dir=str(tiny_models_dir), device="cpu")
    off = estimate_depth("depth-pro", moving_frames, models_dir=str(tiny_models_dir), device="cpu", stabilise=False)
    # one global map back to the raw output: the clip's median inverse depth stays put within a few per cent
    assert np.median(1 / on.depth) == pytest.approx(np.median(1 / off.depth), rel=0.05)


def test_a_folder_holding_another_model_is_rejected(models_copy, moving_frames):
    import shutil

    target = models_copy / "DepthPro-hf"
    shutil.rmtree(target)
    shutil.copytree(models_copy / "Depth-Anything-V2-Small-hf", target)
    with pytest.raises(ResourceError, match="not Depth Pro"):
        estimate_depth("depth-pro", moving_frames, models_dir=str(models_copy), device="cpu")
