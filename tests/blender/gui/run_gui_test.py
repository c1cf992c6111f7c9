#!/usr/bin/env python3
"""The real-GUI end-to-end test of the add-on: Debian's Blender in a trixie chroot, real X input.

    .venv/bin/python tests/blender/gui/run_gui_test.py [--out out/gui]

1. ``bash .ci/gui_chroot.sh bpy52``: the cached chroot (debootstrap trixie + blender, Xvfb, Mesa, xdotool,
   ImageMagick, python3.13; rebuilt only when missing or when its package list changes) and numpy for
   the "numpy installed" session.
2. Builds the extension (.ci/build_extension.py), makes a 9-frame clip with a 16-bit PNG depth folder.
3. Starts ``ex4d serve`` from this venv on loopback (the chroot shares the host's network).
4. Runs tests/blender/gui/gui_session.py inside the chroot (/proc, /dev, /sys and the work folders
   bind-mounted in a private mount namespace; unmounted at the end whatever happens).
Screenshots and Blender's logs go to ``--out`` (default ``out/gui/``, git-ignored; CI keeps it as an
artefact); the results to ``<out>/result.json``. Exit 0 when the session ran (the pytest test
tests/blender/test_gui.py asserts on the results).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
# Run as a script (not under pytest), so put tests/ (ex4d_testing), tests/blender/ (bpy_testing) and the
# repository on the path the way pytest's `pythonpath` setting does.
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, REPO)

from bpy_testing import EngineServer  # noqa: E402

GUI_CHROOT = os.path.join(REPO, ".ci", "gui_chroot.sh")


def make_clip(folder: str) -> tuple[str, str]:
    """A 9-frame 64x48 clip (ffmpeg) with a step in depth, depth as 16-bit PNG millimetres."""
    import cv2
    import numpy as np
    from ex4d_engine.video_io import write_video

    num_frames, width, height = 9, 64, 48
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([40 + 3 * x, 40 + 4 * y, 120 + 0 * x], -1).astype(np.uint8)
    write_video(os.path.join(folder, "garden_clip.mp4"), np.stack([np.roll(base, i, axis=1)
                                                                   for i in range(num_frames)]), 12.0)
    depth_dir = os.path.join(folder, "depth")
    os.makedirs(depth_dir)
    depth = np.full((height, width), 4000, np.uint16)
    depth[:, width // 2:] = 2000
    for i in range(num_frames):
        cv2.imwrite(os.path.join(depth_dir, f"depth_{i:05d}.png"), depth)
    return os.path.join(folder, "garden_clip.mp4"), depth_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("EX4D_GUI_ARTEFACTS", os.path.join(REPO, "out", "gui")))
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    ensure = subprocess.run(["bash", GUI_CHROOT, "bpy52"], capture_output=True, text=True, timeout=2400,
                            env={**os.environ, "PYTHON": sys.executable})
    if ensure.returncode != 0:
        print(ensure.stdout[-2000:] + ensure.stderr[-4000:], file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="ex4d-gui-")
    server = None
    try:
        build = subprocess.run([sys.executable, os.path.join(REPO, ".ci", "build_extension.py"),
                                "--output-dir", os.path.join(work, "dist")], capture_output=True, text=True,
                               timeout=300, check=True)
        zip_path = build.stdout.strip().splitlines()[-1]
        clip, depth = make_clip(work)
        server = EngineServer(os.path.join(work, "engine"))
        env = {**os.environ, "EX4D_CHROOT_BINDS": ":".join([REPO, work, out])}
        session = subprocess.run(
            ["bash", GUI_CHROOT, "run", "python3.13", os.path.join(HERE, "gui_session.py"),
             "--zip", zip_path, "--url", server.url, "--token", server.token, "--clip", clip, "--depth", depth,
             "--out", out, "--workdir", work],
            capture_output=True, text=True, timeout=1500, env=env)
        lines = [line for line in session.stdout.splitlines() if line.startswith("EX4D_RESULT ")]
        if not lines:
            print(f"gui_session printed no result (exit {session.returncode}):\n{session.stdout[-3000:]}\n"
                  f"{session.stderr[-3000:]}", file=sys.stderr)
            return 3
        result = json.loads(lines[-1][len("EX4D_RESULT "):])
        result["engine_log_tail"] = server.log()[-2000:]
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(out, "result.json"), "w") as handle:
        json.dump(result, handle, indent=1)
    print(os.path.join(out, "result.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
