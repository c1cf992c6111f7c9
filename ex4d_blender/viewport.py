"""Make the imported DW-mesh read as a 3D scene in the 3D Viewport (issue 19).

* The skirt and back caps (``EX4D Skirt`` collection, see mesh_import) are hidden in the viewport by
  default through the view layer's collection eye (``LayerCollection.hide_viewport``): renders keep
  them (the engine's render has them), the artist sees the real surfaces. One toggle shows them.
* The shot view (``open_shot_view``) is a 3D view looking through the shot camera with *local
  collections* on, so it shows the skirt whatever the eye says: that view is always what the engine
  renders.
* After import every 3D view frames the scene's real surfaces (``ex4d_content_bounds``, the skirt
  left out) from a three-quarter view behind the source camera, with clip distances from the
  scene's depth range; the cameras get clip distances that hold the skirt and a frustum that reads.
"""

from __future__ import annotations

import bpy
from mathutils import Matrix, Vector

from .reporting import UserError


def import_matrix(collection) -> Matrix:
    """Engine -> Blender world of the scene, now: ``root.matrix_world @ axis matrix`` (as
    ``mesh_import.import_matrix``, in mathutils: the viewport needs no numpy)."""
    axis = [float(x) for x in collection["ex4d_axis_matrix"]]
    root = collection.get("ex4d_root")
    if root is None:
        raise UserError(f"Collection '{collection.name}' lost its EX4D Root object; re-import the scene")
    return root.matrix_world @ Matrix([axis[i * 4:(i + 1) * 4] for i in range(4)])

#: View direction of the framed view, in the source camera's axes (right, up, forward): from behind,
#: to the right and above, so that depth reads (a view along the camera axis flattens the scene).
FRAMING_DIRECTION = (-0.55, -0.45, 1.0)
FRAMING_MARGIN = 1.08


# ---------------------------------------------------------------------- skirt visibility
def skirt_collection(collection):
    return collection.get("ex4d_skirt_collection") if collection is not None else None


def _find_layer_collection(layer_collection, collection):
    if layer_collection.collection == collection:
        return layer_collection
    for child in layer_collection.children:
        found = _find_layer_collection(child, collection)
        if found is not None:
            return found
    return None


def skirt_layer_collections(scene, collection) -> list:
    """The skirt collection's entry in every view layer of ``scene``."""
    skirt = skirt_collection(collection)
    if skirt is None:
        return []
    found = (_find_layer_collection(layer.layer_collection, skirt) for layer in scene.view_layers)
    return [entry for entry in found if entry is not None]


def skirt_visible(scene, collection) -> bool:
    """Whether the skirt shows in ordinary 3D views (the shot view always shows it)."""
    entries = skirt_layer_collections(scene, collection)
    return bool(entries) and not entries[0].hide_viewport


def set_skirt_visible(scene, collection, visible: bool) -> None:
    """Show or hide the skirt and back caps in the 3D views; renders always keep them."""
    entries = skirt_layer_collections(scene, collection)
    if not entries:
        raise UserError(f"'{collection.name}' has no skirt (its package has no border skirt)")
    for entry in entries:
        entry.hide_viewport = not visible


# ---------------------------------------------------------------------- framing
def content_box_world(collection) -> tuple[Vector, Vector]:
    """World-space (min, max) of the scene's real surfaces, through the root as it is now."""
    low, high = collection["ex4d_content_bounds"][:3], collection["ex4d_content_bounds"][3:]
    matrix = Matrix([list(row) for row in import_matrix(collection)])
    corners = [matrix @ Vector((x, y, z)) for x in (low[0], high[0]) for y in (low[1], high[1])
               for z in (low[2], high[2])]
    return (Vector([min(c[i] for c in corners) for i in range(3)]),
            Vector([max(c[i] for c in corners) for i in range(3)]))


def content_points_world(collection) -> list:
    """World positions of the content's sample points (older imports: the content box's corners)."""
    flat = list(collection.get("ex4d_content_samples", []))
    if flat:
        local = [Vector(flat[i:i + 3]) for i in range(0, len(flat) - 2, 3)]
    else:
        low, high = collection["ex4d_content_bounds"][:3], collection["ex4d_content_bounds"][3:]
        local = [Vector((x, y, z)) for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])]
    matrix = Matrix([list(row) for row in import_matrix(collection)])
    return [matrix @ p for p in local]


def _root_scale(collection) -> float:
    matrix = import_matrix(collection)
    return float(Vector([matrix[i][0] for i in range(3)]).length)


def depth_range_world(collection) -> tuple[float, float]:
    """Nearest and farthest real surface from the source camera, in Blender units."""
    near, far = collection["ex4d_depth_range"]
    scale = _root_scale(collection)
    return near * scale, far * scale


def view_half_tangents(lens_mm: float, aspect: float) -> tuple[float, float]:
    """tan(half field of view) of a perspective 3D view, (across its width, across its height).

    A 3D view draws like a 36 mm sensor fitted to its wider side at *half* its lens (Blender's
    CAMERA_PARAM_ZOOM_INIT_PERSP = 2): 50 mm in the view is 25 mm on a camera.
    """
    wide = 36.0 / lens_mm
    aspect = max(aspect, 1e-6)
    return (wide, wide / aspect) if aspect >= 1.0 else (wide * aspect, wide)


def framing(collection, lens_mm: float = 50.0, aspect: float = 16 / 9) -> dict:
    """Where a 3D view should stand to see the content: centre, rotation, distance and clip range.

    ``aspect`` = view width / height. The distance is the smallest at which every content sample
    point is inside the view, times ``FRAMING_MARGIN``.
    """
    low, high = content_box_world(collection)
    centre = (low + high) / 2
    radius = max((high - low).length / 2, 1e-6)
    source = collection.get("ex4d_source_camera")
    axes = source.matrix_world.to_3x3().normalized() if source is not None else Matrix.Identity(3)
    right, up, forward = axes.col[0], axes.col[1], -axes.col[2]
    a, b, c = FRAMING_DIRECTION
    direction = (right * a + up * b + forward * c).normalized()
    rotation = direction.to_track_quat("-Z", "Y")
    view_axes = rotation.to_matrix()
    tan_x, tan_y = view_half_tangents(lens_mm, aspect)
    points = [p - centre for p in content_points_world(collection)]
    # A point at (x, y) across the view and z along it is inside at distance D when |x| <= tan_x (D + z).
    distance = max(max(abs(p.dot(view_axes.col[0])) / tan_x, abs(p.dot(view_axes.col[1])) / tan_y)
                   - p.dot(direction) for p in points)
    distance = FRAMING_MARGIN * max(distance, max(-p.dot(direction) for p in points) + 1e-3 * radius)
    near, _far = depth_range_world(collection)
    clip_start = max(min(0.01 * near, 0.01 * radius), 1e-6)
    clip_end = 4.0 * (distance + radius)
    return {"centre": centre, "rotation": rotation, "distance": distance, "radius": radius,
            "clip_start": clip_start, "clip_end": clip_end, "direction": direction}


def _main_region(area):
    return next((region for region in area.regions if region.type == "WINDOW"), None)


def frame_view(area, collection) -> None:
    """Frame the content in one 3D view (left in camera view if it is looking through a camera)."""
    space = area.spaces.active
    region = _main_region(area)
    aspect = region.width / max(region.height, 1) if region is not None and region.height > 1 else 16 / 9
    shot = framing(collection, space.lens, aspect)
    space.clip_start, space.clip_end = shot["clip_start"], shot["clip_end"]
    if space.shading.type == "SOLID":
        space.shading.color_type = "TEXTURE"  # the video on the surfaces, studio light for the shape
    view = space.region_3d
    if view is None or view.view_perspective == "CAMERA":
        return
    view.view_perspective = "PERSP"
    view.view_location = shot["centre"]
    view.view_rotation = shot["rotation"]
    view.view_distance = shot["distance"]


def view3d_areas():
    """Every 3D view of every workspace screen (the ones not on show get framed for later too)."""
    return [area for screen in bpy.data.screens for area in screen.areas if area.type == "VIEW_3D"]


def frame_all_views(collection) -> int:
    areas = view3d_areas()
    for area in areas:
        frame_view(area, collection)
        area.tag_redraw()
    return len(areas)


def setup_cameras(collection, cameras) -> None:
    """Clip range from the depth range (keeping the skirt) and a frustum drawn at a readable size."""
    near, far = depth_range_world(collection)
    skirt_depth = float(collection.get("ex4d_border_depth", 0.0)) * _root_scale(collection)
    for camera in cameras:
        data = camera.data
        data.clip_start = max(min(0.01, 0.01 * near), 1e-6)
        data.clip_end = max(10.0 * max(far, skirt_depth), 100.0 * data.clip_start)
        data.display_size = 0.25 * (near + far) / 2  # a quarter of the mid depth: visible, not a wall


def setup_after_import(scene, collection) -> None:
    """Skirt hidden in the viewport, cameras set up, every 3D view framed on the real surfaces."""
    if skirt_layer_collections(scene, collection):
        set_skirt_visible(scene, collection, False)
    setup_cameras(collection, [collection["ex4d_source_camera"], scene.camera])
    frame_all_views(collection)


# ---------------------------------------------------------------------- shot view
def is_shot_view(area, camera) -> bool:
    space = area.spaces.active
    return (area.type == "VIEW_3D" and space.use_local_camera and space.camera == camera
            and space.region_3d is not None and space.region_3d.view_perspective == "CAMERA")


def configure_shot_view(area, camera) -> None:
    """Turn a 3D view into the live shot view: through ``camera``, skirt shown, material shading."""
    space = area.spaces.active
    space.use_local_camera = True
    space.camera = camera
    space.region_3d.view_perspective = "CAMERA"
    _local_collections_with_skirt(area)
    space.shading.type = "MATERIAL"
    space.show_region_toolbar = False
    space.show_region_ui = False
    overlay = space.overlay
    overlay.show_floor = overlay.show_axis_x = overlay.show_axis_y = overlay.show_axis_z = False
    overlay.show_extras = False  # no camera/empty gizmos in the picture
    area.tag_redraw()


def _local_collections_with_skirt(area) -> None:
    """Give the view its own collection visibility, taken while the skirt is shown: it stays shown there.

    Turning local collections on copies the view layer's current visibility into the view.
    """
    space = area.spaces.active
    scene = bpy.context.scene
    entries = [entry for collection in bpy.data.collections if collection.get("ex4d_skirt_collection") is not None
               for entry in skirt_layer_collections(scene, collection)]
    saved = [entry.hide_viewport for entry in entries]
    for entry in entries:
        entry.hide_viewport = False
    space.use_local_collections = False
    space.use_local_collections = True
    for entry, hidden in zip(entries, saved):
        entry.hide_viewport = hidden


def open_shot_view(context, camera, split_factor: float = 0.6):
    """Split the 3D view and make the new part the shot view (or refresh an existing shot view).

    Returns the shot view's area. Raises RuntimeError when the screen has no 3D view to split.
    """
    window = context.window or (context.window_manager.windows[0] if context.window_manager.windows else None)
    screen = window.screen if window is not None else None
    if screen is None:
        raise UserError("The shot view needs a Blender window", code="no_view")
    for area in screen.areas:
        if is_shot_view(area, camera):
            configure_shot_view(area, camera)
            return area
    area = context.area if context.area is not None and context.area.type == "VIEW_3D" else None
    views = [a for a in screen.areas if a.type == "VIEW_3D"]
    area = area or max(views, key=lambda a: a.width * a.height, default=None)
    if area is None:
        raise UserError("There is no 3D Viewport in this workspace to split for the shot view", code="no_view")
    before = {a.as_pointer() for a in screen.areas}
    with context.temp_override(window=window, screen=screen, area=area, region=_main_region(area)):
        result = bpy.ops.screen.area_split(direction="VERTICAL", factor=split_factor)
    new_areas = [a for a in screen.areas if a.as_pointer() not in before]
    if result != {"FINISHED"} or not new_areas:
        raise UserError("Blender could not split the 3D Viewport (is it too small?)", code="no_view")
    shot_area = new_areas[0]
    configure_shot_view(shot_area, camera)
    region = _main_region(shot_area)
    try:  # fit the camera frame into the new view; needs a drawn region, so only in a real window
        with context.temp_override(window=window, screen=screen, area=shot_area, region=region):
            bpy.ops.view3d.view_center_camera()
    except RuntimeError:
        pass
    return shot_area
