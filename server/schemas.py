"""Request and response bodies of API v1, built from the one protocol (``ex4d_engine/protocol.py``).

Each pydantic model here is generated from a protocol dataclass by :func:`model_of`: same fields,
same defaults, same rules (``ge``, ``le``, ``pattern``, ...) and descriptions, so the OpenAPI schema
and the validation cannot drift from what the add-on and the worker use. Only the server's own
health report is declared here directly.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from datetime import datetime, timezone
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from ex4d_engine import protocol

from .store import JobRow, SceneRow

API_VERSION = protocol.API_VERSION
_RULES = ("ge", "le", "gt", "lt", "max_length")


def model_of(cls: type, name: Optional[str] = None, *, forbid_extra: bool = True,
             _made: dict = {}) -> type[BaseModel]:  # noqa: B006 - a cache, on purpose
    """The pydantic model of protocol dataclass ``cls`` (nested dataclasses become nested models)."""
    key = (cls, name, forbid_extra)
    if key in _made:
        return _made[key]
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        annotation = _annotation(hints[f.name], forbid_extra)
        rules = {k: v for k, v in f.metadata.items() if k in _RULES}
        if "pattern" in f.metadata:
            rules["pattern"] = f"^(?:{f.metadata['pattern']})$"  # the protocol's rules are full matches
        if "choices" in f.metadata:
            annotation = Literal[tuple(f.metadata["choices"])]
            annotation = Optional[annotation] if f.default is None else annotation
        if f.default is not dataclasses.MISSING:
            info = Field(f.default, description=f.metadata.get("doc"), **rules)
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            info = Field(default_factory=_factory(f.default_factory, annotation), description=f.metadata.get("doc"))
        else:
            info = Field(..., description=f.metadata.get("doc"), **rules)
        fields[f.name] = (annotation, info)
    model = create_model(name or cls.__name__, __config__=ConfigDict(extra="forbid" if forbid_extra else "ignore"),
                         __doc__=cls.__doc__, **fields)
    _made[key] = model
    return model


def _annotation(tp: Any, forbid_extra: bool) -> Any:
    if dataclasses.is_dataclass(tp):
        return model_of(tp, forbid_extra=forbid_extra)
    if typing.get_origin(tp) is Union:
        return Union[tuple(_annotation(arg, forbid_extra) for arg in typing.get_args(tp))]
    return tp


def _factory(default_factory, annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return lambda: annotation(**default_factory().to_dict())
    return default_factory


# ---------------------------------------------------------------------- protocol objects
ErrorBody = model_of(protocol.ErrorInfo, "ErrorBody", forbid_extra=False)
JobOptions = model_of(protocol.JobOptions)
JobCreate = model_of(protocol.JobRequest, "JobCreate")
JobPublic = model_of(protocol.Job, "JobPublic", forbid_extra=False)
ScenePublic = model_of(protocol.Scene, "ScenePublic", forbid_extra=False)


class JobList(BaseModel):
    jobs: list[JobPublic]  # type: ignore[valid-type]


class SceneList(BaseModel):
    scenes: list[ScenePublic]  # type: ignore[valid-type]


# ---------------------------------------------------------------------- health (the server's own report)
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


class ClusterNode(BaseModel):
    node_id: str
    address: Optional[str]
    hostname: Optional[str]
    alive: bool
    gpus: float = Field(description="GPUs the node declares to Ray")
    cpus: float


class ClusterActor(BaseModel):
    slot: int
    state: str = Field(description="starting | idle | busy | restarting (no actor: waiting for GPUs or back-off)")
    job_id: Optional[str]
    restarts: int
    last_exit: Optional[str] = Field(None, description="why this slot's previous actor ended, if it did")
    node_id: Optional[str]
    node_address: Optional[str]
    hostname: Optional[str]
    pid: Optional[int] = Field(None, description="the actor's process id on its node")
    gpu_ids: list[str] = Field(default_factory=list, description="the node's GPU ids Ray gave this actor")
    gpus: list[GpuInfo] = Field(default_factory=list, description="the CUDA devices the actor sees")
    loaded: list[str] = Field(default_factory=list)


class ClusterInfo(BaseModel):
    """``ex4d serve --ray``: the Ray cluster the jobs run on (docs/cluster.md)."""

    address: str
    connected: bool
    problem: Optional[str] = Field(None, description="why the cluster is not answering, while it is not")
    group_size: int
    nodes: list[ClusterNode]
    actors: list[ClusterActor]
    counters: dict[str, int] = Field(description="dispatched, requeued, results_committed, results_discarded, "
                                                 "actors_lost (since the server started)")


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
    cluster: Optional[ClusterInfo] = Field(None, description="only with --ray")


# ---------------------------------------------------------------------- rows -> protocol objects
def job_of(row: JobRow, *, queue_position: Optional[int] = None,
           conditioning_ready: tuple[bool, bool] = (False, False)) -> protocol.Job:
    base = f"/v1/jobs/{row.id}"
    generate = row.kind == protocol.JobKind.generate
    succeeded = generate and row.state == protocol.JobState.succeeded
    conditioning = None
    if generate:
        conditioning = protocol.ConditioningUrls(colour=f"{base}/conditioning/colour" if conditioning_ready[0] else None,
                                                 mask=f"{base}/conditioning/mask" if conditioning_ready[1] else None)
    return protocol.Job(
        id=row.id, kind=row.kind, scene_id=row.scene_id, state=row.state, stage=row.stage, progress=row.progress,
        attempts=row.attempts, created_at=utc(row.created_at), options=row.options, eta_s=_eta(row),
        queue_position=queue_position, started_at=utc(row.started_at), finished_at=utc(row.finished_at),
        error=protocol.ErrorInfo(row.error_code, row.error_message or "") if row.error_code else None,
        num_frames=row.num_frames, fps=row.fps,
        result_url=f"{base}/result" if succeeded else None,
        conditioning_urls=conditioning,
        eye_urls=protocol.EyeUrls(left=f"{base}/result/left", right=f"{base}/result/right")
        if succeeded and is_stereo(row) else None,
        preview=protocol.is_preview_generator((row.options or {}).get("generator")) if generate else None)


def is_stereo(row: JobRow) -> bool:
    """A generate job with ``options.stereo``: its result is a packed pair, its eyes are served too."""
    return row.kind == protocol.JobKind.generate and bool((row.options or {}).get("stereo"))


def scene_of(row: SceneRow) -> protocol.Scene:
    metadata = dict(row.metadata) if row.metadata else None
    source_trajectory = metadata.pop("source_trajectory", None) if metadata else None
    ready = row.state == protocol.SceneState.ready
    return protocol.Scene(
        id=row.id, state=row.state, created_at=utc(row.created_at), recon_job_id=row.recon_job_id,
        source_name=row.source_name, options=protocol.SceneOptions.from_dict(row.options, "options"),
        error=protocol.ErrorInfo(row.error_code, row.error_message or "") if row.error_code else None,
        metadata=protocol.SceneMetadata.from_dict(metadata, "metadata") if metadata else None,
        source_trajectory=source_trajectory, package_url=f"/v1/scenes/{row.id}/package" if ready else None)


def _eta(row: JobRow) -> Optional[float]:
    if row.state != protocol.JobState.running or row.started_at is None or row.progress < 0.02:
        return None
    elapsed = max(0.0, time.time() - row.started_at)
    return round(elapsed * (1.0 - row.progress) / row.progress, 2)


def utc(timestamp: Optional[float]) -> Optional[str]:
    """Store timestamps (seconds) -> the protocol's ISO 8601 UTC strings."""
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat()
