"""``WanGenerator``: the resident EX-4D generator (load once, run many shots).

One shot: pick the 480P-area size at the input's aspect, split the frames into windows
(:mod:`.long_shot`), build each window's conditioning (:mod:`.conditioning`), encode the
camera-video latent, denoise with the LoRA'd Wan I2V DiT, blend the windows, resize back.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from ..base import CancelCheck, GenerationRequest, ProgressCallback, check_cancel
from ...errors import InputError
from .conditioning import build_conditioning
from .long_shot import merge_window, plan_windows
from .sizes import pick_size, window_frames

log = logging.getLogger(__name__)

#: The seed's fixed prompts (generate.py at EX-4D b456a41).
DEFAULT_PROMPT = ("4K ultra HD, surround motion, realistic tone, panoramic shot, wide-angle view, "
                  "cinematic quality")
DEFAULT_NEGATIVE_PROMPT = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
    "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, "
    "poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still "
    "picture, messy background, three legs, many people in the background, walking backwards")


@dataclass(frozen=True)
class SamplerSettings:
    """Defaults as the seed: 49-frame windows, 25 steps, shift 5, CFG 5.

    Attributes:
        window: frames per generation window (4k+1).
        overlap: frames shared by consecutive windows of a long shot (cross-faded).
        tiled_vae: tile the VAE (set by the VRAM profile).
        area: pixel area of the generation size (480P).
    """

    window: int = 49
    overlap: int = 8
    steps: int = 25
    cfg_scale: float = 5.0
    shift: float = 5.0
    tiled_vae: bool = False
    area: int = 832 * 480


class WanGenerator:
    """Implements :class:`ex4d_engine.generation.base.Generator` over a loaded :class:`.adapter.WanPipeline`."""

    name = "wan"

    def __init__(self, pipeline, settings: SamplerSettings = SamplerSettings(), profile: str = "full"):
        self.pipeline = pipeline
        self.settings = settings
        self.profile = profile

    def generate(self, request: GenerationRequest, progress: Optional[ProgressCallback] = None,
                 should_cancel: Optional[CancelCheck] = None) -> np.ndarray:
        request.check()
        if request.profile not in (None, self.profile):
            raise InputError(f"this generator was loaded with profile {self.profile!r}, "
                             f"the request asks for {request.profile!r}; reload it to change profiles")
        s = self.settings
        steps = request.steps or s.steps
        if steps < 1:
            raise InputError(f"steps must be at least 1, got {steps}")
        prompt = DEFAULT_PROMPT if request.prompt is None else request.prompt
        negative = DEFAULT_NEGATIVE_PROMPT if request.negative_prompt is None else request.negative_prompt
        total, h0, w0 = request.colour.shape[:3]
        width, height = pick_size(w0, h0, s.area)
        windows = plan_windows(total, s.window, s.overlap)
        canvas = np.zeros((total, height, width, 3), np.uint8)
        written = 0
        for k, window in enumerate(windows):
            check_cancel(should_cancel)
            frames = window_frames(window.frames, s.window)
            index = np.arange(window.start, window.stop)
            index = np.concatenate([index, np.full(frames - len(index), window.stop - 1)])  # pad: repeat the last frame
            cond = build_conditioning(request.colour[index], request.mask[index], width, height, index, request.seed)
            if k > 0:  # condition on what the previous window generated at this window's first frame
                first = canvas[window.start]
                colour = cond.colour.copy()
                mask = cond.mask.copy()
                colour[0] = first.astype(np.float32) / 127.5 - 1
                mask[0] = 1.0
                cond = dataclasses.replace(cond, colour=colour, mask=mask, first_frame=first)

            def on_step(i, n, k=k):
                check_cancel(should_cancel)
                if progress is not None:
                    progress((k + i / n) / len(windows), f"window {k + 1}/{len(windows)}, step {i + 1}/{n}")

            ray = self.pipeline.ray_latent(cond.colour, cond.mask, s.tiled_vae)
            video = self.pipeline.denoise(
                image=cond.first_frame, ray=ray, prompt=prompt, negative_prompt=negative, width=width,
                height=height, frames=frames, steps=steps, cfg_scale=s.cfg_scale, shift=s.shift,
                seed=request.seed + k, tiled=s.tiled_vae, on_step=on_step)
            written = merge_window(canvas, written, window, video[: window.frames])
        if progress is not None:
            progress(1.0, "done")
        if (width, height) == (w0, h0):
            return canvas
        return np.stack([cv2.resize(f, (w0, h0), interpolation=cv2.INTER_AREA if width > w0 else cv2.INTER_CUBIC)
                         for f in canvas])


def load_generator(models_dir: str, profile: str = "full", device: str = "cuda", *, dtype=None,
                   fuse_lora: bool = True, compile_dit: Optional[bool] = None,
                   settings: Optional[SamplerSettings] = None) -> WanGenerator:
    """Load the Wan2.1-I2V-14B-480P pipeline + ex4d.ckpt from ``models_dir`` once (for the server).

    Args:
        profile: "full", "balanced" or "low" (:mod:`.profiles`); checked against the GPU first.
        dtype: torch dtype of the weights; bfloat16 on a GPU, float32 on the CPU (no fast bf16 there).
        fuse_lora: fuse the LoRA into the DiT weights (default) or keep it as peft layers (the seed's way).
        compile_dit: torch.compile the DiT blocks; default on for CUDA with the ``full`` profile.

    Raises:
        NotFoundError: missing files (with the download commands). ResourceError: GPU too small,
        unrecognised weights, a checkpoint that does not match.
    """
    import torch

    from .adapter import WanPipeline
    from .checkpoint import build_camera_encoder, load_ex4d_checkpoint
    from .lora import fuse_lora as fuse, inject_unfused_lora, target_linears
    from .model_folder import resolve
    from .profiles import check_gpu_fits, get_profile

    prof = get_profile(profile)
    files = resolve(models_dir)
    check_gpu_fits(prof, device)
    dtype = dtype or (torch.bfloat16 if str(device).startswith("cuda") else torch.float32)
    pipe = WanPipeline.load(files, device=device, dtype=dtype, dit_streamed=not prof.dit_resident,
                            vram_limit_gib=prof.vram_limit_gib)
    dit = pipe.dit
    shapes = {n: (m.out_features, m.in_features) for n, m in target_linears(dit).items()}
    ckpt = load_ex4d_checkpoint(files.ex4d_ckpt, shapes, dit.dim)
    log.info(ckpt.summary())
    if fuse_lora:
        fuse(dit, ckpt.lora, compute_device=device)
    else:
        if not prof.dit_resident:
            raise InputError("unfused LoRA needs the 'full' profile")
        inject_unfused_lora(dit, ckpt.lora)
    pipeline = WanPipeline(pipe, build_camera_encoder(ckpt, dit.dim, device, dtype))
    pipeline.checkpoint_summary = ckpt.summary()
    if compile_dit is None:
        compile_dit = str(device).startswith("cuda") and prof.dit_resident
    if compile_dit:
        pipeline.compile()
    base = settings or SamplerSettings()
    return WanGenerator(pipeline, dataclasses.replace(base, tiled_vae=prof.tiled_vae), profile=prof.name)
