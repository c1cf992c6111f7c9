"""Tiny randomly initialised depth models saved in the Hugging Face layout (no network, fixed seeds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

#: The FOV the tiny Depth Pro's FOV head is wired to output, so the focal estimate is checkable.
TINY_DEPTH_PRO_FOV_DEG = 60.0


def _transformers():
    from ex4d_engine.depth.hf_models import import_transformers

    return import_transformers()


def save_tiny_depth_anything(folder: Path) -> Path:
    """A 4-layer, 32-wide Depth Anything (DINOv2 backbone + DPT head) and its DPT image processor."""
    import torch

    t = _transformers()
    torch.manual_seed(0)
    config = t.DepthAnythingConfig(
        backbone_config=dict(model_type="dinov2", hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                             mlp_ratio=2, image_size=56, patch_size=14, out_indices=[1, 2, 3, 4],
                             reshape_hidden_states=False),
        reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=8)
    t.DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    t.DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                        do_pad=False, resample=3).save_pretrained(folder)
    return folder


def save_tiny_depth_pro(folder: Path) -> Path:
    """A tiny Depth Pro (3 DINOv2 encoders of width 16) whose FOV head outputs exactly 60 degrees."""
    import torch

    t = _transformers()
    torch.manual_seed(0)
    encoder = dict(model_type="dinov2", hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                   patch_size=4, image_size=16)
    config = t.DepthProConfig(
        patch_size=16, fusion_hidden_size=16, intermediate_hook_ids=[1, 0], intermediate_feature_dims=[8, 8],
        scaled_images_ratios=[0.5, 1.0], scaled_images_overlap_ratios=[0.0, 0.25], scaled_images_feature_dims=[16, 8],
        merge_padding_value=1, use_fov_model=True, num_fov_head_layers=1,
        image_model_config=dict(encoder), patch_model_config=dict(encoder), fov_model_config=dict(encoder))
    model = t.DepthProForDepthEstimation(config)
    last = model.fov_model.head.layers[-1]
    with torch.no_grad():  # a constant FOV, whatever the image: the test can then check the focal length exactly
        last.weight.zero_()
        last.bias.fill_(TINY_DEPTH_PRO_FOV_DEG)
    model.save_pretrained(folder)
    # What DepthProImageProcessor.save_pretrained writes (the class itself needs torchvision to instantiate).
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "DepthProImageProcessor", "do_resize": True, "do_rescale": True,
        "do_normalize": True, "size": {"height": 32, "width": 32}, "resample": 2,
        "rescale_factor": 1 / 255, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
    return folder


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """A models folder holding tiny Depth-Anything-V2-Small-hf and DepthPro-hf in the HF layout."""
    root = tmp_path_factory.mktemp("models")
    save_tiny_depth_anything(root / "Depth-Anything-V2-Small-hf")
    save_tiny_depth_pro(root / "DepthPro-hf")
    return root


@pytest.fixture
def models_copy(tmp_path, tiny_models_dir) -> Path:
    """A private copy of the tiny models folder, for tests that break files."""
    copy = tmp_path / "models"
    shutil.copytree(tiny_models_dir, copy)
    return copy


@pytest.fixture
def moving_frames() -> np.ndarray:
    """6 frames, 40x52 (not multiples of 14 or 64): a bright square sliding over a gradient."""
    t, h, w = 6, 40, 52
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        img = np.stack([xx * 4, yy * 5, 255 - xx * 3], -1).astype(np.float64)
        img[10:24, 5 + 4 * i:19 + 4 * i] = (250, 240, 30)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


@pytest.fixture(autouse=True)
def _no_network_and_no_env(monkeypatch, tmp_path):
    """Tests see no user models folder, an empty HF cache, and the hub offline."""
    monkeypatch.delenv("EX4D_MODELS_DIR", raising=False)
    monkeypatch.delenv("EX4D_DEPTHCRAFTER_REPO", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
