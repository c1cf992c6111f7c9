"""Long-shot seams, measured on the tiny random Wan models (CPU, about a minute).

A 41-frame render (a gradient panning right, the right quarter hidden) is generated in 9-frame
windows with overlaps of 1, 2 and 4 frames. For each, the mean absolute frame-to-frame change
(0..255) is reported at the frames where a window takes over and elsewhere; a ratio near 1 means
the seam is no more visible than ordinary motion. Random tiny weights make noisy pictures, so
this measures the windowing and blending, not Wan's picture quality.

    python bench/generation_seams.py
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main() -> int:
    from ex4d_engine.generation.base import GenerationRequest
    from ex4d_engine.generation.wan.generator import SamplerSettings, load_generator
    from ex4d_engine.generation.wan.long_shot import plan_windows, seam_jump
    from ex4d_engine.generation.wan.tiny_models import register_tiny_models, write_tiny_model_folder

    folder = tempfile.mkdtemp()
    write_tiny_model_folder(folder)
    register_tiny_models(folder)
    frames, side = 41, 64
    yy, xx = np.mgrid[0:side, 0:side]
    base = np.stack([xx * 2, yy * 3, (xx + yy) * 2], -1).clip(0, 255).astype(np.uint8)
    colour = np.stack([np.roll(base, t, axis=1) for t in range(frames)])
    mask = np.full((frames, side, side), 255, np.uint8)
    mask[1:, :, 48:] = 0
    colour[mask == 0] = 0
    request = GenerationRequest(colour=colour, mask=mask, fps=24.0, seed=0)
    print("overlap  windows  seam_change  other_change  ratio")
    for overlap in (1, 2, 4):
        settings = SamplerSettings(window=9, overlap=overlap, steps=4, area=side * side)
        generator = load_generator(folder, device="cpu", dtype=torch.float32, settings=settings)
        video = generator.generate(request)
        windows = plan_windows(frames, 9, overlap)
        # where each later window's own frames start (the end of the cross-fade)
        seams = [w.start + overlap for w in windows[1:]]
        at, rest = seam_jump(video, seams)
        print(f"{overlap:>7}  {len(windows):>7}  {at:>11.2f}  {rest:>12.2f}  {at / rest:>5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
