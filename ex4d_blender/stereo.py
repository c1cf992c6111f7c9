"""Blender's stereo camera -> the two eye trajectories of a stereo take, and the stereo movie strip.

Reads the settings Blender itself renders the eyes with (Output properties > Stereoscopy: Stereo 3D;
Camera properties > Stereoscopy: mode, interocular and convergence distances, pivot) on every frame
of the shot, and turns them into eyes with the same maths as the engine (``ex4d_engine/stereo_rig.py``,
vendored at build time into ``_engine``).
"""

from __future__ import annotations

import numpy as np

from .camera_math import CameraSettingsError
from ._engine.contract import OPENCV_TO_BLENDER
from .scene_camera import _pause_point_caches, trajectory_from_camera
from ._engine.stereo_rig import StereoRig, StereoRigError, StereoTrajectories, stereo_trajectories

HOW_TO_ENABLE = ("turn it on in Output Properties > Stereoscopy (tick the panel, choose 'Stereo 3D'), then set "
                 "the eyes in Camera Properties > Stereoscopy")

#: Engine stereo layouts -> Blender's movie strip Stereo 3D display mode (and squeezed frame).
STRIP_LAYOUTS = {"sbs": ("SIDEBYSIDE", False), "sbs_half": ("SIDEBYSIDE", True), "tb": ("TOPBOTTOM", False)}


def stereo_problem(scene, camera_object) -> str | None:
    """Why ``camera_object`` cannot give a stereo take in ``scene`` (a sentence), or None."""
    render = scene.render
    if not render.use_multiview:
        return f"Stereoscopy is off for scene '{scene.name}': {HOW_TO_ENABLE}"
    if render.views_format != "STEREO_3D":
        return (f"Stereoscopy is set to Multi-View in scene '{scene.name}'; a stereo take needs 'Stereo 3D' "
                "(Output Properties > Stereoscopy)")
    for view in ("left", "right"):
        if view not in render.views or not render.views[view].use:
            return f"The {view} view is switched off in Output Properties > Stereoscopy; a stereo take needs both"
    if camera_object is None or camera_object.type != "CAMERA":
        return "Pick a camera object for the stereo take"
    return None


def import_scale(import_matrix: np.ndarray) -> float:
    """Blender units per engine depth unit of the imported scene (its uniform root scale)."""
    return float(np.cbrt(np.linalg.det(np.asarray(import_matrix, dtype=np.float64)[:3, :3])))


def rig_of(camera_object) -> StereoRig:
    """The camera's stereo settings at the current frame, in Blender units."""
    data = camera_object.data
    stereo = data.stereo
    ratio = data.sensor_height / data.sensor_width if data.sensor_fit == "VERTICAL" else 1.0
    return StereoRig(float(stereo.interocular_distance), float(stereo.convergence_distance),
                     stereo.convergence_mode, stereo.pivot, float(ratio))


def stereo_trajectories_from_camera(scene, camera_object, frame_start: int, frame_end: int,
                                    import_matrix: np.ndarray = OPENCV_TO_BLENDER,
                                    meta: dict | None = None) -> StereoTrajectories:
    """Both eyes of ``camera_object`` over the scene frames [frame_start, frame_end], engine units.

    Raises CameraSettingsError naming the problem (stereoscopy off, a bad distance, ...).
    """
    problem = stereo_problem(scene, camera_object)
    if problem:
        raise CameraSettingsError(problem)
    camera = trajectory_from_camera(scene, camera_object, frame_start, frame_end, import_matrix, meta)
    to_engine = 1.0 / import_scale(import_matrix)
    saved_frame, saved_subframe = scene.frame_current, scene.frame_subframe
    paused = _pause_point_caches(scene)
    rigs = []
    try:
        for frame in range(frame_start, frame_end + 1):  # the settings may be animated
            scene.frame_set(frame)
            rigs.append(rig_of(camera_object).scaled(to_engine))
    finally:
        scene.frame_set(saved_frame, subframe=saved_subframe)
        for modifier in paused:
            modifier.show_viewport = True
    try:
        eyes = stereo_trajectories(camera, rigs)
    except StereoRigError as exc:
        raise CameraSettingsError(f"Camera '{camera_object.name}': {exc} (Camera Properties > Stereoscopy)") from None
    blender_rig = rig_of(camera_object)
    for trajectory in (eyes.left, eyes.right):
        trajectory.meta["stereo_blender"] = {"interocular_bu": blender_rig.interocular,
                                             "convergence_bu": blender_rig.convergence}
    return eyes


def stereo_job_options(scene, camera_object, frame_start: int, frame_end: int,
                       import_matrix: np.ndarray = OPENCV_TO_BLENDER, layout: str = "sbs",
                       generation: str = "joint") -> dict:
    """``options.stereo`` of an engine job (server/schemas.py StereoOptions), engine depth units.

    The job carries one rig for the shot: animated stereo settings are refused with a clear message
    (the eyes of such a shot are still exact through :func:`stereo_trajectories_from_camera`).
    """
    if layout not in STRIP_LAYOUTS:
        raise CameraSettingsError(f"unknown stereo layout {layout!r}; one of {', '.join(STRIP_LAYOUTS)}")
    eyes = stereo_trajectories_from_camera(scene, camera_object, frame_start, frame_end, import_matrix)
    first = eyes.rigs[0]
    if any(rig != first for rig in eyes.rigs[1:]):
        raise CameraSettingsError(f"Camera '{camera_object.name}' animates its stereo settings; an engine stereo take "
                                  "needs one interocular and convergence distance for the whole shot")
    return {**first.to_dict(), "layout": layout, "generation": generation}


def record_take_stereo(take, camera_object, layout: str) -> dict:
    """Record on a take what the take list shows for a stereo take: IPD, convergence (Blender units), mode."""
    rig = rig_of(camera_object)
    record = {"interocular": float(rig.interocular), "convergence": float(rig.convergence), "mode": rig.mode,
              "pivot": rig.pivot, "layout": layout}
    take["stereo"] = record  # an ID property: saved in the .blend with the take
    return record


def record_eye_paths(take, paths: dict) -> None:
    """Record where each eye's own video was saved (``left_path``/``right_path``; the strip plays the packed pair)."""
    record = take.get("stereo")
    if record is not None:
        for eye, path in paths.items():
            record[f"{eye}_path"] = path


def take_stereo(take) -> dict | None:
    """The stereo record of a take, or None for a mono take."""
    record = take.get("stereo")
    return None if record is None else {key: record[key] for key in record.keys()}


def describe_take_stereo(take) -> str:
    """One line for the take list, e.g. 'Stereo OFFAXIS, IPD 0.065, convergence 1.95 (sbs)'."""
    record = take_stereo(take)
    if record is None:
        return ""
    return (f"Stereo {record['mode']}, IPD {record['interocular']:.4g}, convergence {record['convergence']:.4g} "
            f"({record['layout']})")


def make_stereo_strip(strip, layout: str) -> None:
    """Mark a movie strip holding a packed stereo video as Blender multi-view (Stereo 3D) with ``layout``."""
    if layout not in STRIP_LAYOUTS:
        raise CameraSettingsError(f"unknown stereo layout {layout!r}; one of {', '.join(STRIP_LAYOUTS)}")
    display_mode, squeezed = STRIP_LAYOUTS[layout]
    strip.use_multiview = True
    strip.views_format = "STEREO_3D"
    strip.stereo_3d_format.display_mode = display_mode
    strip.stereo_3d_format.use_squeezed_frame = squeezed
