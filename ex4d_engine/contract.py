"""The ex4d coordinate and trajectory contract (version 1), written once.

Engine, server and Blender add-on all use this module (the add-on gets it vendored at build time,
see docs/architecture.md). It imports only the standard library, numpy and ``.errors``, never
torch or bpy.

Conventions (docs/coordinates.md says the same with pictures):

* **World** = the OpenCV camera frame of the *source* camera at frame 0: +x right, +y down,
  +z forward (into the scene). Lengths are in the units of the depth map ("depth units");
  ``scene_scale`` in a scene says how many metres one unit is believed to be (1.0 = unknown).
* **Camera** per frame = intrinsics ``K`` (3x3, pixels) + world-to-camera ``w2c`` (4x4,
  row-major, OpenCV camera axes) + the image size ``width`` x ``height``.
* **Pixel coordinates** are continuous with the origin at the top-left *corner* of the
  top-left pixel; pixel (col i, row j) covers [i, i+1) x [j, j+1) and its centre is at
  (i + 0.5, j + 0.5). So ``cx = width / 2`` puts the principal point at the image centre,
  exactly as Blender and OpenGL rasterisers do. (OpenCV's own routines place pixel centres
  at integers; subtract 0.5 from cx, cy to get that convention.)
* Projection: ``x_cam = w2c @ [X, 1]``; ``u = K[0,0] x/z + K[0,2]``, ``v = K[1,1] y/z + K[1,2]``,
  visible only for z > 0. Skew must be 0.
* **Blender** world is Z-up. The imported scene maps engine world to Blender world with
  ``OPENCV_TO_BLENDER`` (x, y, z) -> (x, z, -y): the source camera looks along Blender +Y with
  +Z up. Blender cameras look down their local -Z with +Y up, i.e. camera-local axes differ
  from OpenCV's by ``CV_CAMERA_TO_BLENDER_CAMERA`` = diag(1, -1, -1, 1).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .atomic import atomic_write
from .errors import InputError

CONTRACT_VERSION = 1
TRAJECTORY_FORMAT = "ex4d.trajectory"

#: Engine (OpenCV, y down) world -> Blender world (Z up): (x, y, z) -> (x, z, -y).
OPENCV_TO_BLENDER = np.array(
    [[1.0, 0.0, 0.0, 0.0],
     [0.0, 0.0, 1.0, 0.0],
     [0.0, -1.0, 0.0, 0.0],
     [0.0, 0.0, 0.0, 1.0]]
)
BLENDER_TO_OPENCV = OPENCV_TO_BLENDER.T.copy()

#: OpenCV camera axes (x right, y down, z forward) <-> Blender camera axes (x right, y up, -z forward).
CV_CAMERA_TO_BLENDER_CAMERA = np.diag([1.0, -1.0, -1.0, 1.0])

#: Tolerance on |R R^T - I| and |det R - 1| when validating rotations.
ROTATION_TOLERANCE = 1e-4


class TrajectoryError(InputError):
    """A trajectory breaks the contract. The message names the frame and the field.

    An ``invalid_input`` of the error table: every caller reports it as it is.
    """


@dataclass(frozen=True)
class Camera:
    """One pinhole camera of the contract.

    Attributes:
        K: (3, 3) float64 intrinsics in pixels, corner-origin pixel coordinates.
        w2c: (4, 4) float64 world-to-camera, OpenCV camera axes.
        width, height: image size in pixels.
    """

    K: np.ndarray
    w2c: np.ndarray
    width: int
    height: int

    @property
    def c2w(self) -> np.ndarray:
        return invert_rigid(self.w2c)

    @property
    def centre(self) -> np.ndarray:
        """Camera centre in world coordinates, (3,)."""
        return self.c2w[:3, 3]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points (N, 3) -> pixel coordinates (N, 2) and camera-space depth z (N,)."""
        return project(self.K, self.w2c, points)


@dataclass
class Trajectory:
    """A camera per output frame.

    Attributes:
        width, height: output image size in pixels (the same for every frame).
        fps: frames per second of the output video.
        K: (F, 3, 3) float64 intrinsics, one per frame (lens animation is allowed).
        w2c: (F, 4, 4) float64 world-to-camera matrices.
        meta: free-form JSON-serialisable provenance (who made it, Blender frame range, ...).
    """

    width: int
    height: int
    fps: float
    K: np.ndarray
    w2c: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64)
        self.w2c = np.asarray(self.w2c, dtype=np.float64)
        if self.K.ndim == 2:  # one K for every frame
            self.K = np.broadcast_to(self.K, (len(self.w2c), 3, 3)).copy()

    def __len__(self) -> int:
        return int(self.w2c.shape[0])

    @property
    def num_frames(self) -> int:
        return len(self)

    @property
    def c2w(self) -> np.ndarray:
        """(F, 4, 4) camera-to-world matrices."""
        return invert_rigid(self.w2c)

    def camera(self, frame_index: int) -> Camera:
        return Camera(self.K[frame_index], self.w2c[frame_index], self.width, self.height)

    def validate(self) -> "Trajectory":
        """Check every rule of the contract; raise :class:`TrajectoryError` naming frame and field."""
        _validate_header(self.width, self.height, self.fps)
        if self.w2c.ndim != 3 or self.w2c.shape[1:] != (4, 4):
            raise TrajectoryError(f"w2c must have shape (frames, 4, 4), got {self.w2c.shape}")
        if self.K.shape != (len(self.w2c), 3, 3):
            raise TrajectoryError(f"K must have shape ({len(self.w2c)}, 3, 3), got {self.K.shape}")
        if len(self) < 1:
            raise TrajectoryError("a trajectory needs at least 1 frame, got 0")
        for i in range(len(self)):
            _validate_K(self.K[i], f"frames[{i}].K")
            _validate_w2c(self.w2c[i], f"frames[{i}].w2c")
        return self

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TRAJECTORY_FORMAT,
            "version": CONTRACT_VERSION,
            "width": int(self.width),
            "height": int(self.height),
            "fps": float(self.fps),
            "frames": [
                {"K": self.K[i].tolist(), "w2c": self.w2c[i].tolist()} for i in range(len(self))
            ],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: Any) -> "Trajectory":
        """Parse and validate a decoded ``ex4d.trajectory`` v1 document."""
        if not isinstance(data, dict):
            raise TrajectoryError(f"trajectory must be a JSON object, got {type(data).__name__}")
        fmt = data.get("format", TRAJECTORY_FORMAT)
        if fmt != TRAJECTORY_FORMAT:
            raise TrajectoryError(f"format must be {TRAJECTORY_FORMAT!r}, got {fmt!r}")
        version = data.get("version")
        if version != CONTRACT_VERSION:
            raise TrajectoryError(f"version must be {CONTRACT_VERSION}, got {version!r}")
        for key in ("width", "height", "fps", "frames"):
            if key not in data:
                raise TrajectoryError(f"missing field {key!r}")
        width, height, fps = data["width"], data["height"], data["fps"]
        _validate_header(width, height, fps)
        frames = data["frames"]
        if not isinstance(frames, list):
            raise TrajectoryError(f"frames must be a list, got {type(frames).__name__}")
        if not frames:
            raise TrajectoryError("a trajectory needs at least 1 frame, got 0")
        Ks, w2cs = [], []
        for i, frame in enumerate(frames):
            if not isinstance(frame, dict):
                raise TrajectoryError(f"frames[{i}] must be an object with K and w2c")
            Ks.append(_matrix(frame.get("K"), 3, f"frames[{i}].K"))
            w2cs.append(_matrix(frame.get("w2c"), 4, f"frames[{i}].w2c"))
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            raise TrajectoryError("meta must be an object")
        return cls(int(width), int(height), float(fps), np.stack(Ks), np.stack(w2cs), dict(meta)).validate()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Trajectory":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TrajectoryError(f"not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temporary name + rename)."""
        atomic_write(path, self.validate().to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Trajectory":
        """Read and validate a trajectory file; errors are prefixed with the file name."""
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except UnicodeDecodeError as exc:
            raise TrajectoryError(f"{os.fspath(path)}: not a UTF-8 text file ({exc.reason})") from None
        try:
            return cls.from_json(text)
        except TrajectoryError as exc:
            raise TrajectoryError(f"{os.fspath(path)}: {exc}") from None


# ---------------------------------------------------------------------- maths
def invert_rigid(m: np.ndarray) -> np.ndarray:
    """Invert (..., 4, 4) rigid transforms [R | t] exactly (R^T, -R^T t)."""
    m = np.asarray(m, dtype=np.float64)
    out = np.zeros_like(m)
    rt = np.swapaxes(m[..., :3, :3], -1, -2)
    out[..., :3, :3] = rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rt, m[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def project(K: np.ndarray, w2c: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) -> pixel coordinates (N, 2) (corner origin) and camera depth z (N,)."""
    pts = np.asarray(points, dtype=np.float64)
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([K[0, 0] * cam[:, 0] / z + K[0, 2], K[1, 1] * cam[:, 1] / z + K[1, 2]], axis=1)
    return uv, z


def intrinsics_matrix(focal_x_px: float, focal_y_px: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[focal_x_px, 0.0, cx], [0.0, focal_y_px, cy], [0.0, 0.0, 1.0]])


def look_at_w2c(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, -1.0, 0.0)) -> np.ndarray:
    """OpenCV world-to-camera looking from ``eye`` at ``target``; ``up`` is world up (default -y)."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    # OpenCV camera axes are right-handed: x = y × z, so right = forward × up (up = -down).
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    w2c = np.eye(4)
    w2c[:3, :3] = np.stack([right, down, forward])
    w2c[:3, 3] = -w2c[:3, :3] @ eye
    return w2c


def engine_to_blender_matrix_world(w2c: np.ndarray, import_matrix: np.ndarray = OPENCV_TO_BLENDER) -> np.ndarray:
    """Engine w2c (OpenCV) -> Blender camera ``matrix_world`` given the scene's import matrix."""
    return import_matrix @ invert_rigid(w2c) @ CV_CAMERA_TO_BLENDER_CAMERA


def blender_matrix_world_to_engine_w2c(matrix_world: np.ndarray, import_matrix: np.ndarray = OPENCV_TO_BLENDER) -> np.ndarray:
    """Blender camera ``matrix_world`` (scale allowed, it is removed) -> engine w2c.

    ``import_matrix`` maps engine world to Blender world (the imported collection's
    transform times ``OPENCV_TO_BLENDER``); it may contain a uniform scale.
    """
    m = np.array(matrix_world, dtype=np.float64)
    m[:3, :3] /= np.linalg.norm(m[:3, :3], axis=0)  # object scale does not change the view
    c2w_engine = np.linalg.inv(np.asarray(import_matrix, dtype=np.float64)) @ m @ CV_CAMERA_TO_BLENDER_CAMERA
    scale = np.cbrt(np.linalg.det(c2w_engine[:3, :3]))
    c2w_engine[:3, :3] /= scale  # a uniform scene scale leaves a scaled rotation; keep the direction
    return invert_rigid(c2w_engine)


# ---------------------------------------------------------------------- checks
def _validate_header(width: Any, height: Any, fps: Any) -> None:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise TrajectoryError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.number)) or not math.isfinite(fps) or fps <= 0:
        raise TrajectoryError(f"fps must be a positive finite number, got {fps!r}")


def _matrix(value: Any, n: int, where: str) -> np.ndarray:
    if not isinstance(value, list) or len(value) != n:
        raise TrajectoryError(f"{where} must be a {n}x{n} list of rows, got {_short(value)}")
    for r, row in enumerate(value):
        if not isinstance(row, list) or len(row) != n:
            raise TrajectoryError(f"{where}[{r}] must be a list of {n} numbers, got {_short(row)}")
        for c, x in enumerate(row):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise TrajectoryError(f"{where}[{r}][{c}] must be a number, got {x!r}")
    return np.asarray(value, dtype=np.float64)


def _validate_K(K: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(K)):
        raise TrajectoryError(f"{where} contains NaN or infinity")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise TrajectoryError(f"{where} focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}")
    if K[0, 1] != 0 or K[1, 0] != 0:
        raise TrajectoryError(f"{where} must have zero skew, got K[0][1]={K[0, 1]}, K[1][0]={K[1, 0]}")
    if not np.allclose(K[2], [0.0, 0.0, 1.0], atol=1e-12):
        raise TrajectoryError(f"{where} last row must be [0, 0, 1], got {K[2].tolist()}")


def _validate_w2c(w2c: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(w2c)):
        raise TrajectoryError(f"{where} contains NaN or infinity")
    if not np.allclose(w2c[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
        raise TrajectoryError(f"{where} last row must be [0, 0, 0, 1], got {w2c[3].tolist()}")
    R = w2c[:3, :3]
    ortho_error = float(np.abs(R @ R.T - np.eye(3)).max())
    if ortho_error > ROTATION_TOLERANCE:
        raise TrajectoryError(
            f"{where} rotation is not orthonormal (max |R R^T - I| = {ortho_error:.3g} > {ROTATION_TOLERANCE})"
        )
    det = float(np.linalg.det(R))
    if abs(det - 1.0) > ROTATION_TOLERANCE:
        raise TrajectoryError(f"{where} rotation must have determinant +1 (a reflection is not a camera), got {det:.6f}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
