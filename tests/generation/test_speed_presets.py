"""Speed presets on CPU with the tiny models: every preset's code path, its validation, the distill
LoRA's key layout, MagCache's skip plan, and original precision. Speed itself is measured by
bench/speed_presets.py on a GPU, never here. torchao FP8 cannot run on a CPU: the tests check the
fallback and run the rounding-equivalent emulation instead (ex4d_engine/generation/wan/fp8.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from ex4d_engine.errors import InputError, NotFoundError, ResourceError
from ex4d_engine.generation.wan import speed
from ex4d_engine.generation.wan.generator import SamplerSettings, load_generator


@pytest.fixture(scope="module")
def settings():
    return SamplerSettings(window=5, overlap=2, steps=3, area=64 * 64)


def _load(folder, settings, preset, dtype=torch.float32, **kwargs):
    return load_generator(folder, device="cpu", dtype=dtype, settings=settings, speed=preset, **kwargs)


# -- the table and its validation ---------------------------------------------------------------------

def test_presets_and_their_errors():
    assert list(speed.PRESETS) == ["exact", "original", "default", "fast", "turbo"]
    assert speed.get_preset(None).name == speed.DEFAULT_PRESET == "default"
    with pytest.raises(InputError, match="unknown speed preset 'warp'; choose one of exact, original, default, fast, turbo"):
        speed.get_preset("warp")
    turbo = speed.get_preset("turbo")
    assert (turbo.steps, turbo.cfg_scale, turbo.fp8, turbo.distill_lora) == (4, 1.0, True, True)
    assert speed.check_steps(turbo, None) == 4 and speed.check_steps(speed.get_preset("exact"), 7) == 7
    with pytest.raises(InputError, match="runs exactly 4 steps"):
        speed.check_steps(turbo, 25)
    assert speed.get_preset("default").weights == speed.get_preset("fast").weights != turbo.weights


def test_the_protocol_declares_the_presets_the_engine_runs():
    from ex4d_engine.protocol import DEFAULT_SPEED, SPEED_PRESETS

    assert list(SPEED_PRESETS) == list(speed.PRESETS) and DEFAULT_SPEED == speed.DEFAULT_PRESET
    assert speed.get_preset("turbo").summary == SPEED_PRESETS["turbo"].summary
    assert "NOT verified" in SPEED_PRESETS["turbo"].summary  # the add-on shows this next to the choice
    assert all(spec.measured for spec in SPEED_PRESETS.values())  # bench/speed_presets.py, one H200
    seconds = [SPEED_PRESETS[name].expected_s for name in ("original", "exact", "default", "fast", "turbo")]
    assert seconds == sorted(seconds, reverse=True)  # each preset is faster than the one it builds on


# -- every preset runs ----------------------------------------------------------------------------------

def test_every_preset_runs_and_records_what_it_ran(tiny_models_dir, settings, tiny_request):
    videos = {}
    for name in speed.PRESETS:
        generator = _load(tiny_models_dir, settings, name, fp8_emulation=True)
        videos[name] = generator.generate(tiny_request)
        run = generator.last_run
        assert run["speed"] == name and videos[name].shape == (5, 64, 64, 3)
        assert run["fp8"] == ("emulated" if speed.PRESETS[name].fp8 else "off")
        assert run["steps"] == (4 if name == "turbo" else 3)
        assert run["cfg_scale"] == (1.0 if name == "turbo" else 5.0)
    assert np.array_equal(videos["exact"], _load(tiny_models_dir, settings, "exact").generate(tiny_request))
    diff = {n: np.abs(v.astype(int) - videos["exact"]).mean() for n, v in videos.items()}
    assert 0 < diff["default"] < 8, diff  # e4m3 rounding: close, not equal
    assert diff["turbo"] > diff["default"], diff  # another LoRA, 4 steps, no CFG


def test_fp8_falls_back_with_a_reason_where_it_cannot_run(tiny_models_dir, settings, tiny_request):
    generator = _load(tiny_models_dir, settings, "default")
    assert generator.fp8.startswith("off: FP8 needs a CUDA GPU")
    generator.generate(tiny_request)
    assert generator.last_run["fp8"] == generator.fp8
    exact = _load(tiny_models_dir, settings, "exact").generate(tiny_request)
    assert np.array_equal(generator.generate(tiny_request), exact)  # the fallback is exactly the bf16/fp32 path


def test_fp8_emulation_rounds_like_e4m3():
    from ex4d_engine.generation.wan.fp8 import fake_quantize_rows

    x = torch.randn(8, 256) * torch.logspace(-2, 2, 8)[:, None]
    q = fake_quantize_rows(x)
    scale = x.abs().amax(dim=1, keepdim=True) / 448
    assert torch.equal((q / scale).to(torch.float8_e4m3fn).float() * scale, q)  # representable after scaling
    rel = ((q - x).norm(dim=1) / x.norm(dim=1)).max().item()
    assert 1e-3 < rel < 0.05


def test_one_generator_serves_presets_with_the_same_weights(tiny_models_dir, settings, tiny_request):
    from dataclasses import replace

    generator = _load(tiny_models_dir, settings, "default", fp8_emulation=True)
    assert generator.accepts("fast") and generator.accepts(None) and not generator.accepts("turbo")
    generator.generate(replace(tiny_request, speed="fast"))
    assert generator.last_run["speed"] == "fast"
    with pytest.raises(InputError, match="needs other weights"):
        generator.generate(replace(tiny_request, speed="exact"))


# -- MagCache -------------------------------------------------------------------------------------------

def test_magcache_plan_is_fixed_by_the_published_ratios():
    from ex4d_engine.generation.wan.step_cache import MagCache, skip_plan

    plan = skip_plan(25)
    assert [i for i, skip in enumerate(plan) if not skip] == [0, 1, 2, 3, 4, 11, 17, 21, 24]
    assert skip_plan(25, branch=1) == plan and len([s for s in skip_plan(40) if s]) == 25
    cache = MagCache(25)
    x = torch.ones(2, 3)
    assert cache.check(None, x, None) is False  # step 0 always runs
    cache.store(x * 3)
    for _ in range(4):
        assert cache.check(None, x, None) is False
        cache.store(x * 3)
    assert cache.check(None, x, None) is True and torch.equal(cache.update(x), x * 3)  # residual 2 reused


def test_fast_skips_the_blocks_on_planned_steps(tiny_models_dir, tiny_request):
    settings = SamplerSettings(window=5, overlap=2, steps=10, area=64 * 64)
    fast = _load(tiny_models_dir, settings, "fast")
    video = fast.generate(tiny_request)
    from ex4d_engine.generation.wan.step_cache import skip_plan

    assert fast.last_run["cache_skips"] == 2 * sum(skip_plan(10)) > 0  # both guidance branches
    default = _load(tiny_models_dir, settings, "default").generate(tiny_request)
    assert 0 < np.abs(video.astype(int) - default).mean() < 30


# -- original precision ---------------------------------------------------------------------------------

def test_original_precision_is_exact_in_fp32_and_differs_in_bf16(tiny_models_dir, settings, tiny_request):
    from ex4d_engine.generation.wan.original_precision import TimestepHolder, make_original_model_fn

    exact = _load(tiny_models_dir, settings, "exact", dtype=torch.bfloat16)
    dit = exact.pipeline.dit
    torch.manual_seed(0)
    latents = torch.randn(1, 16, 2, 8, 8)
    y = torch.randn(1, 20, 2, 8, 8, dtype=torch.bfloat16)
    context = torch.randn(1, 512, 32, dtype=torch.bfloat16)
    clip = torch.randn(1, 257, 1280, dtype=torch.bfloat16)
    holder = TimestepHolder()
    holder.value = torch.tensor([991.7])
    from diffsynth.pipelines.wan_video import model_fn_wan_video

    with torch.autocast("cpu", dtype=torch.bfloat16):
        original = make_original_model_fn(holder)(dit, latents=latents, timestep=None, context=context,
                                                  clip_feature=clip, y=y)
    ours = model_fn_wan_video(dit, latents=latents.bfloat16(), timestep=torch.tensor([991.7]).bfloat16(),
                              context=context, clip_feature=clip, y=y)
    assert original.dtype == torch.float32 and ours.dtype == torch.bfloat16
    rel = ((original - ours.float()).norm() / original.norm()).item()
    assert 1e-4 < rel < 0.1, rel  # the bf16 residual / timestep / modulation paths differ, slightly
    # in fp32 both paths compute the same thing
    dit32 = _load(tiny_models_dir, settings, "exact").pipeline.dit
    args = dict(latents=latents, context=context.float(), clip_feature=clip.float(), y=y.float())
    a = make_original_model_fn(holder)(dit32, timestep=None, **args)
    b = model_fn_wan_video(dit32, timestep=torch.tensor([991.7]), **args)
    assert ((a - b).norm() / b.norm()).item() < 1e-5


# -- the distill LoRA -----------------------------------------------------------------------------------

def test_distill_lora_file_has_the_released_layout_and_fuses_key_for_key(tiny_models_dir, settings):
    from safetensors.torch import load_file

    from ex4d_engine.generation.wan.distill_lora import fuse_distill_lora

    path = os.path.join(tiny_models_dir, speed.TURBO_LORA_FILE)
    state = load_file(path)
    assert all(k.startswith("diffusion_model.") for k in state)
    for key in ("blocks.0.self_attn.q.lora_down.weight", "blocks.0.self_attn.q.lora_up.weight", "blocks.0.self_attn.q.alpha",
                "blocks.0.self_attn.q.diff_b", "blocks.0.cross_attn.k_img.lora_down.weight",
                "blocks.0.cross_attn.norm_k_img.diff", "blocks.0.norm3.diff", "blocks.0.norm3.diff_b", "blocks.1.diff_m",
                "head.head.lora_up.weight", "time_projection.1.diff_b", "img_emb.proj.1.lora_down.weight"):
        assert "diffusion_model." + key in state, key
    dit = _load(tiny_models_dir, settings, "exact").pipeline.dit
    before = {n: p.detach().clone() for n, p in dit.named_parameters()}
    counts = fuse_distill_lora(dit, path)
    assert counts["tensors"] == len(state)
    after = dict(dit.named_parameters())
    q = "blocks.0.self_attn.q"
    down, up = state[f"diffusion_model.{q}.lora_down.weight"].float(), state[f"diffusion_model.{q}.lora_up.weight"].float()
    alpha = float(state[f"diffusion_model.{q}.alpha"]) / down.shape[0]
    assert torch.allclose(after[f"{q}.weight"] - before[f"{q}.weight"], alpha * up @ down, atol=1e-6)
    assert torch.allclose(after["blocks.1.modulation"] - before["blocks.1.modulation"],
                          state["diffusion_model.blocks.1.diff_m"].float(), atol=1e-6)
    unchanged = [n for n in before if torch.equal(before[n], after[n])]
    assert unchanged == ["patch_embedding.weight", "patch_embedding.bias"] or not any("blocks" in n for n in unchanged)


def test_turbo_without_its_file_or_with_a_foreign_file(tiny_models_dir, settings, tmp_path):
    folder = tmp_path / "no_turbo"
    folder.mkdir()
    for name in os.listdir(tiny_models_dir):
        if name != speed.TURBO_LORA_FILE:
            os.symlink(os.path.join(tiny_models_dir, name), folder / name)
    with pytest.raises(NotFoundError, match=r"(?s)needs wan2.1_i2v_lora_rank64_lightx2v_4step.safetensors .*hf download "
                                            r"lightx2v/Wan2.1-Distill-Loras"):
        _load(str(folder), settings, "turbo")
    from safetensors.torch import load_file, save_file

    state = load_file(os.path.join(tiny_models_dir, speed.TURBO_LORA_FILE))
    state["diffusion_model.blocks.0.self_attn.q.lora_up.weight"] = torch.zeros(7, 8)  # does not fit
    state["diffusion_model.vace_blocks.0.proj.diff_b"] = torch.zeros(4)  # no such module
    save_file(state, str(folder / speed.TURBO_LORA_FILE))
    with pytest.raises(ResourceError, match=r"2 of \d+ tensors do not fit this Wan DiT"):
        _load(str(folder), settings, "turbo")
    (folder / speed.TURBO_LORA_FILE).write_bytes(b"garbage")
    with pytest.raises(ResourceError, match="not a readable safetensors file"):
        _load(str(folder), settings, "turbo")


# -- streamed profiles ----------------------------------------------------------------------------------

def test_prefetch_is_cuda_only_and_streamed_profiles_still_match(tiny_models_dir, settings, tiny_request):
    low = _load(tiny_models_dir, settings, "exact", profile="low")
    assert low.streamed and not hasattr(low.pipeline, "prefetcher")  # pinned memory needs CUDA
    assert low.pipeline.enable_prefetch() is False
    full = _load(tiny_models_dir, settings, "exact").generate(tiny_request)
    assert np.abs(full.astype(int) - low.generate(tiny_request)).mean() < 2.0  # CFG as one batch of 2, tiled VAE


def test_job_options_validate_the_preset():
    from pydantic import ValidationError

    from server.schemas import JobOptions

    assert JobOptions(generator="wan", speed="fast").speed == "fast" and JobOptions().speed is None
    with pytest.raises(ValidationError, match="speed"):
        JobOptions(generator="wan", speed="warp")
