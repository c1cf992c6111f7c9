"""``ex4d demo``: the whole chain on the bundled example, without any model weights.

For each preset it renders the DW-mesh's colour + mask (the seed's recon), fills the hidden
pixels with the draft preview (a classical fill from depth, cameras and the other frames, not the
14B model), writes the videos and one contact sheet (``contact_sheet.png``: rows = presets, render
above the draft preview). Also writes the scene package.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..errors import NotFoundError

DEMO_PRESETS = ("30", "-30", "180", "sweep_90", "zoom_in")
SHEET_COLUMNS = 5


def default_example_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "examples" / "garden"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run recon + the draft preview on the bundled example, write a contact sheet",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--example", default=None, help="example folder with input.mp4, depth/ and scene.json "
                   "(default: the bundled examples/garden)")
    p.add_argument("--output_dir", default="./ex4d-demo", help="where to write (default ./ex4d-demo)")
    p.add_argument("--presets", default=",".join(DEMO_PRESETS), help="comma-separated presets")
    p.add_argument("--renderer", default="auto", help="auto, opengl or nvdiffrast")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import pipeline, video_io
    from ..generation.base import GenerationRequest
    from ..generation.registry import load_generator

    example = Path(args.example) if args.example else default_example_dir()
    if not (example / "input.mp4").is_file():
        raise NotFoundError(f"example not found at {example} (expected input.mp4 and depth/); "
                            "run from a source checkout or pass --example")
    facts = json.loads((example / "scene.json").read_text())
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    options = pipeline.ReconOptions(focal_px=facts.get("focal_px"), renderer=args.renderer)
    scene = pipeline.load_scene(example / "input.mp4", depth_file=example / "depth", options=options)
    meshes = pipeline.build_meshes(scene)
    pipeline.write_scene_package(scene, out / "garden.ex4dscene.zip", meshes)
    from ..raster import get_rasterizer

    rasterizer = get_rasterizer(args.renderer)
    generator = load_generator("draft")
    rows = []
    for cam in [c.strip() for c in args.presets.split(",") if c.strip()]:
        t0 = time.perf_counter()
        trajectory = pipeline.preset_trajectory(scene, cam)
        conditioning = pipeline.render_conditioning(scene, trajectory, rasterizer=rasterizer, meshes=meshes,
                                                    preview=True)
        pipeline.save_conditioning(conditioning, scene.fps, out / f"color_{cam}.mp4", out / f"mask_{cam}.mp4")
        result = generator.generate(GenerationRequest(conditioning.preview_colour, conditioning.mask, scene.fps,
                                                      geometry=pipeline.generation_geometry(scene, trajectory)))
        video_io.write_video(out / f"draft_{cam}.mp4", result, scene.fps)
        rows.append((cam, conditioning.colour, result))
        print(f"  {cam:>8}: {100 * conditioning.mask.mean() / 255:5.1f}% visible, {time.perf_counter() - t0:.1f} s")
    sheet = contact_sheet(rows)
    _write_png(out / "contact_sheet.png", sheet)
    print(f"demo done in {time.perf_counter() - started:.1f} s ({rasterizer.name} renderer): "
          f"{out}/contact_sheet.png, color_*/mask_*/draft_*.mp4 (draft = preview), garden.ex4dscene.zip")
    return 0


def contact_sheet(rows: list[tuple[str, np.ndarray, np.ndarray]], columns: int = SHEET_COLUMNS) -> np.ndarray:
    """Rows of (label, render (T,H,W,3), result (T,H,W,3)) -> one RGB image, frames sampled evenly."""
    import cv2

    strips = []
    for label, render, result in rows:
        picks = np.linspace(0, len(render) - 1, columns).round().astype(int)
        pair = np.concatenate([np.concatenate(list(render[picks]), axis=1),
                               np.concatenate(list(result[picks]), axis=1)], axis=0).copy()
        cv2.putText(pair, f"--cam {label}: render / draft preview", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
        strips.append(pair)
    gap = np.full((4, strips[0].shape[1], 3), 32, np.uint8)
    return np.concatenate([x for s in strips for x in (s, gap)][:-1], axis=0)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(rgb[..., ::-1])):
            raise OSError(f"could not write {path}")
