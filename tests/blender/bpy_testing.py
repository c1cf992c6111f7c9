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
BLENDER_VERSIONS = list(BPY_VENVS)



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
    proc = subprocess.run([bpy_python(version), os.path.join(SCRIPTS, script), *args], capture_output=True,
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
