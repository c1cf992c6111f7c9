"""Helpers for the Blender add-on tests (imported by tests/blender/conftest.py and the tests)."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")
BPY_VENVS = {"4.2": ".venv-bpy42", "4.5": ".venv-bpy45", "5.0": ".venv-bpy50"}
BPY_PINS = {"4.2": "4.2.23", "4.5": "4.5.15", "5.0": "5.0.1"}
#: bpy 5.2.3 is cp313-only (Blender 5.1+ embeds Python 3.13): it runs in the Debian trixie chroot of
#: .ci/gui_chroot.sh, with trixie's python3.13 (venv made there by `gui_chroot.sh bpy52`).
CHROOT_PYTHONS = {"5.2": "/opt/ex4d-py313/bin/python"}
GUI_CHROOT = os.path.join(REPO, ".ci", "gui_chroot.sh")
BLENDER_VERSIONS = [*BPY_VENVS, *CHROOT_PYTHONS]
_chroot_ready = False


def ensure_chroot_python() -> None:
    """Build (or find cached) the trixie chroot and its bpy 5.2.3 venv; a failure says why."""
    global _chroot_ready
    if _chroot_ready:
        return
    import sys

    proc = subprocess.run(["bash", GUI_CHROOT, "bpy52"], capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "PYTHON": sys.executable})
    if proc.returncode != 0:
        pytest.fail(f"bpy 5.2 needs the trixie chroot (root, debootstrap): bash .ci/gui_chroot.sh bpy52 failed:\n"
                    f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    _chroot_ready = True



def bpy_python(version: str) -> str:
    venv = os.environ.get(f"EX4D_BPY{version.replace('.', '')}_VENV") or os.path.join(REPO, BPY_VENVS[version])
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        pytest.fail(f"bpy {version} venv missing at {venv}: python3.11 -m venv {BPY_VENVS[version]} && "
                    f"{BPY_VENVS[version]}/bin/pip install bpy=={BPY_PINS[version]} 'numpy<2' requests pytest")
    return python


def run_in_bpy(version: str, script: str, args: list[str], home: str, timeout: float = 300.0,
               env: dict | None = None) -> dict:
    """Run ``scripts/<script>`` in the bpy venv of ``version``; return its EX4D_RESULT JSON."""
    os.makedirs(home, exist_ok=True)
    full_env = {**os.environ, "HOME": home, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    full_env.pop("PYTHONPATH", None)
    if version in CHROOT_PYTHONS:
        ensure_chroot_python()
        # The repository and pytest's temporary folders appear at the same paths inside the chroot.
        full_env["EX4D_CHROOT_BINDS"] = ":".join([REPO, os.path.dirname(os.path.abspath(home))])
        command = ["bash", GUI_CHROOT, "run", CHROOT_PYTHONS[version]]
    else:
        command = [bpy_python(version)]
    proc = subprocess.run([*command, os.path.join(SCRIPTS, script), *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=REPO)
    for line in proc.stdout.splitlines():
        if line.startswith("EX4D_RESULT "):
            return json.loads(line[len("EX4D_RESULT "):])
    raise AssertionError(f"{script} on bpy {version} printed no result (exit {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_value(results: dict, name: str):
    """The value of one named check, or a failure showing the check's traceback."""
    outcome = results[name]
    if not outcome["ok"]:
        pytest.fail(f"check {name} raised inside Blender:\n{outcome['error']}")
    return outcome["value"]


class EngineServer:
    """A real ``ex4d serve --port 0`` (main venv) with its own data dir; URL and token from that dir."""

    def __init__(self, data_dir: str, start_timeout_s: float = 90.0):
        import sys
        import time

        os.makedirs(data_dir, exist_ok=True)
        self.data_dir = data_dir
        self.log_path = data_dir.rstrip("/") + ".log"
        log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("EX4D_TOKEN", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "ex4d_engine.cli", "serve", "--port", "0",
                                      "--data-dir", data_dir], cwd=REPO, env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        info_file = os.path.join(data_dir, "server.json")
        deadline = time.monotonic() + start_timeout_s
        self.url = ""
        while time.monotonic() < deadline and not self.url:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ex4d serve exited with {self.proc.returncode}:\n{self.log()}")
            if os.path.exists(info_file):
                info = json.load(open(info_file))
                if info.get("pid") == self.proc.pid:
                    self.url = info["url"]
            time.sleep(0.05)
        if not self.url:
            self.stop()
            raise RuntimeError(f"ex4d serve did not start:\n{self.log()}")
        self.token = open(os.path.join(data_dir, "token")).read().strip()
        import requests

        while time.monotonic() < deadline:  # the worker process must be up before jobs run
            workers = requests.get(self.url + "/v1/health", timeout=10).json().get("workers") or []
            if workers and all(w["state"] in ("idle", "busy") for w in workers):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"ex4d serve worker not ready:\n{self.log()}")

    def log(self) -> str:
        return open(self.log_path, errors="replace").read()[-5000:] if os.path.exists(self.log_path) else ""

    def stop(self) -> None:
        from ex4d_testing import stop_process

        stop_process(self.proc)
