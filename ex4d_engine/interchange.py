"""Trajectory interchange: the seed's ``camera_*.npz``, nerfstudio ``camera_path.json`` and COLMAP text.

Every format converts to and from :class:`~.contract.Trajectory` (engine world = OpenCV frame
of source frame 0, ``w2c`` in OpenCV camera axes, ``K`` in corner-origin pixels). This module
imports only the standard library, numpy and ``.contract``, so ``ex4d_blender/interchange.py``
is a byte-identical copy (a test enforces it). docs/coordinates.md gives the same formulas.

Formats (``G = diag(1, -1, -1, 1)`` flips OpenCV camera axes to OpenGL/Blender ones; ``G = G^-1``):

* **seed npz** (EX-4D ``recon.py --save_camera``): ``extrinsics`` (N, 4, 4) float32 =
  ``G @ w2c`` (the seed negates rows 0-2 of its look-at matrix in place, so frame 0 is
  ``G`` itself), ``intrinsics`` (3, 3) float32 = one ``K`` for all frames. Width, height and fps
  are not stored: import takes them from the caller (default ``W = 2 cx``, ``H = 2 cy``,
  30 fps, the seed's video rate). Storage is float32, so a round trip is exact only to float32
  precision (about 1e-7 relative); a trajectory whose ``K`` changes per frame cannot be stored.
* **nerfstudio** ``camera_path.json`` (what ``ns-render camera-path`` reads): per frame
  ``camera_to_world`` = 16 floats, row-major ``c2w @ G`` (OpenGL camera axes, world unchanged),
  ``fov`` = vertical field of view in degrees = ``2 atan((H/2) / fy)``, ``aspect`` = W/H. Import
  gives ``fx = fy = (H/2) / tan(fov/2)``, ``cx = W/2``, ``cy = H/2`` (nerfstudio's own rule; ``aspect``
  is ignored, as nerfstudio does). So ``fx != fy`` or an off-centre principal point cannot be
  stored: export raises unless ``allow_lossy=True``. Only ``camera_type`` ``perspective`` and files
  with a rendered ``camera_path`` are accepted (a keyframes-only file is refused).
* **COLMAP text** (a directory with ``cameras.txt``, ``images.txt``, ``points3D.txt``): one PINHOLE
  camera per distinct ``K`` (``fx fy cx cy``; COLMAP also puts pixel centres at +0.5, so no
  offset), per image ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` with the scalar-first
  quaternion of the w2c rotation and its translation, then an empty 2D-points line. Export names
  images ``frame_00000.png``...; import sorts images by name (ids are kept in ``meta``), accepts
  SIMPLE_PINHOLE and PINHOLE only, takes width/height from ``cameras.txt`` and fps from the caller
  (default 30). Quaternions use Shepperd's method and are normalised.
* **ex4d** ``ex4d.trajectory`` v1 JSON: :meth:`Trajectory.save` / :meth:`Trajectory.load`.

Every conversion of valid data round-trips to 1e-6 (float64 text uses ``repr``, which is exact).
Every malformed input raises :class:`~.contract.TrajectoryError` naming the file, line or field.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from .atomic import atomic_path, atomic_write
from .errors import NotFoundError
from .contract import (
    CV_CAMERA_TO_BLENDER_CAMERA,
    Trajectory,
    TrajectoryError,
    _validate_K,
    _validate_w2c,
    intrinsics_matrix,
    invert_rigid,
)

#: Format names, as the CLI and the add-on spell them.
FORMATS = ("ex4d", "seed-npz", "nerfstudio", "colmap")

#: OpenCV camera axes <-> OpenGL camera axes (x right, y up, looking down -z); its own inverse.
CV_TO_GL_CAMERA = CV_CAMERA_TO_BLENDER_CAMERA

#: Default frame rate for formats that do not store one (the seed writes its videos at 30 fps).
DEFAULT_FPS = 30.0

#: Largest relative focal difference / principal-point offset (px) a lossless export tolerates.
LOSSLESS_TOLERANCE = 1e-9


# ============================================================ quaternions
def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) -> unit quaternion (qw, qx, qy, qz), Hamilton, scalar first, qw >= 0.

    Shepperd's method: divide by the largest of 4 qw^2, 4 qx^2, 4 qy^2, 4 qz^2, so it stays
    accurate near 180-degree rotations where the trace formula loses all precision.
    """
    R = np.asarray(R, dtype=np.float64)
    trace = R[0, 0] + R[1, 1] + R[2, 2]
    pick = int(np.argmax([trace, R[0, 0], R[1, 1], R[2, 2]]))
    if pick == 0:
        s = 2.0 * math.sqrt(max(1.0 + trace, 0.0))  # s = 4 qw
        q = [s / 4, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif pick == 1:
        s = 2.0 * math.sqrt(max(1.0 + R[0, 0] - R[1, 1] - R[2, 2], 0.0))  # s = 4 qx
        q = [(R[2, 1] - R[1, 2]) / s, s / 4, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif pick == 2:
        s = 2.0 * math.sqrt(max(1.0 + R[1, 1] - R[0, 0] - R[2, 2], 0.0))  # s = 4 qy
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, s / 4, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(max(1.0 + R[2, 2] - R[0, 0] - R[1, 1], 0.0))  # s = 4 qz
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, s / 4]
    q = np.asarray(q) / np.linalg.norm(q)
    return -q if q[0] < 0 else q


def quaternion_to_rotation(q: np.ndarray) -> np.ndarray:
    """Quaternion (qw, qx, qy, qz), any non-zero norm (it is normalised) -> rotation matrix (3, 3)."""
    q = np.asarray(q, dtype=np.float64)
    norm = float(np.linalg.norm(q))
    if not math.isfinite(norm) or norm < 1e-12:
        raise TrajectoryError(f"quaternion {q.tolist()} has no direction (norm {norm})")
    w, x, y, z = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


# ============================================================ seed npz
def trajectory_to_seed_arrays(trajectory: Trajectory, *, allow_lossy: bool = False) -> dict[str, np.ndarray]:
    """Trajectory -> ``{"extrinsics": (F, 4, 4) float32 G @ w2c, "intrinsics": (3, 3) float32 K}``.

    The seed stores one ``K``: a trajectory whose ``K`` changes per frame raises unless
    ``allow_lossy``, which keeps frame 0's ``K``.
    """
    trajectory.validate()
    K0 = trajectory.K[0]
    if not allow_lossy:
        for i in range(1, len(trajectory)):
            if not np.array_equal(trajectory.K[i], K0):
                raise TrajectoryError(
                    f"seed npz stores one K for all frames, but frames[{i}].K differs from frames[0].K; "
                    "pass allow_lossy=True (--allow-lossy) to keep frame 0's K"
                )
    return {
        "extrinsics": (CV_TO_GL_CAMERA @ trajectory.w2c).astype(np.float32),
        "intrinsics": K0.astype(np.float32),
    }


def trajectory_from_seed_arrays(
    extrinsics: Any,
    intrinsics: Any,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: float = DEFAULT_FPS,
    source: str = "seed npz",
) -> Trajectory:
    """Seed arrays -> Trajectory. ``width`` / ``height`` default to ``2 cx`` / ``2 cy``."""
    ext = np.asarray(extrinsics)
    K = np.asarray(intrinsics)
    if ext.ndim != 3 or ext.shape[1:] != (4, 4) or not np.issubdtype(ext.dtype, np.number):
        raise TrajectoryError(f"{source}: extrinsics must be a numeric (frames, 4, 4) array, got {ext.dtype} {ext.shape}")
    if K.shape != (3, 3) or not np.issubdtype(K.dtype, np.number):
        raise TrajectoryError(f"{source}: intrinsics must be a numeric (3, 3) array, got {K.dtype} {K.shape}")
    if len(ext) == 0:
        raise TrajectoryError(f"{source}: extrinsics has 0 frames; a trajectory needs at least 1")
    K = K.astype(np.float64)
    _validate_K(K, f"{source}: intrinsics")
    w2c = CV_TO_GL_CAMERA @ ext.astype(np.float64)
    for i in range(len(w2c)):
        _validate_w2c(w2c[i], f"{source}: extrinsics[{i}]")
    width = _size_from_principal_point(width, K[0, 2], "width", "cx", source)
    height = _size_from_principal_point(height, K[1, 2], "height", "cy", source)
    return _checked(Trajectory(width, height, fps, K, w2c), source)


def save_seed_npz(trajectory: Trajectory, path: str | os.PathLike, *, allow_lossy: bool = False) -> None:
    """Write the seed's ``camera_*.npz`` layout (compressed, float32) atomically."""
    arrays = trajectory_to_seed_arrays(trajectory, allow_lossy=allow_lossy)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def load_seed_npz(
    path: str | os.PathLike,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: float = DEFAULT_FPS,
) -> Trajectory:
    source = os.fspath(path)
    try:
        with np.load(source, allow_pickle=False) as data:
            missing = [key for key in ("extrinsics", "intrinsics") if key not in data.files]
            if missing:
                raise TrajectoryError(f"{source}: missing array(s) {missing}; has {sorted(data.files)}")
            extrinsics, intrinsics = data["extrinsics"], data["intrinsics"]
    except TrajectoryError:
        raise
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError (pickled objects), EOFError, ...
        raise TrajectoryError(f"{source}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    trajectory = trajectory_from_seed_arrays(extrinsics, intrinsics, width=width, height=height, fps=fps, source=source)
    trajectory.meta = {"source_format": "seed-npz"}
    return trajectory


# ============================================================ nerfstudio
def trajectory_to_nerfstudio(trajectory: Trajectory, *, allow_lossy: bool = False) -> dict[str, Any]:
    """Trajectory -> nerfstudio ``camera_path.json`` document.

    nerfstudio renders with ``fx = fy`` from the vertical fov and ``c`` at the image centre. A
    trajectory that differs raises unless ``allow_lossy``, which keeps ``fy`` and centres ``c``.
    """
    trajectory.validate()
    W, H = trajectory.width, trajectory.height
    if not allow_lossy:
        for i, K in enumerate(trajectory.K):
            problem = _nerfstudio_loss(K, W, H)
            if problem:
                raise TrajectoryError(
                    f"frames[{i}].K: nerfstudio camera_path.json cannot store {problem} "
                    "(it keeps one vertical fov and a centred principal point); "
                    "pass allow_lossy=True (--allow-lossy) to export anyway"
                )
    c2w_gl = invert_rigid(trajectory.w2c) @ CV_TO_GL_CAMERA
    path = []
    for i in range(len(trajectory)):
        fov_y_deg = math.degrees(2.0 * math.atan((H / 2.0) / trajectory.K[i, 1, 1]))
        path.append({
            "camera_to_world": [float(x) for x in c2w_gl[i].reshape(-1)],
            "fov": fov_y_deg,
            "aspect": W / H,
        })
    return {
        "camera_type": "perspective",
        "render_width": int(W),
        "render_height": int(H),
        "fps": float(trajectory.fps),
        "seconds": len(trajectory) / float(trajectory.fps),
        "camera_path": path,
    }


def trajectory_from_nerfstudio(data: Any, *, source: str = "camera_path.json") -> Trajectory:
    """Decoded nerfstudio ``camera_path.json`` -> Trajectory (fps from ``fps``, else frames / ``seconds``)."""
    if not isinstance(data, dict):
        raise TrajectoryError(f"{source}: must be a JSON object, got {type(data).__name__}")
    camera_type = data.get("camera_type", "perspective")
    if camera_type != "perspective":
        raise TrajectoryError(f"{source}: camera_type {camera_type!r} is not supported; only 'perspective' is")
    if "camera_path" not in data:
        hint = " (it has only keyframes: render or export the path in nerfstudio first)" if "keyframes" in data else ""
        raise TrajectoryError(f"{source}: missing field 'camera_path'{hint}")
    for key in ("render_width", "render_height"):
        if key not in data:
            raise TrajectoryError(f"{source}: missing field {key!r}")
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TrajectoryError(f"{source}: {key} must be a positive integer, got {value!r}")
    W, H = data["render_width"], data["render_height"]
    entries = data["camera_path"]
    if not isinstance(entries, list) or not entries:
        raise TrajectoryError(f"{source}: camera_path must be a non-empty list, got {_short(entries)}")
    if "fps" in data:
        fps = _positive_number(data["fps"], f"{source}: fps")
    elif "seconds" in data:
        fps = len(entries) / _positive_number(data["seconds"], f"{source}: seconds")
    else:
        raise TrajectoryError(f"{source}: needs 'fps' or 'seconds' to know the frame rate")
    Ks, w2cs = [], []
    for i, entry in enumerate(entries):
        where = f"{source}: camera_path[{i}]"
        if not isinstance(entry, dict):
            raise TrajectoryError(f"{where} must be an object, got {_short(entry)}")
        flat = entry.get("camera_to_world")
        if not isinstance(flat, list) or len(flat) != 16:
            raise TrajectoryError(f"{where}.camera_to_world must be a list of 16 numbers (row-major 4x4), got {_short(flat)}")
        for j, x in enumerate(flat):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise TrajectoryError(f"{where}.camera_to_world[{j}] must be a number, got {x!r}")
        c2w_cv = np.asarray(flat, dtype=np.float64).reshape(4, 4) @ CV_TO_GL_CAMERA
        _validate_w2c(c2w_cv, f"{where}.camera_to_world")  # same rigidity rules as w2c
        fov = entry.get("fov")
        if isinstance(fov, bool) or not isinstance(fov, (int, float)) or not 0 < fov < 180:
            raise TrajectoryError(f"{where}.fov must be a vertical field of view in degrees in (0, 180), got {fov!r}")
        focal_px = (H / 2.0) / math.tan(math.radians(fov) / 2.0)
        Ks.append(intrinsics_matrix(focal_px, focal_px, W / 2.0, H / 2.0))
        w2cs.append(invert_rigid(c2w_cv))
    trajectory = Trajectory(W, H, fps, np.stack(Ks), np.stack(w2cs), {"source_format": "nerfstudio"})
    return _checked(trajectory, source)


def save_nerfstudio(trajectory: Trajectory, path: str | os.PathLike, *, allow_lossy: bool = False) -> None:
    atomic_write(path, json.dumps(trajectory_to_nerfstudio(trajectory, allow_lossy=allow_lossy), indent=1))


def load_nerfstudio(path: str | os.PathLike) -> Trajectory:
    source = os.fspath(path)
    return trajectory_from_nerfstudio(_read_json(source), source=source)


# ============================================================ COLMAP text
COLMAP_IMAGE_NAME = "frame_{:05d}.png"


def trajectory_to_colmap_texts(trajectory: Trajectory) -> dict[str, str]:
    """Trajectory -> ``{"cameras.txt": ..., "images.txt": ..., "points3D.txt": ...}`` (PINHOLE, exact repr floats)."""
    trajectory.validate()
    camera_ids: dict[tuple[float, ...], int] = {}
    image_lines = []
    for i in range(len(trajectory)):
        K = trajectory.K[i]
        params = (float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))
        camera_id = camera_ids.setdefault(params, len(camera_ids) + 1)
        q = rotation_to_quaternion(trajectory.w2c[i, :3, :3])
        t = trajectory.w2c[i, :3, 3]
        numbers = " ".join(repr(float(x)) for x in (*q, *t))
        image_lines.append(f"{i + 1} {numbers} {camera_id} {COLMAP_IMAGE_NAME.format(i)}\n\n")
    cameras = [
        "# Camera list with one line of data per camera:\n",
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n",
        f"# Number of cameras: {len(camera_ids)}\n",
    ]
    for params, camera_id in camera_ids.items():
        cameras.append(f"{camera_id} PINHOLE {trajectory.width} {trajectory.height} {' '.join(map(repr, params))}\n")
    images = [
        "# Image list with two lines of data per image:\n",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)\n",
        f"# Number of images: {len(trajectory)}, mean observations per image: 0\n",
        *image_lines,
    ]
    points = (
        "# 3D point list with one line of data per point:\n"
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
        "# Number of points: 0, mean track length: 0\n"
    )
    return {"cameras.txt": "".join(cameras), "images.txt": "".join(images), "points3D.txt": points}


def trajectory_from_colmap_texts(
    cameras_text: str,
    images_text: str,
    *,
    fps: float = DEFAULT_FPS,
    source: str = "",
) -> Trajectory:
    """COLMAP ``cameras.txt`` + ``images.txt`` contents -> Trajectory, frames sorted by image name."""
    cameras_file = os.path.join(source, "cameras.txt") if source else "cameras.txt"
    images_file = os.path.join(source, "images.txt") if source else "images.txt"
    cameras = _parse_colmap_cameras(cameras_text, cameras_file)
    sizes = {(w, h) for w, h, _ in cameras.values()}
    if len(sizes) != 1:
        raise TrajectoryError(f"{cameras_file}: all cameras must share one image size, got {sorted(sizes)}")
    (width, height), = sizes
    images = _parse_colmap_images(images_text, images_file, cameras)
    images.sort(key=lambda image: image["name"])
    trajectory = Trajectory(
        width,
        height,
        _positive_number(fps, "fps"),
        np.stack([cameras[image["camera_id"]][2] for image in images]),
        np.stack([image["w2c"] for image in images]),
        {
            "source_format": "colmap",
            "colmap_image_ids": [image["id"] for image in images],
            "colmap_image_names": [image["name"] for image in images],
        },
    )
    return _checked(trajectory, source or "colmap model")


def save_colmap(trajectory: Trajectory, directory: str | os.PathLike) -> None:
    """Write a COLMAP text model into ``directory`` (created if needed), each file atomically."""
    texts = trajectory_to_colmap_texts(trajectory)  # everything is checked before anything is written
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    for name, text in texts.items():
        atomic_write(os.path.join(directory, name), text)


def load_colmap(directory: str | os.PathLike, *, fps: float = DEFAULT_FPS) -> Trajectory:
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        if not os.path.exists(directory):
            raise FileNotFoundError(f"COLMAP model directory not found: {directory}")
        raise TrajectoryError(f"{directory}: a COLMAP model is a directory with cameras.txt and images.txt")
    texts = []
    for name in ("cameras.txt", "images.txt"):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            binary = os.path.isfile(os.path.join(directory, name[:-4] + ".bin"))
            hint = " (convert the binary model with: colmap model_converter --output_type TXT)" if binary else ""
            raise TrajectoryError(f"{directory}: missing {name}{hint}")
        texts.append(_read_text(path))
    return trajectory_from_colmap_texts(texts[0], texts[1], fps=fps, source=directory)


def _parse_colmap_cameras(text: str, where: str) -> dict[int, tuple[int, int, np.ndarray]]:
    cameras: dict[int, tuple[int, int, np.ndarray]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        at = f"{where} line {number}"
        if len(fields) < 4:
            raise TrajectoryError(f"{at}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS..., got {line.strip()!r}")
        camera_id = _int_field(fields[0], "CAMERA_ID", at)
        model = fields[1]
        width = _int_field(fields[2], "WIDTH", at, minimum=1)
        height = _int_field(fields[3], "HEIGHT", at, minimum=1)
        params = fields[4:]
        if model == "SIMPLE_PINHOLE":
            names = ("f", "cx", "cy")
        elif model == "PINHOLE":
            names = ("fx", "fy", "cx", "cy")
        else:
            raise TrajectoryError(
                f"{at}: camera model {model!r} is not supported (only SIMPLE_PINHOLE and PINHOLE; "
                "undistort the images first, e.g. colmap image_undistorter)"
            )
        if len(params) != len(names):
            raise TrajectoryError(f"{at}: {model} needs {len(names)} parameters ({' '.join(names)}), got {len(params)}")
        values = {name: _float_field(value, name, at) for name, value in zip(names, params)}
        if model == "SIMPLE_PINHOLE":
            values["fx"] = values["fy"] = values["f"]
        K = intrinsics_matrix(values["fx"], values["fy"], values["cx"], values["cy"])
        _validate_K(K, f"{at} (CAMERA_ID {camera_id})")
        if camera_id in cameras:
            raise TrajectoryError(f"{at}: CAMERA_ID {camera_id} is defined twice")
        cameras[camera_id] = (width, height, K)
    if not cameras:
        raise TrajectoryError(f"{where}: no cameras")
    return cameras


def _parse_colmap_images(text: str, where: str, cameras: dict) -> list[dict[str, Any]]:
    lines = text.splitlines()
    images: list[dict[str, Any]] = []
    ids, names = set(), set()
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        at = f"{where} line {number}"
        fields = line.split(None, 9)
        if len(fields) < 10:
            raise TrajectoryError(
                f"{at}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, got {len(fields)} fields: {line.strip()!r}"
            )
        image_id = _int_field(fields[0], "IMAGE_ID", at)
        q = [_float_field(value, name, at) for name, value in zip(("QW", "QX", "QY", "QZ"), fields[1:5])]
        t = [_float_field(value, name, at) for name, value in zip(("TX", "TY", "TZ"), fields[5:8])]
        camera_id = _int_field(fields[8], "CAMERA_ID", at)
        name = fields[9].strip()
        if camera_id not in cameras:
            raise TrajectoryError(f"{at}: CAMERA_ID {camera_id} is not in cameras.txt (has {sorted(cameras)})")
        if image_id in ids:
            raise TrajectoryError(f"{at}: IMAGE_ID {image_id} appears twice")
        if name in names:
            raise TrajectoryError(f"{at}: image NAME {name!r} appears twice (frames are ordered by name)")
        try:
            R = quaternion_to_rotation(q)
        except TrajectoryError as exc:
            raise TrajectoryError(f"{at}: QW QX QY QZ: {exc}") from None
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = R, t
        ids.add(image_id)
        names.add(name)
        images.append({"id": image_id, "name": name, "camera_id": camera_id, "w2c": w2c})
        number += 1  # the POINTS2D line that follows every image line (empty for a pure trajectory)
    if not images:
        raise TrajectoryError(f"{where}: no images")
    return images


# ============================================================ any format
def detect_format(path: str | os.PathLike, *, for_output: bool = False) -> str:
    """Guess the format from the name (and, for an existing ``.json`` input, its content).

    ``.npz`` -> seed-npz; a directory or a name without extension -> colmap; ``.json`` -> for input,
    nerfstudio if it has ``camera_path`` or ``keyframes`` else ex4d; for output, nerfstudio when the
    name contains ``camera_path``, else ex4d.
    """
    path = os.fspath(path)
    base = os.path.basename(path.rstrip("/\\")).lower()
    extension = os.path.splitext(base)[1]
    if extension == ".npz":
        return "seed-npz"
    if extension == ".json":
        if for_output or not os.path.isfile(path):
            return "nerfstudio" if "camera_path" in base else "ex4d"
        data = _read_json(path)
        return "nerfstudio" if isinstance(data, dict) and ("camera_path" in data or "keyframes" in data) else "ex4d"
    if os.path.isdir(path) or not extension:
        return "colmap"
    raise TrajectoryError(
        f"{path}: cannot tell the trajectory format from the extension {extension!r}; name one of {', '.join(FORMATS)}"
    )


def trajectory_from_document(data: Any, source: str = "trajectory") -> Trajectory:
    """A decoded JSON document holding a camera path, in whichever form ex4d writes or reads one.

    Accepted: an ``ex4d.trajectory`` document; a record wrapping one under ``"trajectory"``
    (``recon_{cam}.json``); a nerfstudio ``camera_path.json`` document (converted). Anything else is a
    :class:`TrajectoryError` that names what was found and how to convert it.
    """
    ex4d_keys = {"format", "version", "frames"}
    if isinstance(data, dict) and ex4d_keys & set(data) and "camera_path" not in data and "trajectory" not in data:
        try:
            return Trajectory.from_dict(data)
        except TrajectoryError as exc:
            raise TrajectoryError(f"{source}: {exc.message}") from None
    if isinstance(data, dict) and isinstance(data.get("trajectory"), dict):  # recon_{cam}.json and friends
        return trajectory_from_document(data["trajectory"], f"{source}: trajectory")
    if isinstance(data, dict) and ("camera_path" in data or "keyframes" in data):
        return trajectory_from_nerfstudio(data, source=source)
    found = f"a JSON object with keys {', '.join(sorted(map(str, data))[:6])}" if isinstance(data, dict) \
        else f"a JSON {type(data).__name__}"
    raise TrajectoryError(f"{source}: {found}, not a camera path. ex4d reads ex4d.trajectory, recon_*.json, "
                          "nerfstudio camera_path.json, seed camera_*.npz and COLMAP text; convert other files "
                          "with `ex4d trajectory convert IN OUT.json`")


def load_trajectory(
    path: str | os.PathLike,
    fmt: str | None = None,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
) -> Trajectory:
    """Read any supported format: the one place a camera path file comes in (validated here, once).

    ``width`` / ``height`` only apply to seed-npz, ``fps`` to seed-npz and colmap; passing them for a
    format that stores them is an error (they would silently disagree). A missing file is a
    :class:`NotFoundError`, anything malformed a :class:`TrajectoryError` naming the file.
    """
    if not os.path.exists(path):
        raise NotFoundError(f"trajectory file not found: {os.fspath(path)}")
    fmt = fmt or detect_format(path)
    stored = {"ex4d": ("width", "height", "fps"), "nerfstudio": ("width", "height", "fps"), "colmap": ("width", "height")}
    given = {"width": width, "height": height, "fps": fps}
    clash = [name for name in stored.get(fmt, ()) if given[name] is not None]
    if clash:
        raise TrajectoryError(f"{os.fspath(path)}: a {fmt} trajectory stores its own {', '.join(clash)}; do not pass them")
    fps = DEFAULT_FPS if fps is None else fps
    if fmt == "ex4d":
        return trajectory_from_document(_read_json(os.fspath(path)), os.fspath(path))
    if fmt == "seed-npz":
        return load_seed_npz(path, width=width, height=height, fps=fps)
    if fmt == "nerfstudio":
        return load_nerfstudio(path)
    if fmt == "colmap":
        return load_colmap(path, fps=fps)
    raise TrajectoryError(f"unknown trajectory format {fmt!r}; use one of {', '.join(FORMATS)}")


def save_trajectory(trajectory: Trajectory, path: str | os.PathLike, fmt: str | None = None, *, allow_lossy: bool = False) -> None:
    """Write any supported format atomically; nothing is written if the trajectory cannot be stored."""
    fmt = fmt or detect_format(path, for_output=True)
    if fmt == "ex4d":
        trajectory.save(path)
    elif fmt == "seed-npz":
        save_seed_npz(trajectory, path, allow_lossy=allow_lossy)
    elif fmt == "nerfstudio":
        save_nerfstudio(trajectory, path, allow_lossy=allow_lossy)
    elif fmt == "colmap":
        save_colmap(trajectory, path)
    else:
        raise TrajectoryError(f"unknown trajectory format {fmt!r}; use one of {', '.join(FORMATS)}")


# ============================================================ helpers
def _checked(trajectory: Trajectory, source: str) -> Trajectory:
    try:
        return trajectory.validate()
    except TrajectoryError as exc:
        raise TrajectoryError(f"{source}: {exc}") from None


def _nerfstudio_loss(K: np.ndarray, W: int, H: int) -> str:
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if abs(fx - fy) > LOSSLESS_TOLERANCE * fy:
        return f"fx != fy (fx={fx}, fy={fy})"
    if abs(cx - W / 2) > LOSSLESS_TOLERANCE * W or abs(cy - H / 2) > LOSSLESS_TOLERANCE * H:
        return f"an off-centre principal point (cx={cx}, cy={cy}; centre is {W / 2}, {H / 2})"
    return ""


def _size_from_principal_point(size: int | None, centre: float, name: str, field: str, source: str) -> int:
    if size is None:
        doubled = 2.0 * float(centre)
        if abs(doubled - round(doubled)) > 1e-6 or round(doubled) < 1:
            raise TrajectoryError(f"{source}: cannot infer {name} from {field}={centre} (2*{field} is not a positive integer); pass {name}")
        return int(round(doubled))
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise TrajectoryError(f"{source}: {name} must be a positive integer, got {size!r}")
    return int(size)


def _positive_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value) or value <= 0:
        raise TrajectoryError(f"{where} must be a positive finite number, got {value!r}")
    return float(value)


def _int_field(text: str, name: str, at: str, minimum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise TrajectoryError(f"{at}: {name} must be an integer, got {text!r}") from None
    if minimum is not None and value < minimum:
        raise TrajectoryError(f"{at}: {name} must be >= {minimum}, got {value}")
    return value


def _float_field(text: str, name: str, at: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TrajectoryError(f"{at}: {name} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise TrajectoryError(f"{at}: {name} must be finite, got {text!r}")
    return value


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise TrajectoryError(f"{path}: not a UTF-8 text file ({exc.reason})") from None


def _read_json(path: str) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise TrajectoryError(f"{path}: not valid JSON: {exc}") from None




def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
