"""Before/after pictures of an imported EX-4D scene in the 3D view (docs/blender.md, issue 19).

Two ways to run it:

* ``--mode gui`` in a real Blender window (e.g. Xvfb): ``blender --factory-startup --python
  viewport_screenshots.py -- --zip EXT.zip --package P.ex4dscene.zip --out DIR --mode gui``. Each
  picture is a screenshot of the whole X screen (ImageMagick ``import -window root``; Blender's own
  screenshot operator is black on Xvfb), taken from a timer once the window has drawn. numpy is
  taken from ``--numpy-path`` (default /opt/ex4d-numpy) when Blender has none.
* ``--mode render`` with the ``bpy`` wheel (no window): the 3D view's viewpoint is rendered with
  Workbench (solid shading, texture colour, studio light: what the solid 3D view draws) and the shot
  view with Cycles.

Pictures: ``before.png`` (the old import: skirt and back caps shown, the view left where it was),
``after.png`` (this import: skirt hidden, view framed on the content), ``shot_view.png`` (after +
the live shot view split off and the shot coverage markers on the timeline, GUI) or the shot camera's
render (render mode).
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import bpy_harness as h  # noqa: E402

import bpy  # noqa: E402
from mathutils import Matrix, Vector  # noqa: E402

ZIP, PACKAGE, OUT, MODE = h.arg("zip"), h.arg("package"), h.arg("out"), h.arg("mode", "render")
NUMPY_PATH = h.arg("numpy-path", "/opt/ex4d-numpy")  # a distribution's Blender may lack numpy
SHOT_FRAME = 30
os.makedirs(OUT, exist_ok=True)
if os.path.isdir(NUMPY_PATH) and NUMPY_PATH not in sys.path:
    sys.path.append(NUMPY_PATH)


def main_area():
    window = bpy.context.window_manager.windows[0]
    areas = [a for a in window.screen.areas if a.type == "VIEW_3D"]
    return window, max(areas, key=lambda a: a.width * a.height)


def save_view(area):
    view = area.spaces.active.region_3d
    return view.view_location.copy(), view.view_rotation.copy(), view.view_distance


def restore_view(area, saved):
    view = area.spaces.active.region_3d
    view.view_location, view.view_rotation, view.view_distance = saved


def orbit_shot(scene, collection):
    """The shot camera swings 40 degrees around the content: coverage falls towards the end."""
    shot = scene.camera
    low, high = addon.viewport.content_box_world(collection)
    centre = (low + high) / 2
    pivot = bpy.data.objects.new("EX4D Orbit Pivot", None)
    collection.objects.link(pivot)
    pivot.location = (shot.location.x, centre.y, shot.location.z)
    shot.parent = pivot
    shot.matrix_parent_inverse = Matrix.Translation(-pivot.location)
    pivot.rotation_mode = "XYZ"
    pivot.keyframe_insert("rotation_euler", frame=scene.frame_start)
    pivot.rotation_euler.z = 0.7
    pivot.keyframe_insert("rotation_euler", frame=scene.frame_end)
    return shot


def import_scene():
    addon_module = h.install_addon(ZIP)
    window, area = main_area()
    startup_view = save_view(area)
    region = next(r for r in area.regions if r.type == "WINDOW")
    with bpy.context.temp_override(window=window, area=area, region=region):
        assert bpy.ops.ex4d.import_scene(filepath=PACKAGE) == {"FINISHED"}
    return addon_module, startup_view


def state_before(scene, collection, area, startup_view):
    addon.viewport.set_skirt_visible(scene, collection, True)
    restore_view(area, startup_view)
    space = area.spaces.active
    space.shading.type = "SOLID"
    space.clip_start, space.clip_end = 0.01, 1000.0  # Blender's defaults, as before the fix


def state_after(scene, collection, area):
    addon.viewport.set_skirt_visible(scene, collection, False)
    addon.viewport.frame_view(area, collection)


# ---------------------------------------------------------------------- render mode
def render_view(scene, area, path):
    """Workbench render from the 3D view's own viewpoint and field of view."""
    space = area.spaces.active
    view = space.region_3d
    data = bpy.data.cameras.new("screenshot")
    data.lens = space.lens / 2  # a 3D view draws at half its lens on a 36 mm sensor
    data.sensor_fit, data.sensor_width = "AUTO", 36.0
    data.clip_start, data.clip_end = space.clip_start, space.clip_end
    camera = bpy.data.objects.new("screenshot", data)
    scene.collection.objects.link(camera)
    # view_matrix is only refreshed when the view draws: build the viewpoint from the view's state.
    eye = view.view_location + view.view_rotation @ Vector((0.0, 0.0, view.view_distance))
    camera.matrix_world = Matrix.Translation(eye) @ view.view_rotation.to_matrix().to_4x4()
    # A render cannot see the view's collection eye: leave out what the view does not show.
    skipped = [obj for obj in scene.objects if obj.type == "MESH" and not obj.hide_render
               and not obj.visible_get(viewport=space)]
    for obj in skipped:
        obj.hide_render = True
    saved_camera = scene.camera
    scene.camera = camera
    render = scene.render
    saved = (render.engine, render.resolution_x, render.resolution_y, render.pixel_aspect_x, render.pixel_aspect_y)
    render.engine = "BLENDER_WORKBENCH"
    region = next(r for r in area.regions if r.type == "WINDOW")
    render.resolution_x, render.resolution_y = 800, round(800 * region.height / region.width)
    render.pixel_aspect_x = render.pixel_aspect_y = 1.0
    shading = scene.display.shading
    shading.light, shading.color_type = "STUDIO", "TEXTURE"
    shading.background_type = "VIEWPORT"
    shading.background_color = (0.23, 0.23, 0.23)
    render.filepath = path
    bpy.ops.render.render(write_still=True)
    render.engine, render.resolution_x, render.resolution_y, render.pixel_aspect_x, render.pixel_aspect_y = saved
    scene.camera = saved_camera
    bpy.data.objects.remove(camera)
    for obj in skipped:
        obj.hide_render = False


def render_shot(scene, path):
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)


def run_render_mode():
    global addon
    h.reset_scene()
    addon, startup_view = import_scene()
    scene = bpy.context.scene
    collection = scene.ex4d.scene_collection
    scene.world = bpy.data.worlds.new("screenshot")
    _window, area = main_area()
    state_before(scene, collection, area, startup_view)
    scene.frame_set(1)
    bpy.context.view_layer.update()
    render_view(scene, area, os.path.join(OUT, "before.png"))
    state_after(scene, collection, area)
    bpy.context.view_layer.update()
    render_view(scene, area, os.path.join(OUT, "after.png"))
    orbit_shot(scene, collection)
    assert bpy.ops.ex4d.viewport(action="COVERAGE") == {"FINISHED"}
    scene.frame_set(SHOT_FRAME)
    render_shot(scene, os.path.join(OUT, "shot_view.png"))
    h.emit({"coverage": list(collection["ex4d_coverage"]["visible"]),
            "markers": sorted((m.frame, m.name) for m in scene.timeline_markers)})


# ---------------------------------------------------------------------- GUI mode
def screenshot(name):
    subprocess.run(["import", "-window", "root", os.path.join(OUT, name)], check=True)


def run_gui_mode():
    global addon
    addon, startup_view = import_scene()
    scene = bpy.context.scene
    collection = scene.ex4d.scene_collection
    window, area = main_area()
    steps = []  # (seconds to wait after the step, step)

    def override(target):
        region = next(r for r in target.regions if r.type == "WINDOW")
        return bpy.context.temp_override(window=window, area=target, region=region)

    def before():
        state_before(scene, collection, area, startup_view)
        area.spaces.active.shading.type = "MATERIAL"  # the textured pyramid the issue describes

    def after():
        screenshot("before.png")
        state_after(scene, collection, area)
        area.spaces.active.shading.type = "SOLID"  # as the import leaves it (colour: Texture)

    def shot_view():
        screenshot("after.png")
        orbit_shot(scene, collection)
        with override(area):
            assert bpy.ops.ex4d.viewport(action="SHOT_VIEW") == {"FINISHED"}
            assert bpy.ops.ex4d.viewport(action="COVERAGE") == {"FINISHED"}
        for timeline in [a for a in window.screen.areas if a.type == "DOPESHEET_EDITOR"]:
            with override(timeline):
                bpy.ops.action.view_all()
        scene.frame_set(SHOT_FRAME)

    def finish():
        screenshot("shot_view.png")
        h.emit({"coverage": list(collection["ex4d_coverage"]["visible"]),
                "markers": sorted((m.frame, m.name) for m in scene.timeline_markers)})
        bpy.ops.wm.quit_blender()

    steps.extend([(20.0, before), (8.0, after), (30.0, shot_view), (0.0, finish)])

    def tick():
        try:
            wait, step = steps.pop(0)
            step()
        except Exception:
            import traceback

            traceback.print_exc()
            sys.stdout.flush()
            os._exit(1)
        return wait if steps else None

    bpy.app.timers.register(tick, first_interval=5.0)


addon = None
if MODE == "gui":
    run_gui_mode()
else:
    run_render_mode()
