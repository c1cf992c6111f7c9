"""``ex4d run``: clip -> depth -> DW-mesh render along a camera path -> generated video, in one go.

The same as ``ex4d recon`` followed by ``ex4d generate``, without writing the intermediate videos
(``--keep_conditioning`` writes them too). Writes ``<output_dir>/output_{cam}.mp4`` at the clip's fps,
or ``preview_{cam}.mp4`` with ``--generator draft``: the draft is a preview, filled from the depth,
the cameras and the other frames, over the faithful (coverage-normalised) colour render.
``--stereo`` generates both eyes instead (docs/stereo.md): ``output_{cam}_left.mp4``, ``_right``, and the
packed ``_sbs``, ``_sbs_half``, ``_tb`` mp4s with stereo metadata, plus ``trajectory_{cam}_left/right.json``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import InputError
from .generate import add_generation_args, generate_frames, generation_record, write_output, write_record
from .stereo import add_stereo_args, check_stereo_args, run_stereo


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..presets import preset_names_help

    p = subparsers.add_parser("run", help="one shot: video -> recon -> generate",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_video", required=True, help="source clip")
    p.add_argument("--cam", default="180", help=f"camera preset: {preset_names_help()} (default 180)")
    p.add_argument("--trajectory", help="camera path file instead of --cam (see `ex4d recon --help`)")
    p.add_argument("--depth_file", help="depth: .npz/.npy (T,H,W), folder of EXR or 16-bit PNG (mm)")
    p.add_argument("--depth_backend", help="depth model instead of a file (see `ex4d models`)")
    p.add_argument("--fov", type=float, help="source horizontal field of view in degrees")
    p.add_argument("--focal", type=float, help="source focal length in working-resolution pixels")
    p.add_argument("--renderer", default="auto", help="auto, opengl or nvdiffrast")
    p.add_argument("--output_dir", default="./outputs",
                   help="where output_{cam}.mp4 (preview_{cam}.mp4 for the draft) goes (default ./outputs)")
    p.add_argument("--keep_conditioning", action="store_true", help="also write color_{cam}.mp4 and mask_{cam}.mp4")
    add_generation_args(p)
    add_stereo_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import pipeline
    from ..presets import is_preset, preset_names_help
    from .progress import ProgressBar
    from .recon import scene_and_path

    if args.trajectory is None and not is_preset(args.cam):  # before minutes of weight loading
        raise InputError(f"unknown camera preset {args.cam!r}; use {preset_names_help()}")
    if args.frames < 0:
        raise InputError(f"--frames must be >= 0 (0 = all), got {args.frames}")
    check_stereo_args(args)
    generator = None
    if args.generator == "wan":  # load (and check) the weights before spending time on the recon
        from .generate import build_generator

        generator = build_generator(args)
    options = pipeline.ReconOptions(num_frames=args.frames or 10 ** 6, fov_deg=args.fov, focal_px=args.focal,
                                    renderer=args.renderer)
    scene, trajectory, cam = scene_and_path(args, options)
    if args.stereo:
        return run_stereo(args, scene, trajectory, cam, generator, args.output_dir)
    preview = args.generator == "draft"
    with ProgressBar(f"render {cam}") as bar:
        conditioning = pipeline.render_conditioning(scene, trajectory, preview=preview, progress=bar.update)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.keep_conditioning:  # the seed-literal colour: what the EX-4D weights see
        pipeline.save_conditioning(conditioning, trajectory.fps, out_dir / f"color_{cam}.mp4",
                                   out_dir / f"mask_{cam}.mp4", "mp4")
    if generator is None:
        from .generate import build_generator

        generator = build_generator(args)
    if preview:  # the faithful render and the shot's geometry: what the draft preview fills from
        video = generate_frames(args, conditioning.preview_colour, conditioning.mask, trajectory.fps, generator,
                                geometry=pipeline.generation_geometry(scene, trajectory))
    else:
        video = generate_frames(args, conditioning.colour, conditioning.mask, trajectory.fps, generator)
    output = out_dir / f"{'preview' if preview else 'output'}_{cam}.mp4"
    write_output(os.fspath(output), video, trajectory.fps)
    write_record(os.fspath(out_dir / f"recon_{cam}.json"), {"cam": cam, "trajectory": trajectory.to_dict(),
                                                             "generation": generation_record(generator)})
    print(f"wrote {output} ({len(video)} frames, {video.shape[2]}x{video.shape[1]}, {trajectory.fps:g} fps)")
    return 0
