"""``ex4d generate``: colour + mask render -> generated video (the seed's generate.py).

Accepts the seed's flags (``--color_video --mask_video --output_video --num_frames --seed
--num_inference_steps --device``) plus ``--models_dir --profile --speed --steps --frames --prompt
--negative_prompt --generator``. Unlike the seed, the aspect ratio is kept (480P-area size), the
output is written at the input's fps, and more frames than one 49-frame window are generated as
a long shot. ``--generator draft`` (a classical preview) needs no weights; given only the colour and
mask videos it fills in 2-D (``ex4d run`` also gives it depth and cameras).
The output is written to a temporary name and renamed only once complete.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from ..errors import InputError
from ..generation.wan.speed import PRESETS
from ..protocol import GENERATORS

SPEED_CHOICES = tuple(PRESETS)
SPEED_HELP = [(p.name, p.summary) for p in PRESETS.values()]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="fill the hidden parts of a colour/mask render (Wan2.1 + EX-4D)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generation_args(p)
    p.add_argument("--color_video", "--colour_video", required=True, help="masked colour render (color_{cam}.mp4)")
    p.add_argument("--mask_video", required=True, help="mask render, white = visible (mask_{cam}.mp4 or PNG folder)")
    p.add_argument("--output_video", required=True, help="where the generated mp4 goes")
    p.set_defaults(func=run)


def add_generation_args(p: argparse.ArgumentParser) -> None:
    """The generator options shared by ``generate`` and ``run``."""
    p.add_argument("--generator", choices=tuple(GENERATORS), default="wan",
                   help="wan (Wan2.1-I2V-14B + EX-4D, needs the weights) or draft (a preview in seconds, no weights: "
                        "fills from depth and the other frames in `ex4d run`, 2-D fill from colour + mask here)")
    p.add_argument("--models_dir", "--models-dir", help="Wan2.1-I2V-14B-480P folder with ex4d.ckpt, or its parent "
                   "(default $EX4D_MODELS_DIR); `ex4d models check DIR` tells what is missing")
    p.add_argument("--profile", choices=("full", "balanced", "low"), default="full",
                   help="VRAM profile: full (about 40 GB, fastest), balanced (about 26 GB), low (about 15 GB)")
    p.add_argument("--speed", choices=SPEED_CHOICES, default=None,
                   help="speed preset (default: default): " + "; ".join(f"{n}: {s}" for n, s in SPEED_HELP))
    p.add_argument("--device", default="cuda", help="torch device (default cuda)")
    p.add_argument("--frames", "--num_frames", type=int, default=49,
                   help="frames to generate from the start of the render (default 49, one window; 0 = all, "
                        "longer shots are generated window by window)")
    p.add_argument("--steps", "--num_inference_steps", type=int, default=None,
                   help="sampler steps (default: the speed preset's, 25; turbo runs exactly 4)")
    p.add_argument("--seed", type=int, default=0, help="noise and mask-erosion seed (default 0)")
    p.add_argument("--prompt", help="positive prompt (default: the seed's fixed prompt)")
    p.add_argument("--negative_prompt", help="negative prompt (default: the seed's)")
    p.add_argument("--area", type=int, default=832 * 480,
                   help="pixels of the generation size, kept at the input's aspect (default 399360 = 480P)")


def run(args: argparse.Namespace) -> int:
    from ..video_io import probe

    colour, mask, fps = read_inputs(args.color_video, args.mask_video, args.frames)
    generator = build_generator(args)
    video = generate_frames(args, colour, mask, fps, generator)
    write_output(args.output_video, video, fps)
    write_record(os.path.splitext(args.output_video)[0] + ".json", generation_record(generator))
    info = probe(args.output_video)
    print(f"wrote {args.output_video} ({info.num_frames} frames, {info.width}x{info.height}, {info.fps:g} fps)")
    return 0


def read_inputs(colour_path: str, mask_path: str, frames: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(T, H, W, 3) colour, (T, H, W) mask and the colour video's fps; both trimmed to ``frames``."""
    from ..video_io import read_mask_video, read_video

    if frames < 0:
        raise InputError(f"--frames must be >= 0 (0 = all), got {frames}")
    limit = frames or None
    if os.path.isdir(colour_path):  # `ex4d recon --color_format png`: exact colour, fps from its recon record
        colour, fps = _read_colour_pngs(colour_path, limit)
        from types import SimpleNamespace

        clip = SimpleNamespace(frames=colour, fps=fps, num_frames=len(colour), width=colour.shape[2],
                               height=colour.shape[1])
    else:
        clip = read_video(colour_path, max_frames=limit)
    if os.path.isdir(mask_path):
        mask = _read_mask_pngs(mask_path, limit)
    else:
        mask = read_mask_video(mask_path, max_frames=limit)
    if mask.shape[1:] != clip.frames.shape[1:3]:
        raise InputError(f"mask is {mask.shape[2]}x{mask.shape[1]}, colour is {clip.width}x{clip.height}")
    if len(mask) != clip.num_frames:
        raise InputError(f"mask has {len(mask)} frames, colour has {clip.num_frames}")
    return clip.frames, mask, clip.fps


def _read_colour_pngs(folder: str, limit) -> tuple[np.ndarray, float]:
    """A ``color_{cam}/`` PNG folder and the fps recorded in the ``recon_{cam}.json`` beside it."""
    import json

    import cv2

    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(".png"))[:limit]
    if not names:
        raise InputError(f"colour folder {folder} holds no PNG files")
    cam = os.path.basename(os.path.normpath(folder)).removeprefix("color_")
    record = os.path.join(os.path.dirname(os.path.normpath(folder)), f"recon_{cam}.json")
    if not os.path.isfile(record):
        raise InputError(f"colour folder {folder}: its frame rate is read from {record}, which is missing")
    fps = float(json.loads(open(record, encoding="utf-8").read())["fps"])
    frames = [cv2.imread(os.path.join(folder, n), cv2.IMREAD_COLOR) for n in names]
    if any(f is None for f in frames) or len({f.shape for f in frames}) != 1:
        raise InputError(f"colour folder {folder} holds unreadable PNGs or PNGs of different sizes")
    return np.stack([f[..., ::-1] for f in frames]), fps


def _read_mask_pngs(folder: str, limit) -> np.ndarray:
    import cv2

    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(".png"))[:limit]
    if not names:
        raise InputError(f"mask folder {folder} holds no PNG files")
    masks = [cv2.imread(os.path.join(folder, n), cv2.IMREAD_GRAYSCALE) for n in names]
    return np.where(np.stack(masks) > 127, 255, 0).astype(np.uint8)


def build_generator(args: argparse.Namespace):
    from ..generation.registry import load_generator

    if args.generator == "draft":
        return load_generator("draft")
    from ..generation.wan.generator import SamplerSettings

    if args.area < 256:
        raise InputError(f"--area must be at least 256 pixels, got {args.area}")
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be >= 1, got {args.steps}")
    from ..generation.wan.speed import check_steps, get_preset

    check_steps(get_preset(getattr(args, "speed", None)), args.steps)  # before loading the weights
    # missing weights are resource_unavailable (exit 4) with the download commands, like depth weights
    generator = load_generator("wan", args.models_dir, args.profile, device=args.device,
                               settings=SamplerSettings(area=args.area), speed=getattr(args, "speed", None))
    print(generator.pipeline.checkpoint_summary, file=sys.stderr)
    if generator.fp8.startswith("off:"):
        print(f"warning: speed preset {generator.preset.name!r} runs without FP8 ({generator.fp8[5:]})", file=sys.stderr)
    return generator


def generation_record(generator) -> dict:
    """What a shot ran with, for the JSON written next to the output (recon_{cam}.json / <output>.json)."""
    record = {"generator": generator.name}
    record.update(getattr(generator, "last_run", {}) or {})
    return record


def generate_frames(args: argparse.Namespace, colour: np.ndarray, mask: np.ndarray, fps: float,
                    generator=None, geometry=None) -> np.ndarray:
    """Run the generator; ``geometry`` (a SceneGeometry, or None) is what the draft preview fills from."""
    from ..generation.base import GenerationRequest
    from .progress import ProgressBar

    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be >= 1, got {args.steps}")
    generator = generator or build_generator(args)
    request = GenerationRequest(colour=colour, mask=mask, fps=fps, seed=args.seed, steps=args.steps,
                                prompt=args.prompt, negative_prompt=args.negative_prompt, geometry=geometry,
                                speed=getattr(args, "speed", None))
    label = "draft preview" if generator.name == "draft" else generator.name
    with ProgressBar(f"generate ({label})") as bar:
        return generator.generate(request, progress=bar.update)


def write_record(path: str, record: dict) -> None:
    import json

    tmp = path + ".partial"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


def write_output(path: str, video: np.ndarray, fps: float) -> None:
    """Write to a temporary name in the same folder, then rename: no half-written mp4 is left behind."""
    from ..video_io import write_video

    write_video(path, video, fps, crf=10)  # atomic; the seed's quality 8 = crf 10
