"""Shot coverage: the share of each frame the engine can render from the scene (its mask's visible %).

Estimated in Blender, before generating, so the artist sees where the model will have to invent most.
For each frame of the shot, rays go from the evaluated shot camera (the trajectory the add-on would
send: engine K and w2c) through a grid of pixel centres into the DW-mesh of that frame (BVH trees of
``EX4D Mesh`` and ``EX4D Skirt``, in engine coordinates). A ray counts as visible exactly as the
engine's mask does: the vertex visibility (0 on hidden vertices, 1 elsewhere) interpolated at the hit
(perspective-correct barycentrics) times 255 is above 125; a ray that hits nothing is not visible.
With one ray per pixel this is the engine's mask; the default ~2000 rays estimate its mean. As in
the engine, a shot whose first frame is the source camera gets the source frame there: 100 %.

Results: ``collection["ex4d_coverage"]`` (camera, frames, visible fraction per frame, threshold),
an F-curve ``scene["ex4d_visible_pct"]`` (Graph Editor) and a timeline marker ``EX4D <pct>%`` on every
frame below the threshold. Pure Python (mathutils, struct): no numpy needed here.
"""

from __future__ import annotations

import ast
import math
import os

import bpy
from mathutils import Vector
from mathutils.bvhtree import BVHTree
from mathutils.geometry import barycentric_transform

#: The engine's mask: rendered alpha (0..255) above this is visible (ex4d_engine.pipeline).
MASK_ALPHA_THRESHOLD = 125
MARKER_PREFIX = "EX4D "
CURVE_PROPERTY = "ex4d_visible_pct"
DEFAULT_SAMPLES = 2048
DEFAULT_THRESHOLD_PCT = 50.0


class CoverageError(RuntimeError):
    """Coverage cannot be estimated; the message names the problem."""

    user_error = True  # the artist can fix it (re-import): reported as such, not as a bug


# ---------------------------------------------------------------------- inputs
class HiddenFlags:
    """The package's (T, V) ``hidden`` array from the extracted ``mesh/hidden.npy``, read without numpy."""

    def __init__(self, path: str):
        if not os.path.isfile(path):
            raise CoverageError(f"{path} is missing: re-import the scene")
        with open(path, "rb") as handle:
            if handle.read(6) != b"\x93NUMPY":
                raise CoverageError(f"{path} is not a .npy file")
            major = handle.read(2)[0]
            size_bytes = 2 if major == 1 else 4
            header_length = int.from_bytes(handle.read(size_bytes), "little")
            header = ast.literal_eval(handle.read(header_length).decode("latin1"))
            if header["descr"] not in ("|b1", "|u1") or header["fortran_order"] or len(header["shape"]) != 2:
                raise CoverageError(f"{path}: expected a (frames, vertices) bool array, got {header}")
            self.num_frames, self.num_vertices = header["shape"]
            self.data = handle.read()
        if len(self.data) != self.num_frames * self.num_vertices:
            raise CoverageError(f"{path} is truncated")

    def visible(self, frame_index: int, vertex: int) -> float:
        frame_index = min(max(frame_index, 0), self.num_frames - 1)
        return 0.0 if self.data[frame_index * self.num_vertices + vertex] else 1.0


def sample_pixels(width: int, height: int, samples: int) -> list[tuple[float, float]]:
    """Pixel-centre coordinates (u, v) of a regular grid of about ``samples`` points over the frame.

    ``samples >= width * height`` gives every pixel centre (the engine's own sampling).
    """
    if samples >= width * height:
        nx, ny = width, height
    else:
        nx = max(1, min(width, round(math.sqrt(samples * width / height))))
        ny = max(1, min(height, round(samples / nx)))
    us = [(math.floor((i + 0.5) * width / nx) + 0.5) for i in range(nx)]
    vs = [(math.floor((j + 0.5) * height / ny) + 0.5) for j in range(ny)]
    return [(u, v) for v in vs for u in us]


def _grid_vertex_map(mesh_object):
    """Skirt vertices carry their grid index; the content mesh's vertex index is the grid index."""
    attribute = mesh_object.data.attributes.get("ex4d_grid_vertex")
    if attribute is None:
        return None
    values = [0] * len(attribute.data)
    attribute.data.foreach_get("value", values)
    return values


class _Surface:
    """One mesh object of the scene at the current frame: BVH tree + what a hit needs."""

    def __init__(self, mesh_object, depsgraph):
        evaluated = mesh_object.evaluated_get(depsgraph)
        self.tree = BVHTree.FromObject(mesh_object, depsgraph)
        self.positions = evaluated.data.vertices  # evaluated: the point cache's frame
        self.polygons = mesh_object.data.polygons
        self.grid = _grid_vertex_map(mesh_object)

    def hit(self, origin: Vector, direction: Vector):
        location, _normal, index, distance = self.tree.ray_cast(origin, direction)
        return (distance, location, index) if location is not None else None

    def visibility(self, hidden: HiddenFlags, frame_index: int, location: Vector, index: int) -> float:
        corners = list(self.polygons[index].vertices)
        a, b, c = (self.positions[i].co for i in corners)
        weights = barycentric_transform(location, a, b, c, Vector((1, 0, 0)), Vector((0, 1, 0)),
                                        Vector((0, 0, 1)))
        grid = self.grid
        total = 0.0
        for weight, corner in zip(weights, corners):
            total += weight * hidden.visible(frame_index, grid[corner] if grid is not None else corner)
        return total


# ---------------------------------------------------------------------- estimate
def visible_fraction(surfaces, hidden: HiddenFlags, frame_index: int, K, w2c, pixels) -> float:
    """Share of ``pixels`` the engine renders visible for one camera (K 3x3, w2c 4x4 engine, lists)."""
    rotation = [[w2c[r][c] for c in range(3)] for r in range(3)]
    translation = [w2c[r][3] for r in range(3)]
    # camera centre = -R^T t; a pixel's ray = R^T K^-1 (u, v, 1)
    origin = Vector([-sum(rotation[r][c] * translation[r] for r in range(3)) for c in range(3)])
    fx, fy, cx, cy, skew = K[0][0], K[1][1], K[0][2], K[1][2], K[0][1]
    threshold = MASK_ALPHA_THRESHOLD / 255.0
    visible = 0
    for u, v in pixels:
        y = (v - cy) / fy
        x = (u - cx - skew * y) / fx
        direction = Vector([rotation[0][c] * x + rotation[1][c] * y + rotation[2][c] for c in range(3)])
        best = None
        for surface in surfaces:
            found = surface.hit(origin, direction)
            if found is not None and (best is None or found[0] < best[0]):
                best = (*found, surface)
        if best is not None and best[3].visibility(hidden, frame_index, best[1], best[2]) > threshold:
            visible += 1
    return visible / max(len(pixels), 1)


def coverage_frames(frame_start: int, frame_end: int, frame_step: int = 1) -> list[int]:
    """Every ``frame_step``-th frame from ``frame_start``, always ending on ``frame_end``."""
    frames = list(range(frame_start, frame_end + 1, max(1, frame_step)))
    if frames and frames[-1] != frame_end:
        frames.append(frame_end)
    return frames


def estimate_coverage(scene, collection, camera, frame_start: int, frame_end: int,
                      samples: int = DEFAULT_SAMPLES, progress=None, frame_step: int = 1) -> list[float]:
    """Visible fraction (0..1) of the frames ``coverage_frames(frame_start, frame_end, frame_step)``.

    One BVH build per frame dominates the cost: ``frame_step`` > 1 checks fewer frames. Restores
    the current frame. ``progress(done, total)`` is called after each frame.
    """
    from .mesh_import import import_matrix
    from .scene_camera import trajectory_from_camera

    surfaces_objects = [obj for obj in (collection.get("ex4d_mesh"), collection.get("ex4d_skirt")) if obj]
    if not surfaces_objects:
        raise CoverageError(f"'{collection.name}' lost its EX4D Mesh; re-import the scene")
    hidden = HiddenFlags(os.path.join(collection["ex4d_folder"], "mesh", "hidden.npy"))
    trajectory = trajectory_from_camera(scene, camera, frame_start, frame_end, import_matrix(collection))
    pixels = sample_pixels(trajectory.width, trajectory.height, samples)
    first_scene_frame = int(collection.get("ex4d_frame_start", 1))
    saved_frame = scene.frame_current
    fractions = []
    frames = coverage_frames(frame_start, frame_end, frame_step)
    try:
        for done, frame in enumerate(frames, 1):
            i = frame - frame_start
            scene.frame_set(frame)
            depsgraph = bpy.context.evaluated_depsgraph_get()
            surfaces = [_Surface(obj, depsgraph) for obj in surfaces_objects]
            fractions.append(visible_fraction(surfaces, hidden, frame - first_scene_frame,
                                              trajectory.K[i].tolist(), trajectory.w2c[i].tolist(), pixels))
            if progress is not None:
                progress(done, len(frames))
    finally:
        scene.frame_set(saved_frame)
    if fractions and _is_source_camera(collection, trajectory.K[0].tolist(), trajectory.w2c[0].tolist(),
                                       trajectory.width, trajectory.height):
        fractions[0] = 1.0  # the engine puts the source frame itself there (pipeline.camera0_is_source)
    return fractions


def _is_source_camera(collection, K, w2c, width: int, height: int, tolerance: float = 1e-6) -> bool:
    """The engine's ``camera0_is_source``: same size, same K, identity pose."""
    if (width, height) != (int(collection["ex4d_width"]), int(collection["ex4d_height"])):
        return False
    source_K = list(collection["ex4d_K"])
    k_tolerance = tolerance * max(width, height)
    return (all(abs(K[r][c] - source_K[3 * r + c]) <= k_tolerance for r in range(3) for c in range(3))
            and all(abs(w2c[r][c] - (1.0 if r == c else 0.0)) <= tolerance for r in range(4) for c in range(4)))


# ---------------------------------------------------------------------- show
def clear_flags(scene) -> None:
    for marker in [m for m in scene.timeline_markers if m.name.startswith(MARKER_PREFIX)]:
        scene.timeline_markers.remove(marker)


def publish(scene, collection, camera_name: str, frames: list[int], fractions: list[float],
            threshold_pct: float = DEFAULT_THRESHOLD_PCT) -> list[int]:
    """Store the result, key ``scene["ex4d_visible_pct"]`` and mark frames below the threshold.

    Returns the flagged frames.
    """
    previous = collection.get("ex4d_coverage")
    if previous is not None:  # drop the old curve's keys so that a shorter range leaves none behind
        for frame in previous["frames"]:
            try:
                scene.keyframe_delete(f'["{CURVE_PROPERTY}"]', frame=frame)
            except (RuntimeError, TypeError):
                pass
    clear_flags(scene)
    collection["ex4d_coverage"] = {"camera": camera_name, "frames": [int(f) for f in frames],
                                   "visible": [float(f) for f in fractions], "threshold_pct": float(threshold_pct)}
    flagged = []
    for frame, fraction in zip(frames, fractions):
        pct = 100.0 * fraction
        scene[CURVE_PROPERTY] = pct
        scene.keyframe_insert(f'["{CURVE_PROPERTY}"]', frame=frame)
        if pct < threshold_pct:
            scene.timeline_markers.new(f"{MARKER_PREFIX}{pct:.0f}%", frame=frame)
            flagged.append(frame)
    return flagged


def summary(collection) -> str:
    """One line for the panel, e.g. '12/49 frames < 50% visible (min 23% at 40)'; '' when none."""
    result = collection.get("ex4d_coverage") if collection is not None else None
    if not result or not len(result["visible"]):
        return ""
    visible = list(result["visible"])
    threshold = float(result["threshold_pct"])
    low = sum(1 for f in visible if 100 * f < threshold)
    worst = min(range(len(visible)), key=visible.__getitem__)
    return (f"{low}/{len(visible)} frames < {threshold:.0f}% visible "
            f"(min {100 * visible[worst]:.0f}% at {int(result['frames'][worst])})")
