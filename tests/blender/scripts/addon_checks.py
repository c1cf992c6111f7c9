"""Many add-on checks in one Blender process (run by tests/blender/test_addon.py per bpy version).

Args: --zip EXTENSION_ZIP --package TINY_PACKAGE --workdir DIR --dead-url URL
Prints EX4D_RESULT {check name: {"ok", "value" | "error", "s"}}.
"""

import itertools
import json
import os
import struct
import sys
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
import bpy_harness as h  # noqa: E402

import bpy  # noqa: E402
import numpy as np  # noqa: E402
from bpy_extras.object_utils import world_to_camera_view  # noqa: E402
from mathutils import Matrix, Vector  # noqa: E402

ZIP, PACKAGE, WORKDIR, DEAD_URL = h.arg("zip"), h.arg("package"), h.arg("workdir"), h.arg("dead-url")
addon = h.install_addon(ZIP)
rng = np.random.default_rng(0)


def blender_pixels(scene, camera, points_world):
    """Blender's own projection -> corner-origin pixel coordinates (y down)."""
    width = scene.render.resolution_x * scene.render.resolution_percentage // 100
    height = scene.render.resolution_y * scene.render.resolution_percentage // 100
    out = []
    for p in points_world:
        ndc = world_to_camera_view(scene, camera, Vector(p))
        out.append((ndc.x * width, (1.0 - ndc.y) * height))
    return np.array(out)


def points_in_view(camera, n=20):
    """World points in front of ``camera`` spread across (and a bit beyond) the view."""
    m = np.array(camera.matrix_world.normalized())
    local = np.stack([rng.uniform(-1.5, 1.5, n), rng.uniform(-1.5, 1.5, n), -rng.uniform(2, 8, n)], 1)
    return local @ m[:3, :3].T + m[:3, 3]


def engine_points(import_matrix, points_world):
    inv = np.linalg.inv(import_matrix)
    return points_world @ inv[:3, :3].T + inv[:3, 3]


def call_operator(op, **kwargs):
    """Background bpy raises RuntimeError for an operator that reported an ERROR: return that text."""
    try:
        return sorted(op(**kwargs))
    except RuntimeError as exc:
        return ["ERROR", str(exc)]


def check_install():
    p = bpy.context.preferences.addons[addon.__name__].preferences
    return {"module": addon.__name__, "engine_url": p.engine_url,
            "operators": sorted(n for n in dir(bpy.ops.ex4d) if not n.startswith("_")),
            "torch_loaded": "torch" in sys.modules, "ex4d_engine_loaded": "ex4d_engine" in sys.modules,
            "numpy_modules_at_enable": addon.numpy_modules_at_enable}


def check_camera_exactness():
    scene = h.reset_scene()
    cam_data = bpy.data.cameras.new("cam")
    camera = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(camera)
    scene.camera = camera
    camera.location = (0.3, -4.0, 1.2)
    camera.rotation_euler = (1.3, 0.1, 0.25)
    cam_data.lens, cam_data.sensor_width, cam_data.sensor_height = 27.0, 36.0, 20.0
    # A moved, rotated and uniformly scaled scene root: the engine world is not Blender's.
    import_matrix = np.array(Matrix.Translation((0.5, -0.2, 0.1)) @ Matrix.Rotation(0.4, 4, "Z")
                             @ Matrix.Scale(1.7, 4)) @ addon.mesh_import.AXIS_MATRIX
    rows, worst = [], 0.0
    for fit, size, shift, aspect, pct in itertools.product(
            ("AUTO", "HORIZONTAL", "VERTICAL"), ((640, 360), (360, 640)), ((0.0, 0.0), (0.1, -0.07)),
            ((1.0, 1.0), (2.0, 1.0), (1.0, 1.5)), (100, 50)):
        cam_data.sensor_fit = fit
        cam_data.shift_x, cam_data.shift_y = shift
        scene.render.resolution_x, scene.render.resolution_y = size
        scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = aspect
        scene.render.resolution_percentage = pct
        bpy.context.view_layer.update()
        traj = addon.scene_camera.trajectory_from_camera(scene, camera, 1, 1, import_matrix)
        pts = points_in_view(camera)
        uv_blender = blender_pixels(scene, camera, pts)
        uv_engine, z = traj.camera(0).project(engine_points(import_matrix, pts))
        error = float(np.abs(uv_engine - uv_blender).max())
        worst = max(worst, error)
        rows.append({"fit": fit, "size": size, "shift": shift, "aspect": aspect, "pct": pct,
                     "width": traj.width, "height": traj.height, "max_err_px": error, "min_z": float(z.min())})
    return {"max_err_px": worst, "configs": len(rows), "rows": rows}


def check_keyed_rig():
    scene = h.reset_scene()
    scene.frame_start, scene.frame_end = 1, 24
    scene.render.resolution_x, scene.render.resolution_y = 480, 270
    parent = bpy.data.objects.new("dolly", None)
    target = bpy.data.objects.new("target", None)
    cam_data = bpy.data.cameras.new("cam")
    camera = bpy.data.objects.new("cam", cam_data)
    for obj in (parent, target, camera):
        scene.collection.objects.link(obj)
    camera.parent = parent
    camera.location = (0.0, -3.0, 0.5)
    target.location = (0.0, 2.0, 0.3)
    constraint = camera.constraints.new("TRACK_TO")
    constraint.target = target
    constraint.track_axis, constraint.up_axis = "TRACK_NEGATIVE_Z", "UP_Y"
    for frame, x, lens in ((1, -1.0, 24.0), (24, 1.5, 60.0)):
        parent.location = (x, 0.0, 0.2 * x)
        parent.keyframe_insert("location", frame=frame)
        cam_data.lens = lens
        cam_data.keyframe_insert("lens", frame=frame)
    cam_data.shift_x = 0.05
    scene.frame_set(7)
    traj = addon.scene_camera.trajectory_from_camera(scene, camera, 1, 24)
    frame_after = scene.frame_current
    worst, basis_gap = 0.0, 0.0
    for i, frame in enumerate(range(1, 25)):
        scene.frame_set(frame)
        pts = points_in_view(camera, 10)
        uv_engine, _ = traj.camera(i).project(engine_points(addon.mesh_import.AXIS_MATRIX, pts))
        worst = max(worst, float(np.abs(uv_engine - blender_pixels(scene, camera, pts)).max()))
        basis_gap = max(basis_gap, float(np.abs(np.array(camera.matrix_world) - np.array(camera.matrix_basis)).max()))
    # The camera must look at the target on every frame (Track-To counted).
    centre_err = []
    for i in range(len(traj)):
        uv, z = traj.camera(i).project(engine_points(addon.mesh_import.AXIS_MATRIX, np.array([[0.0, 2.0, 0.3]])))
        centre_err.append(float(np.abs(uv[0] - traj.K[i][:2, 2]).max()))
    return {"frames": len(traj), "max_err_px": worst, "matrix_world_vs_basis": basis_gap,
            "fx_first": traj.K[0][0, 0], "fx_last": traj.K[-1][0, 0], "target_centre_err_px": max(centre_err),
            "fps": traj.fps, "frame_after": frame_after}


def check_non_perspective():
    scene = h.reset_scene()
    cam_data = bpy.data.cameras.new("ortho")
    cam_data.type = "ORTHO"
    camera = bpy.data.objects.new("ortho", cam_data)
    scene.collection.objects.link(camera)
    try:
        addon.scene_camera.trajectory_from_camera(scene, camera, 1, 2)
    except addon.camera_math.CameraSettingsError as exc:
        return str(exc)
    return None


def read_pc2(path):
    with open(path, "rb") as handle:
        header = handle.read(32)
        _, points, _, _, samples = struct.unpack("<iiffi", header[12:])
        return np.frombuffer(handle.read(), dtype=np.float32).reshape(samples, points, 3)


def check_import_package():
    scene = h.reset_scene()
    with zipfile.ZipFile(PACKAGE) as archive:
        info = json.loads(archive.read("scene.json"))
    result = bpy.ops.ex4d.import_scene(filepath=PACKAGE, scene_id="s_test")
    collection = scene.ex4d.scene_collection
    mesh_object = collection["ex4d_mesh"]
    positions = read_pc2(mesh_object.modifiers[0].filepath)
    eval_err = []
    for frame in (1, 3, info["num_frames"]):
        scene.frame_set(frame)
        evaluated = mesh_object.evaluated_get(bpy.context.evaluated_depsgraph_get())
        mesh = evaluated.to_mesh()
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        eval_err.append(float(np.abs(co.reshape(-1, 3) - positions[frame - 1]).max()))
        evaluated.to_mesh_clear()
    # World position of a vertex = import matrix @ engine coordinates.
    matrix = addon.mesh_import.import_matrix(collection)
    world_err = float(np.abs(np.array(mesh_object.matrix_world) - matrix).max())
    uv = np.empty(len(mesh_object.data.loops) * 2, dtype=np.float32)
    mesh_object.data.uv_layers["source_uv"].data.foreach_get("uv", uv)
    loop_vertex = np.empty(len(mesh_object.data.loops), dtype=np.int32)
    mesh_object.data.loops.foreach_get("vertex_index", loop_vertex)
    width, height = info["width"], info["height"]
    expected_uv = np.stack([(loop_vertex % width + 0.5) / width, 1 - (loop_vertex // width + 0.5) / height], 1)
    source = collection["ex4d_source_camera"]
    shot = scene.camera
    src_traj = addon.scene_camera.trajectory_from_camera(scene, source, 1, 1, matrix)
    shot_traj = addon.scene_camera.trajectory_from_camera(scene, shot, 1, 1, matrix)
    # Move and scale the root: mesh and source camera follow, the engine view does not change.
    root = collection["ex4d_root"]
    root.location = (2.0, -1.0, 0.5)
    root.rotation_euler = (0.1, 0.2, 0.3)
    root.scale = (2.5, 2.5, 2.5)
    bpy.context.view_layer.update()
    moved = addon.scene_camera.trajectory_from_camera(scene, source, 1, 1, addon.mesh_import.import_matrix(collection))
    # Extraction pauses the point cache; it must be back on and play the current frame afterwards.
    bpy.context.view_layer.update()
    evaluated = mesh_object.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = evaluated.to_mesh()
    co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    after_err = float(np.abs(co.reshape(-1, 3) - positions[scene.frame_current - 1]).max())
    evaluated.to_mesh_clear()
    cache_on = mesh_object.modifiers[0].show_viewport
    mesh_valid = not mesh_object.data.validate(verbose=False)  # True would mean it had to fix something
    image = mesh_object.data.materials[0].node_tree.nodes["Image Texture"].image
    return {
        "result": sorted(result), "objects": sorted(o.name for o in collection.objects),
        "resolution": [scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage],
        "fps": scene.render.fps / scene.render.fps_base, "frame_range": [scene.frame_start, scene.frame_end],
        "num_vertices": len(mesh_object.data.vertices), "num_faces": len(mesh_object.data.polygons),
        "eval_err": eval_err, "world_err": world_err, "uv_err": float(np.abs(uv.reshape(-1, 2) - expected_uv).max()),
        "K_source": src_traj.K[0].tolist(), "w2c_source": src_traj.w2c[0].tolist(),
        "K_shot": shot_traj.K[0].tolist(), "w2c_shot": shot_traj.w2c[0].tolist(),
        "w2c_source_after_move": moved.w2c[0].tolist(), "scene_id": collection["ex4d_scene_id"],
        "after_extraction": [cache_on, after_err, scene.frame_current], "mesh_valid": mesh_valid,
        "image_source": image.source, "image_frames": image.frame_duration,
        "view_transform": scene.view_settings.view_transform, "expected": info,
    }


def check_overlay():
    scene = bpy.context.scene  # the package imported above
    collection = scene.ex4d.scene_collection
    mesh_object = collection["ex4d_mesh"]
    with zipfile.ZipFile(PACKAGE) as archive, archive.open("mesh.npz") as npz_file:
        import io
        hidden = np.load(io.BytesIO(npz_file.read()))["hidden"]
    width, height = collection["ex4d_width"], collection["ex4d_height"]
    # The visibility sequence: file 0003 is frame 3, one pixel per grid vertex (rows top first).
    image = bpy.data.images.load(os.path.join(collection["ex4d_folder"], "visibility", "visible_0003.png"))
    pixels = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    visible = pixels.reshape(height, width, 4)[::-1, :, 0] > 0.5  # Blender stores rows bottom first
    nodes = mesh_object.data.materials[0].node_tree.nodes
    visibility_node = nodes["EX4D Visibility"]
    bpy.ops.ex4d.toggle_overlay()
    strength = nodes["EX4D Overlay Strength"].outputs[0].default_value
    bpy.ops.ex4d.toggle_overlay()
    strength_off = nodes["EX4D Overlay Strength"].outputs[0].default_value
    return {"matches_frame_3": bool(np.array_equal(~visible.ravel(), hidden[2])),
            "differs_from_frame_1": bool(not np.array_equal(hidden[0], hidden[2])),
            "hidden_count": int(hidden[2].sum()), "strength_on": strength, "strength_off": strength_off,
            "sequence": [visibility_node.image.source, visibility_node.image_user.frame_duration,
                         visibility_node.image.colorspace_settings.name]}


def check_strips():
    scene = bpy.context.scene
    video = os.path.join(scene.ex4d.scene_collection["ex4d_folder"], "source.mp4")
    first = addon.sequencer.add_movie_strip(scene, video, "take A", 1, 5, {"take": "k1", "seed": 3})
    second = addon.sequencer.add_movie_strip(scene, video, "take B", 1, 5, {"take": "k2"})
    trimmed = addon.sequencer.add_movie_strip(scene, video, "short", 10, 3, {"take": "k3"})
    editor = scene.sequence_editor
    return {
        "collection_attr": "strips" if hasattr(editor, "strips") else "sequences",
        "type": first.type, "rna": type(first).__name__,
        "first": [first.channel, first.frame_final_start, first.frame_final_end, first.frame_final_duration],
        "second": [second.channel, second.frame_final_start, second.frame_final_duration],
        "trimmed": [trimmed.channel, trimmed.frame_final_start, trimmed.frame_final_duration],
        "meta": [first.get("ex4d_take"), first.get("ex4d_seed")], "warning": first.get("ex4d_warning"),
        "found": addon.sequencer.find_strip(scene, "take B") is not None,
    }


def check_trajectory_io():
    scene = bpy.context.scene
    shot = scene.camera
    shot.location.x += 0.3
    shot.keyframe_insert("location", frame=1)
    shot.location.x += 0.5
    shot.keyframe_insert("location", frame=5)
    shot.data.shift_x = 0.04
    matrix = addon.mesh_import.import_matrix(scene.ex4d.scene_collection)
    original = addon.scene_camera.trajectory_from_camera(scene, shot, 1, 5, matrix)
    out = {}
    for fmt, name in (("ex4d", "path.json"), ("nerfstudio", "camera_path.json"), ("colmap", "colmap")):
        path = os.path.join(WORKDIR, name)
        scene.camera = shot
        result = bpy.ops.ex4d.export_trajectory(filepath=path, format=fmt, allow_lossy=(fmt == "nerfstudio"))
        assert result == {"FINISHED"}, (fmt, result)
        result = bpy.ops.ex4d.import_trajectory(filepath=path, format=fmt)
        assert result == {"FINISHED"}, (fmt, result)
        back = addon.scene_camera.trajectory_from_camera(scene, scene.camera, 1, 5, matrix)
        out[fmt] = {"w2c_err": float(np.abs(back.w2c - original.w2c).max()),
                    "K_err": float(np.abs(back.K - original.K).max()), "frames": len(back),
                    "focal_err": float(np.abs(back.K[:, [0, 1], [0, 1]] - original.K[:, [0, 1], [0, 1]]).max()),
                    "camera": scene.camera.name}
    scene.camera = shot
    return out


def check_engine_down():
    scene = bpy.context.scene
    p = bpy.context.preferences.addons[addon.__name__].preferences
    p.engine_url, p.timeout_s = DEAD_URL, 3.0
    connection = call_operator(bpy.ops.ex4d.test_connection)
    verdict, state = p.connection_verdict, p.connection_state
    p.connection_state = "ok"  # a stale verdict: Generate must check again, not trust it
    takes_before = len(scene.ex4d.takes)
    scene.ex4d.scene_collection["ex4d_scene_id"] = "s_test"
    result = call_operator(bpy.ops.ex4d.generate)
    return {"connection": connection, "verdict": verdict, "state": state, "generate": result,
            "takes_added": len(scene.ex4d.takes) - takes_before, "state_after": p.connection_state,
            "line": addon.prefs.connection_line(p)}


def check_bad_packages():
    """Broken packages: a clear error naming the problem, and nothing left in the data folder."""
    h.reset_scene()
    data_dir = addon.prefs.data_dir()
    before = sorted(os.listdir(data_dir)) if os.path.isdir(data_dir) else []
    with zipfile.ZipFile(PACKAGE) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}

    def write(name, drop=None, replace=None):
        path = os.path.join(WORKDIR, name)
        with zipfile.ZipFile(path, "w") as out:
            for member, data in members.items():
                if member != drop:
                    out.writestr(member, (replace or {}).get(member, data))
        return path

    not_zip = os.path.join(WORKDIR, "not_a_package.zip")
    with open(not_zip, "w") as handle:
        handle.write("hello")
    info = json.loads(members["scene.json"])
    cases = {
        "not_zip": not_zip,
        "missing_file": os.path.join(WORKDIR, "nope.ex4dscene.zip"),
        "no_pc2": write("no_pc2.zip", drop="positions.pc2"),
        "no_scene_json": write("no_json.zip", drop="scene.json"),
        "wrong_version": write("v2.zip", replace={"scene.json": json.dumps({**info, "version": 2})}),
        "wrong_frames": write("frames.zip", replace={"scene.json": json.dumps({**info, "num_frames": 7})}),
        "truncated_pc2": write("trunc.zip", replace={"positions.pc2": members["positions.pc2"][:-12]}),
    }
    out = {name: call_operator(bpy.ops.ex4d.import_scene, filepath=path) for name, path in cases.items()}
    after = sorted(os.listdir(data_dir)) if os.path.isdir(data_dir) else []
    return {"results": out, "left_behind": sorted(set(after) - set(before)),
            "objects": len(bpy.data.objects), "collections": len(bpy.data.collections)}


def check_unregister():
    import addon_utils

    addon_utils.disable(addon.__name__)
    return {"scene_prop": hasattr(bpy.types.Scene, "ex4d"), "operator": hasattr(bpy.ops.ex4d, "generate")
            and "generate" in dir(bpy.ops.ex4d), "panel": hasattr(bpy.types, "EX4D_PT_main")}


def check_version_mismatch():
    """An engine speaking another contract version (the real one only speaks v1, so a stub answers here)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "ok", "version": "9.0.0", "contract_version": 2}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    p = bpy.context.preferences.addons[addon.__name__].preferences
    p.engine_url = f"http://127.0.0.1:{server.server_port}"
    try:
        return {"connection": call_operator(bpy.ops.ex4d.test_connection), "verdict": p.connection_verdict}
    finally:
        server.shutdown()


class FakeLayout:
    """Records what a draw() asks for and checks every property and operator name exists."""

    def __init__(self, errors):
        self.errors = errors
        self.calls = 0

    def __getattr__(self, name):
        if name in ("row", "column", "box", "split", "column_flow", "grid_flow"):
            return lambda *a, **k: FakeLayout(self.errors)
        if name in ("scale_y", "scale_x", "enabled", "active", "alert"):
            return 1
        return lambda *a, **k: self._check(name, a, k)

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)

    def _check(self, name, args, kwargs):
        self.calls += 1
        if name == "prop":
            data, prop = args[0], args[1]
            if not (prop.startswith('["') or prop in data.bl_rna.properties):
                self.errors.append(f"prop {prop!r} not on {data!r}")
        if name == "operator":
            module, op = args[0].split(".")
            if not hasattr(getattr(bpy.ops, module), op):
                self.errors.append(f"operator {args[0]} does not exist")
            return type("Props", (), {})()
        if name == "template_list":
            data, prop, active_data, active_prop = args[2], args[3], args[4], args[5]
            for d, pname in ((data, prop), (active_data, active_prop)):
                if pname not in d.bl_rna.properties:
                    self.errors.append(f"template_list {pname!r} not on {d!r}")
        return None


def check_ui_draw():
    """Every panel, the take list and the preferences draw without error and name real properties."""
    errors = []
    scene = bpy.context.scene
    take = addon.takes.new_take(scene, "uidraw")
    take.status = "running"
    panels = [cls for cls in addon.ui.classes if issubclass(cls, bpy.types.Panel)]
    for status in ("running", "succeeded", "failed"):
        take.status, take.message = status, "a long message " * 8
        for cls in panels:
            panel = type("P", (), {"layout": FakeLayout(errors)})()
            cls.draw(panel, bpy.context)
    prefs_obj = bpy.context.preferences.addons[addon.__name__].preferences
    holder = type("Prefs", (), {"layout": FakeLayout(errors), "bl_rna": prefs_obj.bl_rna})()
    for name in ("engine_url", "token", "timeout_s", "data_dir", "engine_command", "engine_data_dir",
                 "connection_verdict", "connection_state", "connection_short"):
        setattr(holder, name, getattr(prefs_obj, name))
    addon.prefs.EX4D_AddonPreferences.draw(holder, bpy.context)
    for status in ("running", "succeeded", "failed"):
        take.status = status
        addon.ui.EX4D_UL_takes.draw_item(None, bpy.context, FakeLayout(errors), scene.ex4d, take, 0, None, "", 0)
    scene.ex4d.takes.remove(len(scene.ex4d.takes) - 1)
    return {"errors": errors, "panels": sorted(cls.__name__ for cls in panels)}


def check_takes_survive_reload():
    scene = bpy.context.scene
    take = addon.takes.new_take(scene, "reload1")
    take.job_id, take.status, take.result_path, take.seed = "j_123", "succeeded", "/tmp/x.mp4", 7
    count = len(scene.ex4d.takes)
    path = os.path.join(WORKDIR, "takes.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=path)
    scene = bpy.context.scene
    reloaded = addon.takes.find_take(scene, "reload1")
    return {"count_before": count, "count_after": len(scene.ex4d.takes),
            "take": [reloaded.job_id, reloaded.status, reloaded.result_path, reloaded.seed] if reloaded else None,
            "collection_kept": addon.takes.is_ex4d_collection(scene.ex4d.scene_collection)}


results = h.run_checks({
    "install": check_install,
    "camera_exactness": check_camera_exactness,
    "keyed_rig": check_keyed_rig,
    "non_perspective": check_non_perspective,
    "import_package": check_import_package,
    "overlay": check_overlay,
    "strips": check_strips,
    "trajectory_io": check_trajectory_io,
    "engine_down": check_engine_down,
    "version_mismatch": check_version_mismatch,
    "ui_draw": check_ui_draw,
    "takes_survive_reload": check_takes_survive_reload,
    "bad_packages": check_bad_packages,
    "unregister": check_unregister,
})
results["_versions"] = {"blender": bpy.app.version_string, "numpy": np.__version__,
                        "torch_loaded": "torch" in sys.modules}
h.emit(results)
