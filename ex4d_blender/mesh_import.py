"""Import an EX-4D scene package (docs/scene_package.md) as one Blender collection.

What it builds:
* ``EX4D Root`` empty: the handle the artist moves/scales; identity at import.
* ``EX4D Mesh``: the DW-mesh, child of the root with local matrix ``AXIS_MATRIX`` so its mesh
  coordinates stay engine coordinates. UVs = source pixel; a material that plays the source video
  (emission, so colours match the engine's unlit render); a Mesh Cache modifier on the PC2 so the
  geometry animates per frame. The engine gives hidden vertices (those of occluded/degenerate faces)
  colour and alpha 0, so its render fades to black towards them; the import writes the per-frame
  visibility as an image sequence (one pixel per vertex, sampled through the same UVs) and the
  material multiplies the video by it, so Blender shows what the engine renders. The same
  visibility drives a toggleable magenta overlay of the hidden regions.
* ``EX4D Skirt``: the border skirt (the border ring pushed to ``border_depth``) and the two back caps,
  split off the DW-mesh into the child collection ``EX4D Skirt <name>`` with their own small point
  cache. The engine keeps them (they occlude), so renders keep them too (WYSIWYG); in the 3D view
  they would hide the scene inside a giant textured pyramid, so the collection is hidden in the
  viewport by default (``viewport.setup_after_import``, which the import's callers run) and always
  shown in the shot-camera view.
* ``EX4D Source Camera``: the source intrinsics exactly (sensor fit HORIZONTAL, lens, shift,
  pixel aspect), child of the root.
* ``EX4D Shot``: a free camera at the source pose, ready to keyframe; it becomes the scene camera.
The engine -> Blender world matrix is ``root.matrix_world @ AXIS_MATRIX``; the collection stores
the root and the axis matrix, so moving or scaling the root keeps cameras and mesh consistent.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import zipfile
import zlib

import bpy
import numpy as np
from mathutils import Matrix

from ._engine import safe_zip
from .camera_math import blender_settings_from_intrinsics
from .reporting import UserError
from ._engine.contract import CONTRACT_VERSION, CV_CAMERA_TO_BLENDER_CAMERA, OPENCV_TO_BLENDER

#: Engine (OpenCV) -> Blender axes: (x, y, z) -> (x, z, -y). Fixed; stored on the collection.
AXIS_MATRIX = OPENCV_TO_BLENDER
SCENE_FORMAT = "ex4d.scene"
OVERLAY_NODE = "EX4D Overlay Strength"
VISIBILITY_NODE = "EX4D Visibility"
VISIBILITY_PATTERN = "visible_{:04d}.png"  # scene frame 1 = file 0001
BORDER_RING_GROUP = "EX4D Border Ring"  # loose in EX4D Mesh when the skirt is split off
PACKAGE_MEMBERS = ("scene.json", "mesh.npz", "positions.pc2", "source.mp4")
MESH_ARRAYS = ("vertices", "faces", "uv", "hidden", "hidden_faces")
MAX_SCENE_JSON_BYTES = 16 << 20


class PackageError(UserError):
    """The file is not a usable scene package; the message names the problem."""

    def __init__(self, message: str):
        super().__init__(message, code="invalid_input")


# ---------------------------------------------------------------------- reading
def read_scene_json(package_path: str) -> dict:
    """Open the package and check its header; returns the decoded scene.json."""
    if not os.path.isfile(package_path):
        raise PackageError(f"Scene package not found: {package_path}")
    try:
        with zipfile.ZipFile(package_path) as archive:
            names = set(archive.namelist())
            if "scene.json" not in names:
                raise PackageError(f"{os.path.basename(package_path)} has no scene.json: not an EX-4D scene package")
            scene = json.loads(safe_zip.read(archive, "scene.json", MAX_SCENE_JSON_BYTES))
    except safe_zip.UnsafeArchiveError as exc:
        raise PackageError(f"Unsafe package: {exc}") from None
    except zipfile.BadZipFile:
        raise PackageError(f"{os.path.basename(package_path)} is not a zip file: not an EX-4D scene package") from None
    except json.JSONDecodeError as exc:
        raise PackageError(f"scene.json is not valid JSON: {exc}") from None
    if scene.get("format") != SCENE_FORMAT or scene.get("version") != 1:
        raise PackageError(f"Unsupported package: format {scene.get('format')!r} version {scene.get('version')!r}, "
                           f"this add-on reads {SCENE_FORMAT!r} version 1")
    if scene.get("contract_version") != CONTRACT_VERSION:
        raise PackageError(f"Package uses contract v{scene.get('contract_version')}, this add-on v{CONTRACT_VERSION}")
    for key in ("width", "height", "fps", "num_frames", "K"):
        if key not in scene:
            raise PackageError(f"scene.json is missing {key!r}")
    members = {"mesh_file": "mesh.npz", "point_cache": "positions.pc2", "source_video": "source.mp4"}
    for key, default in members.items():
        member = scene.setdefault(key, default)
        try:
            safe_zip.check_member_name(member if isinstance(member, str) else "")
        except safe_zip.UnsafeArchiveError as exc:
            raise PackageError(f"Unsafe package: scene.json {key!r}: {exc}") from None
        if member not in names:
            raise PackageError(f"Package is missing {member} (named by scene.json {key!r})")
    return scene


def extract_package(package_path: str, scene: dict, data_dir: str, stem: str = "") -> str:
    """Unpack into a fresh folder ``data_dir/<stem>`` (temporary name, renamed when complete).

    The rules of ``safe_zip`` hold: every destination inside the folder, no links, and at most
    :func:`unpack_limit` bytes in all (the sizes scene.json implies, never over 16 GiB).
    """
    os.makedirs(data_dir, exist_ok=True)
    stem = stem or os.path.basename(package_path).split(".")[0] or "scene"
    dest = os.path.join(data_dir, stem)
    n = 2
    while os.path.exists(dest):
        dest = os.path.join(data_dir, f"{stem}-{n}")
        n += 1
    tmp = tempfile.mkdtemp(prefix=".ex4d-import-", dir=data_dir)
    budget = safe_zip.Budget(unpack_limit(scene))
    try:
        with zipfile.ZipFile(package_path) as archive:
            safe_zip.declared_size(archive, [scene["point_cache"], scene["source_video"], "scene.json",
                                             scene["mesh_file"]], budget.max_bytes)
            for key in ("point_cache", "source_video"):
                member = safe_zip.member(archive, scene[key])
                if member.compress_type == zipfile.ZIP_STORED:
                    _copy_stored_member(package_path, member, tmp, budget)
                else:
                    safe_zip.extract(archive, scene[key], tmp, budget)
            safe_zip.extract(archive, "scene.json", tmp, budget)
            # mesh.npz is itself a zip of .npy files: unpack only the arrays the import reads.
            with archive.open(safe_zip.member(archive, scene["mesh_file"])) as npz_file, \
                    zipfile.ZipFile(npz_file) as npz:
                wanted = [f"{name}.npy" for name in MESH_ARRAYS if f"{name}.npy" in npz.namelist()]
                safe_zip.declared_size(npz, wanted, budget.max_bytes - budget.used)
                for name in wanted:
                    safe_zip.extract(npz, name, os.path.join(tmp, "mesh"), budget)
        os.replace(tmp, dest)
    except safe_zip.UnsafeArchiveError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PackageError(f"Unsafe package: {exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def unpack_limit(scene: dict) -> int:
    """Bytes a package of this scene may unpack to: what its sizes imply, with slack, capped at 16 GiB.

    Per vertex and frame: 12 (PC2 position) + 1 (hidden flag) + 2 (hidden faces) + 3 (raw RGB, more
    than the source video needs); per vertex: 12 + 8 + 24 (positions, UVs, two triangles).
    """
    try:
        pixels = max(1, int(scene["width"])) * max(1, int(scene["height"]))
        frames = max(1, int(scene["num_frames"]))
    except (KeyError, TypeError, ValueError):
        return 64 << 20
    implied = pixels * frames * 18 + pixels * 44
    return min(safe_zip.MAX_UNPACKED_BYTES, (64 << 20) + implied + implied // 4)


def _copy_stored_member(package_path: str, member: zipfile.ZipInfo, root: str, budget: "safe_zip.Budget") -> None:
    """Copy an uncompressed member straight from the zip (kernel copy, no Python-level CRC pass).

    The PC2 is ~235 MB at 832x480x49; zipfile.extract spends half its time on the CRC. The size is
    checked here and the PC2 header/size again when it is read.
    """
    if member.compress_size != member.file_size:
        raise PackageError(f"{member.filename}: damaged zip entry (stored, but sizes differ)")
    budget.take(member.file_size, member.filename)
    dest = safe_zip.destination(root, member.filename)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(package_path, "rb") as source:
        source.seek(member.header_offset)
        header = source.read(30)
        if header[:4] != b"PK\x03\x04":
            raise PackageError(f"{member.filename}: damaged zip entry")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        offset = member.header_offset + 30 + name_length + extra_length
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as target:
            remaining = member.file_size
            while remaining > 0:
                try:
                    copied = os.copy_file_range(source.fileno(), target.fileno(), remaining, offset)
                except (AttributeError, OSError):  # not Linux, or a filesystem without it
                    source.seek(offset)
                    shutil.copyfileobj(_limited(source, remaining), target, 1 << 22)
                    break
                if copied == 0:
                    break
                offset += copied
                remaining -= copied
    if os.path.getsize(dest) != member.file_size:
        raise PackageError(f"{member.filename} is truncated in the package")


def _limited(handle, size: int):
    class Reader:
        left = size

        def read(self, n=-1):
            n = self.left if n < 0 else min(n, self.left)
            data = handle.read(n)
            self.left -= len(data)
            return data

    return Reader()


def load_mesh_arrays(folder: str, scene: dict) -> dict[str, np.ndarray]:
    mesh_dir = os.path.join(folder, "mesh")
    arrays = {}
    for name in ("vertices", "faces", "uv", "hidden"):
        path = os.path.join(mesh_dir, f"{name}.npy")
        if not os.path.exists(path):
            raise PackageError(f"mesh.npz has no {name!r} array")
        arrays[name] = np.load(path)
    num_vertices = len(arrays["vertices"])
    if arrays["vertices"].shape != (num_vertices, 3) or arrays["uv"].shape != (num_vertices, 2):
        raise PackageError(f"mesh.npz shapes disagree: vertices {arrays['vertices'].shape}, uv {arrays['uv'].shape}")
    faces = arrays["faces"]
    if faces.ndim != 2 or faces.shape[1] != 3 or (faces.size and (faces.min() < 0 or faces.max() >= num_vertices)):
        raise PackageError(f"mesh.npz faces must be (F, 3) indices below {num_vertices}, got shape {faces.shape}")
    grid = (int(scene["height"]), int(scene["width"]))
    if num_vertices != grid[0] * grid[1]:
        raise PackageError(f"mesh.npz has {num_vertices} vertices, a {grid[1]}x{grid[0]} grid needs {grid[0] * grid[1]}")
    if arrays["hidden"].shape != (int(scene["num_frames"]), num_vertices):
        raise PackageError(f"mesh.npz 'hidden' has shape {arrays['hidden'].shape}, expected "
                           f"({scene['num_frames']}, {num_vertices}) from scene.json")
    return arrays


def read_pc2_header(path: str) -> tuple[int, int]:
    """(num_points, num_samples) of a PC2 file, checking its size."""
    with open(path, "rb") as handle:
        header = handle.read(32)
    if len(header) != 32 or header[:12] != b"POINTCACHE2\0":
        raise PackageError(f"{os.path.basename(path)} is not a PC2 point cache")
    _version, num_points, _start, _rate, num_samples = struct.unpack("<iiffi", header[12:])
    expected = 32 + num_points * num_samples * 12
    if os.path.getsize(path) != expected:
        raise PackageError(f"{os.path.basename(path)} is truncated: {os.path.getsize(path)} bytes, expected {expected}")
    return num_points, num_samples


# ---------------------------------------------------------------------- building
def _safe_name(name: str) -> str:
    """A folder-safe version of a clip name (empty stays empty)."""
    return "".join(c if c.isalnum() or c in "-_ " else "_" for c in name).strip()[:48]


def import_package(scene, package_path: str, data_dir: str, scene_id: str = "", engine_url: str = "",
                   name: str = ""):
    """Build the EX-4D collection ``EX4D <name>`` (default: the package's file name) from ``package_path``.

    Callers then hand it to ``viewport.setup_after_import`` (skirt hidden, views framed).
    """
    info = read_scene_json(package_path)
    folder = extract_package(package_path, info, data_dir, _safe_name(name))
    try:
        return _build(scene, folder, info, package_path, scene_id, engine_url)
    except PackageError:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _build(scene, folder: str, info: dict, package_path: str, scene_id: str, engine_url: str):
    width, height, num_frames = int(info["width"]), int(info["height"]), int(info["num_frames"])
    fps = float(info["fps"])
    K = np.asarray(info["K"], dtype=np.float64)
    arrays = load_mesh_arrays(folder, info)
    pc2_path = os.path.join(folder, info["point_cache"])
    num_points, num_samples = read_pc2_header(pc2_path)
    if num_points != len(arrays["vertices"]):
        raise PackageError(f"positions.pc2 has {num_points} points, mesh.npz {len(arrays['vertices'])} vertices")
    if num_samples != num_frames:
        raise PackageError(f"positions.pc2 has {num_samples} frames, scene.json says {num_frames}")
    name = os.path.basename(folder)

    collection = bpy.data.collections.new(f"EX4D {name}")
    scene.collection.children.link(collection)
    root = bpy.data.objects.new("EX4D Root", None)
    root.empty_display_type = "ARROWS"
    collection.objects.link(root)

    content_faces, skirt_faces = split_skirt(arrays["faces"], arrays["vertices"], width, height,
                                             info.get("border_depth"))
    base_vertices = arrays["vertices"] if not len(skirt_faces) else pull_in_border(arrays["vertices"], width, height)
    mesh_object = _build_mesh(collection, "EX4D Mesh", f"EX4D {name}", base_vertices, content_faces, arrays["uv"])
    _place_in_engine_frame(mesh_object, root)
    _add_mesh_cache(mesh_object, pc2_path, scene_frame_start=1)
    if len(skirt_faces):
        # The border ring is loose in the content mesh: keep it off the point cache, at its inner
        # neighbours, so that the mesh's bounds (Frame All, View Selected) are the real surfaces.
        ring_group = mesh_object.vertex_groups.new(name=BORDER_RING_GROUP)
        ring_group.add(np.flatnonzero(border_ring(width, height)).tolist(), 1.0, "REPLACE")
        cache = mesh_object.modifiers["EX4D Point Cache"]
        cache.vertex_group, cache.invert_vertex_group = BORDER_RING_GROUP, True
    first_visibility = write_visibility_sequence(os.path.join(folder, "visibility"), arrays["hidden"], width, height)
    material = _build_material(name, os.path.join(folder, info["source_video"]), first_visibility, num_frames)
    mesh_object.data.materials.append(material)
    skirt_object = None
    if len(skirt_faces):
        skirt_collection = bpy.data.collections.new(f"EX4D Skirt {name}")
        collection.children.link(skirt_collection)
        skirt_object = _build_skirt(skirt_collection, name, arrays, skirt_faces, pc2_path,
                                    os.path.join(folder, "skirt.pc2"))
        _place_in_engine_frame(skirt_object, root)
        skirt_object.data.materials.append(material)
        collection["ex4d_skirt_collection"] = skirt_collection

    # Scene: the source's resolution, fps and frame range; exact source intrinsics.
    render = scene.render
    render.resolution_x, render.resolution_y, render.resolution_percentage = width, height, 100
    settings = blender_settings_from_intrinsics(K, width, height)
    render.pixel_aspect_x, render.pixel_aspect_y = settings["pixel_aspect_x"], settings["pixel_aspect_y"]
    render.fps = max(1, round(fps))
    render.fps_base = render.fps / fps
    scene.frame_start, scene.frame_end = 1, num_frames
    scene.frame_set(1)
    # Unlit emission + Standard view transform: what the engine renders is what Blender shows.
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"

    source_camera = _camera(collection, "EX4D Source Camera", settings)
    source_camera.parent = root
    source_camera.matrix_parent_inverse = Matrix.Identity(4)
    source_camera.matrix_basis = Matrix((AXIS_MATRIX @ CV_CAMERA_TO_BLENDER_CAMERA).tolist())
    source_camera.hide_select = True
    shot_camera = _camera(collection, "EX4D Shot", settings)
    shot_camera.matrix_world = Matrix((AXIS_MATRIX @ CV_CAMERA_TO_BLENDER_CAMERA).tolist())
    scene.camera = shot_camera

    collection["ex4d_root"] = root
    collection["ex4d_mesh"] = mesh_object
    collection["ex4d_source_camera"] = source_camera
    collection["ex4d_axis_matrix"] = [float(x) for x in AXIS_MATRIX.ravel()]
    collection["ex4d_scene_id"] = scene_id or str(info.get("scene_id", ""))
    collection["ex4d_engine_url"] = engine_url
    collection["ex4d_package"] = os.path.abspath(package_path)
    collection["ex4d_folder"] = folder
    collection["ex4d_width"], collection["ex4d_height"] = width, height
    collection["ex4d_fps"], collection["ex4d_num_frames"] = fps, num_frames
    collection["ex4d_K"] = [float(x) for x in K.ravel()]
    collection["ex4d_scene_scale"] = float(info.get("scene_scale", 1.0))
    collection["ex4d_frame_start"] = 1
    collection["ex4d_border_depth"] = float(info.get("border_depth") or 0.0)
    if skirt_object is not None:
        collection["ex4d_skirt"] = skirt_object
    bounds = content_bounds(arrays["vertices"], width, height, info.get("border_depth"))
    collection["ex4d_content_bounds"] = bounds["box"]
    collection["ex4d_depth_range"] = bounds["depth"]
    collection["ex4d_content_samples"] = bounds["samples"]
    return collection


def _place_in_engine_frame(mesh_object, root) -> None:
    """Child of the root with local matrix AXIS_MATRIX: mesh coordinates stay engine coordinates."""
    mesh_object.parent = root
    mesh_object.matrix_parent_inverse = Matrix.Identity(4)
    mesh_object.matrix_basis = Matrix(AXIS_MATRIX.tolist())


# ---------------------------------------------------------------------- skirt
def border_ring(width: int, height: int) -> np.ndarray:
    """(H*W,) bool: the grid's outermost ring of vertices (rows 0, H-1 and columns 0, W-1)."""
    ring = np.zeros((height, width), dtype=bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    return ring.ravel()


def pull_in_border(vertices: np.ndarray, width: int, height: int) -> np.ndarray:
    """Copy of the (H*W, 3) grid vertices with each border-ring vertex moved onto its inner neighbour."""
    rows = np.clip(np.arange(height), 1, max(height - 2, 0))
    cols = np.clip(np.arange(width), 1, max(width - 2, 0))
    inner = (rows[:, None] * width + cols[None, :]).ravel()
    return np.asarray(vertices)[inner]


def split_skirt(faces: np.ndarray, vertices: np.ndarray, width: int, height: int,
                border_depth) -> tuple[np.ndarray, np.ndarray]:
    """(content faces, skirt faces) of the DW-mesh.

    The engine pushes the border ring to ``border_depth`` (docs/dwmesh.md): every face touching that
    ring is skirt, and so are the back caps (they join the four corners). A package whose ring does
    not sit at ``border_depth`` has no skirt: all faces are content.
    """
    faces = np.asarray(faces)
    ring = border_ring(width, height)
    if border_depth is None or not len(faces):
        return faces, faces[:0]
    ring_depth = np.asarray(vertices, dtype=np.float64)[ring, 2]
    if not np.allclose(ring_depth, float(border_depth), rtol=1e-4, atol=1e-6):
        return faces, faces[:0]
    is_skirt = ring[faces].any(axis=1)
    return faces[~is_skirt], faces[is_skirt]


def _build_skirt(skirt_collection, name: str, arrays: dict, skirt_faces: np.ndarray, pc2_path: str,
                 skirt_pc2_path: str):
    """The skirt as its own object: only the vertices it uses, with a point cache cut from the main one."""
    used = np.unique(skirt_faces)
    remap = np.full(len(arrays["vertices"]), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    skirt_object = _build_mesh(skirt_collection, "EX4D Skirt", f"EX4D Skirt {name}", arrays["vertices"][used],
                               remap[skirt_faces], arrays["uv"][used])
    # Which grid vertex each skirt vertex is (for its visibility, see coverage.py).
    attribute = skirt_object.data.attributes.new("ex4d_grid_vertex", "INT", "POINT")
    attribute.data.foreach_set("value", used.astype(np.int32))
    write_pc2_subset(pc2_path, skirt_pc2_path, used)
    _add_mesh_cache(skirt_object, skirt_pc2_path, scene_frame_start=1)
    return skirt_object


def write_pc2_subset(source_path: str, dest_path: str, indices: np.ndarray) -> None:
    """A PC2 holding only the points ``indices`` of ``source_path`` (same frames, same header fields)."""
    num_points, num_samples = read_pc2_header(source_path)
    with open(source_path, "rb") as handle:
        header = bytearray(handle.read(32))
    positions = np.memmap(source_path, dtype="<f4", mode="r", offset=32, shape=(num_samples, num_points, 3))
    struct.pack_into("<i", header, 16, len(indices))
    with open(dest_path, "wb") as handle:
        handle.write(bytes(header))
        for frame in range(num_samples):
            handle.write(np.ascontiguousarray(positions[frame, indices]).tobytes())
    del positions


def content_bounds(vertices: np.ndarray, width: int, height: int, border_depth) -> dict:
    """Engine-space box, depth range and sample points of the scene's real surfaces (frame 0), not the skirt.

    The border ring is left out when it is the skirt, and so are far outliers (sky, stray depth):
    the box spans the 1st..99th percentile on each axis; the samples (flat x, y, z list) are clipped
    to it. That is what framing a view needs.
    """
    points = np.asarray(vertices, dtype=np.float64)
    ring = border_ring(width, height)
    if border_depth is not None and np.allclose(points[ring, 2], float(border_depth), rtol=1e-4, atol=1e-6):
        points = points[~ring]
    points = points[np.isfinite(points).all(axis=1)]
    if not len(points):
        raise PackageError("mesh.npz has no finite vertex inside the border")
    low, high = np.percentile(points, 1.0, axis=0), np.percentile(points, 99.0, axis=0)
    depth = points[:, 2]
    # ~1000 surface points spread over the grid, pulled into the box: what a view must hold.
    step = max(1, int(np.sqrt(len(points) / 1000)))
    samples = np.clip(points[::step], low, high)
    return {"box": [float(x) for x in (*low, *high)], "depth": [float(depth.min()), float(depth.max())],
            "samples": [float(x) for x in samples.ravel()]}


def _build_mesh(collection, object_name: str, mesh_name: str, vertices: np.ndarray, faces: np.ndarray,
                uv: np.ndarray):
    vertices = np.ascontiguousarray(vertices, dtype=np.float32)
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    mesh = bpy.data.meshes.new(mesh_name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.ravel())
    mesh.loops.add(faces.size)
    corner_vert = mesh.attributes.get(".corner_vert")
    if corner_vert is not None:  # the attribute is ~200x faster than loops.foreach_set("vertex_index")
        corner_vert.data.foreach_set("value", faces.ravel())
    else:
        mesh.loops.foreach_set("vertex_index", faces.ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.uv_layers.new(name="source_uv")
    corner_uv = np.ascontiguousarray(uv, dtype=np.float32)[faces.ravel()].ravel()
    mesh.attributes["source_uv"].data.foreach_set("vector", corner_uv)
    mesh.update(calc_edges=True)
    mesh_object = bpy.data.objects.new(object_name, mesh)
    collection.objects.link(mesh_object)
    mesh_object["ex4d_overlay"] = False
    return mesh_object


def _add_mesh_cache(mesh_object, pc2_path: str, scene_frame_start: int) -> None:
    modifier = mesh_object.modifiers.new("EX4D Point Cache", "MESH_CACHE")
    modifier.cache_format = "PC2"
    modifier.filepath = pc2_path
    modifier.deform_mode = "OVERWRITE"
    modifier.interpolation = "NONE"  # one sample per frame, no blending between frames
    modifier.time_mode = "FRAME"
    modifier.play_mode = "SCENE"
    modifier.frame_start = scene_frame_start  # scene frame of PC2 sample 0
    modifier.frame_scale = 1.0
    modifier.forward_axis, modifier.up_axis = "POS_Y", "POS_Z"  # identity: the cache is in mesh coordinates


def write_visibility_sequence(folder: str, hidden: np.ndarray, width: int, height: int) -> str:
    """One 8-bit grey PNG per frame, pixel (row, col) = 255 where grid vertex row*W+col is visible.

    Returns the first file's path. PNGs are written with zlib directly (Blender ships no imaging
    library); rows are stored top first, which Blender maps to v = 1, as the package's UVs expect.
    """
    os.makedirs(folder, exist_ok=True)
    for index, frame_hidden in enumerate(hidden):
        pixels = np.where(frame_hidden.reshape(height, width), 0, 255).astype(np.uint8)
        raw = np.concatenate([np.zeros((height, 1), np.uint8), pixels], axis=1).tobytes()  # filter byte 0
        _write_png(os.path.join(folder, VISIBILITY_PATTERN.format(index + 1)), width, height, raw)
    return os.path.join(folder, VISIBILITY_PATTERN.format(1))


def _write_png(path: str, width: int, height: int, raw_rows: bytes) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw_rows, 1))
                     + chunk(b"IEND", b""))


def _animated_texture(nodes, image, num_frames: int):
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = image
    texture.interpolation = "Linear"
    texture.extension = "EXTEND"
    texture.image_user.frame_start = 1  # scene frame 1 shows the first video frame / file
    texture.image_user.frame_offset = 0
    texture.image_user.frame_duration = num_frames
    texture.image_user.use_auto_refresh = True
    return texture


def _build_material(name: str, video_path: str, first_visibility_path: str, num_frames: int):
    """Emission = video colour x vertex visibility (the engine's premultiplied colour), plus the overlay."""
    material = bpy.data.materials.new(f"EX4D {name}")
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    video = bpy.data.images.load(video_path, check_existing=True)
    video.source = "MOVIE"
    colour = _animated_texture(nodes, video, num_frames)
    visibility_image = bpy.data.images.load(first_visibility_path, check_existing=True)
    visibility_image.source = "SEQUENCE"
    visibility_image.colorspace_settings.name = "Non-Color"
    visibility = _animated_texture(nodes, visibility_image, num_frames)
    visibility.name = visibility.label = VISIBILITY_NODE
    uv = nodes.new("ShaderNodeUVMap")
    uv.uv_map = "source_uv"
    links.new(uv.outputs["UV"], colour.inputs["Vector"])
    links.new(uv.outputs["UV"], visibility.inputs["Vector"])
    shaded = nodes.new("ShaderNodeMix")
    shaded.data_type, shaded.blend_type = "RGBA", "MULTIPLY"
    shaded.inputs["Factor"].default_value = 1.0
    links.new(colour.outputs["Color"], shaded.inputs["A"])
    links.new(visibility.outputs["Color"], shaded.inputs["B"])
    # Overlay: colour = mix(shaded, magenta, (1 - visibility) * strength); strength 0 = off.
    strength = nodes.new("ShaderNodeValue")
    strength.name = strength.label = OVERLAY_NODE
    strength.outputs[0].default_value = 0.0
    hidden = nodes.new("ShaderNodeMath")
    hidden.operation = "SUBTRACT"
    hidden.inputs[0].default_value = 1.0
    links.new(visibility.outputs["Color"], hidden.inputs[1])
    factor = nodes.new("ShaderNodeMath")
    factor.operation = "MULTIPLY"
    links.new(hidden.outputs[0], factor.inputs[0])
    links.new(strength.outputs[0], factor.inputs[1])
    overlay = nodes.new("ShaderNodeMix")
    overlay.data_type = "RGBA"
    overlay.inputs["B"].default_value = (1.0, 0.0, 1.0, 1.0)
    links.new(factor.outputs[0], overlay.inputs["Factor"])
    links.new(shaded.outputs["Result"], overlay.inputs["A"])
    emission = nodes.new("ShaderNodeEmission")
    links.new(overlay.outputs["Result"], emission.inputs["Color"])
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    nodes.active = colour  # Solid shading with colour "Texture" shows the active image: the video
    return material


def _camera(collection, name: str, settings: dict):
    data = bpy.data.cameras.new(name)
    data.sensor_fit = settings["sensor_fit"]
    data.sensor_width = settings["sensor_width"]
    data.lens = settings["lens"]
    data.shift_x, data.shift_y = settings["shift_x"], settings["shift_y"]
    data.clip_start, data.clip_end = 0.01, 10000.0
    camera_object = bpy.data.objects.new(name, data)
    collection.objects.link(camera_object)
    return camera_object


# ---------------------------------------------------------------------- queries
def import_matrix(collection) -> np.ndarray:
    """Engine world -> Blender world for this scene, now: ``root.matrix_world @ axis matrix``."""
    axis = np.asarray(collection["ex4d_axis_matrix"], dtype=np.float64).reshape(4, 4)
    root = collection.get("ex4d_root")
    if root is None:
        raise PackageError(f"Collection '{collection.name}' lost its EX4D Root object; re-import the scene")
    return np.array(root.matrix_world) @ axis


def set_overlay(mesh_object, enabled: bool) -> None:
    """Show hidden regions in magenta (material strength 1) or as the engine renders them (0)."""
    mesh_object["ex4d_overlay"] = bool(enabled)
    for slot in mesh_object.material_slots:
        if slot.material and slot.material.node_tree and OVERLAY_NODE in slot.material.node_tree.nodes:
            slot.material.node_tree.nodes[OVERLAY_NODE].outputs[0].default_value = 1.0 if enabled else 0.0
