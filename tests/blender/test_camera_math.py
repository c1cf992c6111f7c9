"""Blender camera -> K maths outside Blender, plus the add-on's layer boundaries and packaging."""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
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
        assert names == expected, names ^ expected
        for shared in ("contract.py", "interchange.py", "safe_zip.py"):  # byte-identical to the engine's single source
            with open(os.path.join(REPO, "ex4d_engine", shared), "rb") as handle:
                assert archive.read(shared) == handle.read(), shared
