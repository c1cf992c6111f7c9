"""Stereo exactness: Blender's own multi-view render (Cycles, left and right views) vs the add-on's eyes.

Args: --zip EXTENSION_ZIP --workdir DIR
The camera stands in a room whose walls emit their own world position (+ OFFSET) as colour; Cycles
renders both eyes with a 0.01-pixel filter into float EXR, so each pixel holds the surface point
seen at its centre. Projecting that point with the eye's K and w2c must land on the pixel centre.
One row per configuration: every convergence mode x pivot, plus vertical sensor fit with lens
shift and pixel aspect, a scaled camera object and a moved, rotated, scaled scene root.
"""

import glob
import importlib
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import bpy_harness as h  # noqa: E402

import bpy  # noqa: E402
import numpy as np  # noqa: E402
from mathutils import Matrix  # noqa: E402

ZIP, WORKDIR = h.arg("zip"), h.arg("workdir")
addon = h.install_addon(ZIP)
stereo = importlib.import_module(addon.__name__ + ".stereo")
OFFSET = 50.0  # keeps the emitted colour positive
WIDTH, HEIGHT = 48, 36
#: Cycles places a few samples up to half a pixel off the centre even with a 0.01 px filter; averaging
#: this many keeps that under 0.005 px (4 samples: 0.12 px on a handful of pixels).
SAMPLES = 128


def build_room(scene):
    bpy.ops.mesh.primitive_cube_add(size=1.0)
    room = bpy.context.active_object
    room.scale = (14.0, 11.0, 9.0)
    room.location = (0.4, 1.0, 0.3)
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.6, 3.5, 0.2), rotation=(0.3, 0.5, 0.2))
    inner = bpy.context.active_object  # a tilted box in front: surfaces at several depths and angles
    material = bpy.data.materials.new("position")
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    geometry = nodes.new("ShaderNodeNewGeometry")
    add = nodes.new("ShaderNodeVectorMath")
    add.operation = "ADD"
    add.inputs[1].default_value = (OFFSET, OFFSET, OFFSET)
    emission = nodes.new("ShaderNodeEmission")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(geometry.outputs["Position"], add.inputs[0])
    links.new(add.outputs["Vector"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    for obj in (room, inner):
        obj.data.materials.append(material)


def setup_render(scene):
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = SAMPLES
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.cycles.filter_width = 0.01
    scene.cycles.max_bounces = 0
    scene.render.dither_intensity = 0.0
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.use_multiview = True
    scene.render.views_format = "STEREO_3D"
    # Both views in one top-bottom EXR (left on top), full size each: bpy 4.2 and 4.5 write per-view
    # ("individual") multi-view EXRs that no Blender reads back.
    scene.render.image_settings.views_format = "STEREO_3D"
    scene.render.image_settings.stereo_3d_format.display_mode = "TOPBOTTOM"
    scene.render.image_settings.stereo_3d_format.use_squeezed_frame = False


def read_exr(path):
    image = bpy.data.images.load(path)
    image.reload()
    count = len(image.pixels)  # bpy 4.x loads the buffer on first access; size is (0, 0) before
    w, h = image.size
    assert count == w * h * 4 and count > 0, (path, count, w, h)
    pixels = np.empty(w * h * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return pixels.reshape(h, w, 4)[::-1, :, :3].astype(np.float64) - OFFSET  # bpy rows are bottom-up


def errors_px(points_blender, trajectory, import_matrix):
    """Max distance between a pixel centre and where its rendered surface point projects; min z; share left out."""
    inv = np.linalg.inv(import_matrix)
    h, w = points_blender.shape[:2]
    pts = points_blender.reshape(-1, 3) @ inv[:3, :3].T + inv[:3, 3]
    uv, z = trajectory.camera(0).project(pts)
    j, i = np.mgrid[0:h, 0:w]
    centres = np.stack([i.ravel() + 0.5, j.ravel() + 0.5], axis=1)
    error = np.abs(uv - centres).max(axis=1)
    # A pixel on a silhouette blends two surfaces into a point on neither: leave those out (and count them).
    on_surface = surface_distance(points_blender.reshape(-1, 3)) < 1e-3
    return float(error[on_surface].max()), float(z.min()), float(1.0 - on_surface.mean())


def surface_distance(points):
    """Distance of each point to the nearest face plane of the emitting objects."""
    best = np.full(len(points), np.inf)
    for obj in bpy.data.objects:
        if obj.type != "MESH":
            continue
        m = np.array(obj.matrix_world)
        normal_matrix = np.linalg.inv(m[:3, :3]).T
        for poly in obj.data.polygons:
            n = normal_matrix @ np.array(poly.normal)
            n /= np.linalg.norm(n)
            p = m[:3, :3] @ np.array(poly.center) + m[:3, 3]
            best = np.minimum(best, np.abs((points - p) @ n))
    return best


def check_stereo_render():
    scene = h.reset_scene()
    build_room(scene)
    setup_render(scene)
    scene.render.resolution_x, scene.render.resolution_y = WIDTH, HEIGHT
    cam_data = bpy.data.cameras.new("stereo cam")
    camera = bpy.data.objects.new("stereo cam", cam_data)
    scene.collection.objects.link(camera)
    scene.camera = camera
    camera.location = (0.3, -2.0, 0.6)
    camera.rotation_euler = (1.45, 0.08, 0.2)
    cam_data.lens = 30.0
    cam_data.stereo.interocular_distance = 0.5  # large, so that an error in the eyes shows in pixels
    cam_data.stereo.convergence_distance = 3.0
    import_matrix = np.array(Matrix.Translation((0.5, -0.2, 0.1)) @ Matrix.Rotation(0.4, 4, "Z")
                             @ Matrix.Scale(1.7, 4)) @ addon.mesh_import.AXIS_MATRIX
    configs = [dict(mode=m, pivot=p) for m, p in itertools.product(("OFFAXIS", "PARALLEL", "TOE"),
                                                                     ("LEFT", "CENTER", "RIGHT"))]
    configs += [dict(mode="OFFAXIS", pivot="CENTER", fit="VERTICAL", shift=(0.08, -0.05), aspect=(1.0, 1.5)),
                dict(mode="OFFAXIS", pivot="RIGHT", fit="VERTICAL", size=(36, 48), shift=(-0.05, 0.02)),
                dict(mode="TOE", pivot="LEFT", fit="HORIZONTAL", size=(36, 48), scale=1.6),
                dict(mode="TOE", pivot="CENTER", fit="AUTO", aspect=(2.0, 1.0), scale=0.7)]
    rows, worst = [], 0.0
    for n, config in enumerate(configs):
        cam_data.stereo.convergence_mode, cam_data.stereo.pivot = config["mode"], config["pivot"]
        cam_data.sensor_fit = config.get("fit", "AUTO")
        cam_data.sensor_height = 20.0
        cam_data.shift_x, cam_data.shift_y = config.get("shift", (0.0, 0.0))
        scene.render.resolution_x, scene.render.resolution_y = config.get("size", (WIDTH, HEIGHT))
        scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = config.get("aspect", (1.0, 1.0))
        camera.scale = (config.get("scale", 1.0),) * 3
        bpy.context.view_layer.update()
        eyes = stereo.stereo_trajectories_from_camera(scene, camera, scene.frame_current, scene.frame_current,
                                                      import_matrix)
        scene.render.filepath = os.path.join(WORKDIR, f"config{n:02d}.exr")
        bpy.ops.render.render(write_still=True)
        row = dict(config)
        [path] = glob.glob(os.path.join(WORKDIR, f"config{n:02d}*.exr"))
        packed = read_exr(path)
        half = packed.shape[0] // 2
        for eye, points in (("left", packed[:half]), ("right", packed[half:])):
            error, min_z, left_out = errors_px(points, eyes.eye(eye), import_matrix)
            row[f"{eye}_err_px"], row[f"{eye}_min_z"], row[f"{eye}_silhouette_share"] = error, min_z, left_out
            worst = max(worst, error)
        # The eyes really differ from each other and from the mono camera (the test would pass vacuously otherwise).
        row["eye_gap"] = float(np.abs(eyes.left.w2c[0] - eyes.right.w2c[0]).max()
                               + np.abs(eyes.left.K[0] - eyes.right.K[0]).max())
        rows.append(row)
    return {"max_err_px": worst, "configs": len(rows), "rows": rows}


def check_errors():
    """A stereo take from a scene without stereoscopy, and bad distances: clear messages."""
    scene = h.reset_scene()
    cam_data = bpy.data.cameras.new("mono cam")
    camera = bpy.data.objects.new("mono cam", cam_data)
    scene.collection.objects.link(camera)
    messages = {}
    for name, setup in (("off", lambda: None),
                        ("multiview", lambda: (setattr(scene.render, "use_multiview", True),
                                               setattr(scene.render, "views_format", "MULTIVIEW"))),
                        ("interocular", lambda: (setattr(scene.render, "views_format", "STEREO_3D"),
                                                 setattr(cam_data.stereo, "interocular_distance", 0.0)))):
        setup()
        try:
            stereo.stereo_trajectories_from_camera(scene, camera, 1, 2)
            messages[name] = None
        except addon.camera_math.CameraSettingsError as exc:
            messages[name] = str(exc)
    return messages


def check_strip():
    scene = h.reset_scene()
    path = os.path.join(WORKDIR, "sbs.mp4")  # written by the test on the host
    scene.sequence_editor_create()
    editor = scene.sequence_editor
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    strip = strips.new_movie("take", path, channel=1, frame_start=1)
    stereo.make_stereo_strip(strip, "sbs_half")
    return {"use_multiview": strip.use_multiview, "views_format": strip.views_format,
            "display_mode": strip.stereo_3d_format.display_mode,
            "squeezed": strip.stereo_3d_format.use_squeezed_frame}


def check_take_and_job_options():
    """The take list records IPD, convergence and mode (and they survive a save/reload); job options in depth units."""
    scene = h.reset_scene()
    scene.render.use_multiview = True
    scene.render.views_format = "STEREO_3D"
    cam_data = bpy.data.cameras.new("cam")
    camera = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(camera)
    cam_data.stereo.interocular_distance, cam_data.stereo.convergence_distance = 0.07, 2.5
    cam_data.stereo.convergence_mode, cam_data.stereo.pivot = "TOE", "CENTER"
    root_scale = 2.0  # 2 Blender units per depth unit
    import_matrix = np.array(Matrix.Scale(root_scale, 4)) @ addon.mesh_import.AXIS_MATRIX
    options = stereo.stereo_job_options(scene, camera, 1, 3, import_matrix, layout="tb")
    take = addon.takes.new_take(scene, "stereo0001")
    stereo.record_take_stereo(take, camera, "tb")
    path = os.path.join(WORKDIR, "takes.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    take = addon.takes.find_take(bpy.context.scene, "stereo0001")
    cam_data = bpy.data.cameras["cam"]
    cam_data.stereo.interocular_distance = 0.09
    cam_data.keyframe_insert("stereo.interocular_distance", frame=1)
    cam_data.stereo.interocular_distance = 0.12
    cam_data.keyframe_insert("stereo.interocular_distance", frame=3)
    try:
        stereo.stereo_job_options(bpy.context.scene, bpy.data.objects["cam"], 1, 3, import_matrix)
        animated = None
    except addon.camera_math.CameraSettingsError as exc:
        animated = str(exc)
    return {"options": options, "record": stereo.take_stereo(take), "line": stereo.describe_take_stereo(take),
            "animated": animated}


h.emit(h.run_checks({"stereo_render": check_stereo_render, "errors": check_errors, "strip": check_strip,
                       "take": check_take_and_job_options}))
