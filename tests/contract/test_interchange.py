"""Interchange formats: seed npz, nerfstudio camera_path.json, COLMAP text; round trips and malformed input."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from ex4d_engine import interchange
from ex4d_engine.contract import Trajectory, TrajectoryError, intrinsics_matrix, look_at_w2c
from ex4d_engine.interchange import (
    detect_format,
    load_colmap,
    load_nerfstudio,
    load_seed_npz,
    load_trajectory,
    quaternion_to_rotation,
    rotation_to_quaternion,
    save_colmap,
    save_nerfstudio,
    save_seed_npz,
    save_trajectory,
    trajectory_from_colmap_texts,
    trajectory_from_nerfstudio,
    trajectory_from_seed_arrays,
    trajectory_to_colmap_texts,
    trajectory_to_nerfstudio,
)

FLIP = np.diag([1.0, -1.0, -1.0, 1.0])


def assert_same_cameras(a: Trajectory, b: Trajectory, atol: float = 1e-6) -> None:
    assert (a.width, a.height, len(a)) == (b.width, b.height, len(b))
    assert math.isclose(a.fps, b.fps, rel_tol=1e-12)
    assert np.allclose(a.K, b.K, rtol=0, atol=atol), np.abs(a.K - b.K).max()
    assert np.allclose(a.w2c, b.w2c, rtol=0, atol=atol), np.abs(a.w2c - b.w2c).max()


# ------------------------------------------------------------------ quaternions
def test_quaternion_round_trip_on_random_rotations(rotation_sampler):
    rng = np.random.default_rng(0)
    for _ in range(200):
        R = rotation_sampler(rng)
        q = rotation_to_quaternion(R)
        assert math.isclose(np.linalg.norm(q), 1.0, abs_tol=1e-15) and q[0] >= 0
        assert np.allclose(quaternion_to_rotation(q), R, atol=1e-14)


@pytest.mark.parametrize(
    "R, q",
    [
        (np.diag([1.0, -1.0, -1.0]), [0.0, 1.0, 0.0, 0.0]),  # 180 deg about x: trace = -1, the trace formula fails
        (np.diag([-1.0, 1.0, -1.0]), [0.0, 0.0, 1.0, 0.0]),
        (np.diag([-1.0, -1.0, 1.0]), [0.0, 0.0, 0.0, 1.0]),
        (np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), [math.sqrt(0.5), 0.0, 0.0, math.sqrt(0.5)]),
    ],
)
def test_quaternion_hand_cases(R, q):
    assert np.allclose(rotation_to_quaternion(R), q, atol=1e-15)
    assert np.allclose(quaternion_to_rotation(q), R, atol=1e-15)


def test_near_half_turn_keeps_precision():
    angle = math.pi - 1e-9
    c, s = math.cos(angle), math.sin(angle)
    R = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    assert np.allclose(quaternion_to_rotation(rotation_to_quaternion(R)), R, atol=1e-15)


def test_quaternion_is_normalised_and_zero_is_refused():
    assert np.allclose(quaternion_to_rotation([2.0, 0.0, 0.0, 0.0]), np.eye(3))
    with pytest.raises(TrajectoryError, match="no direction"):
        quaternion_to_rotation([0.0, 0.0, 0.0, 0.0])


# ------------------------------------------------------------------ seed npz
def seed_style_extrinsics(eyes, centre):
    """The seed's look-at (forward x (0,1,0) as 'right', then rows negated in place), float32, per the reference."""
    rows = []
    for eye in eyes:
        forward = (centre - eye) / np.linalg.norm(centre - eye)
        right = np.cross(forward, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        view = np.eye(4, dtype=np.float32)
        view[0, :3], view[1, :3], view[2, :3] = right, up, forward
        view[:3, 3] = -np.array([right @ eye, up @ eye, forward @ eye])
        view[:3] *= -1  # render_nvdiffrast: poses[0..2, :] *= -1
        rows.append(view)
    return np.stack(rows)


def test_seed_arrays_follow_the_seed_convention():
    r = 2.74
    angles = np.linspace(0, 2 * np.pi, 49)
    eyes = np.stack([r * np.sin(angles), 0.2 * r * (np.cos(angles) - 1), np.zeros(49)], 1)
    extrinsics = seed_style_extrinsics(eyes, np.array([0.0, 0.0, r]))
    K = np.array([[500, 0, 256], [0, 500, 256], [0, 0, 1]], dtype=np.float32)
    trajectory = trajectory_from_seed_arrays(extrinsics, K)
    assert (trajectory.width, trajectory.height, trajectory.fps, len(trajectory)) == (512, 512, 30.0, 49)
    expected = np.stack([look_at_w2c(eye, (0.0, 0.0, r)) for eye in eyes])
    assert np.allclose(trajectory.w2c, expected, atol=1e-6)  # float32 storage
    assert np.allclose(trajectory.w2c[0], np.eye(4))


def test_seed_npz_round_trip(tmp_path, centred_trajectory):
    path = tmp_path / "camera_custom.npz"
    save_seed_npz(centred_trajectory, path)
    with np.load(path) as data:
        assert sorted(data.files) == ["extrinsics", "intrinsics"]
        assert data["extrinsics"].dtype == np.float32 and data["extrinsics"].shape == (5, 4, 4)
        assert data["intrinsics"].dtype == np.float32 and data["intrinsics"].shape == (3, 3)
        assert np.array_equal(data["extrinsics"][0], FLIP)  # frame 0 at the origin = diag(1, -1, -1, 1)
        assert np.array_equal(data["intrinsics"], centred_trajectory.K[0].astype(np.float32))
    again = load_seed_npz(path, fps=24.0)
    assert_same_cameras(again, centred_trajectory, atol=1e-6)  # float32 precision
    assert np.abs(again.w2c - centred_trajectory.w2c).max() > 0  # and it really went through float32
    assert os.listdir(tmp_path) == ["camera_custom.npz"]


def test_seed_npz_off_centre_needs_explicit_size(tmp_path, tiny_trajectory):
    single_K = Trajectory(48, 64, 12.5, tiny_trajectory.K[0], tiny_trajectory.w2c)
    path = tmp_path / "cam.npz"
    save_seed_npz(single_K, path)
    with pytest.raises(TrajectoryError, match=r"cam\.npz: cannot infer width from cx=21\.25.*pass width"):
        load_seed_npz(path)
    again = load_seed_npz(path, width=48, height=64, fps=12.5)
    assert_same_cameras(again, single_K, atol=2e-6)


def test_seed_npz_refuses_per_frame_K_unless_lossy(tmp_path, tiny_trajectory):
    path = tmp_path / "cam.npz"
    with pytest.raises(TrajectoryError, match=r"frames\[1\]\.K differs.*allow_lossy"):
        save_seed_npz(tiny_trajectory, path)
    assert not path.exists()
    save_seed_npz(tiny_trajectory, path, allow_lossy=True)
    again = load_seed_npz(path, width=48, height=64)
    assert np.allclose(again.K, tiny_trajectory.K[0], atol=1e-5)


def test_seed_npz_malformed(tmp_path):
    not_zip = tmp_path / "broken.npz"
    not_zip.write_bytes(b"this is not a zip file")
    with pytest.raises(TrajectoryError, match=r"broken\.npz: not a readable \.npz"):
        load_seed_npz(not_zip)
    missing = tmp_path / "missing.npz"
    np.savez(missing, extrinsics=np.eye(4)[None])
    with pytest.raises(TrajectoryError, match=r"missing\.npz: missing array\(s\) \['intrinsics'\]"):
        load_seed_npz(missing)
    K = np.array([[500, 0, 8], [0, 500, 8], [0, 0, 1]], dtype=np.float32)
    with pytest.raises(TrajectoryError, match=r"extrinsics must be a numeric \(frames, 4, 4\)"):
        trajectory_from_seed_arrays(np.eye(4), K)
    with pytest.raises(TrajectoryError, match=r"0 frames"):
        trajectory_from_seed_arrays(np.zeros((0, 4, 4)), K)
    bad = np.stack([FLIP, FLIP, FLIP]).astype(np.float32)
    bad[2, 0, 0] = np.nan
    with pytest.raises(TrajectoryError, match=r"extrinsics\[2\] contains NaN"):
        trajectory_from_seed_arrays(bad, K)
    bad[2] = np.diag([1.0, 1.0, -1.0, 1.0])  # G @ this is a reflection
    with pytest.raises(TrajectoryError, match=r"extrinsics\[2\] rotation must have determinant \+1"):
        trajectory_from_seed_arrays(bad, K)
    with pytest.raises(TrajectoryError, match=r"intrinsics focal lengths must be positive"):
        trajectory_from_seed_arrays(np.stack([FLIP]), np.diag([0.0, 1.0, 1.0]))


# ------------------------------------------------------------------ nerfstudio
def test_nerfstudio_document(centred_trajectory):
    doc = trajectory_to_nerfstudio(centred_trajectory)
    assert doc["camera_type"] == "perspective"
    assert (doc["render_width"], doc["render_height"], doc["fps"]) == (64, 48, 24.0)
    assert math.isclose(doc["seconds"], 5 / 24)
    assert len(doc["camera_path"]) == 5
    first = doc["camera_path"][0]
    assert np.allclose(np.reshape(first["camera_to_world"], (4, 4)), FLIP)  # OpenGL camera axes
    assert math.isclose(first["fov"], math.degrees(2 * math.atan(24 / 40)))  # vertical, degrees
    assert math.isclose(first["aspect"], 64 / 48)
    # c2w row-major: translation in the last column is the camera centre
    centre = np.linalg.inv(centred_trajectory.w2c[3])[:3, 3]
    assert np.allclose(np.reshape(doc["camera_path"][3]["camera_to_world"], (4, 4))[:3, 3], centre)


def test_nerfstudio_round_trip(tmp_path, centred_trajectory):
    path = tmp_path / "camera_path.json"
    save_nerfstudio(centred_trajectory, path)
    assert_same_cameras(load_nerfstudio(path), centred_trajectory, atol=1e-9)


def test_nerfstudio_hand_focal():
    doc = {"camera_type": "perspective", "render_width": 80, "render_height": 64, "seconds": 2.0,
           "camera_path": [{"camera_to_world": FLIP.reshape(-1).tolist(), "fov": 90.0, "aspect": 1.0}] * 4}
    trajectory = trajectory_from_nerfstudio(doc)
    assert np.allclose(trajectory.K[0], [[32, 0, 40], [0, 32, 32], [0, 0, 1]])  # (H/2)/tan(45 deg) = 32
    assert trajectory.fps == 2.0  # 4 frames / 2 seconds when fps is absent
    assert np.allclose(trajectory.w2c[0], np.eye(4))


@pytest.mark.parametrize(
    "change, problem",
    [((0, 0, 41.0), "fx != fy"), ((0, 2, 30.0), "off-centre principal point"), ((1, 2, 25.0), "off-centre")],
)
def test_nerfstudio_refuses_lossy_export_unless_allowed(tmp_path, centred_trajectory, change, problem):
    row, col, value = change
    centred_trajectory.K[2, row, col] = value
    path = tmp_path / "camera_path.json"
    with pytest.raises(TrajectoryError, match=rf"frames\[2\]\.K: nerfstudio camera_path\.json cannot store .*{problem}"):
        save_nerfstudio(centred_trajectory, path)
    assert os.listdir(tmp_path) == []
    save_nerfstudio(centred_trajectory, path, allow_lossy=True)
    again = load_nerfstudio(path)
    assert np.allclose(again.K[2], intrinsics_matrix(40.0, 40.0, 32.0, 24.0))  # fy kept, centre forced
    assert np.allclose(again.w2c, centred_trajectory.w2c)


def _ns_doc():
    return {"camera_type": "perspective", "render_width": 64, "render_height": 48, "fps": 24.0, "seconds": 0.125,
            "camera_path": [{"camera_to_world": FLIP.reshape(-1).tolist(), "fov": 50.0, "aspect": 4 / 3}] * 3}


def _without(key):
    def mutate(doc):
        del doc[key]
    return mutate


NS_BAD = {
    "keyframes only": (lambda d: (d.pop("camera_path"), d.update(keyframes=[])), "missing field 'camera_path' (it has only keyframes"),
    "fisheye": (lambda d: d.update(camera_type="fisheye"), "camera_type 'fisheye' is not supported"),
    "no width": (_without("render_width"), "missing field 'render_width'"),
    "height text": (lambda d: d.update(render_height="48"), "render_height must be a positive integer"),
    "empty path": (lambda d: d.update(camera_path=[]), "camera_path must be a non-empty list"),
    "no fps": (lambda d: (d.pop("fps"), d.pop("seconds")), "needs 'fps' or 'seconds'"),
    "fps zero": (lambda d: d.update(fps=0), "fps must be a positive finite number"),
    "12 floats": (lambda d: d["camera_path"].__setitem__(1, {"camera_to_world": [0.0] * 12, "fov": 50.0}),
                  "camera_path[1].camera_to_world must be a list of 16 numbers"),
    "text number": (lambda d: d["camera_path"].__setitem__(2, {"camera_to_world": ["1"] * 16, "fov": 50.0}),
                    "camera_path[2].camera_to_world[0] must be a number"),
    "scaled": (lambda d: d["camera_path"].__setitem__(1, {"camera_to_world": (FLIP * 2).reshape(-1).tolist(), "fov": 50}),
               "camera_path[1].camera_to_world"),
    "no fov": (lambda d: d["camera_path"].__setitem__(0, {"camera_to_world": FLIP.reshape(-1).tolist()}),
               "camera_path[0].fov must be a vertical field of view"),
    "fov 180": (lambda d: d["camera_path"].__setitem__(2, {"camera_to_world": FLIP.reshape(-1).tolist(), "fov": 180}),
                "camera_path[2].fov"),
    "entry not object": (lambda d: d["camera_path"].__setitem__(1, 5), "camera_path[1] must be an object"),
}


@pytest.mark.parametrize("case", sorted(NS_BAD))
def test_nerfstudio_malformed(tmp_path, case):
    mutate, message = NS_BAD[case]
    doc = json.loads(json.dumps(_ns_doc()))
    mutate(doc)
    path = tmp_path / "camera_path.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TrajectoryError) as info:
        load_nerfstudio(path)
    assert str(path) in str(info.value) and message in str(info.value), str(info.value)


def test_nerfstudio_not_json(tmp_path):
    path = tmp_path / "camera_path.json"
    path.write_text("{ not json")
    with pytest.raises(TrajectoryError, match=r"camera_path\.json: not valid JSON: .*line 1"):
        load_nerfstudio(path)


# ------------------------------------------------------------------ COLMAP
def test_colmap_round_trip(tmp_path, tiny_trajectory):
    save_colmap(tiny_trajectory, tmp_path / "model")
    assert sorted(os.listdir(tmp_path / "model")) == ["cameras.txt", "images.txt", "points3D.txt"]
    again = load_colmap(tmp_path / "model", fps=12.5)
    assert_same_cameras(again, tiny_trajectory, atol=1e-9)
    assert again.meta["colmap_image_names"] == [f"frame_{i:05d}.png" for i in range(4)]


def test_colmap_text_layout(tiny_trajectory):
    both = Trajectory(48, 64, 12.5, np.stack([tiny_trajectory.K[0], tiny_trajectory.K[1], tiny_trajectory.K[0]]),
                      tiny_trajectory.w2c[:3])
    texts = trajectory_to_colmap_texts(both)
    camera_lines = [line for line in texts["cameras.txt"].splitlines() if not line.startswith("#")]
    assert camera_lines == ["1 PINHOLE 48 64 50.0 45.5 21.25 35.0", "2 PINHOLE 48 64 55.0 50.5 21.25 34.0"]
    lines = [line for line in texts["images.txt"].splitlines() if not line.startswith("#")]
    assert len(lines) == 6 and lines[1] == lines[3] == lines[5] == ""  # empty POINTS2D line after each image
    fields = lines[2].split()
    assert fields[0] == "2" and fields[8] == "2" and fields[9] == "frame_00001.png"
    q = np.array([float(x) for x in fields[1:5]])
    assert math.isclose(np.linalg.norm(q), 1.0) and q[0] >= 0
    assert np.allclose(quaternion_to_rotation(q), both.w2c[1, :3, :3], atol=1e-15)
    assert np.allclose([float(x) for x in fields[5:8]], both.w2c[1, :3, 3], atol=0)


def test_colmap_hand_computed_case():
    """R = 90 deg about z: q = (cos 45, 0, 0, sin 45). Camera centre C = (1, 2, 3): t = -R C = (2, -1, -3)."""
    cameras = "# comment\n\n3 SIMPLE_PINHOLE 640 480 500 320 240\n"
    images = (
        "# Image list\n"
        "8 0.7071067811865476 0 0 0.7071067811865476 2 -1 -3 3 b.png\n"
        "100.5 20.25 -1 300.0 40.0 17\n"  # a POINTS2D line, ignored
        "\n"
        "2 1 0 0 0 0 0 0 3 a.png\n"
        "\n"
    )
    trajectory = trajectory_from_colmap_texts(cameras, images, fps=25.0)
    assert trajectory.meta["colmap_image_names"] == ["a.png", "b.png"]  # sorted by name
    assert trajectory.meta["colmap_image_ids"] == [2, 8]  # ids kept
    assert (trajectory.width, trajectory.height, trajectory.fps) == (640, 480, 25.0)
    assert np.allclose(trajectory.K[1], [[500, 0, 320], [0, 500, 240], [0, 0, 1]])
    assert np.allclose(trajectory.w2c[0], np.eye(4))
    assert np.allclose(trajectory.w2c[1, :3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)
    assert np.allclose(trajectory.c2w[1, :3, 3], [1, 2, 3])
    # and back: the exporter writes the same quaternion and translation
    line = trajectory_to_colmap_texts(trajectory)["images.txt"].splitlines()[6]
    assert np.allclose([float(x) for x in line.split()[1:8]], [math.sqrt(0.5), 0, 0, math.sqrt(0.5), 2, -1, -3])


CAMERAS = "1 PINHOLE 64 48 40 40 32 24\n"
IMAGE = "1 1 0 0 0 0 0 0 1 frame_00000.png\n\n"
COLMAP_BAD = {
    "model": ("1 OPENCV 64 48 40 40 32 24 0 0 0 0\n", IMAGE, "cameras.txt line 1: camera model 'OPENCV' is not supported"),
    "param count": ("# c\n1 PINHOLE 64 48 40 40 32\n", IMAGE, "cameras.txt line 2: PINHOLE needs 4 parameters"),
    "width": ("1 PINHOLE 0 48 40 40 32 24\n", IMAGE, "cameras.txt line 1: WIDTH must be >= 1"),
    "focal": ("1 PINHOLE 64 48 -40 40 32 24\n", IMAGE, "cameras.txt line 1 (CAMERA_ID 1) focal lengths must be positive"),
    "nan": ("1 PINHOLE 64 48 nan 40 32 24\n", IMAGE, "cameras.txt line 1: fx must be finite"),
    "two sizes": (CAMERAS + "2 PINHOLE 32 48 40 40 16 24\n", IMAGE, "all cameras must share one image size"),
    "dup camera": (CAMERAS + CAMERAS, IMAGE, "cameras.txt line 2: CAMERA_ID 1 is defined twice"),
    "no cameras": ("# nothing\n", IMAGE, "cameras.txt: no cameras"),
    "short line": (CAMERAS, "# x\n1 1 0 0 0 0 0 1 frame.png\n\n", "images.txt line 2: expected IMAGE_ID"),
    "bad number": (CAMERAS, "1 1 0 0 0 zero 0 0 1 a.png\n\n", "images.txt line 1: TX must be a number, got 'zero'"),
    "unknown camera": (CAMERAS, "1 1 0 0 0 0 0 0 9 a.png\n\n", "images.txt line 1: CAMERA_ID 9 is not in cameras.txt"),
    "zero quaternion": (CAMERAS, "1 0 0 0 0 0 0 0 1 a.png\n\n", "images.txt line 1: QW QX QY QZ"),
    "dup id": (CAMERAS, IMAGE + "1 1 0 0 0 0 0 0 1 b.png\n\n", "images.txt line 3: IMAGE_ID 1 appears twice"),
    "dup name": (CAMERAS, IMAGE + "2 1 0 0 0 0 0 0 1 frame_00000.png\n\n", "images.txt line 3: image NAME"),
    "no images": (CAMERAS, "# none\n", "images.txt: no images"),
}


@pytest.mark.parametrize("case", sorted(COLMAP_BAD))
def test_colmap_malformed(tmp_path, case):
    cameras, images, message = COLMAP_BAD[case]
    (tmp_path / "cameras.txt").write_text(cameras)
    (tmp_path / "images.txt").write_text(images)
    with pytest.raises(TrajectoryError) as info:
        load_colmap(tmp_path)
    assert message in str(info.value) and str(tmp_path) in str(info.value), str(info.value)


def test_colmap_missing_files(tmp_path):
    (tmp_path / "cameras.bin").write_bytes(b"\0")
    with pytest.raises(TrajectoryError, match=r"missing cameras\.txt \(convert the binary model"):
        load_colmap(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_colmap(tmp_path / "nowhere")


# ------------------------------------------------------------------ any format
@pytest.mark.parametrize("fmt, name", [("ex4d", "t.json"), ("seed-npz", "t.npz"), ("nerfstudio", "camera_path.json"),
                                       ("colmap", "sparse")])
def test_every_format_round_trips_through_save_and_load(tmp_path, centred_trajectory, fmt, name):
    path = tmp_path / name
    save_trajectory(centred_trajectory, path)  # format inferred from the name
    assert detect_format(path) == fmt
    fps = 24.0 if fmt in ("seed-npz", "colmap") else None
    again = load_trajectory(path, fps=fps)
    assert_same_cameras(again, centred_trajectory, atol=1e-6)
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_detect_format(tmp_path):
    ns = tmp_path / "path.json"
    ns.write_text(json.dumps(_ns_doc()))
    assert detect_format(ns) == "nerfstudio"  # by content
    assert detect_format(tmp_path / "out.json", for_output=True) == "ex4d"
    assert detect_format(tmp_path / "my_camera_path.json", for_output=True) == "nerfstudio"
    assert detect_format(tmp_path) == "colmap"
    with pytest.raises(TrajectoryError, match=r"cannot tell the trajectory format.*'\.txt'"):
        detect_format(tmp_path / "cams.txt")


def test_load_refuses_values_the_format_stores(tmp_path, centred_trajectory):
    path = tmp_path / "t.json"
    centred_trajectory.save(path)
    with pytest.raises(TrajectoryError, match=r"stores its own fps"):
        load_trajectory(path, fps=30.0)
    with pytest.raises(TrajectoryError, match="unknown trajectory format 'abc'"):
        load_trajectory(path, "abc")


def test_module_docstring_states_the_formats():
    doc = interchange.__doc__
    for fragment in ("diag(1, -1, -1, 1)", "float32", "fx = fy = (H/2) / tan(fov/2)", "allow_lossy", "Shepperd"):
        assert fragment in doc


def test_every_form_of_a_camera_path_document_is_read(tmp_path):
    """recon_{cam}.json (the trajectory wrapped in a record) and nerfstudio documents are camera paths too."""
    import json

    from ex4d_engine.interchange import trajectory_from_document
    from ex4d_engine.presets import make_preset

    traj = make_preset("30", num_frames=5, K=intrinsics_matrix(60.0, 60.0, 32.0, 24.0), width=64, height=48,
                       fps=12.0, radius=2.0)
    record = tmp_path / "recon_30.json"
    record.write_text(json.dumps({"cam": "30", "K": [[1, 0, 0]], "trajectory": traj.to_dict()}))
    assert np.allclose(load_trajectory(record).w2c, traj.w2c)
    via_nerfstudio = trajectory_from_document(trajectory_to_nerfstudio(traj))
    assert np.allclose(via_nerfstudio.w2c, traj.w2c, atol=1e-9) and via_nerfstudio.fps == traj.fps
    with pytest.raises(TrajectoryError, match="not a camera path.*ex4d trajectory convert"):
        trajectory_from_document({"camera": 1}, "body")
