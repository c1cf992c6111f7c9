"""WYSIWYG: render the imported DW-mesh with Cycles (CPU) through a keyed shot camera.

Args: --zip EXTENSION_ZIP --package SCENE_PACKAGE --workdir DIR --frames 3,6,9
Writes DIR/trajectory.json (the shot as the add-on sends it) and DIR/blender_<frame>.png.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import bpy_harness as h  # noqa: E402

import bpy  # noqa: E402

ZIP, PACKAGE, WORKDIR = h.arg("zip"), h.arg("package"), h.arg("workdir")
FRAMES = [int(f) for f in h.arg("frames").split(",")]
addon = h.install_addon(ZIP)


def render():
    scene = h.reset_scene()
    assert bpy.ops.ex4d.import_scene(filepath=PACKAGE) == {"FINISHED"}
    collection = scene.ex4d.scene_collection
    shot = scene.camera
    # A dolly right and a small pan, with a lens change: the shot differs from the source on every frame.
    shot.rotation_mode = "XYZ"
    shot.keyframe_insert("location", frame=scene.frame_start)
    shot.keyframe_insert("rotation_euler", frame=scene.frame_start)
    shot.data.keyframe_insert("lens", frame=scene.frame_start)
    shot.location.x += 0.35
    shot.location.z += 0.1
    shot.rotation_euler.z += 0.08
    shot.data.lens *= 1.15
    shot.keyframe_insert("location", frame=scene.frame_end)
    shot.keyframe_insert("rotation_euler", frame=scene.frame_end)
    shot.data.keyframe_insert("lens", frame=scene.frame_end)
    trajectory = addon.scene_camera.trajectory_from_camera(
        scene, shot, scene.frame_start, scene.frame_end, addon.mesh_import.import_matrix(collection))
    trajectory_path = os.path.join(WORKDIR, "trajectory.json")
    trajectory.save(trajectory_path)

    # Cycles CPU, point-like pixel filter and no dithering: one colour per pixel centre, like a rasteriser.
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 8
    scene.cycles.use_denoising = False
    scene.cycles.filter_width = 0.01
    scene.render.film_transparent = True
    scene.render.dither_intensity = 0.0
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.image_settings.color_depth = "8"
    paths = {}
    for frame in FRAMES:
        scene.frame_set(frame)
        scene.render.filepath = os.path.join(WORKDIR, f"blender_{frame}.png")
        bpy.ops.render.render(write_still=True)
        paths[frame] = scene.render.filepath
    return {"trajectory": trajectory_path, "renders": paths,
            "skirt_hidden_in_viewport": bool(collection.get("ex4d_skirt"))
            and not addon.viewport.skirt_visible(scene, collection),
            "size": [scene.render.resolution_x, scene.render.resolution_y]}


h.emit(h.run_checks({"render": render}))
