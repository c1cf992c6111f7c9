"""The whole Wan generator on tiny random models, loaded through the real loading code."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ex4d_engine.errors import InputError, JobCancelledError, ResourceError
from ex4d_engine.generation.base import GenerationRequest
from ex4d_engine.generation.wan.generator import DEFAULT_NEGATIVE_PROMPT, DEFAULT_PROMPT, WanGenerator, load_generator


def test_generates_a_video_with_progress_per_step(tiny_generator, tiny_request):
    seen = []
    video = tiny_generator.generate(tiny_request, progress=lambda f, stage: seen.append((f, stage)))
    assert video.shape == tiny_request.colour.shape and video.dtype == np.uint8
    assert video.std() > 1, "a real picture, not a constant"
    steps = [s for s in seen if "step" in s[1]]
    assert [s[1] for s in steps] == ["window 1/1, step 1/2", "window 1/1, step 2/2"]
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1] == (1.0, "done")


def test_same_seed_same_video_other_seed_other_video(tiny_generator, tiny_request):
    a = tiny_generator.generate(tiny_request)
    b = tiny_generator.generate(tiny_request)
    c = tiny_generator.generate(dataclasses.replace(tiny_request, seed=tiny_request.seed + 1))
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 0.5


def test_cancel_between_steps(tiny_generator, tiny_request):
    calls = []

    def should_cancel():
        calls.append(1)
        return len(calls) > 2  # allow the window start and step 1, stop before step 2

    steps = []
    with pytest.raises(JobCancelledError):
        tiny_generator.generate(tiny_request, progress=lambda f, s: steps.append(s), should_cancel=should_cancel)
    assert steps == ["window 1/1, step 1/2"]
    # the resident pipeline is still usable afterwards
    assert tiny_generator.generate(tiny_request).shape == tiny_request.colour.shape


def test_request_profile_and_steps_are_checked(tiny_generator, tiny_request):
    with pytest.raises(InputError, match="profile"):
        tiny_generator.generate(dataclasses.replace(tiny_request, profile="low"))
    with pytest.raises(InputError, match="steps"):
        tiny_generator.generate(dataclasses.replace(tiny_request, steps=-1))


def test_prompts_are_cached_and_overridable(tiny_generator, tiny_request):
    tiny_generator.generate(dataclasses.replace(tiny_request, prompt="a cat", negative_prompt="static"))
    unit = next(u for u in tiny_generator.pipeline.pipe.units if type(u).__name__ == "CachedPromptEmbedder")
    assert {"a cat", "static", DEFAULT_PROMPT, DEFAULT_NEGATIVE_PROMPT} <= set(unit.cache)


def test_long_shot_windows_are_chained(tiny_generator, tiny_request):
    colour = np.concatenate([tiny_request.colour] * 3)[:13]
    mask = np.concatenate([tiny_request.mask] * 3)[:13]
    stages = []
    video = tiny_generator.generate(GenerationRequest(colour=colour, mask=mask, fps=12.0, seed=1),
                                    progress=lambda f, s: stages.append(s))
    assert video.shape == colour.shape
    assert any(s.startswith("window 4/4") for s in stages), stages  # windows 0-5, 3-8, 6-11, 8-13


def test_output_is_resized_back_to_the_input_size(tiny_generator, tiny_request):
    colour = np.stack([np.pad(f, ((0, 0), (0, 32), (0, 0)), mode="edge") for f in tiny_request.colour])
    mask = np.pad(tiny_request.mask, ((0, 0), (0, 0), (0, 32)), mode="edge")
    video = tiny_generator.generate(GenerationRequest(colour=colour, mask=mask, fps=12.0))
    assert video.shape == (5, 64, 96, 3)


# -- the adapter: zero = plain I2V, non-zero = both guidance branches change -------------------------

@pytest.fixture(scope="module")
def zero_generator(tiny_models_dir, tiny_settings, checkpoint_folder):
    """The tiny models with an all-zero camera encoder output conv and zero LoRA B."""
    state = torch.load(f"{tiny_models_dir}/ex4d.ckpt", weights_only=True)
    zero = {k: (torch.zeros_like(v) if ("lora_B" in k or k.startswith("latent_patch_embedding")) else v)
            for k, v in state.items()}
    folder = checkpoint_folder(zero)
    return load_generator(folder, profile="full", device="cpu", dtype=torch.float32, settings=tiny_settings)


def _plain_i2v(generator: WanGenerator, request: GenerationRequest) -> np.ndarray:
    """diffsynth's own I2V pipeline call, no EX-4D addition, on the same first frame."""
    from PIL import Image

    from ex4d_engine.generation.wan.conditioning import build_conditioning

    s = generator.settings
    cond = build_conditioning(request.colour, request.mask, 64, 64, np.arange(5), request.seed)
    frames = generator.pipeline.pipe(
        prompt=DEFAULT_PROMPT, negative_prompt=DEFAULT_NEGATIVE_PROMPT, input_image=Image.fromarray(cond.first_frame),
        seed=request.seed, height=64, width=64, num_frames=5, cfg_scale=generator.preset.cfg_scale,
        num_inference_steps=s.steps, sigma_shift=generator.preset.shift, tiled=False)
    return np.stack([np.asarray(f) for f in frames])


def test_zero_adapter_reproduces_plain_i2v_exactly(zero_generator, tiny_request):
    ours = zero_generator.generate(tiny_request)
    assert np.array_equal(ours, _plain_i2v(zero_generator, tiny_request))


def test_nonzero_adapter_changes_output(tiny_generator, tiny_request):
    ours = tiny_generator.generate(tiny_request)
    assert np.abs(ours.astype(int) - _plain_i2v(tiny_generator, tiny_request)).mean() > 0.5


def _branch_outputs(pipeline, ray) -> list:
    """DiT outputs of one step: [positive branch, negative branch]."""
    outputs = []
    handle = pipeline.dit.head.register_forward_hook(lambda m, a, out: outputs.append(out.detach().clone()))
    try:
        pipeline.denoise(image=np.full((64, 64, 3), 128, np.uint8), ray=ray, prompt=DEFAULT_PROMPT,
                         negative_prompt=DEFAULT_NEGATIVE_PROMPT, width=64, height=64, frames=5, steps=1,
                         cfg_scale=5.0, shift=5.0, seed=0, tiled=False)
    finally:
        handle.remove()
    assert len(outputs) == 2
    return outputs


def test_ray_latent_reaches_both_guidance_branches(tiny_generator):
    pipeline = tiny_generator.pipeline
    colour = np.zeros((5, 64, 64, 3), np.float32)
    mask = np.ones((5, 64, 64), np.float32)
    mask[1:, :, 32:] = -1
    ray = pipeline.ray_latent(colour, mask, tiled=False)
    assert ray.shape == (1, 64, 2, 4, 4)  # 64 px -> latent 8 -> patches 4 and ray.abs().max() > 0
    without, with_ray = _branch_outputs(pipeline, None), _branch_outputs(pipeline, ray)
    for branch in (0, 1):
        assert (with_ray[branch] - without[branch]).abs().mean() > 1e-4, f"branch {branch} ignored the ray latent"


def test_fused_and_unfused_lora_agree_in_bf16(tiny_models_dir, tiny_settings):
    outputs = []
    for fuse in (True, False):
        generator = load_generator(tiny_models_dir, device="cpu", dtype=torch.bfloat16, fuse_lora=fuse,
                                   settings=tiny_settings)
        outputs.append(_branch_outputs(generator.pipeline, None)[0].float())
    fused, unfused = outputs
    rel = ((fused - unfused).norm() / unfused.norm()).item()
    assert rel < 2e-2, f"fused vs unfused relative error {rel:.4f}"


def test_lora_changes_the_dit(tiny_models_dir, tiny_settings, zero_generator):
    with_lora = _branch_outputs(load_generator(tiny_models_dir, device="cpu", dtype=torch.float32,
                                               settings=tiny_settings).pipeline, None)[0]
    without = _branch_outputs(zero_generator.pipeline, None)[0]
    assert (with_lora - without).abs().mean() > 1e-4


# -- VRAM profiles --------------------------------------------------------------------------------------

def test_low_profile_streams_the_dit_and_matches_full(tiny_models_dir, tiny_settings, tiny_generator, tiny_request):
    low = load_generator(tiny_models_dir, profile="low", device="cpu", dtype=torch.float32, settings=tiny_settings)
    assert low.pipeline.pipe.vram_management_enabled
    assert type(low.pipeline.dit.blocks[0].self_attn.q).__name__ == "AutoWrappedLinear"
    full_out = tiny_generator.generate(tiny_request)
    low_out = low.generate(tiny_request)  # tiled VAE in "low": nearly, not bit, identical
    assert np.abs(full_out.astype(int) - low_out).mean() < 2.0


def test_gpu_too_small_is_refused_before_loading(monkeypatch):
    from ex4d_engine.generation.wan import profiles

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (20 * 2**30, 24 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "RTX 4090")
    with pytest.raises(ResourceError, match=r"RTX 4090 has 24.0 GiB, profile 'full' needs at least 44 GiB; try --profile low"):
        profiles.check_gpu_fits(profiles.get_profile("full"), "cuda")
    profiles.check_gpu_fits(profiles.get_profile("low"), "cuda")
    with pytest.raises(InputError, match="unknown VRAM profile"):
        profiles.get_profile("huge")


def test_cuda_without_a_gpu_is_a_clear_error(tiny_models_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ResourceError, match="no CUDA GPU"):
        load_generator(tiny_models_dir, device="cuda")


def test_mismatched_checkpoint_fails_loading_cleanly(checkpoint_folder):
    folder = checkpoint_folder(b"not a checkpoint at all")
    with pytest.raises(ResourceError, match="not a readable torch checkpoint"):
        load_generator(folder, device="cpu", dtype=torch.float32)
