"""``depthcrafter``: the seed's depth model, reproduced exactly (EX-4D ``utils/depth_utils.py``).

DepthCrafter (Tencent) is not on PyPI and its code and weights are for academic, research and
education use only, so nothing of it ships here: the user points us at a git checkout
(``--depthcrafter-repo DIR`` or ``$EX4D_DEPTHCRAFTER_REPO``) and at two weight folders in the
Hugging Face layout (``--models-dir`` / ``$EX4D_MODELS_DIR`` or the HF cache):
``tencent/DepthCrafter`` (the UNet) and ``stabilityai/stable-video-diffusion-img2vid`` (VAE, image
encoder, scheduler; gated, Stability AI community licence). ``diffusers`` must be installed.

The seed's settings: fp16 UNet + SVD img2vid pipeline (variant "fp16"), no CPU offload, xformers
when available, attention slicing, seed 42, 5 steps, guidance 1.0, window 110, overlap 25, frames
as float in [0, 1] at the working resolution; output channels averaged, then the clip-wide
disparity -> depth conversion of ``conversion.py``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import ResourceError
from .base import (ComponentStatus, DepthEstimate, DepthSettings, ProgressFn, check_frames, report,
                   resolve_device)
from .conversion import channels_to_disparity, relative_disparity_to_depth
from .stabilise import affine_flicker
from .weights import ModelWeights, locate, require

REPO_ENV = "EX4D_DEPTHCRAFTER_REPO"
REPO_URL = "https://github.com/Tencent/DepthCrafter"
#: Files a usable checkout has (the pipeline and UNet classes; stable across DepthCrafter releases).
REPO_FILES = ("depthcrafter/depth_crafter_ppl.py", "depthcrafter/unet.py")
CODE_LICENCE = "DepthCrafter licence: academic, research and education use only (no commercial use)"

DEPTHCRAFTER_UNET = ModelWeights(
    repo_id="tencent/DepthCrafter",
    licence=CODE_LICENCE,
    weight_files=("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
)
SVD_IMG2VID = ModelWeights(
    repo_id="stabilityai/stable-video-diffusion-img2vid",
    licence="Stability AI community licence (stable-video-diffusion-community); gated download",
    config_files=("model_index.json", "vae/config.json", "image_encoder/config.json",
                  "scheduler/scheduler_config.json", "feature_extractor/preprocessor_config.json"),
    weight_files=("vae/diffusion_pytorch_model.fp16.safetensors",),
    required_files=("image_encoder/model.fp16.safetensors",),
    include=("model_index.json", "*/*config.json", "vae/*.fp16.safetensors", "image_encoder/*.fp16.safetensors"),
    gated=True,
)


@dataclass(frozen=True)
class DepthCrafterCallSettings:
    """The seed's DepthCrafter call (ex4d_method.md §3)."""

    num_inference_steps: int = 5
    guidance_scale: float = 1.0
    window_size: int = 110
    overlap: int = 25
    seed: int = 42


SEED_SETTINGS = DepthCrafterCallSettings()


def checkout_dir(settings: DepthSettings) -> Optional[Path]:
    value = settings.depthcrafter_repo or os.environ.get(REPO_ENV)
    return Path(value).expanduser() if value else None


def checkout_problem(repo: Optional[Path]) -> str:
    if repo is None:
        return f"no DepthCrafter checkout given (--depthcrafter-repo DIR or ${REPO_ENV})"
    if not repo.is_dir():
        return f"DepthCrafter checkout {repo} does not exist"
    missing = [f for f in REPO_FILES if not (repo / f).is_file()]
    if missing:
        return f"{repo} is not a DepthCrafter checkout (missing {', '.join(missing)})"
    return ""


def diffusers_problem() -> str:
    """Whether diffusers is installed (not imported: listing must stay cheap; a broken install fails at load)."""
    if importlib.util.find_spec("diffusers") is None:
        return "the Python package 'diffusers' is not installed"
    return ""


class DepthCrafterBackend:
    name = "depthcrafter"
    description = "DepthCrafter video diffusion (the seed's choice; needs your checkout + weights, CUDA)"
    licence = "research only: DepthCrafter licence + Stability AI SVD community licence"
    commercial_use = False
    estimates_focal = False

    def components(self, settings: DepthSettings) -> list[ComponentStatus]:
        repo = checkout_dir(settings)
        code = checkout_problem(repo)
        target = str(repo) if repo else "DIR"
        rows = [ComponentStatus("DepthCrafter code (git checkout)", not code, str(repo) if repo else "not given",
                                CODE_LICENCE, f"git clone {REPO_URL} {target}  # then --depthcrafter-repo {target}",
                                code)]
        diff = diffusers_problem()
        rows.append(ComponentStatus("Python package diffusers", not diff, "this Python environment", "Apache-2.0",
                                    "pip install 'diffusers>=0.29'", diff))
        for spec in (DEPTHCRAFTER_UNET, SVD_IMG2VID):
            found = locate(spec, settings.models_dir)
            rows.append(ComponentStatus(
                f"weights {spec.repo_id}", found.found,
                str(found.folder) if found.found else " | ".join(found.searched),
                spec.licence, spec.download_command(settings.models_dir), found.problem))
        return rows

    def estimate(self, frames: np.ndarray, settings: DepthSettings,
                 progress: Optional[ProgressFn] = None) -> DepthEstimate:
        # 1. Check inputs and everything the user must provide, naming each missing piece
        check_frames(frames)
        missing = [c for c in self.components(settings) if not c.found]
        if missing:
            lines = "; ".join(f"{c.name}: {c.problem} -> {c.get_command}" for c in missing)
            raise ResourceError(f"depth backend 'depthcrafter' is not usable: {lines}. DepthCrafter is "
                                "research-only; the licence-clean backend is --backend depth-anything")
        device = resolve_device(settings.device)
        if not device.startswith("cuda"):
            raise ResourceError("depth backend 'depthcrafter' needs a CUDA GPU (fp16 video diffusion); "
                                "on this machine use --backend depth-anything")

        # 2. Load the seed's pipeline
        report(progress, 0.0, "loading DepthCrafter")
        pipe = load_pipeline(checkout_dir(settings), require(DEPTHCRAFTER_UNET, settings.models_dir),
                             require(SVD_IMG2VID, settings.models_dir), device)

        # 3. Run it with the seed's settings, at a size DepthCrafter accepts
        video, size = _to_model_size(frames)
        report(progress, 0.1, f"DepthCrafter on {len(frames)} frames at {size[1]}x{size[0]}")
        output = run_pipeline(pipe, video, SEED_SETTINGS)

        # 4. The seed's post-processing (and back to the caller's size)
        disparity = _resize_stack(channels_to_disparity(output), frames.shape[1:3])
        depth = relative_disparity_to_depth(disparity)
        report(progress, 1.0, "depth done")
        return DepthEstimate(depth=depth, focal_px=None, units="depthcrafter pseudo-units", backend=self.name,
                             flicker_before=affine_flicker(disparity), flicker_after=None)


def import_depthcrafter(repo: Path) -> tuple[Any, Any]:
    """(DepthCrafterPipeline, DiffusersUNetSpatioTemporalConditionModelDepthCrafter) from the user's checkout."""
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    try:
        ppl = importlib.import_module("depthcrafter.depth_crafter_ppl")
        unet = importlib.import_module("depthcrafter.unet")
        return ppl.DepthCrafterPipeline, unet.DiffusersUNetSpatioTemporalConditionModelDepthCrafter
    except (ImportError, AttributeError) as exc:
        raise ResourceError(f"cannot import DepthCrafter from {repo} ({type(exc).__name__}: {exc}); "
                            f"check the checkout ({REPO_URL}) and that diffusers is installed") from None


def load_pipeline(repo: Path, unet_dir: Path, svd_dir: Path, device: str) -> Any:
    """The seed's pipeline: fp16 UNet + SVD img2vid (variant fp16), on ``device``, no offload."""
    import torch

    pipeline_cls, unet_cls = import_depthcrafter(repo)
    try:
        unet = unet_cls.from_pretrained(str(unet_dir), low_cpu_mem_usage=True, torch_dtype=torch.float16,
                                        local_files_only=True)
    except Exception as exc:  # any loader failure on a bad folder (SafetensorError, ...)
        raise ResourceError(f"DepthCrafter UNet in {unet_dir} could not be loaded ({exc}); re-download with: "
                            f"{DEPTHCRAFTER_UNET.download_command()}") from None
    try:
        pipe = pipeline_cls.from_pretrained(str(svd_dir), unet=unet, torch_dtype=torch.float16, variant="fp16",
                                            local_files_only=True)
    except Exception as exc:  # any loader failure on a bad folder (SafetensorError, ...)
        raise ResourceError(f"SVD img2vid in {svd_dir} could not be loaded ({exc}); re-download with: "
                            f"{SVD_IMG2VID.download_command()}") from None
    pipe.to(device)
    try:
        pipe.enable_xformers_memory_efficient_attention()
    except Exception:  # xformers is optional, as in the seed
        pass
    pipe.enable_attention_slicing()
    return pipe


def run_pipeline(pipe: Any, video: np.ndarray, call: DepthCrafterCallSettings) -> np.ndarray:
    """(T, H, W, 3) float32 in [0, 1] -> the pipeline's (T, H, W, 3) output, seeded as the seed does."""
    import torch

    random.seed(call.seed)
    np.random.seed(call.seed)
    torch.manual_seed(call.seed)
    torch.cuda.manual_seed_all(call.seed)
    with torch.inference_mode():
        result = pipe(video, height=video.shape[1], width=video.shape[2], output_type="np",
                      guidance_scale=call.guidance_scale, num_inference_steps=call.num_inference_steps,
                      window_size=call.window_size, overlap=call.overlap, track_time=False)
    return np.asarray(result.frames[0], dtype=np.float32)


def _to_model_size(frames: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Frames as float [0, 1]; sides rounded to multiples of 64 (a no-op at the working resolution)."""
    height, width = frames.shape[1:3]
    size = (max(64, round(height / 64) * 64), max(64, round(width / 64) * 64))
    video = frames.astype(np.float32) / 255.0
    if size != (height, width):
        video = _resize_stack(video, size)
    return video, size


def _resize_stack(stack: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize every frame of (T, H, W[, C]) to ``size`` = (H, W), bilinear."""
    import cv2

    if stack.shape[1:3] == tuple(size):
        return stack
    return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for f in stack])
