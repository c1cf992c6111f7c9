"""ex4d.ckpt loading: counts, and a clear refusal of anything that does not match."""

from __future__ import annotations

import os

import pytest
import torch

from ex4d_engine.errors import NotFoundError, ResourceError
from ex4d_engine.generation.wan.checkpoint import build_camera_encoder, load_ex4d_checkpoint
from ex4d_engine.generation.wan.lora import target_linears


@pytest.fixture(scope="module")
def tiny_dit(tiny_models_dir):
    from diffsynth.models.wan_video_dit import WanModel

    from ex4d_engine.generation.wan.tiny_models import TINY_DIT

    return WanModel(**TINY_DIT)


@pytest.fixture(scope="module")
def shapes(tiny_dit):
    return {n: (m.out_features, m.in_features) for n, m in target_linears(tiny_dit).items()}


@pytest.fixture(scope="module")
def good_state(tiny_models_dir):
    return torch.load(os.path.join(tiny_models_dir, "ex4d.ckpt"), weights_only=True)


def test_target_layers_match_the_seed(shapes):
    # per block: self/cross attention q, k, v, o and ffn.0, ffn.2; never k_img / v_img
    assert len(shapes) == 2 * 10
    assert "blocks.0.cross_attn.q" in shapes and "blocks.1.ffn.2" in shapes
    assert not any("k_img" in n or "v_img" in n for n in shapes)


def test_released_key_layout_loads_with_counts(tiny_models_dir, shapes, good_state):
    keys = set(good_state)
    assert "blocks.0.self_attn.q.lora_A.default.weight" in keys
    assert "latent_encoder.4.bias" in keys and "latent_patch_embedding.weight" in keys
    ckpt = load_ex4d_checkpoint(os.path.join(tiny_models_dir, "ex4d.ckpt"), shapes, 64)
    assert (ckpt.loaded, ckpt.missing, ckpt.unexpected) == (len(keys), 0, 0) == (48, 0, 0)
    assert ckpt.rank == 16 and ckpt.hidden_channels == 32
    assert "48 tensors loaded, 0 missing, 0 unexpected" in ckpt.summary()
    encoder = build_camera_encoder(ckpt, 64, "cpu", torch.float32)
    assert torch.equal(encoder.latent_patch_embedding.weight, good_state["latent_patch_embedding.weight"])


def _write(tmp_path, state):
    path = tmp_path / "ex4d.ckpt"
    torch.save(state, path)
    return str(path)


def test_half_a_lora_pair_is_refused(tmp_path, shapes, good_state):
    state = dict(good_state)
    del state["blocks.1.ffn.2.lora_B.default.weight"]
    with pytest.raises(ResourceError, match=r"1 tensor\(s\) cannot be placed \(blocks.1.ffn.2 has only one of lora_A / "
                                            r"lora_B\)\. 47 tensors would load, 1 missing, 0 unexpected"):
        load_ex4d_checkpoint(_write(tmp_path, state), shapes, 64)


def test_missing_layer_and_unexpected_keys_load_like_the_original(tmp_path, shapes, good_state, caplog):
    """strict=False: a layer with neither A nor B stays unadapted, keys that match nothing are ignored."""
    state = dict(good_state)
    del state["blocks.1.ffn.2.lora_A.default.weight"], state["blocks.1.ffn.2.lora_B.default.weight"]
    state["blocks.0.cross_attn.k_img.lora_A.default.weight"] = torch.zeros(16, 64)
    state["optimizer.step"] = torch.tensor(3.0)
    ckpt = load_ex4d_checkpoint(_write(tmp_path, state), shapes, 64)
    assert (ckpt.loaded, ckpt.missing, ckpt.unexpected) == (46, 2, 2)
    assert "46 tensors loaded, 2 missing, 2 unexpected" in ckpt.summary()
    assert "blocks.1.ffn.2.lora_A.default.weight" not in ckpt.lora
    assert "stay unadapted" in caplog.text and "are ignored" in caplog.text


def test_dit_weights_in_the_checkpoint_are_applied_with_shape_checks(tmp_path, shapes, good_state, tiny_dit):
    import copy

    dit = copy.deepcopy(tiny_dit)
    trained = torch.full_like(dit.blocks[0].self_attn.q.weight, 0.5)
    state = dict(good_state, **{"blocks.0.self_attn.q.weight": trained, "head.head.bias": torch.ones(64)})
    ckpt = load_ex4d_checkpoint(_write(tmp_path, state), shapes, 64, dit=dit)
    assert (ckpt.loaded, ckpt.unexpected) == (50, 0) and "DiT weights: 2 tensors" in ckpt.summary()
    assert torch.equal(dit.blocks[0].self_attn.q.weight, trained) and torch.equal(dit.head.head.bias, torch.ones(64))
    without_dit = load_ex4d_checkpoint(_write(tmp_path, state), shapes, 64)  # nothing to place them in
    assert (without_dit.loaded, without_dit.unexpected) == (48, 2)
    bad = dict(good_state, **{"blocks.0.self_attn.q.weight": torch.zeros(3, 3)})
    before = dit.blocks[0].self_attn.q.weight.clone()
    with pytest.raises(ResourceError, match=r"blocks.0.self_attn.q.weight is \(3, 3\), the DiT parameter is \(64, 64\)"):
        load_ex4d_checkpoint(_write(tmp_path, bad), shapes, 64, dit=dit)
    assert torch.equal(dit.blocks[0].self_attn.q.weight, before)  # refused before changing anything


def test_old_non_zip_checkpoint_loads_without_mmap(tmp_path, shapes, good_state, caplog):
    path = tmp_path / "old.ckpt"
    torch.save(dict(good_state), path, _use_new_zipfile_serialization=False)
    ckpt = load_ex4d_checkpoint(str(path), shapes, 64)
    assert ckpt.loaded == 48 and "cannot be memory-mapped" in caplog.text


def test_checkpoint_for_another_dit_is_refused(tmp_path, good_state):
    wider = {"blocks.0.self_attn.q": (128, 128)}
    with pytest.raises(ResourceError, match=r"2 tensor\(s\) cannot be placed"):
        load_ex4d_checkpoint(_write(tmp_path, good_state), wider, 64)
    with pytest.raises(ResourceError, match="cannot be placed .*latent_patch_embedding"):  # encoder width != DiT width
        load_ex4d_checkpoint(_write(tmp_path, good_state), {}, 5120)


def test_corrupted_files_are_refused(tmp_path, shapes, tiny_models_dir, good_state):
    data = open(os.path.join(tiny_models_dir, "ex4d.ckpt"), "rb").read()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ResourceError, match="not a readable torch checkpoint"):
        load_ex4d_checkpoint(str(truncated), shapes, 64)
    with pytest.raises(ResourceError, match="not a flat dict of tensors"):
        load_ex4d_checkpoint(_write(tmp_path, {"state_dict": dict(good_state)}), shapes, 64)
    with pytest.raises(ResourceError, match="no EX-4D LoRA"):
        load_ex4d_checkpoint(_write(tmp_path, {"weight": torch.zeros(3)}), shapes, 64)
    nan = dict(good_state)
    nan["latent_encoder.0.bias"] = torch.full_like(nan["latent_encoder.0.bias"], float("nan"))
    with pytest.raises(ResourceError, match="NaN"):
        load_ex4d_checkpoint(_write(tmp_path, nan), shapes, 64)
    with pytest.raises(NotFoundError):
        load_ex4d_checkpoint(str(tmp_path / "absent.ckpt"), shapes, 64)
