"""``/v1/scenes``: upload or import a clip -> recon job -> scene; scene status; the scene package."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
from fastapi import APIRouter, File, Form, Path as PathParam, Query, UploadFile
from fastapi.responses import FileResponse

from ex4d_engine.errors import ConflictError, Ex4dError, InputError, ResourceError, TooLargeError

from ..artefacts import (DEPTH_SUFFIXES, ID_PATTERN, SCENE_PACKAGE, VIDEO_SUFFIXES, pin_import, resolve_import,
                         save_stream, suffix_of)
from ..deps import ArtefactsDep, PoolDep, SettingsDep, StoreDep, TokenDep
from ex4d_engine.depth import available_backends, backend_problem
from ex4d_engine.protocol import SceneOptions, SceneState

from ..schemas import ErrorBody, SceneList, ScenePublic, scene_of
from ..settings import Settings
from ..store import new_id

router = APIRouter(prefix="/v1/scenes", tags=["scenes"], dependencies=[TokenDep],
                   responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}})

SceneId = Annotated[str, PathParam(pattern=ID_PATTERN.replace("[sj]", "s"), description="scene id")]


@router.post("", response_model=ScenePublic, status_code=202,
             responses={413: {"model": ErrorBody}, 503: {"model": ErrorBody}},
             summary="Upload (or import) a clip and reconstruct it")
def create_scene(
    store: StoreDep, artefacts: ArtefactsDep, settings: SettingsDep, pool: PoolDep,
    video: Annotated[Optional[UploadFile], File(description="the clip; or use import_path")] = None,
    import_path: Annotated[Optional[str], Form(max_length=4096, description="a file under an import root")] = None,
    depth: Annotated[Optional[UploadFile], File(description="depth .npy/.npz (T, H, W)")] = None,
    depth_import_path: Annotated[Optional[str], Form(max_length=4096)] = None,
    depth_source: Annotated[Optional[str], Form(max_length=64, pattern=r"^[a-z0-9_-]+$")] = None,
    num_frames: Annotated[int, Form(ge=1, le=100_000)] = 49,
    fov_deg: Annotated[Optional[float], Form(gt=0, lt=180)] = None,
    focal_px: Annotated[Optional[float], Form(gt=0, le=1e6)] = None,
    only_first_frame: Annotated[bool, Form()] = False,
) -> ScenePublic:
    video = video if video is not None and video.filename else None
    depth = depth if depth is not None and depth.filename else None
    if (video is None) == (not import_path):
        raise InputError("give exactly one of video (an upload) or import_path", "video")
    if depth is not None and depth_import_path:
        raise InputError("give at most one of depth (an upload) or depth_import_path", "depth")
    if num_frames > settings.max_frames:
        raise InputError(f"num_frames is {num_frames}, the limit is {settings.max_frames}", "num_frames")
    if fov_deg is not None and focal_px is not None:
        raise InputError("give either fov_deg or focal_px, not both", "fov_deg")

    scene_id = new_id("s")
    scene_dir = artefacts.scene_dir(scene_id, create=True)
    max_bytes = settings.max_upload_mb << 20
    try:
        if video is not None:
            suffix = suffix_of(video.filename, VIDEO_SUFFIXES, "video")
            source_path = scene_dir / f"source{suffix}"
            save_stream(video.file, source_path, max_bytes, "video")
            source_name, video_field = Path(video.filename).name[:200], "video"
        else:
            resolved = resolve_import(import_path, settings.import_roots, "import_path")
            source_path = pin_import(resolved, scene_dir / f"source{_import_suffix(resolved)}", "import_path")
            source_name, video_field = resolved.name, "import_path"
        info = _probe(source_path, video_field, settings)
        depth_source = _depth_source(depth_source, depth is not None or bool(depth_import_path), settings.models_dir)

        depth_path: Optional[Path] = None
        if depth is not None:
            depth_path = scene_dir / f"depth{suffix_of(depth.filename, DEPTH_SUFFIXES, 'depth')}"
            save_stream(depth.file, depth_path, max_bytes, "depth")
            _check_depth(depth_path, "depth", info, num_frames)
        elif depth_import_path:
            resolved = resolve_import(depth_import_path, settings.import_roots, "depth_import_path")
            suffix = suffix_of(resolved.name, DEPTH_SUFFIXES, "depth_import_path")
            depth_path = pin_import(resolved, scene_dir / f"depth{suffix}", "depth_import_path")
            _check_depth(depth_path, "depth_import_path", info, num_frames)

        options = SceneOptions(num_frames=num_frames, fov_deg=fov_deg, focal_px=focal_px,
                               only_first_frame=only_first_frame, depth_source=depth_source).check().to_dict()
        scene, _ = store.create_scene(scene_id=scene_id, source_name=source_name, source_path=str(source_path),
                                      depth_path=str(depth_path) if depth_path else None, options=options)
    except BaseException:
        artefacts.remove_tree(scene_dir)  # nothing half-made stays behind
        raise
    pool.wake()
    return _public(scene)


@router.get("", response_model=SceneList, summary="Scenes, newest first")
def list_scenes(store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> SceneList:
    return SceneList(scenes=[_public(row) for row in store.list_scenes(limit)])


@router.get("/{scene_id}", response_model=ScenePublic, summary="Scene status and metadata")
def get_scene(scene_id: SceneId, store: StoreDep) -> ScenePublic:
    return _public(store.get_scene(scene_id))


@router.get("/{scene_id}/package", response_class=FileResponse,
            responses={200: {"content": {"application/zip": {}}, "description": "the scene package zip"},
                       409: {"model": ErrorBody}},
            summary="The Blender scene package (docs/scene_package.md)")
def get_package(scene_id: SceneId, store: StoreDep, artefacts: ArtefactsDep) -> FileResponse:
    scene = store.get_scene(scene_id)
    if scene.state != SceneState.ready:
        raise ConflictError(f"scene {scene_id!r} is not ready (state: {scene.state.value})")
    path = artefacts.existing(artefacts.scene_dir(scene_id) / SCENE_PACKAGE, f"package of scene {scene_id!r}")
    return FileResponse(path, media_type="application/zip", filename=f"{scene_id}.ex4dscene.zip")


# ---------------------------------------------------------------------- checks
def _depth_source(depth_source: Optional[str], has_depth: bool, models_dir=None) -> str:
    if has_depth:
        if depth_source not in (None, "file"):
            raise InputError(f"depth_source is {depth_source!r} but a depth file was given; use 'file'",
                             "depth_source")
        return "file"
    backends = [b for b in available_backends() if b != "file"]
    if depth_source in (None, "file"):
        hint = f"or choose depth_source from {backends}" if backends else "(no depth model backend is installed)"
        raise InputError(f"no depth given: upload depth or name depth_import_path {hint}", "depth")
    if depth_source not in backends:
        raise InputError(f"unknown depth_source {depth_source!r}; available: {['file'] + backends}", "depth_source")
    problem = backend_problem(depth_source, str(models_dir) if models_dir else None)
    if problem:  # refused now, not as a failed job later
        raise ResourceError(f"depth backend {depth_source!r} cannot run on this engine: {problem}", "depth_source")
    return depth_source


def _probe(path: Path, field: str, settings: Settings):
    from ex4d_engine.video_io import probe

    try:
        info = probe(path)
    except Ex4dError as exc:
        raise InputError(f"{field}: {_without_path(exc.message, path)}", field) from None
    if info.num_frames < 1:
        raise InputError(f"{field}: the video has no frames", field)
    if info.width * info.height > settings.max_pixels:
        raise InputError(f"{field}: {info.width}x{info.height} is over the limit of {settings.max_pixels} pixels",
                         field)
    return info


def _check_depth(path: Path, field: str, info, num_frames: int) -> None:
    """Header, shape and values, checked now so a bad depth is a 422 (413 over the cap), not a failed job.

    Only the frames the scene uses are read, after the header matched the clip's size.
    """
    from ex4d_engine.depth.file import DepthTooLargeError, load_depth_file
    from ex4d_engine.video_io import working_size

    frames_needed = min(num_frames, info.num_frames)
    sizes = {(info.width, info.height), working_size(info.width, info.height)}
    try:
        depth = load_depth_file(path, sizes=sizes, max_frames=frames_needed)
    except DepthTooLargeError as exc:
        raise TooLargeError(f"{field}: {_without_path(exc.message, path)}", field) from None
    except Ex4dError as exc:
        raise InputError(f"{field}: {_without_path(exc.message, path)}", field) from None
    t = depth.shape[0]
    if t < frames_needed:
        raise InputError(f"{field} has {t} frames, the scene needs {frames_needed}", field)
    used = depth[:frames_needed]
    if not np.isfinite(used).all():
        raise InputError(f"{field} contains NaN or infinity", field)
    if (used <= 0).any():
        raise InputError(f"{field} must be positive everywhere (min {float(used.min()):.4g})", field)


def _import_suffix(path: Path) -> str:
    """The import's suffix when it is a known video one (ffmpeg reads by content anyway)."""
    suffix = path.suffix.lower()
    return suffix if suffix in VIDEO_SUFFIXES else ".video"


def _without_path(message: str, path: Path) -> str:
    """Engine messages name the file; the client should not see server paths."""
    with contextlib.suppress(Exception):
        message = message.replace(str(path), path.name)
    return message


def _public(row) -> ScenePublic:
    return ScenePublic(**scene_of(row).to_dict())
