"""Tiny random Wan2.1-I2V models in the official file layout (+ a tiny ex4d.ckpt), built once per
session and registered with diffsynth, and generators loaded from them through the real code."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    from ex4d_engine.generation.wan.tiny_models import register_tiny_models, write_tiny_model_folder

    folder = str(tmp_path_factory.mktemp("wan_tiny"))
    write_tiny_model_folder(folder, seed=0)
    register_tiny_models(folder)
    return folder


@pytest.fixture(scope="session")
def checkpoint_folder(tiny_models_dir, tmp_path_factory):
    """make(checkpoint) -> a model folder sharing the tiny Wan files (symlinks) with its own ex4d.ckpt;
    ``checkpoint`` is a state dict to torch.save, or raw bytes written as is."""

    def make(checkpoint) -> str:
        target = str(tmp_path_factory.mktemp("ckpt_folder"))
        for name in os.listdir(tiny_models_dir):
            if name != "ex4d.ckpt":
                os.symlink(os.path.join(tiny_models_dir, name), os.path.join(target, name))
        path = os.path.join(target, "ex4d.ckpt")
        if isinstance(checkpoint, bytes):
            with open(path, "wb") as f:
                f.write(checkpoint)
        else:
            torch.save(checkpoint, path)
        return target

    return make


@pytest.fixture(scope="session")
def tiny_settings():
    from ex4d_engine.generation.wan.generator import SamplerSettings

    # 5-frame windows, 2 steps, 64x64 generation area: a whole shot in about a second on CPU
    return SamplerSettings(window=5, overlap=2, steps=2, area=64 * 64)


@pytest.fixture(scope="session")
def tiny_generator(tiny_models_dir, tiny_settings):
    from ex4d_engine.generation.wan.generator import load_generator

    return load_generator(tiny_models_dir, profile="full", device="cpu", dtype=torch.float32, settings=tiny_settings)


@pytest.fixture
def tiny_request():
    """5 frames of 64x64: a gradient, the right third hidden from frame 1 on."""
    from ex4d_engine.generation.base import GenerationRequest

    from ex4d_testing import gradient_shot

    colour, mask = gradient_shot(5, 64, 64, hidden_from_x=42)
    return GenerationRequest(colour=colour, mask=mask, fps=12.0, seed=3)
