"""Blender camera -> K maths outside Blender, plus the add-on's layer boundaries and packaging."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from bpy_testing import REPO

ADDON = os.path.join(REPO, "ex4d_blender")


def load_camera_math():
    # ex4d_blender/__init__.py imports bpy, so load the bpy-free module by path.
    spec = importlib.util.spec_from_file_location("ex4d_camera_math", os.path.join(ADDON, "camera_math.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


cm = load_camera_math()


@pytest.mark.parametrize("settings, expected", [
    # Values measured against Blender's own projection (shared/reference/blender_integration.md §3).
    (dict(lens_mm=24, sensor_width_mm=36, sensor_height_mm=24, sensor_fit="AUTO", shift_x=0, shift_y=0,
          resolution_x=1920, resolution_y=1080), (1280, 1280, 960, 540)),
    (dict(lens_mm=24, sensor_width_mm=36, sensor_height_mm=24, sensor_fit="AUTO", shift_x=0, shift_y=0,
          resolution_x=1080, resolution_y=1920), (1280, 1280, 540, 960)),
    (dict(lens_mm=24, sensor_width_mm=36, sensor_height_mm=24, sensor_fit="HORIZONTAL", shift_x=0, shift_y=0,
          resolution_x=1080, resolution_y=1920), (720, 720, 540, 960)),
    (dict(lens_mm=24, sensor_width_mm=36, sensor_height_mm=18, sensor_fit="VERTICAL", shift_x=0.07, shift_y=0.12,
          resolution_x=720, resolution_y=576, pixel_aspect_x=2.0, pixel_aspect_y=1.0), (384, 768, 339.84, 357.12)),
    (dict(lens_mm=24, sensor_width_mm=36, sensor_height_mm=24, sensor_fit="HORIZONTAL", shift_x=-0.1, shift_y=0.05,
          resolution_x=1000, resolution_y=800, resolution_percentage=50, pixel_aspect_x=1.0, pixel_aspect_y=1.5),
     (333.3333333, 222.2222222, 300, 216.6666667)),
])
def test_known_intrinsics(settings, expected):
    K = cm.intrinsics_from_blender(cm.BlenderCameraSettings(**settings))
    np.testing.assert_allclose([K[0, 0], K[1, 1], K[0, 2], K[1, 2]], expected, atol=1e-6)


def test_intrinsics_round_trip_through_blender_settings():
    for fx, fy, cx, cy, w, h in itertools.product((500.0, 820.0), (500.0, 410.0), (300.0, 333.5), (240.0, 199.0),
                                                  (640,), (480, 700)):
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        s = cm.blender_settings_from_intrinsics(K, w, h)
        back = cm.intrinsics_from_blender(cm.BlenderCameraSettings(
            s["lens"], s["sensor_width"], 24.0, s["sensor_fit"], s["shift_x"], s["shift_y"], w, h, 100,
            s["pixel_aspect_x"], s["pixel_aspect_y"]))
        np.testing.assert_allclose(back, K, atol=1e-9)
        assert min(s["pixel_aspect_x"], s["pixel_aspect_y"]) == 1.0  # Blender's pixel aspect is >= 1


def test_bad_settings_name_the_problem():
    base = dict(lens_mm=50, sensor_width_mm=36, sensor_height_mm=24, sensor_fit="AUTO", shift_x=0, shift_y=0,
                resolution_x=64, resolution_y=48)
    with pytest.raises(cm.CameraSettingsError, match="sensor_fit"):
        cm.intrinsics_from_blender(cm.BlenderCameraSettings(**{**base, "sensor_fit": "DIAGONAL"}))
    with pytest.raises(cm.CameraSettingsError, match="lens"):
        cm.intrinsics_from_blender(cm.BlenderCameraSettings(**{**base, "lens_mm": 0}))
    with pytest.raises(cm.CameraSettingsError, match="at least 1x1"):
        cm.intrinsics_from_blender(cm.BlenderCameraSettings(**{**base, "resolution_x": 1, "resolution_percentage": 1}))


def test_addon_never_imports_torch_or_the_engine():
    for name in os.listdir(ADDON):
        if name.endswith(".py"):
            text = open(os.path.join(ADDON, name), encoding="utf-8").read()
            assert not re.search(r"^\s*(import|from)\s+(torch|ex4d_engine|server)\b", text, re.M), name
            assert "pip" not in re.findall(r"^\s*import\s+(\w+)", text, re.M), name


def test_extension_zip_has_only_the_payload(extension_zip):
    with zipfile.ZipFile(extension_zip) as archive:
        names = set(archive.namelist())
    assert "blender_manifest.toml" in names and "__init__.py" in names
    expected = {n for n in os.listdir(ADDON) if n.endswith(".py")} | {"blender_manifest.toml"}
    expected |= {f"_engine/{n}" for n in ENGINE_MODULES} | {"_engine/__init__.py"}
    assert names == expected, names ^ expected


def test_built_zip_holds_the_current_engine_modules(extension_zip):
    """The build vendors ex4d_engine's modules (imports made relative) and records each source's hash."""
    with zipfile.ZipFile(extension_zip) as archive:
        init = archive.read("_engine/__init__.py").decode()
        namespace: dict = {}
        exec(compile(init, "_engine/__init__.py", "exec"), namespace)
        for name in ENGINE_MODULES:
            source = open(os.path.join(REPO, "ex4d_engine", name), "rb").read()
            assert namespace["SOURCES"][name] == hashlib.sha256(source).hexdigest(), name
            shipped = archive.read(f"_engine/{name}").decode()
            expected = re.sub(r"^(\s*)from\s+ex4d_engine\.(\w+)\s+import", r"\1from .\2 import",
                              source.decode(), flags=re.M)
            assert shipped == expected, name
            assert not re.search(r"^\s*(import|from)\s+ex4d_engine\b", shipped, re.M), name
    contract_source = open(os.path.join(REPO, "ex4d_engine", "contract.py")).read()
    assert f"CONTRACT_VERSION = {namespace['CONTRACT_VERSION']}" in contract_source


def test_no_committed_engine_copies():
    """The engine's modules have one source: the add-on's copies are build output, ignored by git."""
    for name in ENGINE_MODULES:
        assert not os.path.exists(os.path.join(ADDON, name)), f"ex4d_blender/{name} is a copy: delete it"
    tracked = subprocess.run(["git", "ls-files", "ex4d_blender"], cwd=REPO, capture_output=True, text=True).stdout
    if tracked:  # a git checkout (not an exported tree)
        assert "_engine/" not in tracked
        ignored = subprocess.run(["git", "check-ignore", "-q", "ex4d_blender/_engine/contract.py"], cwd=REPO)
        assert ignored.returncode == 0


def test_build_refuses_an_engine_module_it_cannot_ship(tmp_path, monkeypatch):
    """A vendored module that imports torch (or an unlisted engine module) fails the build, naming it."""
    build = load_build_script()
    engine = tmp_path / "ex4d_engine"
    engine.mkdir()
    (engine / "contract.py").write_text("CONTRACT_VERSION = 1\n")
    (engine / "interchange.py").write_text("from ex4d_engine.pipeline import load_scene\n")
    (engine / "errors.py").write_text("import torch\n")
    monkeypatch.setattr(build, "ENGINE", str(engine))
    monkeypatch.setattr(build, "ENGINE_MODULES", ("contract.py", "interchange.py"))
    with pytest.raises(SystemExit, match="imports .pipeline, which is not in ENGINE_MODULES"):
        build.vendor(str(tmp_path / "out"))
    monkeypatch.setattr(build, "ENGINE_MODULES", ("contract.py", "errors.py"))
    with pytest.raises(SystemExit, match="errors.py imports 'import torch'"):
        build.vendor(str(tmp_path / "out"))
    monkeypatch.setattr(build, "ENGINE_MODULES", ("contract.py",))
    assert set(build.vendor(str(tmp_path / "out"))) == {"contract.py"}
    assert "CONTRACT_VERSION = 1" in (tmp_path / "out" / "__init__.py").read_text()


def load_build_script():
    spec = importlib.util.spec_from_file_location("ex4d_build_extension", os.path.join(REPO, ".ci", "build_extension.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENGINE_MODULES = load_build_script().ENGINE_MODULES


def _top_level_imports(path: str) -> set[str]:
    """Modules imported at module level (not inside functions): what enabling the add-on runs."""
    import ast

    tree = ast.parse(open(path, encoding="utf-8").read())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level and not node.module:  # from . import a, b
            found |= {"." + alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


def test_enabling_imports_only_blenders_standard_library():
    """From __init__.py, what module-level imports reach must not need numpy or requests (issue 16 item 1)."""
    seen, todo, third_party = set(), ["__init__"], {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = os.path.join(ADDON, *name.split(".")) + ".py"
        if not os.path.exists(path):
            path = os.path.join(ADDON, *name.split("."), "__init__.py")
        for module in _top_level_imports(path):
            if module.startswith("."):  # relative to the module's package (_engine's modules stay inside it)
                package = name.rsplit(".", 1)[0] if "." in name else ""
                todo.append(f"{package}.{module.lstrip('.')}".strip("."))
            elif module.split(".")[0] in ("numpy", "requests", "cv2", "torch"):
                third_party[name] = module
    assert "operators" in seen and "ui" in seen and "client" in seen
    assert not third_party, f"enabling the add-on imports {third_party}"
    assert not seen & {"mesh_import", "scene_camera", "camera_math", "_engine.contract", "contract"}, seen
