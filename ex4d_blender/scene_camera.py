"""Blender cameras <-> contract trajectories: the one place that converts between the two.

A trajectory is read from the *evaluated* camera (``frame_set`` then ``matrix_world`` and the
camera data), so parents, constraints, drivers and shake add-ons count, not only the camera's
own keyframes. ``import_matrix`` maps engine world to Blender world (see
``mesh_import.import_matrix``); it is applied to every camera going out and coming in.
"""

from __future__ import annotations

import bpy
import numpy as np

from .camera_math import BlenderCameraSettings, CameraSettingsError, blender_settings_from_intrinsics, \
    intrinsics_from_blender
from ._engine.contract import OPENCV_TO_BLENDER, Trajectory, blender_matrix_world_to_engine_w2c, \
    engine_to_blender_matrix_world


def camera_settings(scene, camera_object) -> BlenderCameraSettings:
    """The projection-relevant settings of ``camera_object`` at the current frame."""
    data = camera_object.data
    if data.type != "PERSP":
        raise CameraSettingsError(
            f"Camera '{camera_object.name}' is {data.type.lower()}; EX-4D needs a perspective camera "
            "(Camera properties > Lens > Type: Perspective)")
    render = scene.render
    return BlenderCameraSettings(
        lens_mm=data.lens, sensor_width_mm=data.sensor_width, sensor_height_mm=data.sensor_height,
        sensor_fit=data.sensor_fit, shift_x=data.shift_x, shift_y=data.shift_y,
        resolution_x=render.resolution_x, resolution_y=render.resolution_y,
        resolution_percentage=render.resolution_percentage,
        pixel_aspect_x=render.pixel_aspect_x, pixel_aspect_y=render.pixel_aspect_y)


def scene_fps(scene) -> float:
    return scene.render.fps / scene.render.fps_base


def trajectory_from_camera(scene, camera_object, frame_start: int, frame_end: int,
                           import_matrix: np.ndarray = OPENCV_TO_BLENDER, meta: dict | None = None) -> Trajectory:
    """Evaluate ``camera_object`` on every scene frame in [frame_start, frame_end] -> Trajectory.

    Restores the scene's current frame afterwards. Raises CameraSettingsError for a
    non-perspective camera or a render size that changes within the range.
    """
    if camera_object is None or camera_object.type != "CAMERA":
        name = getattr(camera_object, "name", None)
        raise CameraSettingsError(f"Pick a camera object for the shot (got {name or 'nothing'})")
    if frame_end < frame_start:
        raise CameraSettingsError(f"Frame range is empty: start {frame_start} > end {frame_end}")
    import_matrix = np.asarray(import_matrix, dtype=np.float64)
    scale = np.linalg.norm(import_matrix[:3, :3], axis=0)
    if np.ptp(scale) > 1e-6 * scale.max():
        raise CameraSettingsError(f"The EX-4D scene root is scaled non-uniformly ({np.round(scale, 4).tolist()}); "
                                  "only uniform scale keeps the camera consistent with the scene")
    saved_frame, saved_subframe = scene.frame_current, scene.frame_subframe
    paused = _pause_point_caches(scene)
    frames = range(frame_start, frame_end + 1)
    Ks = np.empty((len(frames), 3, 3))
    matrix_world = np.empty((len(frames), 4, 4))
    lens_mm = np.empty(len(frames))
    size = None
    try:
        for i, frame in enumerate(frames):
            scene.frame_set(frame)
            settings = camera_settings(scene, camera_object)
            if size is None:
                size = (settings.width, settings.height)
            elif size != (settings.width, settings.height):
                raise CameraSettingsError(f"Render size changes within the shot: {size[0]}x{size[1]} at frame "
                                          f"{frame_start}, {settings.width}x{settings.height} at frame {frame}")
            Ks[i] = intrinsics_from_blender(settings)
            matrix_world[i] = np.array(camera_object.matrix_world)
            lens_mm[i] = settings.lens_mm
    finally:
        scene.frame_set(saved_frame, subframe=saved_subframe)
        for modifier in paused:  # tags the meshes; they re-evaluate at the next depsgraph update
            modifier.show_viewport = True
    w2c = np.stack([blender_matrix_world_to_engine_w2c(m, import_matrix) for m in matrix_world])
    info = {
        "source": "blender",
        "blender_version": bpy.app.version_string,
        "camera": camera_object.name,
        "scene_frame_start": frame_start,
        "scene_frame_end": frame_end,
        "import_matrix": import_matrix.tolist(),
        "lens_mm": lens_mm.tolist(),
    }
    info.update(meta or {})
    return Trajectory(size[0], size[1], scene_fps(scene), Ks, w2c, info).validate()


def _pause_point_caches(scene) -> list:
    """Switch off the imported meshes' point caches while frames are stepped through.

    Otherwise every ``frame_set`` re-reads a frame of the PC2 (400k vertices at 832x480, ~5 ms);
    the camera cannot depend on the deformed geometry, only on object transforms, which still
    evaluate. Returns the modifiers to switch back on.
    """
    paused = []
    for obj in scene.objects:
        if obj.type == "MESH" and "ex4d_overlay" in obj:
            for modifier in obj.modifiers:
                if modifier.type == "MESH_CACHE" and modifier.show_viewport:
                    modifier.show_viewport = False
                    paused.append(modifier)
    return paused


def keyed_camera_from_trajectory(scene, trajectory: Trajectory, name: str, frame_start: int,
                                 import_matrix: np.ndarray = OPENCV_TO_BLENDER, collection=None):
    """Create a camera keyed on every frame to follow ``trajectory`` (lens and shift animated).

    Sets the scene resolution and pixel aspect from the trajectory (Blender holds them per scene).
    """
    data = bpy.data.cameras.new(name)
    camera_object = bpy.data.objects.new(name, data)
    (collection or scene.collection).objects.link(camera_object)
    camera_object.rotation_mode = "QUATERNION"  # no Euler flips between keys
    scene.render.resolution_x, scene.render.resolution_y = trajectory.width, trajectory.height
    scene.render.resolution_percentage = 100
    first = blender_settings_from_intrinsics(trajectory.K[0], trajectory.width, trajectory.height)
    scene.render.pixel_aspect_x = first["pixel_aspect_x"]
    scene.render.pixel_aspect_y = first["pixel_aspect_y"]
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width = first["sensor_width"]
    from mathutils import Matrix

    previous = None
    for i in range(len(trajectory)):
        frame = frame_start + i
        settings = blender_settings_from_intrinsics(trajectory.K[i], trajectory.width, trajectory.height)
        camera_object.matrix_world = Matrix(
            engine_to_blender_matrix_world(trajectory.w2c[i], import_matrix).tolist())
        if previous is not None and camera_object.rotation_quaternion.dot(previous) < 0:
            camera_object.rotation_quaternion.negate()  # shortest path between neighbouring keys
        previous = camera_object.rotation_quaternion.copy()
        data.lens, data.shift_x, data.shift_y = settings["lens"], settings["shift_x"], settings["shift_y"]
        camera_object.keyframe_insert("location", frame=frame)
        camera_object.keyframe_insert("rotation_quaternion", frame=frame)
        for prop in ("lens", "shift_x", "shift_y"):
            data.keyframe_insert(prop, frame=frame)
    return camera_object
