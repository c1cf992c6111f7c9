"""Helpers for scripts that run inside a bpy venv (see tests/blender/conftest.py::bpy_run).

A script prints one line ``EX4D_RESULT <json>``; the fixture parses it. ``run_checks`` runs many
named checks in one Blender process and records each outcome, so one failure hides no other.
"""

import json
import sys
import time
import traceback

import bpy

ADDON_MODULE = "bl_ext.user_default.ex4d"
#: The add-on's modules that need numpy: imported by the features that use them, never at enable time.
FEATURE_MODULES = ("camera_math", "mesh_import", "scene_camera", "depth_files", "scene_upload", "_engine.contract",
                   "_engine.interchange", "stereo")


def install_addon(zip_path):
    """Install and enable the built extension zip (what an artist does); returns the add-on package."""
    import importlib

    result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                      enable_on_install=True)
    if result != {"FINISHED"}:
        raise RuntimeError(f"package_install_files returned {result}")
    addon = importlib.import_module(ADDON_MODULE)
    # Enabling imports no numpy module; the checks reach the feature modules as attributes.
    addon.numpy_modules_at_enable = sorted(m for m in FEATURE_MODULES if f"{ADDON_MODULE}.{m}" in sys.modules)
    for name in FEATURE_MODULES:
        importlib.import_module(f"{ADDON_MODULE}.{name}")
    return addon


def reset_scene():
    bpy.ops.wm.read_homefile(use_empty=True)
    return bpy.context.scene


def run_checks(checks):
    """checks: dict name -> callable() -> JSON-able value. Returns {name: {"ok", "value"|"error", "s"}}."""
    results = {}
    for name, check in checks.items():
        start = time.perf_counter()
        try:
            results[name] = {"ok": True, "value": check()}
        except Exception:
            results[name] = {"ok": False, "error": traceback.format_exc()}
        results[name]["s"] = round(time.perf_counter() - start, 3)
    return results


def emit(payload):
    sys.stdout.write("EX4D_RESULT " + json.dumps(payload) + "\n")
    sys.stdout.flush()


def arg(name, default=None):
    """``--name value`` from the script's argv."""
    argv = sys.argv
    if f"--{name}" in argv:
        return argv[argv.index(f"--{name}") + 1]
    if default is None:
        raise SystemExit(f"missing --{name}")
    return default
