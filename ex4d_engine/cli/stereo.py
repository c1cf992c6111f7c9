"""``ex4d run --stereo``: both eyes of the shot, consistent, packed for VR players (docs/stereo.md)."""

from __future__ import annotations

import argparse
import os

from ..errors import InputError


def add_stereo_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("stereo (docs/stereo.md)")
    g.add_argument("--stereo", action="store_true",
                   help="generate a stereo pair: <output_dir>/output_{cam}_left/right/sbs/sbs_half/tb.mp4")
    g.add_argument("--ipd", type=float, help="interocular distance in depth units (default: 1/30 of the nearest "
                   "depth of frame 0, the stereographer's 1/30 rule)")
    g.add_argument("--convergence", type=float, help="zero-parallax distance in depth units (default: the median "
                   "depth of frame 0)")
    g.add_argument("--stereo_mode", default="OFFAXIS", choices=("OFFAXIS", "PARALLEL", "TOE"),
                   help="Blender's convergence mode (default OFFAXIS)")
    g.add_argument("--pivot", default="CENTER", choices=("LEFT", "CENTER", "RIGHT"),
                   help="which eye stays on the camera path (default CENTER: both move by half the IPD)")
    g.add_argument("--stereo_generation", default="joint", choices=("joint", "independent"),
                   help="joint: the second eye re-uses what the first eye generated (default); "
                        "independent: each eye on its own, for comparison")


def check_stereo_args(args: argparse.Namespace) -> None:
    """Stereo options without --stereo, or bad distances: refused before anything is loaded."""
    given = [name for name in ("ipd", "convergence") if getattr(args, name) is not None]
    if not args.stereo and given:
        raise InputError(f"--{given[0]} needs --stereo")
    for name in given:
        value = getattr(args, name)
        if not value > 0 or value == float("inf"):
            raise InputError(f"--{name} must be a positive distance in depth units, got {value}")


def run_stereo(args: argparse.Namespace, scene, camera, cam: str, generator, out_dir) -> int:
    from ..stereo import generate_stereo, near_and_subject_depth, scene_stereo_trajectories
    from ..stereo_rig import StereoRig, default_rig
    from ..stereo_video import write_stereo_outputs
    from .generate import build_generator
    from .progress import ProgressBar

    near, subject = near_and_subject_depth(scene)
    rig = default_rig(near, subject, args.stereo_mode, args.pivot)
    rig = StereoRig(args.ipd or rig.interocular, args.convergence or rig.convergence, args.stereo_mode, args.pivot)
    eyes = scene_stereo_trajectories(scene, camera, rig)
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be >= 1, got {args.steps}")
    generator = generator or build_generator(args)
    with ProgressBar(f"stereo {args.stereo_generation} ({generator.name})") as bar:
        shot = generate_stereo(scene, eyes, generator, mode=args.stereo_generation, seed=args.seed,
                               steps=args.steps, prompt=args.prompt, negative_prompt=args.negative_prompt,
                               speed=getattr(args, "speed", None), progress=bar.update)
    paths = write_stereo_outputs(shot.left, shot.right, camera.fps, out_dir, f"output_{cam}")
    for eye in ("left", "right"):
        eyes.eye(eye).save(os.path.join(out_dir, f"trajectory_{cam}_{eye}.json"))
    print(f"stereo rig: ipd {rig.interocular:.4g}, convergence {rig.convergence:.4g} (depth units), "
          f"{rig.mode}, pivot {rig.pivot}; {args.stereo_generation}, second eye re-used "
          f"{shot.reused_fraction:.0%} of its pixels from the first")
    for name, path in paths.items():
        print(f"wrote {path}")
    return 0
