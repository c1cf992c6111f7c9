#!/usr/bin/env python3
"""Validate and build the Blender extension zip with Blender's own extension tool.

The manifest lives at the repository root and the payload in ``ex4d_blender/``, so the
extension is built from a staging directory holding the manifest plus the package's files.
The contract modules are copied from ``ex4d_engine/`` (their single source) into the stage.

Usage:
    python .ci/build_extension.py [--bpy-venv .venv-bpy50] [--output-dir dist]

Prints the path of the zip. Blender's tool is ``bl_pkg/cli/blender_ext.py`` inside the ``bpy``
wheel; it runs with any CPython 3.11, so any of the three bpy venvs provides it.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAYLOAD = os.path.join(REPO, "ex4d_blender")
MANIFEST = os.path.join(REPO, "blender_manifest.toml")
#: Engine modules shipped byte-identical inside the add-on.
SHARED_MODULES = ("contract.py", "interchange.py", "safe_zip.py")
DEFAULT_VENVS = (".venv-bpy50", ".venv-bpy45", ".venv-bpy42")


def find_blender_ext(bpy_venv: str | None) -> tuple[str, str]:
    """(python, blender_ext.py) from the given or the first available bpy venv."""
    venvs = [bpy_venv] if bpy_venv else [os.path.join(REPO, v) for v in DEFAULT_VENVS]
    for venv in venvs:
        hits = glob.glob(os.path.join(venv, "lib", "python3.*", "site-packages", "bpy", "*",
                                      "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py"))
        if hits:
            return os.path.join(venv, "bin", "python"), hits[0]
    raise SystemExit(f"build_extension: no bpy wheel with bl_pkg/cli/blender_ext.py in {venvs}")


def stage(stage_dir: str) -> None:
    shutil.copy2(MANIFEST, os.path.join(stage_dir, "blender_manifest.toml"))
    for name in sorted(os.listdir(PAYLOAD)):
        if name == "__pycache__" or name.endswith(".pyc"):
            continue
        src = os.path.join(PAYLOAD, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(stage_dir, name),
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, os.path.join(stage_dir, name))
    for name in SHARED_MODULES:
        engine_copy = os.path.join(REPO, "ex4d_engine", name)
        if os.path.exists(engine_copy):
            shutil.copy2(engine_copy, os.path.join(stage_dir, name))
        elif not os.path.exists(os.path.join(stage_dir, name)):
            raise SystemExit(f"build_extension: {name} is missing from ex4d_engine/ and ex4d_blender/")


def build(bpy_venv: str | None, output_dir: str) -> str:
    python, tool = find_blender_ext(bpy_venv)
    os.makedirs(output_dir, exist_ok=True)  # the tool fails with "Error creating archive" otherwise
    with tempfile.TemporaryDirectory(prefix="ex4d-ext-") as stage_dir:
        stage(stage_dir)
        for args in (["validate", stage_dir],
                     ["build", "--source-dir", stage_dir, "--output-dir", output_dir]):
            proc = subprocess.run([python, tool, *args], capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"build_extension: blender_ext.py {args[0]} failed:\n{proc.stdout}{proc.stderr}")
    zips = sorted(glob.glob(os.path.join(output_dir, "ex4d-*.zip")), key=os.path.getmtime)
    if not zips:
        raise SystemExit(f"build_extension: no ex4d-*.zip written to {output_dir}")
    proc = subprocess.run([python, tool, "validate", zips[-1]], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"build_extension: the built zip does not validate:\n{proc.stdout}{proc.stderr}")
    return zips[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bpy-venv", help="virtual environment with the bpy wheel (default: first of "
                        + ", ".join(DEFAULT_VENVS) + ")")
    parser.add_argument("--output-dir", default=os.path.join(REPO, "dist"))
    args = parser.parse_args(argv)
    print(build(args.bpy_venv, os.path.abspath(args.output_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
