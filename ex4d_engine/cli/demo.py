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
        rows.append((cam, conditioning.colour, result, float(conditioning.mask.mean() / 255)))
        print(f"  {cam:>8}: {100 * conditioning.mask.mean() / 255:5.1f}% visible, {time.perf_counter() - t0:.1f} s")
    sheet = contact_sheet(scene.frames, rows)
    _write_png(out / "contact_sheet.png", sheet)
    print(f"demo done in {time.perf_counter() - started:.1f} s ({rasterizer.name} renderer): "
          f"{out}/contact_sheet.png, color_*/mask_*/draft_*.mp4 (draft = preview), garden.ex4dscene.zip")
    return 0


def contact_sheet(source: np.ndarray, rows: list[tuple[str, np.ndarray, np.ndarray, float]],
                  columns: int = SHEET_COLUMNS) -> np.ndarray:
    """The source clip, then per preset its render and its draft preview, frames sampled evenly and numbered.

    ``rows``: (preset, render (T,H,W,3), draft (T,H,W,3), visible fraction). A legend heads the sheet.
    """
    picks = np.linspace(0, len(source) - 1, columns).round().astype(int)
    width = source.shape[2] * columns
    strips = [_banner(width, ["ex4d demo: rows = the source clip, then per camera preset the DW-mesh render and "
                              "the draft preview.", "Black in a render = not seen by the mesh, to be generated. "
                              "Draft = a classical placeholder for the 14B model (Wan2.1 + EX-4D)."]),
              _strip(source, picks, "source clip", numbered=True)]
    for label, render, result, visible in rows:
        strips.append(_strip(render, picks, f"--cam {label}: render ({100 * visible:.0f}% visible)"))
        strips.append(_strip(result, picks, f"--cam {label}: draft preview"))
    gap = np.full((4, width, 3), 32, np.uint8)
    return np.concatenate([x for s in strips for x in (s, gap)][:-1], axis=0)


def _strip(frames: np.ndarray, picks: np.ndarray, label: str, numbered: bool = False) -> np.ndarray:
    strip = np.concatenate(list(frames[picks]), axis=1).copy()
    _text(strip, label, (6, 18))
    if numbered:
        for column, frame in enumerate(picks):
            _text(strip, f"frame {frame}", (column * frames.shape[2] + 6, frames.shape[1] - 8))
    return strip


def _banner(width: int, lines: list[str]) -> np.ndarray:
    banner = np.full((14 + 18 * len(lines), width, 3), 24, np.uint8)
    for i, line in enumerate(lines):
        _text(banner, line, (6, 18 + 18 * i), scale=0.42)
    return banner


def _text(image: np.ndarray, text: str, at: tuple[int, int], scale: float = 0.5) -> None:
    import cv2

    cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)  # outline: readable
    cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(rgb[..., ::-1])):
            raise OSError(f"could not write {path}")
