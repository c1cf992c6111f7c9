"""Depth Anything backend: a tiny random model in the HF layout, loaded by the real transformers loader."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ex4d_engine.depth import estimate_depth
from ex4d_engine.depth.conversion import NEAREST_DEPTH
from ex4d_engine.errors import InputError, ResourceError


def test_depth_from_models_dir_has_the_clip_shape_and_seed_scale(tiny_models_dir, moving_frames):
    calls = []
    est = estimate_depth("depth-anything", moving_frames, models_dir=str(tiny_models_dir), device="cpu",
                         progress=lambda f, m: calls.append(f))
    assert est.depth.shape == moving_frames.shape[:3] and est.depth.dtype == np.float32
    assert np.isfinite(est.depth).all() and (est.depth > 0).all()
    # relative model -> the seed's DepthCrafter scale: nearest pixel of the clip at 10000/3900
    assert est.depth.min() == pytest.approx(NEAREST_DEPTH, rel=1e-5)
    assert est.depth.max() <= 1e4
    assert est.units == "depthcrafter pseudo-units" and est.backend == "depth-anything" and est.focal_px is None
    assert est.flicker_before is not None and est.flicker_after is not None
    assert est.flicker_after <= est.flicker_before + 1e-9
    assert calls and calls[-1] == 1.0 and calls == sorted(calls)


def test_stabilise_off_gives_per_frame_output(tiny_models_dir, moving_frames):
    on = estimate_depth("depth-anything", moving_frames, models_dir=str(tiny_models_dir), device="cpu")
    off = estimate_depth("depth-anything", moving_frames, models_dir=str(tiny_models_dir), device="cpu",
                         stabilise=False)
    assert off.flicker_after is None and on.flicker_before == pytest.approx(off.flicker_before)
    assert off.depth.shape == on.depth.shape


def test_found_in_the_hugging_face_cache_offline(tiny_models_dir, moving_frames, tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    repo = cache / "models--depth-anything--Depth-Anything-V2-Small-hf"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_models_dir / "Depth-Anything-V2-Small-hf", snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    est = estimate_depth("depth-anything", moving_frames[:2], device="cpu")
    assert est.depth.shape == (2, 40, 52)


def test_models_dir_from_environment(tiny_models_dir, moving_frames, monkeypatch):
    monkeypatch.setenv("EX4D_MODELS_DIR", str(tiny_models_dir))
    assert estimate_depth("depth-anything", moving_frames[:1], device="cpu").depth.shape == (1, 40, 52)


def test_missing_weights_name_the_folder_and_the_download_command(tmp_path, moving_frames):
    with pytest.raises(ResourceError) as err:
        estimate_depth("depth-anything", moving_frames, models_dir=str(tmp_path / "models"), device="cpu")
    msg = err.value.message
    assert str(tmp_path / "models" / "Depth-Anything-V2-Small-hf") in msg
    assert "hf download depth-anything/Depth-Anything-V2-Small-hf --local-dir" in msg


def test_corrupt_weights_file_is_a_clear_error(models_copy, moving_frames):
    weights = models_copy / "Depth-Anything-V2-Small-hf" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # truncated download
    with pytest.raises(ResourceError) as err:
        estimate_depth("depth-anything", moving_frames, models_dir=str(models_copy), device="cpu")
    assert "could not be loaded" in err.value.message and str(weights.parent) in err.value.message
    assert "hf download" in err.value.message


def test_corrupt_config_is_a_clear_error(models_copy, moving_frames):
    config = models_copy / "Depth-Anything-V2-Small-hf" / "config.json"
    config.write_text("{not json")
    with pytest.raises(ResourceError) as err:
        estimate_depth("depth-anything", moving_frames, models_dir=str(models_copy), device="cpu")
    assert str(config) in err.value.message and "not valid JSON" in err.value.message


def test_missing_image_processor_config_is_named(models_copy, moving_frames):
    (models_copy / "Depth-Anything-V2-Small-hf" / "preprocessor_config.json").unlink()
    with pytest.raises(ResourceError, match="preprocessor_config.json is missing"):
        estimate_depth("depth-anything", moving_frames, models_dir=str(models_copy), device="cpu")


@pytest.mark.parametrize("bad", [np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8, 3), np.float32),
                                 np.zeros((0, 8, 8, 3), np.uint8)])
def test_malformed_frames_are_input_errors(tiny_models_dir, bad):
    with pytest.raises(InputError):
        estimate_depth("depth-anything", bad, models_dir=str(tiny_models_dir), device="cpu")


def test_unknown_backend_lists_the_available_ones(moving_frames):
    with pytest.raises(InputError, match="depth-anything") as err:
        estimate_depth("midas", moving_frames)
    assert "'midas'" in err.value.message
