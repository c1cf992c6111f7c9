"""``ex4d recon``: clip + depth -> DW-mesh -> colour/mask videos along a camera path (the seed's recon.py).

Accepts the seed's flags (``--input_video --cam --output_dir --save_mesh --num_frames
--only_first_frame --save_camera``) and writes the seed's file names (``color_{cam}.mp4``,
``mask_{cam}.mp4``, ``camera_{cam}.npz``, ``DW-Mesh.ply``), plus ``recon_{cam}.json`` recording
what was used. Everything is written into a staging folder first and moved into place only when
all of it succeeded, so a failed run leaves no ``color_*.mp4`` behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import InputError
from ..presets import is_preset, preset_names_help
from ..raster import RENDERERS
from .progress import ProgressBar


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("recon", help="reconstruct the DW-mesh and render colour + mask along a camera path",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_video", required=True, help="source clip (any format ffmpeg reads)")
    p.add_argument("--cam", default="180", help=f"camera preset: {preset_names_help()} (default 180, as the seed)")
    p.add_argument("--trajectory", help="camera path file instead of --cam: ex4d.trajectory JSON, seed camera_*.npz, "
                   "nerfstudio camera_path.json or a COLMAP text folder; {cam} in output names = the file's stem")
    p.add_argument("--output_dir", default="./outputs", help="where outputs go (default ./outputs)")
    p.add_argument("--depth_file", help="depth: .npz/.npy (T,H,W), folder of EXR or 16-bit PNG (mm)")
    p.add_argument("--depth_backend", help="depth model instead of a file (see `ex4d models`)")
    p.add_argument("--models_dir", help="where depth model weights live (for --depth_backend)")
    p.add_argument("--depthcrafter_repo", help="your DepthCrafter checkout (--depth_backend depthcrafter)")
    p.add_argument("--no_stabilise", action="store_true", help="no temporal stabilisation of per-frame depth")
    p.add_argument("--num_frames", type=int, default=49, help="frames taken from the clip (default 49)")
    p.add_argument("--only_first_frame", type=int, nargs="?", const=1, default=0, choices=(0, 1),
                   help="static scene: frame 0's mesh for every camera")
    p.add_argument("--fov", help="source horizontal field of view in degrees, or 'auto' (depth model's estimate)")
    p.add_argument("--focal", type=float, help="source focal length in working-resolution pixels")
    p.add_argument("--renderer", choices=RENDERERS, default="auto", help="rasteriser (default: nvdiffrast if available, else opengl)")
    p.add_argument("--device", default="auto", help="torch device for mesh building (default: cuda if present)")
    p.add_argument("--save_mesh", type=int, nargs="?", const=1, default=0, choices=(0, 1), help="write DW-Mesh.ply (frame 0)")
    p.add_argument("--save_camera", type=int, nargs="?", const=1, default=0, choices=(0, 1),
                   help="write camera_{cam}.npz in the seed's layout")
    p.add_argument("--mask_format", choices=("mp4", "png"), default="mp4",
                   help="mask as lossless mp4 (default) or a folder of PNGs mask_{cam}/")
    p.add_argument("--color_format", "--colour_format", choices=("mp4", "lossless", "png"), default="mp4",
                   help="colour as mp4 (default, plays everywhere, lossy), lossless (H.264 RGB, exact values) or a "
                        "folder of PNGs color_{cam}/ (exact): use an exact one when another tool conditions on it")
    p.add_argument("--package", help="also write the Blender scene package (.ex4dscene.zip) here")
    p.add_argument("--pixel_offset", type=float, default=0.5,
                   help="vertex position inside its pixel: 0.5 exact (default), 0 = the seed's integer coordinates")
    p.add_argument("--no_seed_rounds", action="store_true",
                   help="do not stretch preset angles by N/49 for frame counts other than 49 (a seed quirk)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import pipeline

    scene, trajectory, cam = scene_and_path(args, _options(args), use_seed_rounds=not args.no_seed_rounds)

    with ProgressBar(f"render {cam}") as bar:
        conditioning = pipeline.render_conditioning(scene, trajectory, progress=bar.update)

    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ex4d-recon-", dir=out_dir))
    try:
        mask_name = f"mask_{cam}" + (".mp4" if args.mask_format == "mp4" else "")
        colour_name = f"color_{cam}" + ("" if args.color_format == "png" else ".mp4")
        pipeline.save_conditioning(conditioning, trajectory.fps, staging / colour_name, staging / mask_name,
                                   args.mask_format, args.color_format)
        if args.save_camera:
            from ..interchange import save_seed_npz

            save_seed_npz(trajectory, staging / f"camera_{cam}.npz", allow_lossy=True)
        if args.save_mesh:
            _save_mesh(scene, staging / "DW-Mesh.ply")
        if args.package:
            pipeline.write_scene_package(scene, staging / "package.zip")
        record = {
            "input_video": os.path.abspath(args.input_video), "cam": cam,
            "width": scene.width, "height": scene.height, "fps": scene.fps, "num_frames": scene.num_frames,
            "K": scene.K.tolist(), "intrinsics_source": scene.intrinsics.source,
            "fov_x_deg": scene.intrinsics.fov_x_deg, "depth_source": scene.depth_source,
            "only_first_frame": bool(args.only_first_frame), "pixel_offset": args.pixel_offset,
            "frame0_is_source": conditioning.frame0_is_source, "visible_fraction": float(conditioning.mask.mean() / 255),
            "trajectory": trajectory.to_dict(),
        }
        (staging / f"recon_{cam}.json").write_text(json.dumps(record, indent=1))
        # everything succeeded: move into place (colour last, so it never appears without the rest)
        names = sorted(os.listdir(staging), key=lambda n: n.startswith("color_"))
        for name in names:
            target = Path(args.package) if name == "package.zip" else out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staging / name), str(target))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {out_dir}/{colour_name} and {mask_name} ({len(trajectory)} frames, {scene.width}x{scene.height}, "
          f"{scene.fps:g} fps, f = {scene.intrinsics.focal_px:g} px [{scene.intrinsics.source}], "
          f"{100 * conditioning.mask.mean() / 255:.1f}% visible)")
    return 0


def scene_and_path(args: argparse.Namespace, options, use_seed_rounds: bool = True):
    """The clip as a Scene and the camera path (``--trajectory`` file or ``--cam`` preset) with its name.

    Shared by ``ex4d recon`` and ``ex4d run``; the preset name is checked before any decoding.
    """
    from .. import pipeline

    if args.trajectory is None and not is_preset(args.cam):
        raise InputError(f"unknown camera preset {args.cam!r}; use {preset_names_help()}")
    with ProgressBar("scene") as bar:
        scene = pipeline.load_scene(args.input_video, depth_file=args.depth_file, depth_backend=args.depth_backend,
                                    models_dir=args.models_dir,
                                    options=options, progress=bar.update)
    if args.trajectory:
        return scene, _read_trajectory(args.trajectory, scene), Path(args.trajectory.rstrip("/")).name.split(".")[0]
    return scene, pipeline.preset_trajectory(scene, args.cam, use_seed_rounds=use_seed_rounds), args.cam


def _options(args: argparse.Namespace):
    from ..mesh import MeshOptions
    from ..pipeline import ReconOptions

    fov_auto = args.fov == "auto"
    fov = None
    if args.fov is not None and not fov_auto:
        try:
            fov = float(args.fov)
        except ValueError:
            raise InputError(f"--fov must be degrees or 'auto', got {args.fov!r}") from None
    if args.num_frames < 1:
        raise InputError(f"--num_frames must be >= 1, got {args.num_frames}")
    if args.pixel_offset not in (0.0, 0.5):
        raise InputError(f"--pixel_offset must be 0.5 (exact) or 0 (seed), got {args.pixel_offset}")
    return ReconOptions(num_frames=args.num_frames, only_first_frame=bool(args.only_first_frame), fov_deg=fov,
                        focal_px=args.focal, fov_auto=fov_auto, renderer=args.renderer, device=args.device,
                        mesh=MeshOptions(pixel_offset=args.pixel_offset), depthcrafter_repo=args.depthcrafter_repo,
                        stabilise_depth=not args.no_stabilise)


def _read_trajectory(path: str, scene):
    from ..interchange import detect_format, load_trajectory

    fmt = detect_format(path) if os.path.exists(path) else None
    sized = {"width": scene.width, "height": scene.height} if fmt == "seed-npz" else {}
    fps = {"fps": scene.fps} if fmt in ("seed-npz", "colmap") else {}
    return load_trajectory(path, fmt, **sized, **fps)


def _save_mesh(scene, path: Path) -> None:
    import torch

    from ..mesh import build_dwmesh
    from ..ply import write_ply

    mesh = build_dwmesh(scene.depth[:1], scene.frames[:1], scene.K, scene.options.mesh, device="cpu")
    colours = mesh.rgba[0, :, :3].round().clamp(0, 255).to(torch.uint8).numpy()
    write_ply(path, mesh.vertices[0].numpy(), mesh.faces.numpy(), colours)
