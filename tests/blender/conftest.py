"""Blender add-on tests: real ``bpy`` wheels, one virtual environment per Blender version.

Set-up (README): ``python3.11 -m venv .venv-bpy42 && .venv-bpy42/bin/pip install bpy==4.2.23 "numpy<2" requests
pytest`` and the same for ``.venv-bpy45`` (bpy==4.5.15) and ``.venv-bpy50`` (bpy==5.0.1). A missing venv
fails the tests with that instruction; it is never skipped.

Scripts run inside a bpy venv in a subprocess (``bpy_run``) with ``HOME`` pointed at a scratch folder
(the extension installs into ``~/.config/blender/<ver>/extensions/user_default``); they print one line
``EX4D_RESULT <json>``. One process per version runs many checks (``addon_checks``) to keep the
three-version matrix fast.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bpy_testing import BLENDER_VERSIONS, REPO, free_port, run_in_bpy  # noqa: E402


@pytest.fixture(scope="session")
def bpy_run(tmp_path_factory):
    """``bpy_run(version, script, *args)`` -> the script's JSON result (fresh HOME per call)."""
    counter = iter(range(1_000_000))

    def run(version: str, script: str, *args: str, timeout: float = 300.0, env: dict | None = None) -> dict:
        home = str(tmp_path_factory.mktemp(f"bpy{version.replace('.', '')}-home-{next(counter)}"))
        return run_in_bpy(version, script, list(args), home, timeout, env)

    return run


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory) -> str:
    """The extension built and validated by Blender's own tool (.ci/build_extension.py)."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, os.path.join(REPO, ".ci", "build_extension.py"), "--output-dir", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory) -> str:
    from package_factory import build_package

    path = str(tmp_path_factory.mktemp("package") / "tiny.ex4dscene.zip")
    build_package(path, width=32, height=24, num_frames=5, fps=24.0)
    return path


@pytest.fixture(scope="session")
def addon_checks(bpy_run, extension_zip, tiny_package, tmp_path_factory):
    """``addon_checks(version)`` -> results of scripts/addon_checks.py, run once per version."""
    cache: dict[str, dict] = {}

    def get(version: str) -> dict:
        if version not in cache:
            work = tmp_path_factory.mktemp(f"checks{version.replace('.', '')}")
            cache[version] = bpy_run(version, "addon_checks.py", "--zip", extension_zip, "--package", tiny_package,
                                     "--workdir", str(work), "--dead-url", f"http://127.0.0.1:{free_port()}")
        return cache[version]

    return get


@pytest.fixture(params=BLENDER_VERSIONS)
def blender_version(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def engine_server(tmp_path_factory):
    """One real ``ex4d serve`` on loopback for the end-to-end tests (draft generator, CPU)."""
    from bpy_testing import EngineServer

    server = EngineServer(str(tmp_path_factory.mktemp("engine") / "data"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def engine_clip(tmp_path_factory) -> dict:
    """A real 9-frame 64x48 clip (ffmpeg) and a depth with a step, uploaded by the add-on."""
    import numpy as np
    from ex4d_engine.video_io import write_video

    folder = tmp_path_factory.mktemp("clip")
    num_frames, width, height = 9, 64, 48
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([40 + 3 * x, 40 + 4 * y, 120 + 0 * x], -1).astype(np.uint8)
    frames = np.stack([np.roll(base, i, axis=1) for i in range(num_frames)])
    write_video(folder / "clip.mp4", frames, 12.0)
    depth = np.full((num_frames, height, width), 4.0, np.float32)
    depth[:, :, width // 2:] = 2.0
    np.save(folder / "depth.npy", depth)
    import cv2

    (folder / "depth_png").mkdir()
    for i, frame in enumerate(depth):  # what `ex4d recon --depth DIR` reads: 16-bit PNG, millimetres
        cv2.imwrite(str(folder / "depth_png" / f"depth_{i:05d}.png"), (frame * 1000).astype(np.uint16))
    return {"video": str(folder / "clip.mp4"), "depth": str(folder / "depth.npy"), "num_frames": num_frames,
            "depth_png": str(folder / "depth_png"), "width": width, "height": height}


@pytest.fixture(scope="session")
def e2e_checks(bpy_run, extension_zip, engine_server, engine_clip, tmp_path_factory):
    """``e2e_checks(version)`` -> results of scripts/e2e_checks.py against the real server, once per version."""
    cache: dict[str, dict] = {}

    def get(version: str) -> dict:
        if version not in cache:
            cache[version] = bpy_run(version, "e2e_checks.py", "--zip", extension_zip, "--url", engine_server.url,
                                     "--token", engine_server.token, "--video", engine_clip["video"],
                                     "--depth", engine_clip["depth"], "--num-frames", str(engine_clip["num_frames"]),
                                     "--depth-png", engine_clip["depth_png"],
                                     "--engine-python", sys.executable,
                                     "--workdir", str(tmp_path_factory.mktemp(f"e2e{version.replace('.', '')}")))
        return cache[version]

    return get


@pytest.fixture(scope="session")
def engine_scene(tmp_path_factory):
    """A real engine scene (ex4d_engine.pipeline) of a smooth 128x64 clip and its scene package."""
    import numpy as np
    from ex4d_engine.pipeline import ReconOptions, load_scene, write_scene_package
    from ex4d_engine.video_io import write_video

    folder = tmp_path_factory.mktemp("engine_scene")
    num_frames, width, height = 9, 128, 64
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.stack([np.stack([60 + 1.2 * x + 4 * t, 50 + 2.0 * y, 180 - 0.8 * x + 6 * t], -1)
                       for t in range(num_frames)]).clip(0, 255).astype(np.uint8)
    write_video(folder / "clip.mp4", frames, 12.0, crf=0)
    depth = np.full((num_frames, height, width), 4.0, np.float32)
    depth[:, 16:48, 40:80] = 2.5  # a box in front of a wall: hidden faces exist
    np.save(folder / "depth.npy", depth)
    scene = load_scene(folder / "clip.mp4", depth_file=folder / "depth.npy",
                       options=ReconOptions(num_frames=num_frames, fov_deg=60.0))
    package = folder / "scene.ex4dscene.zip"
    write_scene_package(scene, package)
    return {"scene": scene, "package": str(package), "folder": folder}
