"""``ex4d trajectory convert|validate``: move camera trajectories between formats and check them.

Formats: ex4d (``ex4d.trajectory`` JSON), seed-npz (EX-4D ``camera_*.npz``), nerfstudio
(``camera_path.json``), colmap (a directory of text files). See docs/coordinates.md.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from ..contract import Trajectory, TrajectoryError
from ..errors import InputError
from ..interchange import FORMATS, load_trajectory, save_trajectory


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "trajectory",
        help="convert or validate camera trajectories (ex4d, seed-npz, nerfstudio, colmap)",
        description="Convert or validate camera trajectories. docs/coordinates.md gives each format's conversion.",
    )
    actions = parser.add_subparsers(dest="trajectory_action", metavar="ACTION", required=True)

    convert = actions.add_parser(
        "convert",
        help="convert IN to OUT",
        description="Convert a trajectory. Formats are inferred from the names: .npz = seed-npz, "
        "*camera_path*.json = nerfstudio, other .json = ex4d (input: by content), directory or no extension = colmap.",
    )
    convert.add_argument("input", help="trajectory to read")
    convert.add_argument("output", help="file (or COLMAP directory) to write")
    convert.add_argument("--from", dest="from_format", choices=FORMATS, help="input format (default: inferred)")
    convert.add_argument("--to", dest="to_format", choices=FORMATS, help="output format (default: inferred)")
    convert.add_argument(
        "--allow-lossy",
        action="store_true",
        help="export even when the target format cannot hold the cameras exactly (nerfstudio: fx != fy or "
        "off-centre principal point; seed-npz: per-frame K)",
    )
    _add_missing_value_options(convert)
    convert.set_defaults(func=run_convert)

    validate = actions.add_parser("validate", help="check a trajectory file and print a summary")
    validate.add_argument("file", help="trajectory to check")
    validate.add_argument("--from", dest="from_format", choices=FORMATS, help="format (default: inferred)")
    _add_missing_value_options(validate)
    validate.set_defaults(func=run_validate)


def _add_missing_value_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("values the input format does not store")
    group.add_argument("--width", type=int, help="image width in px (seed-npz; default 2*cx)")
    group.add_argument("--height", type=int, help="image height in px (seed-npz; default 2*cy)")
    group.add_argument("--fps", type=float, help="frames per second (seed-npz, colmap; default 30)")


def run_convert(args: argparse.Namespace) -> int:
    trajectory = _load(args.input, args)
    try:
        save_trajectory(trajectory, args.output, args.to_format, allow_lossy=args.allow_lossy)
    except TrajectoryError as exc:
        raise InputError(f"cannot write {args.output}: {exc}") from None
    print(f"wrote {args.output}: {len(trajectory)} frames, {trajectory.width}x{trajectory.height}, {trajectory.fps:g} fps")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    trajectory = _load(args.file, args)
    print(f"{args.file}: valid")
    for line in summary_lines(trajectory):
        print(f"  {line}")
    return 0


def summary_lines(trajectory: Trajectory) -> list[str]:
    """Human summary: frames, size, fps, focal range, field of view and camera path length."""
    fx, fy = trajectory.K[:, 0, 0], trajectory.K[:, 1, 1]
    centres = trajectory.c2w[:, :3, 3]
    path_length = float(np.linalg.norm(np.diff(centres, axis=0), axis=1).sum())
    fov_y = [math.degrees(2 * math.atan(trajectory.height / 2 / f)) for f in (fy.max(), fy.min())]
    return [
        f"frames: {len(trajectory)} at {trajectory.fps:g} fps ({len(trajectory) / trajectory.fps:.3f} s)",
        f"size: {trajectory.width}x{trajectory.height} px",
        f"focal: fx {fx.min():.6g}-{fx.max():.6g} px, fy {fy.min():.6g}-{fy.max():.6g} px "
        f"(vertical fov {fov_y[0]:.3f}-{fov_y[1]:.3f} deg)",
        f"path length: {path_length:.6g} world units, from {_point(centres[0])} to {_point(centres[-1])}",
    ]


def _load(path: str, args: argparse.Namespace) -> Trajectory:
    try:
        return load_trajectory(path, args.from_format, width=args.width, height=args.height, fps=args.fps)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _point(p: np.ndarray) -> str:
    return "(" + ", ".join(f"{x + 0.0:.4g}" for x in p) + ")"
