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

import json
import os
import socket
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")
BPY_VENVS = {"4.2": ".venv-bpy42", "4.5": ".venv-bpy45", "5.0": ".venv-bpy50"}
BPY_PINS = {"4.2": "4.2.23", "4.5": "4.5.15", "5.0": "5.0.1"}
BLENDER_VERSIONS = list(BPY_VENVS)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def check_value(results: dict, name: str):
    """The value of one named check, or a failure showing the check's traceback."""
    outcome = results[name]
    if not outcome["ok"]:
        pytest.fail(f"check {name} raised inside Blender:\n{outcome['error']}")
    return outcome["value"]
