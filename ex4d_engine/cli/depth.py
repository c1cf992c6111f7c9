"""``ex4d depth``: run one depth backend on a clip and write a depth file ``ex4d recon --depth_file`` accepts.

The clip is read as recon reads it (first ``--num_frames`` frames, working resolution: sides
multiples of 64, long side at most 1024). The output is an ``.npz`` with ``depth`` (T, H, W)
float32 planar depth, plus ``focal_px`` when the backend estimated one, ``units`` and ``backend``.
It is written to a temporary name and renamed only when complete.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from .progress import ProgressBar


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..depth import DEFAULT_BACKEND, available_backends

    names = [n for n in available_backends() if n != "file"]
    p = subparsers.add_parser("depth", help="estimate depth for a clip with one backend and write depth.npz",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_video", "--input-video", required=True, help="source clip (any format ffmpeg reads)")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=names,
                   help=f"depth model (default {DEFAULT_BACKEND}, licence-clean); `ex4d models` shows what each needs")
    p.add_argument("--output", required=True, help="depth file to write (.npz)")
    p.add_argument("--models_dir", "--models-dir", help="folder of model folders in the Hugging Face layout "
                   "(default $EX4D_MODELS_DIR, then the Hugging Face cache); nothing is downloaded")
    p.add_argument("--depthcrafter_repo", "--depthcrafter-repo",
                   help="DepthCrafter git checkout, for --backend depthcrafter (default $EX4D_DEPTHCRAFTER_REPO)")
    p.add_argument("--device", default="auto", help="torch device: auto (default), cpu, cuda, cuda:N")
    p.add_argument("--num_frames", "--num-frames", type=int, default=49, help="frames taken from the clip (default 49)")
    p.add_argument("--no_stabilise", "--no-stabilise", action="store_true",
                   help="keep each frame's own depth scale (no temporal stabilisation)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..depth import estimate_depth
    from ..video_io import probe, read_video, working_size

    output = Path(args.output)
    if output.suffix.lower() != ".npz":
        raise InputError(f"--output must end in .npz, got {args.output!r}")
    if args.num_frames < 1:
        raise InputError(f"--num_frames must be at least 1, got {args.num_frames}")
    info = probe(args.input_video)
    clip = read_video(args.input_video, max_frames=args.num_frames, size=working_size(info.width, info.height))

    with ProgressBar(f"depth {args.backend}") as bar:
        estimate = estimate_depth(args.backend, clip.frames, models_dir=args.models_dir, device=args.device,
                                  progress=bar.update, depthcrafter_repo=args.depthcrafter_repo,
                                  stabilise=not args.no_stabilise)

    write_depth_npz(output, estimate)
    flicker = ""
    if estimate.flicker_before is not None:
        flicker = f"; flicker {100 * estimate.flicker_before:.2f} %"
        if estimate.flicker_after is not None:
            flicker += f" -> {100 * estimate.flicker_after:.2f} % after stabilisation"
    focal = f"; focal {estimate.focal_px:.1f} px" if estimate.focal_px else ""
    t, h, w = estimate.depth.shape
    print(f"wrote {output}: {t} frames {w}x{h}, depth {estimate.depth.min():.3g}..{estimate.depth.max():.3g} "
          f"{estimate.units}{focal}{flicker}")
    return 0


def write_depth_npz(path: Path, estimate) -> None:
    """Write atomically: a temporary file in the same folder, renamed when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"depth": estimate.depth.astype(np.float32), "units": np.array(estimate.units),
              "backend": np.array(estimate.backend)}
    if estimate.focal_px is not None:
        arrays["focal_px"] = np.array(estimate.focal_px, dtype=np.float64)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
