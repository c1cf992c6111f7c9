"""Issue 19 checks in one Blender process: skirt toggle, framing, clip, shot view, shot coverage.

Args: --zip EXTENSION_ZIP --package ENGINE_SCENE_PACKAGE --workdir DIR
Prints EX4D_RESULT {check name: {"ok", "value" | "error", "s"}}. The coverage check writes
DIR/coverage_trajectory.json (the shot as the add-on sends it) for the engine side of the test.
"""

import io
import json
import os
import sys
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
import bpy_harness as h  # noqa: E402

import bpy  # noqa: E402
import numpy as np  # noqa: E402

ZIP, PACKAGE, WORKDIR = h.arg("zip"), h.arg("package"), h.arg("workdir")
addon = h.install_addon(ZIP)
with zipfile.ZipFile(PACKAGE) as archive:
    INFO = json.loads(archive.read("scene.json"))
    with archive.open("mesh.npz") as npz_file:
        MESH = dict(np.load(io.BytesIO(npz_file.read())))


def main_view():
    window = bpy.context.window_manager.windows[0]
    area = max((a for a in window.screen.areas if a.type == "VIEW_3D"), key=lambda a: a.width * a.height)
    return window, area


def world_points(collection, points):
    matrix = addon.mesh_import.import_matrix(collection)
    return np.asarray(points, dtype=np.float64) @ matrix[:3, :3].T + matrix[:3, 3]


def check_import():
    scene = h.reset_scene()
    assert bpy.ops.ex4d.import_scene(filepath=PACKAGE) == {"FINISHED"}
    collection = scene.ex4d.scene_collection
    mesh_object, skirt = collection["ex4d_mesh"], collection["ex4d_skirt"]
    skirt_collection = collection["ex4d_skirt_collection"]
    _window, area = main_view()
    space = area.spaces.active
    bpy.context.view_layer.update()
    hidden_by_default = {"skirt_in_view": skirt.visible_get(viewport=space),
                         "mesh_in_view": mesh_object.visible_get(viewport=space),
                         "skirt_renders": not skirt.hide_render and not skirt_collection.hide_render}
    assert bpy.ops.ex4d.viewport(action="TOGGLE_SKIRT") == {"FINISHED"}
    bpy.context.view_layer.update()
    shown = skirt.visible_get(viewport=space)
    assert bpy.ops.ex4d.viewport(action="TOGGLE_SKIRT") == {"FINISHED"}
    bpy.context.view_layer.update()
    hidden_again = skirt.visible_get(viewport=space)
    # Skirt geometry: every skirt face touches the border ring, no content face does.
    width, height = INFO["width"], INFO["height"]
    ring = addon.mesh_import.border_ring(width, height)
    grid = np.zeros(len(skirt.data.vertices), dtype=np.int32)
    skirt.data.attributes["ex4d_grid_vertex"].data.foreach_get("value", grid)
    skirt_faces = np.zeros(len(skirt.data.polygons) * 3, dtype=np.int32)
    skirt.data.polygons.foreach_get("vertices", skirt_faces)
    content_faces = np.zeros(len(mesh_object.data.polygons) * 3, dtype=np.int32)
    mesh_object.data.polygons.foreach_get("vertices", content_faces)
    # The overlay drives both (one material).
    bpy.ops.ex4d.toggle_overlay()
    overlay_skirt = skirt.data.materials[0].node_tree.nodes["EX4D Overlay Strength"].outputs[0].default_value
    bpy.ops.ex4d.toggle_overlay()
    # The skirt's point cache plays the engine's positions of its vertices.
    scene.frame_set(5)
    evaluated = skirt.evaluated_get(bpy.context.evaluated_depsgraph_get())
    co = np.zeros(len(evaluated.data.vertices) * 3, dtype=np.float32)
    evaluated.data.vertices.foreach_get("co", co)
    with open(collection["ex4d_mesh"].modifiers[0].filepath, "rb") as handle:
        handle.seek(32 + 4 * 12 * width * height)
        frame5 = np.frombuffer(handle.read(12 * width * height), dtype=np.float32).reshape(-1, 3)
    # The content mesh still plays every real vertex; its loose border ring stays off the cache,
    # so its bounds are the real surfaces.
    evaluated_mesh = collection["ex4d_mesh"].evaluated_get(bpy.context.evaluated_depsgraph_get())
    content_co = np.zeros(len(evaluated_mesh.data.vertices) * 3, dtype=np.float32)
    evaluated_mesh.data.vertices.foreach_get("co", content_co)
    content_co = content_co.reshape(-1, 3)
    scene.frame_set(1)
    return {
        "content_cache_err": float(np.abs(content_co[~ring] - frame5[~ring]).max()),
        "content_max_depth": float(content_co[:, 2].max()), "interior_max_depth": float(frame5[~ring][:, 2].max()),
        **hidden_by_default, "shown_after_toggle": shown, "hidden_after_second_toggle": not hidden_again,
        "skirt_faces": len(skirt.data.polygons), "content_faces": len(mesh_object.data.polygons),
        "total_faces": INFO["mesh"]["num_faces"],
        "skirt_faces_touch_ring": bool(ring[grid[skirt_faces.reshape(-1, 3)]].any(axis=1).all()),
        "content_faces_touch_ring": bool(ring[content_faces.reshape(-1, 3)].any(axis=1).any()),
        "skirt_in_own_collection": skirt.name in skirt_collection.objects and skirt.name not in collection.objects,
        "same_material": skirt.data.materials[0] == mesh_object.data.materials[0],
        "overlay_on_skirt": overlay_skirt, "skirt_cache_err": float(np.abs(co.reshape(-1, 3) - frame5[grid]).max()),
    }


def check_framing():
    scene = bpy.context.scene
    collection = scene.ex4d.scene_collection
    _window, area = main_view()
    space = area.spaces.active
    view = space.region_3d
    width, height = INFO["width"], INFO["height"]
    ring = addon.mesh_import.border_ring(width, height)
    content = world_points(collection, MESH["vertices"][~ring])
    skirt_points = world_points(collection, MESH["vertices"][ring])
    low, high = addon.viewport.content_box_world(collection)
    low, high = np.array(low), np.array(high)
    inside = ((content >= low - 1e-6) & (content <= high + 1e-6)).all(axis=1)
    skirt_inside = ((skirt_points >= low - 1e-6) & (skirt_points <= high + 1e-6)).all(axis=1)
    # Where the view stands: content points inside its field of view (a 3D view draws as a 36 mm
    # sensor fitted to its wider side at half its lens: Blender's CAMERA_PARAM_ZOOM_INIT_PERSP = 2).
    rotation = np.array(view.view_rotation.to_matrix())
    forward = -rotation[:, 2]
    eye = np.array(view.view_location) - forward * view.view_distance
    region = next(r for r in area.regions if r.type == "WINDOW")
    wide = 36.0 / space.lens
    tan_x, tan_y = (wide, wide * region.height / region.width) if region.width >= region.height else \
        (wide * region.width / region.height, wide)

    def in_view(points):
        rays = points - eye
        depth = rays @ forward
        return (depth > 0) & (np.abs(rays @ rotation[:, 0]) <= tan_x * depth + 1e-6) \
            & (np.abs(rays @ rotation[:, 1]) <= tan_y * depth + 1e-6)

    clipped = np.clip(content, low, high)  # the content with its outliers pulled into the box
    distances = np.linalg.norm(content - eye, axis=1)
    extent = np.abs((clipped - eye) @ rotation[:, :2]) / ((clipped - eye) @ forward)[:, None]
    near, far = addon.viewport.depth_range_world(collection)
    cameras = {}
    for name, camera in (("source", collection["ex4d_source_camera"]), ("shot", scene.camera)):
        cameras[name] = {"clip": [camera.data.clip_start, camera.data.clip_end],
                         "display_size": camera.data.display_size,
                         "location_err": float((camera.matrix_world.translation
                                                - collection["ex4d_source_camera"].matrix_world.translation).length)}
    return {
        "content_inside_box": float(inside.mean()), "skirt_inside_box": int(skirt_inside.sum()),
        "box": [low.tolist(), high.tolist()], "border_depth": INFO["border_depth"],
        "perspective": view.view_perspective, "content_in_view": float(in_view(content).mean()),
        "clipped_in_view": float(in_view(clipped).mean()),
        "fill": float(max(extent[:, 0].max() / tan_x, extent[:, 1].max() / tan_y)),
        "view_distance": view.view_distance, "nearest": float(distances.min()), "farthest": float(distances.max()),
        "clip": [space.clip_start, space.clip_end], "depth_range": [near, far],
        "content_depth": [float(MESH["vertices"][~ring][:, 2].min()), float(MESH["vertices"][~ring][:, 2].max())],
        "cameras": cameras, "color_type": space.shading.color_type,
        "other_views_framed": all((area.spaces.active.region_3d.view_location - view.view_location).length < 1e-5
                                  for area in addon.viewport.view3d_areas()),
    }


def check_shot_view():
    scene = bpy.context.scene
    collection = scene.ex4d.scene_collection
    window, area = main_view()
    areas_before = len(window.screen.areas)
    region = next(r for r in area.regions if r.type == "WINDOW")
    with bpy.context.temp_override(window=window, area=area, region=region):
        result = bpy.ops.ex4d.viewport(action="SHOT_VIEW")
        again = bpy.ops.ex4d.viewport(action="SHOT_VIEW")  # refreshes the open one, no second split
    shot_areas = [a for a in window.screen.areas if addon.viewport.is_shot_view(a, scene.camera)]
    bpy.context.view_layer.update()
    shot_space = shot_areas[0].spaces.active
    skirt = collection["ex4d_skirt"]
    return {"result": sorted(result), "again": sorted(again), "areas_added": len(window.screen.areas) - areas_before,
            "shot_areas": len(shot_areas), "camera": shot_space.camera.name,
            "perspective": shot_space.region_3d.view_perspective, "shading": shot_space.shading.type,
            "skirt_in_shot_view": skirt.visible_get(viewport=shot_space),
            "skirt_in_main_view": skirt.visible_get(viewport=area.spaces.active),
            "mesh_in_shot_view": collection["ex4d_mesh"].visible_get(viewport=shot_space)}


def key_coverage_shot(scene):
    """Frame 1 at the source; then a dolly right and a pan out of the scene: coverage falls."""
    shot = scene.camera
    shot.rotation_mode = "XYZ"
    shot.keyframe_insert("location", frame=scene.frame_start)
    shot.keyframe_insert("rotation_euler", frame=scene.frame_start)
    shot.location.x += 1.2
    shot.rotation_euler.z -= 0.45
    shot.keyframe_insert("location", frame=scene.frame_end)
    shot.keyframe_insert("rotation_euler", frame=scene.frame_end)
    for fcurve in addon_fcurves(shot):
        for point in fcurve.keyframe_points:
            point.interpolation = "LINEAR"
    return shot


def addon_fcurves(obj):
    action = obj.animation_data.action
    if hasattr(action, "fcurves"):
        return list(action.fcurves)
    return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags for fc in bag.fcurves]


def check_coverage():
    import time

    scene = bpy.context.scene
    collection = scene.ex4d.scene_collection
    shot = key_coverage_shot(scene)
    trajectory = addon.scene_camera.trajectory_from_camera(
        scene, shot, scene.frame_start, scene.frame_end, addon.mesh_import.import_matrix(collection))
    path = os.path.join(WORKDIR, "coverage_trajectory.json")
    trajectory.save(path)
    start = time.perf_counter()
    per_pixel = addon.coverage.estimate_coverage(scene, collection, shot, scene.frame_start, scene.frame_end,
                                                 samples=INFO["width"] * INFO["height"])
    per_pixel_s = time.perf_counter() - start
    start = time.perf_counter()
    result = bpy.ops.ex4d.viewport(action="COVERAGE", threshold_pct=60.0)
    default_s = time.perf_counter() - start
    stored = collection["ex4d_coverage"].to_dict()
    markers = sorted((m.frame, m.name) for m in scene.timeline_markers)
    curve = []
    for frame in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(frame)
        curve.append(scene["ex4d_visible_pct"])
    # A second run over a shorter range leaves no stale markers or keys behind.
    scene.frame_end -= 3
    second = bpy.ops.ex4d.viewport(action="COVERAGE", threshold_pct=60.0, frame_step=2)
    markers_after = sorted((m.frame, m.name) for m in scene.timeline_markers)
    second_stored = collection["ex4d_coverage"].to_dict()
    scene.frame_end += 3
    return {"trajectory": path, "per_pixel": per_pixel, "default": list(stored["visible"]), "result": sorted(result),
            "second": sorted(second), "markers": markers, "markers_after": markers_after, "curve": curve,
            "second_frames": list(second_stored["frames"]), "second_visible": list(second_stored["visible"]),
            "summary": addon.coverage.summary(collection), "per_pixel_s": per_pixel_s, "default_s": default_s,
            "samples": addon.coverage.DEFAULT_SAMPLES}


class RecordingLayout:
    """Stands in for a panel layout: records operators (with the properties set on them) and labels."""

    def __init__(self, record):
        self.record = record

    def __getattr__(self, name):
        if name in ("row", "column", "box", "split"):
            return lambda *a, **k: RecordingLayout(self.record)
        if name == "operator":
            return self._operator
        if name == "label":
            return lambda text="", **k: self.record["labels"].append(text)
        return lambda *a, **k: None

    def __setattr__(self, name, value):
        if name == "record":
            object.__setattr__(self, name, value)

    def _operator(self, idname, text="", **kwargs):
        module, op = idname.split(".")
        assert hasattr(getattr(bpy.ops, module), op), idname
        props = type("Props", (), {})()
        self.record["operators"].append((idname, text, kwargs.get("depress"), props))
        return props


def check_panel():
    """The panel offers the skirt toggle (pressed when shown), framing, the shot view and coverage."""
    scene = bpy.context.scene
    record = {"operators": [], "labels": []}
    addon.ui.EX4D_PT_scene.draw(type("P", (), {"layout": RecordingLayout(record)})(), bpy.context)
    buttons = {getattr(props, "action", idname): [text, depress] for idname, text, depress, props in record["operators"]
               if idname == "ex4d.viewport"}
    return {"buttons": buttons, "coverage_line": [t for t in record["labels"] if "visible" in t],
            "summary": addon.coverage.summary(scene.ex4d.scene_collection)}


def check_reload_keeps_skirt_hidden():
    path = os.path.join(WORKDIR, "viewport.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=path)
    scene = bpy.context.scene
    return {"skirt_visible": addon.viewport.skirt_visible(scene, scene.ex4d.scene_collection)}


h.emit(h.run_checks({
    "import": check_import,
    "framing": check_framing,
    "shot_view": check_shot_view,
    "coverage": check_coverage,
    "panel": check_panel,
    "reload": check_reload_keeps_skirt_hidden,
}))
