"""``depth-pro``: Apple Depth Pro through ``transformers``: metric depth and the focal length (``--fov auto``).

Licence: the weights (``apple/DepthPro-hf``) are under the Apple Machine Learning Research Model
licence (``apple-amlr``): research use only, so like DepthCrafter this backend is optional and
never the default. The code path is licence-clean (transformers, Apache-2.0).

Steps: (1) find the weights offline; (2) per batch of frames: rescale + normalise with the values
of the folder's ``preprocessor_config.json`` and resize to the model size (on the device, in torch:
the transformers Depth Pro processor needs torchvision, which not every install can import);
(3) the model gives canonical inverse depth and a horizontal FOV per frame; one focal length for the
clip (the median) turns it into metric inverse depth, ``inv = canonical * W / f``; (4) stabilise in
inverse-depth space keeping the clip's metric scale; depth = 1 / inv in metres.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ResourceError
from .base import DepthEstimate, DepthSettings, ProgressFn, report
from .hf_models import import_transformers
from .stabilise import affine_flicker, stabilise_keeping_scale
from .weights import ModelWeights, WeightsBackend, load_error

DEPTH_PRO = ModelWeights(
    repo_id="apple/DepthPro-hf",
    licence="apple-amlr (Apple ML Research Model licence: research use only)",
    config_files=("config.json", "preprocessor_config.json"),
)


#: Depth Pro runs at 1536x1536 (35 ViT-L patches per frame): 8 frames at once ran an 80 GB H100 out of
#: memory (bench/depth_gpu.py, 2026-11-24), so it takes at most this many frames per pass.
MAX_BATCH = 2


class DepthProBackend(WeightsBackend):
    name = "depth-pro"
    description = "Apple Depth Pro (transformers): metric depth + focal length for --fov auto"
    licence = "research only: weights apple-amlr"
    commercial_use = False
    estimates_focal = True
    weights = DEPTH_PRO

    def estimate(self, frames: np.ndarray, settings: DepthSettings,
                 progress: Optional[ProgressFn] = None) -> DepthEstimate:
        # 1. Check inputs, find and load the weights
        folder, device = self.locate(frames, settings)
        report(progress, 0.0, f"loading {self.weights.repo_id} from {folder}")
        model, prep = load_model(folder, device, settings.models_dir)

        # 2. Canonical inverse depth and FOV per frame
        canonical, fov_deg = predict_frames(model, prep, frames, batch_size=min(settings.batch_size, MAX_BATCH),
                                            device=device, progress=progress)

        # 3. One focal length for the clip -> metric inverse depth
        width = frames.shape[2]
        focal_px = None
        if fov_deg is not None:
            focal_px = float(np.median(0.5 * width / np.tan(np.radians(fov_deg) / 2.0)))
        inverse = canonical * (width / (focal_px if focal_px else width))  # no FOV head: assume f = W

        # 4. Stabilise and convert
        flicker_before = affine_flicker(inverse)
        flicker_after = None
        if settings.stabilise:
            report(progress, 0.95, "stabilising depth over time")
            inverse = stabilise_keeping_scale(inverse)
            flicker_after = affine_flicker(inverse)
        depth = np.clip(1.0 / np.maximum(inverse, 1e-4), 1e-4, 1e4).astype(np.float32)
        report(progress, 1.0, "depth done")
        return DepthEstimate(depth=depth, focal_px=focal_px, units="metres", backend=self.name,
                             flicker_before=flicker_before, flicker_after=flicker_after)


def load_model(folder: Path, device: str, models_dir: Optional[str]):
    """(model in eval mode, preprocessing values) from a Depth Pro folder; never downloads."""
    transformers = import_transformers()
    import torch

    prep = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    try:
        model = transformers.AutoModelForDepthEstimation.from_pretrained(str(folder), local_files_only=True,
                                                                         dtype=dtype)
    except Exception as exc:  # any loader failure on a bad folder (SafetensorError, ...)
        raise load_error(DEPTH_PRO, folder, exc, models_dir) from None
    if getattr(model.config, "model_type", "") != "depth_pro":
        raise ResourceError(f"{folder} holds a {model.config.model_type!r} model, not Depth Pro; "
                            f"get Depth Pro with: {DEPTH_PRO.download_command(models_dir)}")
    return model.to(device).eval(), prep


def predict_frames(model, prep: dict, frames: np.ndarray, *, batch_size: int, device: str,
                   progress: Optional[ProgressFn] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(canonical inverse depth (T, H, W) float32 at the frames' size, FOV in degrees (T,) or None)."""
    import torch
    import torch.nn.functional as F

    size = prep.get("size", {"height": 1536, "width": 1536})
    mean = torch.tensor(prep.get("image_mean", [0.5] * 3), device=device).view(1, 3, 1, 1)
    std = torch.tensor(prep.get("image_std", [0.5] * 3), device=device).view(1, 3, 1, 1)
    rescale = float(prep.get("rescale_factor", 1 / 255))
    dtype = next(model.parameters()).dtype
    total, height, width = frames.shape[:3]
    canonical = np.empty((total, height, width), dtype=np.float32)
    fovs = []
    with torch.inference_mode():
        for start in range(0, total, max(1, batch_size)):
            batch = torch.from_numpy(frames[start:start + batch_size]).to(device)
            x = batch.permute(0, 3, 1, 2).float() * rescale
            x = (x - mean) / std  # the Depth Pro processor normalises before resizing
            x = F.interpolate(x, size=(size["height"], size["width"]), mode="bilinear", align_corners=False)
            out = model(pixel_values=x.to(dtype))
            pred = out.predicted_depth.float()
            pred = pred[:, None] if pred.ndim == 3 else pred
            canonical[start:start + len(batch)] = F.interpolate(
                pred, size=(height, width), mode="bilinear", align_corners=False)[:, 0].cpu().numpy()
            if out.field_of_view is not None:
                fovs.append(out.field_of_view.float().reshape(-1).cpu().numpy())
            report(progress, 0.05 + 0.85 * (start + len(batch)) / total, f"depth frame {start + len(batch)}/{total}")
    if not np.isfinite(canonical).all():
        raise ResourceError("Depth Pro produced NaN or infinite values; the weights may be corrupt")
    canonical = np.maximum(canonical, 1e-6)
    fov = np.concatenate(fovs) if fovs else None
    if fov is not None and not (np.isfinite(fov).all() and ((fov > 0) & (fov < 180)).all()):
        fov = None  # an unusable FOV estimate: fall back to the user's or the seed's focal length
    return canonical, fov
