"""Fixtures for the server tests: tiny real inputs and a real ``ex4d serve`` on 127.0.0.1.

Each ``ServerProcess`` is ``python -m ex4d_engine.cli serve --port 0`` in a subprocess with its own
data dir; the URL comes from ``<data-dir>/server.json``, the token from ``<data-dir>/token``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import requests
from ex4d_testing import stop_process

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180  # a readiness wait (returns as soon as ready): Ray actors start slowly on a loaded 2-core machine


class ServerProcess:
    def __init__(self, data_dir: Path, *args: str, env: Optional[dict] = None):
        self.data_dir = Path(data_dir)
        self.args = list(args)
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""
        self.token = ""
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait_worker: bool = True) -> "ServerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        info_file = self.data_dir / "server.json"
        if info_file.exists():
            info_file.unlink()  # a kill -9 leaves a stale one
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(self.env or {}))
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ex4d_engine.cli", "serve", "--port", "0", "--data-dir", str(self.data_dir),
             *self.args],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            if info_file.exists():
                info = json.loads(info_file.read_text())
                if info["pid"] == self.proc.pid:
                    self.url = info["url"]
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"server did not start:\n{self.log()}")
        token_file = self.data_dir / "token"
        self.token = os.environ.get("EX4D_TOKEN") or (self.env or {}).get("EX4D_TOKEN") or token_file.read_text().strip()
        if wait_worker:
            self.wait_worker_idle()
        return self

    def wait_worker_idle(self, timeout_s: float = START_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            health = requests.get(self.url + "/v1/health", timeout=10).json()
            if health["workers"] and all(w["state"] in ("idle", "busy") for w in health["workers"]):
                return health
            time.sleep(0.05)
        raise RuntimeError(f"worker not ready:\n{self.log()}")

    def stop(self) -> int:
        return stop_process(self.proc)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    # ------------------------------------------------------------------ HTTP
    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, headers={**self.headers, **kw.pop("headers", {})}, timeout=30, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return requests.post(self.url + path, headers={**self.headers, **kw.pop("headers", {})}, timeout=60, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return requests.delete(self.url + path, headers={**self.headers, **kw.pop("headers", {})}, timeout=30, **kw)

    def upload_scene(self, clip: "TinyClip", **fields) -> requests.Response:
        with open(clip.video, "rb") as video, open(clip.depth, "rb") as depth:
            return self.post("/v1/scenes", files={"video": ("clip.mp4", video, "video/mp4"),
                                                  "depth": ("depth.npy", depth, "application/octet-stream")},
                             data={"num_frames": str(clip.num_frames), **fields})

    def wait_job(self, job_id: str, timeout_s: float = 120, states=("succeeded", "failed", "cancelled")) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.get(f"/v1/jobs/{job_id}").json()
            if job["state"] in states:
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} still {job['state']} after {timeout_s}s:\n{self.log()}")

    def make_ready_scene(self, clip: "TinyClip") -> dict:
        response = self.upload_scene(clip)
        assert response.status_code == 202, response.text
        scene = response.json()
        job = self.wait_job(scene["recon_job_id"])
        assert job["state"] == "succeeded", job
        return self.get(f"/v1/scenes/{scene['id']}").json()

    def submit_job(self, scene: dict, trajectory: Optional[dict] = None, **options) -> requests.Response:
        body = {"scene_id": scene["id"], "trajectory": trajectory or moving_trajectory(scene), "options": options}
        return self.post("/v1/jobs", json=body)


class TinyClip:
    """A real 64x48 clip written through ffmpeg, with a depth plane that has a step (so faces hide)."""

    def __init__(self, directory: Path, num_frames: int = 9, width: int = 64, height: int = 48):
        from ex4d_engine.video_io import write_video

        self.num_frames, self.width, self.height = num_frames, width, height
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
        frames = np.stack([np.roll(base, i, axis=1) for i in range(num_frames)])
        self.video = directory / "clip.mp4"
        write_video(self.video, frames, 12.0)
        depth = np.full((num_frames, height, width), 4.0, np.float32)
        depth[:, :, width // 2:] = 2.0  # a step: the nearer half occludes the farther one
        self.depth = directory / "depth.npy"
        np.save(self.depth, depth)


def moving_trajectory(scene: dict, shift: float = 0.15, frames: Optional[int] = None) -> dict:
    """The scene's source trajectory with the camera sliding right over the frames."""
    trajectory = json.loads(json.dumps(scene["source_trajectory"]))
    trajectory["frames"] = trajectory["frames"][:frames] if frames else trajectory["frames"]
    n = len(trajectory["frames"])
    for i, frame in enumerate(trajectory["frames"]):
        frame["w2c"][0][3] = -shift * i / max(1, n - 1)
    return trajectory


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> TinyClip:
    return TinyClip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def make_clip(tmp_path_factory):
    """TinyClip factory (num_frames, width, height)."""
    return lambda **kw: TinyClip(tmp_path_factory.mktemp("clip"), **kw)


@pytest.fixture(scope="module")
def start_server(tmp_path_factory):
    """Factory: start_server(*cli_args, env=None, data_dir=None) -> a started ServerProcess, stopped at the end."""
    started: list[ServerProcess] = []

    def start(*args: str, env: Optional[dict] = None, data_dir: Optional[Path] = None,
              wait_worker: bool = True) -> ServerProcess:
        proc = ServerProcess(data_dir or tmp_path_factory.mktemp("server") / "data", *args, env=env)
        started.append(proc)
        return proc.start(wait_worker=wait_worker)

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="module")
def server(start_server) -> ServerProcess:
    """One real server per test module (fresh data dir)."""
    return start_server()


@pytest.fixture(scope="module")
def ready_scene(server, clip) -> dict:
    return server.make_ready_scene(clip)


@pytest.fixture(scope="session")
def trajectory_for():
    """trajectory_for(scene, shift=0.15, frames=None, fps=None) -> a moving ex4d.trajectory dict."""
    def make(scene: dict, shift: float = 0.15, frames: Optional[int] = None, fps: Optional[float] = None) -> dict:
        trajectory = moving_trajectory(scene, shift, frames)
        if fps is not None:
            trajectory["fps"] = fps
        return trajectory

    return make


@pytest.fixture(scope="module")
def static_scene(server, make_clip) -> dict:
    """A static scene (only_first_frame): any trajectory length works, so jobs can be made long."""
    tiny = make_clip(num_frames=2)
    response = server.upload_scene(tiny, only_first_frame="true")
    assert response.status_code == 202, response.text
    job = server.wait_job(response.json()["recon_job_id"])
    assert job["state"] == "succeeded", job
    return server.get(f"/v1/scenes/{response.json()['id']}").json()


def long_trajectory(scene: dict, frames: int) -> dict:
    """``frames`` cameras of a static scene sliding right."""
    one = scene["source_trajectory"]["frames"][0]
    trajectory = dict(scene["source_trajectory"], frames=[json.loads(json.dumps(one)) for _ in range(frames)])
    for i, frame in enumerate(trajectory["frames"]):
        frame["w2c"][0][3] = -0.2 * i / max(1, frames - 1)
    return trajectory


@pytest.fixture(scope="session")
def long_trajectory_for():
    return long_trajectory
