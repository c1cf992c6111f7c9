"""Request and response bodies of API v1: one schema per direction (``*Create`` in, ``*Public`` out).

Trajectories are the ``ex4d.trajectory`` contract: they arrive as a JSON object and are parsed by
``ex4d_engine.contract.Trajectory.from_dict`` in the route, never redeclared here.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from .artefacts import ID_PATTERN
from .store import JobKind, JobRow, JobState, SceneRow, SceneState

API_VERSION = 1


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable code, e.g. invalid_input, not_found, unauthorized")
    message: str = Field(description="what went wrong, written for the user")
    field: Optional[str] = Field(None, description="the request field at fault, when there is one")


class ErrorInfo(BaseModel):
    error: str
    message: str


# ---------------------------------------------------------------------- health
class GpuInfo(BaseModel):
    index: int
    name: str
    memory_total_mb: int


class WorkerInfo(BaseModel):
    slot: int
    pid: Optional[int]
    state: str = Field(description="starting | idle | busy | restarting")
    job_id: Optional[str]
    device: str
    restarts: int
    gpu_group: list[int] = Field(default_factory=list,
                                 description="the CUDA indices this worker owns (--gpus/--group-size); [] for auto/cpu")
    cuda_visible_devices: Optional[str] = Field(None, description="CUDA_VISIBLE_DEVICES inside the worker")
    last_exit: Optional[str] = Field(None, description="why this slot's previous worker process ended, if it did")


class GeneratorInfo(BaseModel):
    name: str
    available: bool
    loaded: bool
    reason: Optional[str]
    models_present: list[str]
    models_missing: list[str]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    api_version: int = API_VERSION
    contract_version: int
    gpus: list[GpuInfo]
    workers: list[WorkerInfo]
    generators: list[GeneratorInfo]
    depth_backends: list[str]
    queue_length: int


# ---------------------------------------------------------------------- scenes
class SceneMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    width: int
    height: int
    fps: float
    num_frames: int
    K: list[list[float]] = Field(description="3x3 source intrinsics, pixels, corner-origin (contract v1)")
    depth_source: str
    only_first_frame: bool = False


class ScenePublic(BaseModel):
    id: str
    state: SceneState
    created_at: datetime
    recon_job_id: str
    source_name: str
    options: dict[str, Any]
    error: Optional[ErrorInfo]
    metadata: Optional[SceneMetadata] = Field(None, description="set when ready")
    source_trajectory: Optional[dict[str, Any]] = Field(
        None, description="ex4d.trajectory v1 of the source camera, set when ready")
    package_url: Optional[str]

    @classmethod
    def of(cls, row: SceneRow) -> "ScenePublic":
        metadata = dict(row.metadata) if row.metadata else None
        source_trajectory = metadata.pop("source_trajectory", None) if metadata else None
        return cls(
            id=row.id, state=row.state, created_at=_utc(row.created_at), recon_job_id=row.recon_job_id,
            source_name=row.source_name, options=row.options,
            error=ErrorInfo(error=row.error_code, message=row.error_message or "") if row.error_code else None,
            metadata=SceneMetadata(**metadata) if metadata else None, source_trajectory=source_trajectory,
            package_url=f"/v1/scenes/{row.id}/package" if row.state == SceneState.ready else None,
        )


class SceneList(BaseModel):
    scenes: list[ScenePublic]


# ---------------------------------------------------------------------- jobs
class JobOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    generator: Literal["draft", "wan"] = Field("draft", description="draft: OpenCV, seconds, no weights; "
                                                                    "wan: Wan2.1 + EX-4D")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    steps: Optional[int] = Field(None, ge=1, le=1000, description="denoising steps; null = generator default")
    profile: Optional[str] = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                                   description="VRAM profile of the generator (full, balanced, low)")
    speed: Optional[Literal["exact", "original", "default", "fast", "turbo"]] = Field(
        None, description="speed preset of the wan generator (ex4d_engine/generation/wan/speed.py); null = default")
    prompt: Optional[str] = Field(None, max_length=4000)
    negative_prompt: Optional[str] = Field(None, max_length=4000)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scene_id: str = Field(pattern=ID_PATTERN.replace("[sj]", "s"), description="a ready scene")
    trajectory: dict[str, Any] = Field(description="an ex4d.trajectory v1 document (ex4d_engine/contract.py)")
    options: JobOptions = Field(default_factory=JobOptions)


class ConditioningUrls(BaseModel):
    colour: Optional[str]
    mask: Optional[str]


class JobPublic(BaseModel):
    id: str
    kind: JobKind
    scene_id: str
    state: JobState
    stage: str
    progress: float = Field(ge=0, le=1)
    eta_s: Optional[float] = Field(None, description="seconds left, null while unknown")
    queue_position: Optional[int] = Field(None, description="1-based while queued")
    attempts: int
    created_at: datetime
    started_at: Optional[datetime]
    finished_at: Optional[datetime]
    error: Optional[ErrorInfo]
    options: dict[str, Any]
    num_frames: Optional[int]
    fps: Optional[float]
    result_url: Optional[str]
    conditioning_urls: Optional[ConditioningUrls]

    @classmethod
    def of(cls, row: JobRow, *, queue_position: Optional[int] = None,
           conditioning_ready: tuple[bool, bool] = (False, False)) -> "JobPublic":
        base = f"/v1/jobs/{row.id}"
        conditioning = None
        if row.kind == JobKind.generate:
            conditioning = ConditioningUrls(colour=f"{base}/conditioning/colour" if conditioning_ready[0] else None,
                                            mask=f"{base}/conditioning/mask" if conditioning_ready[1] else None)
        return cls(
            id=row.id, kind=row.kind, scene_id=row.scene_id, state=row.state, stage=row.stage,
            progress=row.progress, eta_s=_eta(row), queue_position=queue_position, attempts=row.attempts,
            created_at=_utc(row.created_at), started_at=_utc(row.started_at), finished_at=_utc(row.finished_at),
            error=ErrorInfo(error=row.error_code, message=row.error_message or "") if row.error_code else None,
            options=row.options, num_frames=row.num_frames, fps=row.fps,
            result_url=f"{base}/result" if row.kind == JobKind.generate and row.state == JobState.succeeded else None,
            conditioning_urls=conditioning,
        )


class JobList(BaseModel):
    jobs: list[JobPublic]


def _eta(row: JobRow) -> Optional[float]:
    if row.state != JobState.running or row.started_at is None or row.progress < 0.02:
        return None
    elapsed = max(0.0, time.time() - row.started_at)
    return round(elapsed * (1.0 - row.progress) / row.progress, 2)


def _utc(timestamp: Optional[float]) -> Optional[datetime]:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=timezone.utc)
