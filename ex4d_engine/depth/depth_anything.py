"""``depth-anything``: Depth Anything V2 Small through ``transformers``, frame by frame, then stabilised.

Licence: the V2 *Small* checkpoint (``depth-anything/Depth-Anything-V2-Small-hf``) is Apache-2.0, so this
is the licence-clean default. The Base and Large checkpoints are CC-BY-NC-4.0 and are not offered.

Steps: (1) find the weights offline; (2) run the model on batches of frames at its own input size
(518 px short side, multiple of 14) and resize its output back to the working resolution; (3) align
every frame's disparity to its neighbours (``stabilise.py``) so the mesh does not breathe; (4) convert
to depth with the seed's DepthCrafter constants (nearest pixel of the clip at 2.564 units).
A checkpoint whose config says ``depth_estimation_type: metric`` gives metres instead.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import ResourceError
from .base import DepthEstimate, DepthSettings, ProgressFn, report
from .conversion import relative_disparity_to_depth
from .hf_models import load_depth_model
from .stabilise import affine_flicker, stabilise_disparity, stabilise_keeping_scale
from .weights import ModelWeights, WeightsBackend

DEPTH_ANYTHING_V2_SMALL = ModelWeights(
    repo_id="depth-anything/Depth-Anything-V2-Small-hf",
    licence="Apache-2.0",
    config_files=("config.json", "preprocessor_config.json"),
)


class DepthAnythingBackend(WeightsBackend):
    name = "depth-anything"
    description = "Depth Anything V2 Small (transformers), per frame + temporal stabilisation"
    licence = "Apache-2.0 (weights and code)"
    commercial_use = True
    estimates_focal = False
    weights = DEPTH_ANYTHING_V2_SMALL

    def estimate(self, frames: np.ndarray, settings: DepthSettings,
                 progress: Optional[ProgressFn] = None) -> DepthEstimate:
        # 1. Check inputs and find the weights (before importing torch: a missing model fails fast)
        folder, device = self.locate(frames, settings)
        dtype = "float16" if device.startswith("cuda") else "float32"

        # 2. Load and run the model
        report(progress, 0.0, f"loading {self.weights.repo_id} from {folder}")
        processor, model = load_depth_model(folder, self.weights, device=device, dtype_name=dtype,
                                            models_dir=settings.models_dir)
        metric = getattr(model.config, "depth_estimation_type", "relative") == "metric"
        raw = predict_frames(processor, model, frames, batch_size=settings.batch_size, device=device,
                             progress=progress)
        # Metric models give depth; stabilise in disparity space like the relative ones.
        disparity = 1.0 / np.maximum(raw, 1e-6) if metric else raw

        # 3. Temporal stabilisation
        flicker_before = affine_flicker(disparity)
        flicker_after = None
        if settings.stabilise:
            report(progress, 0.95, "stabilising depth over time")
            disparity = (stabilise_keeping_scale(disparity) if metric
                         else stabilise_disparity(disparity).disparity)
            flicker_after = affine_flicker(disparity)

        # 4. Disparity -> depth
        if metric:
            depth = np.clip(1.0 / np.maximum(disparity, 1e-4), 1e-4, 1e4).astype(np.float32)
            units = "metres"
        else:
            depth = relative_disparity_to_depth(disparity)
            units = "depthcrafter pseudo-units"
        report(progress, 1.0, "depth done")
        return DepthEstimate(depth=depth, focal_px=None, units=units, backend=self.name,
                             flicker_before=flicker_before, flicker_after=flicker_after)


def predict_frames(processor, model, frames: np.ndarray, *, batch_size: int, device: str,
                   progress: Optional[ProgressFn] = None) -> np.ndarray:
    """Model output for every frame, resized (bilinear) to the frames' size: (T, H, W) float32."""
    import torch
    import torch.nn.functional as F

    total, height, width = frames.shape[:3]
    out = np.empty((total, height, width), dtype=np.float32)
    dtype = next(model.parameters()).dtype
    with torch.inference_mode():
        for start in range(0, total, max(1, batch_size)):
            batch = frames[start:start + batch_size]
            inputs = processor(images=list(batch), return_tensors="pt")
            pixel_values = inputs["pixel_values"].to(device=device, dtype=dtype)
            predicted = model(pixel_values=pixel_values).predicted_depth  # (B, h, w)
            resized = F.interpolate(predicted[:, None].float(), size=(height, width), mode="bilinear",
                                    align_corners=False)[:, 0]
            out[start:start + len(batch)] = resized.cpu().numpy()
            report(progress, 0.05 + 0.85 * (start + len(batch)) / total,
                   f"depth frame {start + len(batch)}/{total}")
    if not np.isfinite(out).all():
        raise ResourceError("the depth model produced NaN or infinite values; the weights may be corrupt "
                            "(or fp16 overflowed: try --device cpu)")
    return out
