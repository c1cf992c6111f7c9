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

from .camera_math import blender_settings_from_intrinsics
from .reporting import UserError
from .takes import is_ex4d_collection  # noqa: F401  (numpy-free; kept importable from here)
from ._engine.contract import CONTRACT_VERSION, CV_CAMERA_TO_BLENDER_CAMERA, OPENCV_TO_BLENDER

#: Engine (OpenCV) -> Blender axes: (x, y, z) -> (x, z, -y). Fixed; stored on the collection.
AXIS_MATRIX = OPENCV_TO_BLENDER
SCENE_FORMAT = "ex4d.scene"
OVERLAY_NODE = "EX4D Overlay Strength"
VISIBILITY_NODE = "EX4D Visibility"
VISIBILITY_PATTERN = "visible_{:04d}.png"  # scene frame 1 = file 0001
PACKAGE_MEMBERS = ("scene.json", "mesh.npz", "positions.pc2", "source.mp4")


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
            scene = json.loads(archive.read("scene.json"))
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
        if member not in names:
            raise PackageError(f"Package is missing {member} (named by scene.json {key!r})")
    return scene


def extract_package(package_path: str, scene: dict, data_dir: str, stem: str = "") -> str:
    """Unpack into a fresh folder ``data_dir/<stem>`` (temporary name, renamed when complete)."""
    os.makedirs(data_dir, exist_ok=True)
    stem = stem or os.path.basename(package_path).split(".")[0] or "scene"
    dest = os.path.join(data_dir, stem)
    n = 2
    while os.path.exists(dest):
        dest = os.path.join(data_dir, f"{stem}-{n}")
        n += 1
    tmp = tempfile.mkdtemp(prefix=".ex4d-import-", dir=data_dir)
    try:
        with zipfile.ZipFile(package_path) as archive:
            for key in ("point_cache", "source_video"):
                member = archive.getinfo(scene[key])
                if member.compress_type == zipfile.ZIP_STORED:
                    _copy_stored_member(package_path, member, os.path.join(tmp, scene[key]))
                else:
                    archive.extract(member, tmp)
            archive.extract("scene.json", tmp)
            # mesh.npz is itself a zip of .npy files: unpack them and load only what is needed.
            with archive.open(scene["mesh_file"]) as npz_file, zipfile.ZipFile(npz_file) as npz:
                for name in npz.namelist():
                    npz.extract(name, os.path.join(tmp, "mesh"))
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _copy_stored_member(package_path: str, member: zipfile.ZipInfo, dest: str) -> None:
    """Copy an uncompressed member straight from the zip (kernel copy, no Python-level CRC pass).

    The PC2 is ~235 MB at 832x480x49; zipfile.extract spends half its time on the CRC. The size is
    checked here and the PC2 header/size again when it is read.
    """
    with open(package_path, "rb") as source:
        source.seek(member.header_offset)
        header = source.read(30)
        if header[:4] != b"PK\x03\x04":
            raise PackageError(f"{member.filename}: damaged zip entry")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        offset = member.header_offset + 30 + name_length + extra_length
        with open(dest, "wb") as target:
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
    """Build the EX-4D collection ``EX4D <name>`` (default: the package's file name) from ``package_path``."""
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

    mesh_object = _build_mesh(collection, name, arrays)
    mesh_object.parent = root
    mesh_object.matrix_parent_inverse = Matrix.Identity(4)
    mesh_object.matrix_basis = Matrix(AXIS_MATRIX.tolist())
    _add_mesh_cache(mesh_object, pc2_path, scene_frame_start=1)
    first_visibility = write_visibility_sequence(os.path.join(folder, "visibility"), arrays["hidden"], width, height)
    mesh_object.data.materials.append(
        _build_material(name, os.path.join(folder, info["source_video"]), first_visibility, num_frames))

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
    return collection


def _build_mesh(collection, name: str, arrays: dict):
    vertices = np.ascontiguousarray(arrays["vertices"], dtype=np.float32)
    faces = np.ascontiguousarray(arrays["faces"], dtype=np.int32)
    mesh = bpy.data.meshes.new(f"EX4D {name}")
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
    corner_uv = np.ascontiguousarray(arrays["uv"], dtype=np.float32)[faces.ravel()].ravel()
    mesh.attributes["source_uv"].data.foreach_set("vector", corner_uv)
    mesh.update(calc_edges=True)
    mesh_object = bpy.data.objects.new("EX4D Mesh", mesh)
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
