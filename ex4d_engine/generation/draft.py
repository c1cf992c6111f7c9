"""The draft generator: a classical *preview* of the result, in seconds, without model weights.

It is what an artist watches while keyframing, and the only output on a machine without a big GPU.
It never changes a visible pixel: wherever the mask says visible, the output is the conditioning
colour exactly. Hidden pixels are filled, in this order:

1. **from geometry**, when the request carries :class:`~ex4d_engine.generation.base.SceneGeometry`:
   the shot's background layer (:mod:`.layers`: the farthest sample of every source pixel over all
   frames, the far side of every depth edge extended behind the near side, and a margin beyond the
   image border) is splatted into each output view with a z-buffer. Disocclusions are filled with
   what other frames saw there, else with background continued from the far side, never with
   foreground; the layer is static, so a static background is filled the same way in every frame;
2. **in 2-D** (push-pull, :mod:`.fill`) for what is left, and for everything when there is no
   geometry (the old colour + mask call): from the visible pixels, skipping the one-pixel ring at
   each hole's edge that the seed's render darkens.

For the most faithful preview, give it the coverage-normalised colour render
(``render_conditioning(..., preview=True)``, docs/dwmesh.md) rather than the seed-literal one.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .base import CancelCheck, GenerationRequest, ProgressCallback, check_cancel

#: Colour of a frame with nothing visible and nothing from geometry.
EMPTY_GREY = 128


class DraftGenerator:
    name = "draft"

    def generate(
        self,
        request: GenerationRequest,
        progress: Optional[ProgressCallback] = None,
        should_cancel: Optional[CancelCheck] = None,
    ) -> np.ndarray:
        request.check()
        colour, mask = request.colour, request.mask
        t, h, w = mask.shape
        layer = None
        geometry = request.geometry
        if geometry is not None and (mask < 128).any():
            from .layers import build_background_layer

            _report(progress, 0.0, "background layer")
            layer = build_background_layer(geometry)
        out = colour.copy()
        for i in range(t):
            check_cancel(should_cancel)
            holes = mask[i] < 128
            if holes.any():
                out[i] = fill_frame(colour[i], holes, layer, geometry, i)
            _report(progress, 0.05 + 0.95 * (i + 1) / t, "filling (preview)")
        return out


def load_generator(models_dir=None, profile=None, **_options) -> DraftGenerator:
    """The registry's loader (``protocol.GENERATORS``): the draft needs no weights and no profile."""
    return DraftGenerator()


def fill_frame(colour: np.ndarray, holes: np.ndarray, layer, geometry, index: int) -> np.ndarray:
    """One output frame: holes from the background layer where it lands, the rest by push-pull."""
    out = colour.copy()
    left = holes
    mean = None
    if layer is not None:
        from .layers import frame_cloud, splat

        h, w = holes.shape
        extra = frame_cloud(geometry, index)
        gh, gw = geometry.depth.shape[1:]
        grids = [(len(layer), extra[1][:gh * gw].reshape(gh, gw, 3))]  # the frame's own pixels, resampled
        if layer.plate_colour is not None:
            grids.append((0, layer.plate_colour))
        layer_colour, covered = splat(layer, geometry.camera_K[index], geometry.camera_w2c[index], w, h,
                                      extra=extra, region=holes, grids=grids)
        from_layer = holes & covered
        out[from_layer] = layer_colour[from_layer]
        left = holes & ~covered
        mean = layer.mean_colour  # the same every frame: what is invented does not pulse
    if left.any():
        out[left] = fill_2d(out, holes, left, mean)[left]
    return out


def fill_2d(colour: np.ndarray, holes: np.ndarray, unknown: np.ndarray,
            mean: Optional[np.ndarray] = None) -> np.ndarray:
    """Push-pull fill of ``unknown`` pixels from the rest, except the visible ring around ``holes``.

    Far from anything known the fill fades to ``mean`` (default: the known pixels' mean colour):
    there, the average is the least wrong guess, and a smear of one edge colour is not.
    """
    import cv2

    from .layers import FADE_FRACTION

    # the seed's render darkens the visible pixels next to a hole: do not spread that seam
    ring = cv2.dilate(holes.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~holes
    known = ~unknown & ~ring
    if not known.any():
        known = ~unknown
    if not known.any():
        return np.full_like(colour, EMPTY_GREY)
    filled = _smooth_fill(colour, known)
    if mean is None:
        mean = colour[known].reshape(-1, 3).mean(axis=0)
    distance = cv2.distanceTransform((~known).astype(np.uint8), cv2.DIST_L2, 3)
    keep = np.exp(-distance / max(1.0, FADE_FRACTION * max(known.shape)))[..., None]
    filled = mean + (filled - mean) * keep
    return np.clip(filled + 0.5, 0, 255).astype(np.uint8)


def _smooth_fill(colour: np.ndarray, known: np.ndarray, max_side: int = 256) -> np.ndarray:
    """Push-pull at most ``max_side`` pixels wide (the fill is smooth anyway), back at full size."""
    import cv2

    from .fill import push_pull

    h, w = known.shape
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return push_pull(colour.astype(np.float32), known.astype(np.float32))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    weight = known.astype(np.float32)
    premult = cv2.resize(colour.astype(np.float32) * weight[..., None], size, interpolation=cv2.INTER_AREA)
    weight_small = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
    values = premult / np.maximum(weight_small, 1e-6)[..., None]
    small = push_pull(values, (weight_small > 0.5).astype(np.float32))
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _report(progress: Optional[ProgressCallback], fraction: float, stage: str) -> None:
    if progress is not None:
        progress(float(fraction), stage)
