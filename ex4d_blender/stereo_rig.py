"""A stereo camera rig -> the left and right eye trajectories, exactly as Blender's multi-view does.

Pure maths (standard library, numpy and ``.contract`` only): the engine uses it for ``ex4d run
--stereo`` and the Blender add-on for a stereo take, so both compute the same eyes.

Blender's rule (``camera_stereo3d_model_matrix`` and ``camera_stereo3d_shift_x`` in
``blenkernel/intern/camera.cc``), in the camera's own axes (x right, y up, looking down -z):

* the *pivot* eye (pivot LEFT: the left eye, RIGHT: the right eye) is the camera itself;
  with pivot CENTRE both eyes move, each by half the interocular distance;
* OFFAXIS and PARALLEL move the other eye along the camera's x axis by the interocular distance;
  OFFAXIS also shifts its lens (principal point) so that the eyes converge at the convergence
  distance without rotating: ``shift_x += (iod / sensor_width) * (lens / convergence) * fac``;
  note that Blender divides by the sensor *width* whatever the sensor fit, so with fit VERTICAL the
  shift is scaled by sensor_height / sensor_width (``sensor_ratio`` below);
* TOE (toe-in) rotates the eyes about the camera's y axis by ``atan((iod / 2) / convergence)``
  each (twice that for the one moving eye with pivot LEFT/RIGHT, which is also moved along the
  rotated baseline).

Lengths are in the caller's units (engine: depth units; Blender: scene units); only the ratios
``iod / convergence`` and the eye offsets matter, so converting both by the same scale is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .contract import CV_CAMERA_TO_BLENDER_CAMERA, Trajectory, invert_rigid

MODES = ("OFFAXIS", "PARALLEL", "TOE")
PIVOTS = ("LEFT", "CENTER", "RIGHT")
EYES = ("left", "right")

#: Blender's defaults (Camera properties > Stereoscopy): 65 mm eyes converging at 1.95 m.
BLENDER_DEFAULT_INTEROCULAR = 0.065
BLENDER_DEFAULT_CONVERGENCE = 1.95

#: An interocular distance above this fraction of the nearest scene depth is refused: the classic
#: "1/30 rule" of stereography gives 1/30; 1/4 would put the eyes' disparity far beyond comfort
#: and move the eyes past most of what the DW-mesh can show.
MAX_INTEROCULAR_OVER_NEAR_DEPTH = 0.25
#: Default interocular distance for a scene without a known scale: 1/30 of the nearest depth.
INTEROCULAR_RULE_FRACTION = 1.0 / 30.0


class StereoRigError(ValueError):
    """Stereo settings no rig can use; the message names the setting and says what is allowed."""


@dataclass(frozen=True)
class StereoRig:
    """Blender's stereoscopy settings of one camera (Camera properties > Stereoscopy).

    Attributes:
        interocular: distance between the eyes (``camera.data.stereo.interocular_distance``).
        convergence: distance of the zero-parallax plane (``convergence_distance``).
        mode: 'OFFAXIS', 'PARALLEL' or 'TOE' (``convergence_mode``).
        pivot: 'LEFT', 'CENTER' or 'RIGHT' (``pivot``): which eye stays on the camera.
        sensor_ratio: the sensor length Blender fits the image with, over the sensor width
            (1.0 unless sensor fit is VERTICAL: then sensor_height / sensor_width).
    """

    interocular: float
    convergence: float
    mode: str = "OFFAXIS"
    pivot: str = "LEFT"
    sensor_ratio: float = 1.0

    def validate(self) -> "StereoRig":
        for name in ("interocular", "convergence", "sensor_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise StereoRigError(f"stereo {name} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise StereoRigError(f"stereo {name} must be a positive finite distance, got {value!r}")
        if self.mode not in MODES:
            raise StereoRigError(f"stereo mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.pivot not in PIVOTS:
            raise StereoRigError(f"stereo pivot must be one of {', '.join(PIVOTS)}, got {self.pivot!r}")
        return self

    def to_dict(self) -> dict:
        return {"interocular": float(self.interocular), "convergence": float(self.convergence),
                "mode": self.mode, "pivot": self.pivot, "sensor_ratio": float(self.sensor_ratio)}

    def scaled(self, factor: float) -> "StereoRig":
        """The same rig with both distances multiplied by ``factor`` (a change of length unit)."""
        return StereoRig(self.interocular * factor, self.convergence * factor, self.mode, self.pivot,
                         self.sensor_ratio)


def _is_pivot_eye(rig: StereoRig, is_left: bool) -> bool:
    return (rig.pivot == "LEFT" and is_left) or (rig.pivot == "RIGHT" and not is_left)


def eye_offset_blender_axes(rig: StereoRig, is_left: bool) -> np.ndarray:
    """4x4 eye pose in the camera's own Blender axes: eye matrix_world = camera (normalised) @ this.

    A line-by-line transcription of ``camera_stereo3d_model_matrix`` (Blender's C matrices are
    column-major: ``m[col][row]``; here ``M[row, col]``).
    """
    if _is_pivot_eye(rig, is_left):
        return np.eye(4)
    iod, conv = float(rig.interocular), float(rig.convergence)
    fac = 0.5 if rig.pivot == "CENTER" else 1.0
    fac_signed = fac if is_left else -fac
    if rig.mode != "TOE":  # OFFAXIS, PARALLEL: translate only
        out = np.eye(4)
        out[0, 3] = -iod * fac_signed
        return out
    if rig.pivot == "CENTER":
        fac, fac_signed = -fac, -fac_signed
    angle = math.atan((iod * 0.5) / conv) / fac
    c, s = math.cos(angle * fac_signed), math.sin(angle * fac_signed)
    rot = np.eye(4)
    rot[0, 0], rot[0, 2], rot[2, 0], rot[2, 2] = c, -s, s, c
    if rig.pivot == "CENTER":
        toe_in = rot.copy()
        toe_in[0, 3] = iod * fac_signed
        return toe_in
    along = np.eye(4)
    along[0, 3] = -iod * fac_signed
    return rot @ along @ rot  # rotate, translate along the rotated baseline, rotate again


def principal_point_shift_px(rig: StereoRig, is_left: bool, focal_x_px: float) -> float:
    """How far the eye's cx moves (pixels, +right) in OFFAXIS mode; 0 for the other modes and the pivot eye.

    Blender adds ``(iod / sensor_width) * (lens / convergence) * fac`` to ``shift_x`` and
    ``cx = W/2 - shift_x * view``; with ``fx = lens * view / sensor_fit_length`` that is
    ``-fac * (iod / convergence) * fx * sensor_ratio``.
    """
    if rig.mode != "OFFAXIS" or _is_pivot_eye(rig, is_left):
        return 0.0
    fac = 0.5 if rig.pivot == "CENTER" else 1.0
    fac_signed = fac if is_left else -fac
    return -fac_signed * (rig.interocular / rig.convergence) * focal_x_px * rig.sensor_ratio


def eye_camera(K: np.ndarray, w2c: np.ndarray, rig: StereoRig, eye: str) -> tuple[np.ndarray, np.ndarray]:
    """One eye's ``(K, w2c)`` (engine/OpenCV convention) from the rig camera's ``(K, w2c)``.

    ``rig`` must be in the units of ``w2c`` (engine: depth units).
    """
    if eye not in EYES:
        raise StereoRigError(f"eye must be 'left' or 'right', got {eye!r}")
    is_left = eye == "left"
    G = CV_CAMERA_TO_BLENDER_CAMERA
    offset_cv = G @ eye_offset_blender_axes(rig, is_left) @ G  # the same pose in OpenCV camera axes
    eye_w2c = invert_rigid(offset_cv) @ np.asarray(w2c, dtype=np.float64)
    eye_K = np.array(K, dtype=np.float64)
    eye_K[0, 2] += principal_point_shift_px(rig, is_left, eye_K[0, 0])
    return eye_K, eye_w2c


@dataclass
class StereoTrajectories:
    """The two eyes of one shot and the rig (per frame) that made them."""

    left: Trajectory
    right: Trajectory
    rigs: list = field(default_factory=list)

    def eye(self, name: str) -> Trajectory:
        return self.left if name == "left" else self.right


def stereo_trajectories(camera: Trajectory, rig: StereoRig | Sequence[StereoRig]) -> StereoTrajectories:
    """Left and right eye trajectories of a rig camera; ``rig``: one for all frames or one per frame."""
    rigs = [rig] * len(camera) if isinstance(rig, StereoRig) else list(rig)
    if len(rigs) != len(camera):
        raise StereoRigError(f"got {len(rigs)} stereo settings for a shot of {len(camera)} frames")
    for r in rigs:
        r.validate()
    eyes = {}
    for eye in EYES:
        Ks, w2cs = zip(*(eye_camera(camera.K[i], camera.w2c[i], rigs[i], eye) for i in range(len(camera))))
        meta = {**camera.meta, "stereo_eye": eye, "stereo_rig": rigs[0].to_dict()}
        eyes[eye] = Trajectory(camera.width, camera.height, camera.fps, np.stack(Ks), np.stack(w2cs), meta).validate()
    return StereoTrajectories(eyes["left"], eyes["right"], rigs)


def check_rig_for_scene(rig: StereoRig, near_depth: float) -> None:
    """Refuse a rig whose interocular distance is absurd for a scene whose nearest surface is ``near_depth``."""
    rig.validate()
    limit = MAX_INTEROCULAR_OVER_NEAR_DEPTH * near_depth
    if rig.interocular > limit:
        raise StereoRigError(
            f"stereo interocular distance {rig.interocular:.4g} is too large for this scene: the nearest "
            f"surface is {near_depth:.4g} away, so at most {limit:.4g} ({MAX_INTEROCULAR_OVER_NEAR_DEPTH:g} x "
            f"the near depth) is accepted; the 1/30 rule gives {near_depth * INTEROCULAR_RULE_FRACTION:.4g}. "
            "Check the scene scale (the engine's lengths are depth units)")


def default_rig(near_depth: float, subject_depth: float, mode: str = "OFFAXIS", pivot: str = "CENTER") -> StereoRig:
    """A comfortable rig for a scene of unknown scale: 1/30 rule for the eyes, converging on the subject."""
    return StereoRig(near_depth * INTEROCULAR_RULE_FRACTION, subject_depth, mode, pivot).validate()
