"""A real ``ex4d serve`` on 127.0.0.1 for the server benchmarks, plus a tiny ready scene.

Not a benchmark itself: ``server_overhead.py`` and ``server_load.py`` import it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class BenchServer:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ex4d_engine.cli", "serve", "--port", "0", "--data-dir", str(data_dir)],
            cwd=REPO, stdout=open(data_dir.parent / "server.log", "wb"), stderr=subprocess.STDOUT)
        info = data_dir / "server.json"
        deadline = time.monotonic() + 60
        while not (info.exists() and json.loads(info.read_text())["pid"] == self.proc.pid):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((data_dir.parent / "server.log").read_text())
            time.sleep(0.05)
        self.url = json.loads(info.read_text())["url"]
        self.headers = {"Authorization": "Bearer " + (data_dir / "token").read_text().strip()}
        while requests.get(self.url + "/v1/health", timeout=10).json()["workers"][0]["state"] != "idle":
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)

    def ready_scene(self, frames: int = 9, width: int = 64, height: int = 48) -> dict:
        from ex4d_engine.video_io import write_video

        work = self.data_dir.parent
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
        write_video(work / "clip.mp4", np.stack([np.roll(base, i, 1) for i in range(frames)]), 12.0)
        depth = np.full((frames, height, width), 4.0, np.float32)
        depth[:, :, width // 2:] = 2.0
        np.save(work / "depth.npy", depth)
        with open(work / "clip.mp4", "rb") as video, open(work / "depth.npy", "rb") as depth_file:
            scene = requests.post(self.url + "/v1/scenes", headers=self.headers, timeout=60,
                                  files={"video": ("clip.mp4", video), "depth": ("depth.npy", depth_file)},
                                  data={"num_frames": str(frames)}).json()
        self.wait(scene["recon_job_id"])
        return requests.get(f"{self.url}/v1/scenes/{scene['id']}", headers=self.headers, timeout=10).json()

    def wait(self, job_id: str, timeout_s: float = 300) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = requests.get(f"{self.url}/v1/jobs/{job_id}", headers=self.headers, timeout=30).json()
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.01)
        raise TimeoutError(job_id)

    def follow(self, job_id: str, session: requests.Session | None = None) -> dict:
        """Follow the job's server-sent events to the terminal one; returns it."""
        get = (session or requests).get
        last = {}
        with get(f"{self.url}/v1/jobs/{job_id}/events", headers=self.headers, stream=True, timeout=300) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if line.startswith("data: "):
                    last = json.loads(line[6:])
        return last


def trajectory(scene: dict, frames: int) -> dict:
    out = json.loads(json.dumps(scene["source_trajectory"]))
    out["frames"] = out["frames"][:frames]
    for i, frame in enumerate(out["frames"]):
        frame["w2c"][0][3] = -0.05 * i / max(1, frames - 1)
    return out


def start() -> tuple[BenchServer, tempfile.TemporaryDirectory]:
    tmp = tempfile.TemporaryDirectory(prefix="ex4d-bench-")
    data = Path(tmp.name) / "data"
    data.mkdir()
    return BenchServer(data), tmp


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def machine() -> str:
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
