"""Benchmark the Blender add-on: scene import and trajectory extraction, per bpy version.

    .venv/bin/python bench/blender_import.py [--versions 4.2,4.5,5.0] [--frames 49] [--width 832 --height 480]

Main venv: builds a real scene package with the engine (``load_scene`` + ``write_scene_package``) and
the extension zip, then runs this file with ``--inner`` in each bpy venv, which installs the extension
and times ``ex4d.import_scene`` and ``trajectory_from_camera`` (the shot camera keyed over every frame)
on that imported scene. Targets: import <= 2 s, extraction <= 10 ms. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENVS = {"4.2": ".venv-bpy42", "4.5": ".venv-bpy45", "5.0": ".venv-bpy50"}


def inner(zip_path: str, package: str, repeats: int) -> dict:
    """Runs inside a bpy venv."""
    import importlib

    import bpy

    assert bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                    enable_on_install=True) == {"FINISHED"}
    addon = importlib.import_module("bl_ext.user_default.ex4d")
    import_s, extract_s = [], []
    for _ in range(repeats):
        bpy.ops.wm.read_homefile(use_empty=True)
        start = time.perf_counter()
        assert bpy.ops.ex4d.import_scene(filepath=package) == {"FINISHED"}
        import_s.append(time.perf_counter() - start)
    scene = bpy.context.scene
    collection = scene.ex4d.scene_collection
    shot = scene.camera
    shot.keyframe_insert("location", frame=scene.frame_start)
    shot.location.x += 0.3
    shot.keyframe_insert("location", frame=scene.frame_end)
    matrix = addon.mesh_import.import_matrix(collection)
    scene.frame_set(1)
    for _ in range(repeats + 1):
        start = time.perf_counter()
        trajectory = addon.scene_camera.trajectory_from_camera(scene, shot, scene.frame_start, scene.frame_end,
                                                               matrix)
        extract_s.append(time.perf_counter() - start)
    return {"blender": bpy.app.version_string, "import_s": import_s, "extract_s": extract_s[1:],
            "frames": len(trajectory), "vertices": len(collection["ex4d_mesh"].data.vertices)}


def build_inputs(folder: str, frames: int, width: int, height: int) -> tuple[str, str]:
    import numpy as np
    from ex4d_engine.pipeline import ReconOptions, load_scene, write_scene_package
    from ex4d_engine.video_io import write_video

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    clip = np.stack([np.stack([40 + 0.2 * x + 2 * t, 40 + 0.3 * y, 200 - 0.2 * x], -1) for t in range(frames)])
    write_video(os.path.join(folder, "clip.mp4"), clip.clip(0, 255).astype(np.uint8), 30.0)
    depth = np.full((frames, height, width), 5.0, np.float32)
    depth[:, height // 4: 3 * height // 4, width // 3: 2 * width // 3] = 3.0
    np.save(os.path.join(folder, "depth.npy"), depth)
    scene = load_scene(os.path.join(folder, "clip.mp4"), depth_file=os.path.join(folder, "depth.npy"),
                       options=ReconOptions(num_frames=frames, fov_deg=60.0))
    package = os.path.join(folder, "bench.ex4dscene.zip")
    write_scene_package(scene, package)
    out = subprocess.run([sys.executable, os.path.join(REPO, ".ci", "build_extension.py"), "--output-dir",
                          os.path.join(folder, "dist")], capture_output=True, text=True, check=True)
    return package, out.stdout.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inner", nargs=2, metavar=("ZIP", "PACKAGE"), help=argparse.SUPPRESS)
    parser.add_argument("--versions", default="4.2,4.5,5.0")
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.inner:
        print("EX4D_RESULT " + json.dumps(inner(*args.inner, args.repeats)))
        return 0
    with tempfile.TemporaryDirectory(prefix="ex4d-bench-") as folder:
        start = time.perf_counter()
        package, zip_path = build_inputs(folder, args.frames, args.width, args.height)
        print(f"package {os.path.getsize(package) / 1e6:.0f} MB built in {time.perf_counter() - start:.1f} s",
              file=sys.stderr)
        rows = []
        for version in args.versions.split(","):
            home = os.path.join(folder, f"home{version}")
            os.makedirs(home)
            proc = subprocess.run([os.path.join(REPO, VENVS[version], "bin", "python"), __file__, "--inner", zip_path,
                                   package, "--repeats", str(args.repeats)], capture_output=True, text=True,
                                  env={**os.environ, "HOME": home}, cwd=REPO)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("EX4D_RESULT ")), None)
            if line is None:
                raise SystemExit(f"bpy {version} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            rows.append(json.loads(line[len("EX4D_RESULT "):]))
    print(f"| Blender | mesh vertices | scene import ({args.frames} frames, {args.width}x{args.height} clip) "
          f"median [min] | trajectory extraction ({args.frames} frames) median [min] |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['blender']} | {row['vertices']:,} | {statistics.median(row['import_s']):.2f} s "
              f"[{min(row['import_s']):.2f} s] | {statistics.median(row['extract_s']) * 1e3:.1f} ms "
              f"[{min(row['extract_s']) * 1e3:.1f} ms] |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
