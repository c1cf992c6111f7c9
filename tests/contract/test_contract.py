"""The coordinate/trajectory contract v1: JSON round trip, every validation rule, look-at, Blender mapping."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ex4d_engine.contract import (
    CV_CAMERA_TO_BLENDER_CAMERA,
    OPENCV_TO_BLENDER,
    Trajectory,
    TrajectoryError,
    blender_matrix_world_to_engine_w2c,
    engine_to_blender_matrix_world,
    intrinsics_matrix,
    look_at_w2c,
    project,
)

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ JSON
def test_json_round_trip_is_exact(tiny_trajectory):
    again = Trajectory.from_json(tiny_trajectory.to_json())
    assert np.array_equal(again.K, tiny_trajectory.K)
    assert np.array_equal(again.w2c, tiny_trajectory.w2c)
    assert (again.width, again.height, again.fps) == (48, 64, 12.5)
    assert again.meta == {"scene_frames": [1, 4]}


def test_save_load_round_trip_leaves_no_temporary_file(tmp_path, tiny_trajectory):
    path = tmp_path / "cams.json"
    tiny_trajectory.save(path)
    again = Trajectory.load(path)
    assert np.array_equal(again.w2c, tiny_trajectory.w2c) and np.array_equal(again.K, tiny_trajectory.K)
    assert json.loads(path.read_text())["format"] == "ex4d.trajectory"
    assert sorted(os.listdir(tmp_path)) == ["cams.json"]


def test_load_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"format": "ex4d.trajectory", "version": 1}')
    with pytest.raises(TrajectoryError, match=r"bad\.json: missing field 'width'"):
        Trajectory.load(path)


def test_save_refuses_an_invalid_trajectory_and_writes_nothing(tmp_path, tiny_trajectory):
    tiny_trajectory.w2c[2, 0, 0] = np.nan
    with pytest.raises(TrajectoryError, match=r"frames\[2\]\.w2c"):
        tiny_trajectory.save(tmp_path / "cams.json")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ validation
def _set(path, value):
    """A mutation of the document: set doc[path[0]][path[1]]... = value."""
    def mutate(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _delete(key):
    def mutate(doc):
        del doc[key]
    return mutate


REFLECTION = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
SCALED = [[1.1, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
BAD_LAST_ROW = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]]

BAD_DOCUMENTS = {
    # lengths
    "K with 2 rows": (_set(["frames", 1, "K"], [[50.0, 0.0, 24.0], [0.0, 50.0, 32.0]]), ["frames[1].K", "3x3"]),
    "K row of 2": (_set(["frames", 0, "K", 2], [0.0, 1.0]), ["frames[0].K[2]", "3 numbers"]),
    "w2c row of 3": (_set(["frames", 2, "w2c", 1], [0.0, 1.0, 0.0]), ["frames[2].w2c[1]", "4 numbers"]),
    # non-finite numbers
    "NaN in w2c": (_set(["frames", 1, "w2c", 0, 3], float("nan")), ["frames[1].w2c", "NaN"]),
    "inf in K": (_set(["frames", 3, "K", 0, 2], float("inf")), ["frames[3].K", "infinity"]),
    "-inf in w2c": (_set(["frames", 0, "w2c", 2, 3], float("-inf")), ["frames[0].w2c", "infinity"]),
    # rotations
    "non-orthonormal R": (_set(["frames", 2, "w2c"], SCALED), ["frames[2].w2c", "orthonormal"]),
    "reflection": (_set(["frames", 1, "w2c"], REFLECTION), ["frames[1].w2c", "determinant"]),
    "w2c last row": (_set(["frames", 3, "w2c"], BAD_LAST_ROW), ["frames[3].w2c", "last row"]),
    # intrinsics
    "zero fx": (_set(["frames", 2, "K", 0, 0], 0.0), ["frames[2].K", "focal", "fx=0.0"]),
    "negative fy": (_set(["frames", 0, "K", 1, 1], -5.0), ["frames[0].K", "focal", "fy=-5.0"]),
    "skew": (_set(["frames", 1, "K", 0, 1], 0.5), ["frames[1].K", "skew"]),
    "K last row": (_set(["frames", 1, "K", 2], [0.0, 0.1, 1.0]), ["frames[1].K", "last row"]),
    # structure
    "zero frames": (_set(["frames"], []), ["at least 1 frame"]),
    "wrong version": (_set(["version"], 2), ["version must be 1", "2"]),
    "no version": (_delete("version"), ["version must be 1", "None"]),
    "wrong format": (_set(["format"], "nerfstudio"), ["format must be", "nerfstudio"]),
    "missing width": (_delete("width"), ["missing field 'width'"]),
    "missing fps": (_delete("fps"), ["missing field 'fps'"]),
    "missing frames": (_delete("frames"), ["missing field 'frames'"]),
    "missing w2c": (lambda doc: doc["frames"][2].pop("w2c"), ["frames[2].w2c", "None"]),
    # types
    "width as text": (_set(["width"], "48"), ["width must be a positive integer", "'48'"]),
    "width fractional": (_set(["width"], 48.5), ["width must be a positive integer"]),
    "height zero": (_set(["height"], 0), ["height must be a positive integer", "0"]),
    "height bool": (_set(["height"], True), ["height must be a positive integer", "True"]),
    "fps negative": (_set(["fps"], -24), ["fps must be a positive finite number"]),
    "fps text": (_set(["fps"], "24"), ["fps must be a positive finite number"]),
    "K entry text": (_set(["frames", 1, "K", 0, 0], "50"), ["frames[1].K[0][0] must be a number", "'50'"]),
    "w2c entry bool": (_set(["frames", 3, "w2c", 1, 2], False), ["frames[3].w2c[1][2] must be a number"]),
    "frames not a list": (_set(["frames"], {"0": {}}), ["frames must be a list"]),
    "frame not an object": (_set(["frames", 2], [1, 2]), ["frames[2] must be an object"]),
    "meta not an object": (_set(["meta"], [1]), ["meta must be an object"]),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_every_rule_raises_naming_frame_and_field(case, tiny_trajectory):
    mutate, expected = BAD_DOCUMENTS[case]
    doc = copy.deepcopy(tiny_trajectory.to_dict())
    mutate(doc)
    text = json.dumps(doc)  # through JSON text (NaN and Infinity are what Python writes for them)
    with pytest.raises(TrajectoryError) as info:
        Trajectory.from_json(text)
    for fragment in expected:
        assert fragment in str(info.value), (case, str(info.value))


@pytest.mark.parametrize("document", ["[1, 2]", "not json", "null", '"text"'])
def test_non_object_documents_raise(document):
    with pytest.raises(TrajectoryError):
        Trajectory.from_json(document)


def test_validate_on_arrays_names_the_frame(tiny_trajectory):
    tiny_trajectory.K[3, 1, 1] = 0.0
    with pytest.raises(TrajectoryError, match=r"frames\[3\]\.K focal lengths must be positive"):
        tiny_trajectory.validate()


def test_validate_checks_shapes():
    with pytest.raises(TrajectoryError, match=r"w2c must have shape"):
        Trajectory(8, 8, 30.0, np.eye(3)[None], np.eye(4)[None, :3]).validate()
    with pytest.raises(TrajectoryError, match=r"K must have shape \(2, 3, 3\)"):
        Trajectory(8, 8, 30.0, np.stack([np.eye(3)] * 3), np.stack([np.eye(4)] * 2)).validate()


def test_single_K_is_broadcast_to_every_frame():
    K = intrinsics_matrix(10.0, 11.0, 4.0, 5.0)
    trajectory = Trajectory(8, 10, 30.0, K, np.stack([np.eye(4)] * 3)).validate()
    assert trajectory.K.shape == (3, 3, 3) and np.array_equal(trajectory.K[2], K)


def test_camera_projection_uses_corner_origin_pixels():
    K = intrinsics_matrix(100.0, 100.0, 32.0, 24.0)  # 64x48 image, principal point at its centre
    uv, z = project(K, np.eye(4), np.array([[0.0, 0.0, 2.0], [1.0, -0.5, 4.0]]))
    assert np.allclose(uv, [[32.0, 24.0], [57.0, 11.5]]) and np.allclose(z, [2.0, 4.0])


# ------------------------------------------------------------------ look-at
def test_look_at_from_origin_along_z_is_identity():
    assert np.allclose(look_at_w2c((0, 0, 0), (0, 0, 5)), np.eye(4), atol=1e-15)


@pytest.mark.parametrize("seed", range(5))
def test_look_at_properties(seed):
    rng = np.random.default_rng(seed)
    eye, target = rng.normal(size=3) * 3, rng.normal(size=3) * 3
    w2c = look_at_w2c(eye, target)
    R = w2c[:3, :3]
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-12) and math.isclose(np.linalg.det(R), 1.0, abs_tol=1e-12)
    assert np.allclose(np.linalg.inv(w2c)[:3, 3], eye)  # the camera sits at eye
    target_cam = w2c[:3, :3] @ target + w2c[:3, 3]
    assert np.allclose(target_cam[:2], 0, atol=1e-12) and target_cam[2] > 0  # target on the optical axis, in front
    assert math.isclose(target_cam[2], np.linalg.norm(target - eye))
    world_up = np.array([0.0, -1.0, 0.0])
    assert abs(R[0] @ world_up) < 1e-12  # no roll: the camera's x axis is level
    assert R[1] @ world_up < 0  # image down points to world down


def test_look_at_matches_the_seed_orbit_frame():
    """EX-4D --cam 180, frame 12: eye (r, 0, 0) looking at (0, 0, r); its view rotation's first row is
    (0.707, 0, 0.707) (read from the seed's camera_180.npz, method reference section 5)."""
    r = 2.74
    w2c = look_at_w2c((r, 0.0, 0.0), (0.0, 0.0, r))
    assert np.allclose(w2c[0, :3], [math.sqrt(0.5), 0.0, math.sqrt(0.5)])
    assert np.allclose(w2c[2, :3], [-math.sqrt(0.5), 0.0, math.sqrt(0.5)])
    assert np.allclose(w2c[1, :3], [0.0, 1.0, 0.0])


# ------------------------------------------------------------------ Blender mapping
def _blender_project(K, matrix_world, point_blender):
    """Project like Blender does: camera looks down local -Z, +Y up; pixel rows grow downwards."""
    local = np.linalg.inv(matrix_world) @ np.append(point_blender, 1.0)
    depth = -local[2]
    return np.array([K[0, 0] * local[0] / depth + K[0, 2], -K[1, 1] * local[1] / depth + K[1, 2]])


def _import_matrix(scale, angle_deg, offset):
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    collection = np.array([[c, -s, 0, offset[0]], [s, c, 0, offset[1]], [0, 0, 1, offset[2]], [0, 0, 0, 1.0]])
    collection[:3, :3] *= scale
    return collection @ OPENCV_TO_BLENDER


def test_source_camera_looks_along_blender_plus_y_with_z_up():
    matrix_world = engine_to_blender_matrix_world(np.eye(4))
    assert np.allclose(-matrix_world[:3, 2], [0, 1, 0])  # Blender cameras look down local -Z
    assert np.allclose(matrix_world[:3, 1], [0, 0, 1])  # and their local +Y is image up
    assert np.allclose(matrix_world[:3, 0], [1, 0, 0])


@pytest.mark.parametrize(
    "import_matrix",
    [OPENCV_TO_BLENDER, _import_matrix(1.0, 0.0, (0, 0, 0)), _import_matrix(2.5, 30.0, (1.0, -3.0, 0.5)),
     _import_matrix(0.01, -120.0, (10.0, 20.0, -5.0))],
    ids=["default", "identity-collection", "scaled-moved", "tiny-scale"],
)
def test_blender_round_trip_and_projection(import_matrix, tiny_trajectory):
    rng = np.random.default_rng(3)
    points = rng.normal(size=(20, 3)) * 2
    for i in range(len(tiny_trajectory)):
        w2c, K = tiny_trajectory.w2c[i], tiny_trajectory.K[i]
        matrix_world = engine_to_blender_matrix_world(w2c, import_matrix)
        assert np.allclose(blender_matrix_world_to_engine_w2c(matrix_world, import_matrix), w2c, atol=1e-9)
        # object scale on the camera changes nothing
        scaled = matrix_world @ np.diag([3.0, 0.5, 2.0, 1.0])
        assert np.allclose(blender_matrix_world_to_engine_w2c(scaled, import_matrix), w2c, atol=1e-9)
        # Blender's own camera model sees engine points where the engine projects them
        cam = points @ w2c[:3, :3].T + w2c[:3, 3]
        in_front = points[cam[:, 2] > 0.1]
        uv_engine, _ = project(K, w2c, in_front)
        for point, uv in zip(in_front, uv_engine):
            point_blender = (import_matrix @ np.append(point, 1.0))[:3]
            assert np.allclose(_blender_project(K, matrix_world, point_blender), uv, atol=1e-6)


def test_axis_constants():
    assert np.allclose(OPENCV_TO_BLENDER @ [0, 1, 0, 1], [0, 0, -1, 1])  # engine down -> Blender -Z
    assert np.allclose(OPENCV_TO_BLENDER @ [0, 0, 1, 1], [0, 1, 0, 1])  # engine forward -> Blender +Y
    assert np.array_equal(CV_CAMERA_TO_BLENDER_CAMERA @ CV_CAMERA_TO_BLENDER_CAMERA, np.eye(4))


# ------------------------------------------------------------------ layer boundaries
def test_contract_and_interchange_import_without_torch_or_bpy():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "sys.modules['bpy'] = None\n"
        "import ex4d_engine.contract, ex4d_engine.interchange\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('ex4d_engine.'))\n"
        "assert loaded == ['ex4d_engine.atomic', 'ex4d_engine.contract', 'ex4d_engine.errors',"
        " 'ex4d_engine.interchange'], loaded\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
