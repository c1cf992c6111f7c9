#!/usr/bin/env python3
"""Build the Blender extension zip (vendoring the engine's bpy-free modules) and optionally install it.

The manifest lives at the repository root and the payload in ``ex4d_blender/``. The engine modules the
add-on shares (``ENGINE_MODULES``: the trajectory contract, the interchange formats, the error table,
...) have one source, ``ex4d_engine/``; the build copies them into the private, git-ignored subpackage
``ex4d_blender/_engine/`` (absolute ``ex4d_engine.`` imports rewritten to relative ones) and writes
``_engine/__init__.py`` with each module's SHA-256 and the constants the add-on needs before numpy is
importable. The zip is then built and validated with Blender's own extension tool.

Usage:
    python .ci/build_extension.py [--bpy-venv .venv-bpy50] [--output-dir dist]
    python .ci/build_extension.py --install [--blender blender]   # the add-on developer loop

Prints the path of the zip. Blender's tool is ``bl_pkg/cli/blender_ext.py`` inside the ``bpy`` wheel; it
runs with any CPython >= 3.11, so any bpy venv provides it.
"""

from __future__ import annotations

import argparse
import ast
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAYLOAD = os.path.join(REPO, "ex4d_blender")
ENGINE = os.path.join(REPO, "ex4d_engine")
MANIFEST = os.path.join(REPO, "blender_manifest.toml")
VENDOR_DIR = os.path.join(PAYLOAD, "_engine")
#: The engine modules the add-on ships (bpy-, torch- and server-free). The one list to extend.
ENGINE_MODULES = ("contract.py", "interchange.py", "errors.py", "atomic.py", "protocol.py", "safe_zip.py",
                  "stereo_rig.py")
#: Constants copied into ``_engine/__init__.py`` so the add-on reads them without importing numpy.
CONSTANTS = {"contract.py": ("CONTRACT_VERSION",)}
DEFAULT_VENVS = (".venv-bpy50", ".venv-bpy45", ".venv-bpy42", ".venv-bpy52")
FORBIDDEN_IMPORTS = re.compile(r"^\s*(?:import|from)\s+(torch|bpy|server|fastapi|cv2)\b", re.M)


class BuildError(SystemExit):
    def __init__(self, message: str):
        super().__init__(f"build_extension: {message}")


def find_blender_ext(bpy_venv: str | None) -> tuple[str, str]:
    """(python, blender_ext.py) from the given or the first available bpy venv."""
    venvs = [bpy_venv] if bpy_venv else [os.path.join(REPO, v) for v in DEFAULT_VENVS]
    for venv in venvs:
        hits = glob.glob(os.path.join(venv, "lib", "python3.*", "site-packages", "bpy", "*",
                                      "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py"))
        if hits:
            return os.path.join(venv, "bin", "python"), hits[0]
    raise BuildError(f"no bpy wheel with bl_pkg/cli/blender_ext.py in {venvs}")


def vendored_source(name: str) -> str:
    """``ex4d_engine/<name>`` with ``ex4d_engine.`` imports made relative; fails on anything it cannot ship."""
    path = os.path.join(ENGINE, name)
    if not os.path.isfile(path):
        raise BuildError(f"ex4d_engine/{name} is listed in ENGINE_MODULES but does not exist")
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"^(\s*)from\s+ex4d_engine\.(\w+)\s+import", r"\1from .\2 import", text, flags=re.M)
    bad = FORBIDDEN_IMPORTS.search(text) or re.search(r"^\s*(?:import|from)\s+ex4d_engine\b", text, re.M)
    if bad:
        raise BuildError(f"ex4d_engine/{name} imports {bad.group(0).strip()!r}: the add-on cannot ship it")
    shipped = {os.path.splitext(n)[0] for n in ENGINE_MODULES}
    for module in re.findall(r"^\s*from\s+\.(\w+)\s+import", text, re.M):
        if module not in shipped:
            raise BuildError(f"ex4d_engine/{name} imports .{module}, which is not in ENGINE_MODULES")
    return text


def constants_of(name: str, text: str) -> dict:
    wanted = CONSTANTS.get(name, ())
    found = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in wanted:
                found[node.targets[0].id] = ast.literal_eval(node.value)
    missing = set(wanted) - set(found)
    if missing:
        raise BuildError(f"ex4d_engine/{name} no longer defines {sorted(missing)} as a literal")
    return found


def vendor(dest: str = VENDOR_DIR) -> dict[str, str]:
    """Write ``dest`` (``ex4d_blender/_engine``) afresh; returns {module file: sha256 of the engine's source}."""
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    hashes, constants = {}, {}
    for name in ENGINE_MODULES:
        text = vendored_source(name)
        with open(os.path.join(ENGINE, name), "rb") as handle:
            hashes[name] = hashlib.sha256(handle.read()).hexdigest()
        constants.update(constants_of(name, text))
        with open(os.path.join(dest, name), "w", encoding="utf-8") as handle:
            handle.write(text)
    lines = ['"""Engine modules vendored by .ci/build_extension.py from ex4d_engine/ (generated, git-ignored).',
             "",
             "Edit the originals in ex4d_engine/ and rebuild; never edit these copies.",
             '"""', "",
             "#: sha256 of each ex4d_engine/ source this build copied.",
             f"SOURCES = {hashes!r}"]
    lines += [f"{key} = {value!r}" for key, value in sorted(constants.items())]
    with open(os.path.join(dest, "__init__.py"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return hashes


def stage(stage_dir: str) -> None:
    shutil.copy2(MANIFEST, os.path.join(stage_dir, "blender_manifest.toml"))
    shutil.copytree(PAYLOAD, stage_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def build(bpy_venv: str | None, output_dir: str) -> str:
    python, tool = find_blender_ext(bpy_venv)
    vendor()
    os.makedirs(output_dir, exist_ok=True)  # the tool fails with "Error creating archive" otherwise
    with tempfile.TemporaryDirectory(prefix="ex4d-ext-") as stage_dir:
        stage(stage_dir)
        for args in (["validate", stage_dir],
                     ["build", "--source-dir", stage_dir, "--output-dir", output_dir]):
            proc = subprocess.run([python, tool, *args], capture_output=True, text=True)
            if proc.returncode != 0:
                raise BuildError(f"blender_ext.py {args[0]} failed:\n{proc.stdout}{proc.stderr}")
    zips = sorted(glob.glob(os.path.join(output_dir, "ex4d-*.zip")), key=os.path.getmtime)
    if not zips:
        raise BuildError(f"no ex4d-*.zip written to {output_dir}")
    proc = subprocess.run([python, tool, "validate", zips[-1]], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"the built zip does not validate:\n{proc.stdout}{proc.stderr}")
    return zips[-1]


def install(zip_path: str, blender: str) -> None:
    """What an artist's *Install from Disk* does, from a terminal: install and enable in user_default."""
    proc = subprocess.run([blender, "--command", "extension", "install-file",
                           "-r", "user_default", "-e", zip_path], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{blender} --command extension install-file failed:\n{proc.stdout}{proc.stderr}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bpy-venv", help="virtual environment with the bpy wheel (default: first of "
                        + ", ".join(DEFAULT_VENVS) + ")")
    parser.add_argument("--output-dir", default=os.path.join(REPO, "dist"))
    parser.add_argument("--install", action="store_true", help="then install and enable it in a Blender")
    parser.add_argument("--blender", default=os.environ.get("BLENDER", "blender"),
                        help="the Blender executable for --install (default: $BLENDER or blender)")
    args = parser.parse_args(argv)
    zip_path = build(args.bpy_venv, os.path.abspath(args.output_dir))
    if args.install:
        install(zip_path, args.blender)
    print(zip_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
