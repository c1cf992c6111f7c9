"""Stereo consistency: joint vs independent eyes, masked PSNR of the right eye warped into the left view.

For every pixel of the left eye whose DW-mesh surface point the right eye also sees (unoccluded), the
right eye's *generated* output is carried into the left view through the mesh and compared with the
left eye's output. ``joint`` generates the left eye, re-textures the mesh with it and generates only
what the right eye still misses; ``independent`` generates each eye on its own.

Clips: the bundled example (exact depth) and the real flower clip, whose depth here comes from a
classical defocus cue (no model weights on this machine): sharp = near. Draft generator, CPU,
OpenGL renderer. Rig: off-axis, pivot centre, interocular = 1/30 of the near depth, converging at the
median depth. Camera paths: the source camera held still (the stereo pair of the clip itself) and
the seed's 30-degree orbit.

Diagnostics beside the measure (never instead of it): ``psnr_strict_db`` over the co-visible pixels
whose point the right eye's nearest pixel really sees, ``error_share_not_strict`` (the joint error on
the rest: points next to an occluding edge or on a hidden face turned away from the right eye, which
the measure's 2x2 depth test lets through for both modes), and ``gain_ceiling_db``, the gain a joint
pair exact on every strict pixel would reach if its error on the rest stayed as it is.

    python bench/stereo_consistency.py [--frames 16] [--out bench/results/stereo_consistency.json]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ex4d_engine import pipeline  # noqa: E402
from ex4d_engine.generation.draft import DraftGenerator  # noqa: E402
from ex4d_engine.raster import get_rasterizer  # noqa: E402
from ex4d_engine.stereo import (generate_stereo, near_and_subject_depth, scene_stereo_trajectories,  # noqa: E402
                                stereo_consistency)
from ex4d_engine.stereo_rig import default_rig  # noqa: E402

FLOWER = "/work/shared/data/ex4d_flower/input.mp4"
TARGET_GAIN_DB = 6.0


def defocus_depth(frames: np.ndarray, near: float = 1.5, far: float = 4.0) -> np.ndarray:
    """A classical depth cue for a shallow-focus clip: local sharpness (Laplacian energy) -> near.

    Rough on purpose (no weights here); smooth, so the DW-mesh has few hidden faces except at the
    in-focus subject's rim.
    """
    import cv2

    depth = []
    for frame in frames:
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        energy = cv2.GaussianBlur(np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=3)), (0, 0), 6)
        lo, hi = np.percentile(energy, [20, 95])
        sharp = np.clip((energy - lo) / max(hi - lo, 1e-6), 0, 1)
        sharp = cv2.GaussianBlur(sharp, (0, 0), 2)
        depth.append(far - (far - near) * sharp)
    return np.stack(depth).astype(np.float32)


def load_clip(name: str, frames: int, workdir: str) -> pipeline.Scene:
    options = pipeline.ReconOptions(num_frames=frames, focal_px=500.0, renderer="opengl", device="cpu")
    if name == "garden":
        return pipeline.load_scene(os.path.join(REPO, "examples/garden/input.mp4"),
                                   depth_file=os.path.join(REPO, "examples/garden/depth"), options=options)
    from ex4d_engine import video_io

    info = video_io.probe(FLOWER)
    clip = video_io.read_video(FLOWER, max_frames=frames,
                               size=video_io.working_size(info.width, info.height))
    depth_path = os.path.join(workdir, "flower_defocus_depth.npy")
    np.save(depth_path, defocus_depth(clip.frames))
    return pipeline.load_scene(FLOWER, depth_file=depth_path, options=options)


def rig_and_eyes(scene: pipeline.Scene, path: str):
    """The bench's rig (off-axis, pivot centre, 1/30 rule) and both eyes of camera path ``path``."""
    near, subject = near_and_subject_depth(scene)
    rig = default_rig(near, subject, mode="OFFAXIS", pivot="CENTER")
    mono = pipeline.source_trajectory(scene) if path == "source" else pipeline.preset_trajectory(scene, path)
    return rig, scene_stereo_trajectories(scene, mono, rig)


def measure(scene: pipeline.Scene, path: str, rasterizer) -> dict:
    rig, eyes = rig_and_eyes(scene, path)
    row = {"path": path, "rig": rig.to_dict()}
    for mode in ("independent", "joint"):
        start = time.perf_counter()
        shot = generate_stereo(scene, eyes, DraftGenerator(), mode=mode, rasterizer=rasterizer)
        seconds = time.perf_counter() - start
        metric = stereo_consistency(scene, eyes, shot, rasterizer=rasterizer)
        row[mode] = {**metric, "seconds": round(seconds, 2), "reused_fraction": round(shot.reused_fraction, 4)}
    for key in ("psnr_db", "psnr_comparable_db", "psnr_generated_db", "psnr_strict_db"):
        joint, independent = row["joint"][key], row["independent"][key]
        row[f"gain_{key[5:-3] or 'all'}_db"] = None if joint is None or independent is None else round(joint - independent, 3)
    # the gain a joint pair exact on every strictly co-visible pixel would reach, its error elsewhere unchanged
    share = row["joint"]["error_share_not_strict"]
    row["gain_ceiling_db"] = None if share <= 0 else round(row["gain_all_db"] - 10 * math.log10(share), 3)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--paths", default="source,30", help="camera presets of the rig camera")
    parser.add_argument("--clips", default="garden,flower")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    import tempfile

    rasterizer = get_rasterizer("opengl")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for clip in args.clips.split(","):
            scene = load_clip(clip, args.frames, workdir)
            for path in args.paths.split(","):
                rows.append({"clip": clip, "size": [scene.width, scene.height], "frames": scene.num_frames,
                             **measure(scene, path, rasterizer)})
    result = {
        "bench": "stereo_consistency",
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, CPU only",
        "renderer": getattr(rasterizer, "renderer_string", rasterizer.name),
        "generator": "draft",
        "target_gain_db": TARGET_GAIN_DB,
        "min_gain_all_db": min(r["gain_all_db"] for r in rows),
        "min_gain_comparable_db": min(r["gain_comparable_db"] for r in rows),
        "min_gain_generated_db": min((r["gain_generated_db"] for r in rows if r["gain_generated_db"] is not None),
                                     default=None),
        "min_gain_strict_db": min((r["gain_strict_db"] for r in rows if r["gain_strict_db"] is not None), default=None),
        "rows": rows,
    }
    print_json_line(result, args.out)
    return 0


def print_json_line(result: dict, out=None) -> None:
    """The bench's one JSON line on stdout, and in ``out`` when given."""
    line = json.dumps(result)
    print(line)
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    sys.exit(main())
