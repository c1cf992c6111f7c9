"""``/v1/jobs``: submit a re-shoot, follow it (JSON or server-sent events), fetch results, cancel."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, AsyncIterator, Literal, Optional

import anyio
from fastapi import APIRouter, Path as PathParam, Query, Request
from fastapi.responses import FileResponse, StreamingResponse

from ex4d_engine.contract import Trajectory, TrajectoryError
from ex4d_engine.interchange import trajectory_from_document
from ex4d_engine.protocol import JOB_ID_PATTERN
from ex4d_engine.errors import ConflictError, InputError, NotFoundError, ResourceError

from ..artefacts import CONDITIONING_VIDEOS, EYE_VIDEOS, RESULT_VIDEO, Artefacts
from ..deps import ArtefactsDep, PoolDep, SettingsDep, StoreDep, TokenDep
from ex4d_engine.generation.registry import generator_status
from ex4d_engine.protocol import JobKind, JobRequest, JobState, SceneState

from ..schemas import ErrorBody, JobCreate, JobList, JobPublic, is_stereo, job_of
from ..store import JobRow, Store

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[TokenDep],
                   responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}})

JobId = Annotated[str, PathParam(pattern=f"^{JOB_ID_PATTERN}$", description="job id")]
KEEP_ALIVE_S = 15.0


@router.post("", response_model=JobPublic, status_code=202,
             responses={409: {"model": ErrorBody}, 503: {"model": ErrorBody}},
             summary="Re-shoot a ready scene along a trajectory")
def create_job(body: JobCreate, store: StoreDep, artefacts: ArtefactsDep, settings: SettingsDep,
               pool: PoolDep) -> JobPublic:
    request = JobRequest.from_dict(body.model_dump()).check()
    try:
        scene = store.get_scene(request.scene_id)
    except NotFoundError as exc:
        raise InputError(exc.message, "scene_id") from None
    if scene.state != SceneState.ready:
        raise ConflictError(f"scene {scene.id!r} is not ready (state: {scene.state.value}); "
                            "wait for its recon job to succeed")
    try:  # the one place an HTTP trajectory is validated (any supported form); stored canonically from here on
        trajectory = trajectory_from_document(request.trajectory, "trajectory")
    except TrajectoryError as exc:
        raise TrajectoryError(exc.message, "trajectory") from None
    _check_trajectory(trajectory, scene.metadata or {}, settings)
    options = request.options
    status = generator_status(options.generator, settings.models_dir)
    if not status.available:
        raise ResourceError(f"generator {options.generator!r} is not available: {status.reason}")
    job = store.create_job(scene_id=scene.id, options=options.to_dict(),
                           trajectory_json=json.dumps(trajectory.to_dict()),
                           num_frames=len(trajectory), fps=trajectory.fps)
    pool.wake()
    return _public(job, store, artefacts)


@router.get("", response_model=JobList, summary="Jobs, newest first")
def list_jobs(store: StoreDep, artefacts: ArtefactsDep, state: Optional[JobState] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JobList:
    return JobList(jobs=[_public(job, store, artefacts) for job in store.list_jobs(state, limit)])


@router.get("/{job_id}", response_model=JobPublic, summary="State, stage, progress, ETA, error")
def get_job(job_id: JobId, store: StoreDep, artefacts: ArtefactsDep) -> JobPublic:
    return _public(store.get_job(job_id), store, artefacts)


@router.delete("/{job_id}", response_model=JobPublic, status_code=202, responses={409: {"model": ErrorBody}},
               summary="Cancel: queued jobs at once, running jobs at their next step (within 2 s)")
def cancel_job(job_id: JobId, store: StoreDep, artefacts: ArtefactsDep) -> JobPublic:
    return _public(store.request_cancel(job_id), store, artefacts)


@router.get("/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`event: job` with the Job JSON on every change; ends when terminal"}},
            summary="Server-sent events of the job")
async def job_events(job_id: JobId, request: Request, store: StoreDep, artefacts: ArtefactsDep,
                     settings: SettingsDep) -> StreamingResponse:
    await anyio.to_thread.run_sync(store.get_job, job_id)  # 404 before the stream starts
    return StreamingResponse(_events(job_id, request, store, artefacts, settings.events_poll_s),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(job_id: str, request: Request, store: Store, artefacts: Artefacts,
                  interval_s: float) -> AsyncIterator[str]:
    last_version = -1
    last_sent = time.monotonic()
    while not request.app.state.stopping.is_set():
        # A WAL read never waits for the worker's writes: the version check stays on the event loop,
        # the full row (and its file checks) only when something changed.
        if store.job_version(job_id) != last_version:
            job = await anyio.to_thread.run_sync(store.get_job, job_id)
            public = await anyio.to_thread.run_sync(_public, job, store, artefacts)
            last_version, last_sent = job.version, time.monotonic()
            yield f"id: {job.version}\nevent: job\ndata: {public.model_dump_json()}\n\n"
            if job.state.terminal:
                return
        elif time.monotonic() - last_sent > KEEP_ALIVE_S:
            last_sent = time.monotonic()
            yield ": keep-alive\n\n"
        if await request.is_disconnected():
            return
        await asyncio.sleep(interval_s)


@router.get("/{job_id}/result", response_class=FileResponse,
            responses={200: {"content": {"video/mp4": {}}, "description": "the generated video"}},
            summary="The generated video, at the trajectory's fps")
def get_result(job_id: JobId, store: StoreDep, artefacts: ArtefactsDep) -> FileResponse:
    job = store.get_job(job_id)
    if job.kind != JobKind.generate or job.state != JobState.succeeded:
        raise NotFoundError(f"job {job_id!r} has no result (kind {job.kind.value}, state {job.state.value})")
    path = artefacts.existing(artefacts.job_dir(job_id) / RESULT_VIDEO, f"result of job {job_id!r}")
    return FileResponse(path, media_type="video/mp4", filename=f"{job_id}.mp4")


@router.get("/{job_id}/result/{eye}", response_class=FileResponse,
            responses={200: {"content": {"video/mp4": {}}, "description": "one eye of a stereo take"}},
            summary="One eye of a stereo job, unpacked (result is the packed pair)")
def get_eye_result(job_id: JobId, eye: Literal["left", "right"], store: StoreDep,
                   artefacts: ArtefactsDep) -> FileResponse:
    job = store.get_job(job_id)
    if job.kind != JobKind.generate or job.state != JobState.succeeded or not is_stereo(job):
        raise NotFoundError(f"job {job_id!r} has no {eye} eye (kind {job.kind.value}, state {job.state.value}, "
                            f"{'stereo' if is_stereo(job) else 'mono'})")
    path = artefacts.existing(artefacts.job_dir(job_id) / EYE_VIDEOS[eye], f"{eye} eye of job {job_id!r}")
    return FileResponse(path, media_type="video/mp4", filename=f"{job_id}_{eye}.mp4")


@router.get("/{job_id}/conditioning/{which}", response_class=FileResponse,
            responses={200: {"content": {"video/mp4": {}}, "description": "colour render or visibility mask"}},
            summary="What the generator saw: the masked colour render or the mask")
def get_conditioning(job_id: JobId, which: Literal["colour", "mask"], store: StoreDep,
                     artefacts: ArtefactsDep) -> FileResponse:
    job = store.get_job(job_id)
    if job.kind != JobKind.generate or job.state == JobState.cancelled:
        raise NotFoundError(f"job {job_id!r} has no conditioning (kind {job.kind.value}, state {job.state.value})")
    path = artefacts.existing(artefacts.job_dir(job_id) / CONDITIONING_VIDEOS[which],
                              f"{which} conditioning of job {job_id!r}")
    return FileResponse(path, media_type="video/mp4", filename=f"{job_id}_{which}.mp4")


# ---------------------------------------------------------------------- helpers
def _public(job: JobRow, store: Store, artefacts: Artefacts) -> JobPublic:
    ready = (False, False)
    if job.kind == JobKind.generate and job.state != JobState.queued:
        directory = artefacts.job_dir(job.id)
        ready = tuple((directory / CONDITIONING_VIDEOS[w]).is_file() for w in ("colour", "mask"))
    return JobPublic(**job_of(job, queue_position=store.queue_position(job), conditioning_ready=ready).to_dict())


#: Ranges checked up front so an absurd value is a 422, never a failed job (fps 1e308, 2000000x1).
FPS_RANGE = (0.1, 240.0)
SIDE_RANGE = (8, 4096)


def _check_trajectory(trajectory: Trajectory, scene_meta: dict, settings) -> None:
    frames = len(trajectory)
    if frames > settings.max_frames:
        raise InputError(f"trajectory has {frames} frames, the limit is {settings.max_frames}", "trajectory")
    pixels = trajectory.width * trajectory.height
    if pixels > settings.max_pixels:
        raise InputError(f"trajectory size {trajectory.width}x{trajectory.height} is over the limit of "
                         f"{settings.max_pixels} pixels", "trajectory")
    if not FPS_RANGE[0] <= trajectory.fps <= FPS_RANGE[1]:
        raise InputError(f"trajectory fps is {trajectory.fps:g}; it must be between {FPS_RANGE[0]:g} and "
                         f"{FPS_RANGE[1]:g}", "trajectory")
    for name, side in (("width", trajectory.width), ("height", trajectory.height)):
        if not SIDE_RANGE[0] <= side <= SIDE_RANGE[1]:
            raise InputError(f"trajectory {name} is {side}; it must be between {SIDE_RANGE[0]} and "
                             f"{SIDE_RANGE[1]} pixels", "trajectory")
    scene_frames = scene_meta.get("num_frames")
    if not scene_meta.get("only_first_frame") and scene_frames is not None and frames > scene_frames:
        raise InputError(f"trajectory has {frames} frames but the scene has {scene_frames}; use at most "
                         f"{scene_frames} (or a static scene, only_first_frame)", "trajectory")
