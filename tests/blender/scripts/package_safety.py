"""Run inside a bpy venv: feed crafted packages to the add-on's read_scene_json + extract_package.

Usage: package_safety.py <packages-dir> <data-dir>. Prints ``EX4D_RESULT {case: [ok, message]}``.
"""

import json
import os
import sys

sys.path.insert(0, os.getcwd())  # the repository: the add-on module itself, not an installed copy

from ex4d_blender.mesh_import import PackageError, extract_package, read_scene_json  # noqa: E402

packages, data_dir = sys.argv[1], sys.argv[2]
results = {}
for name in sorted(os.listdir(packages)):
    path = os.path.join(packages, name)
    try:
        scene = read_scene_json(path)
        folder = extract_package(path, scene, data_dir)
        results[name] = [True, sorted(os.listdir(folder))]
    except PackageError as exc:
        results[name] = [False, str(exc)]
print("EX4D_RESULT " + json.dumps(results))
