"""``GET /v1/health``: versions, GPUs, workers, generators, queue. The one route without auth."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ex4d_engine import __version__
from ex4d_engine.contract import CONTRACT_VERSION

from ..deps import SettingsDep, StoreDep
from ex4d_engine.depth import runnable_backends
from ex4d_engine.generation.registry import all_statuses

from ..schemas import GeneratorInfo, GpuInfo, Health, WorkerInfo

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/health", response_model=Health, summary="Server, GPU, model and queue status (no auth)")
def health(request: Request, store: StoreDep, settings: SettingsDep) -> Health:
    workers = store.list_workers()
    loaded = {name for w in workers for name in w.info.get("loaded", [])}
    gpus = {g["index"]: g for w in workers for g in w.info.get("gpus", [])}
    generators = []
    for status in all_statuses(settings.models_dir):
        generators.append(GeneratorInfo(name=status.name, available=status.available, loaded=status.name in loaded,
                                        reason=status.reason, models_present=status.models_present,
                                        models_missing=status.models_missing))
    return Health(
        version=__version__, contract_version=CONTRACT_VERSION,
        gpus=[GpuInfo(**g) for g in gpus.values()],
        workers=[WorkerInfo(slot=w.slot, pid=w.pid, state=w.state, job_id=w.job_id, device=w.device,
                            restarts=w.restarts, gpu_group=w.info.get("gpu_group", []),
                            cuda_visible_devices=w.info.get("cuda_visible_devices"),
                            last_exit=w.info.get("last_exit")) for w in workers],
        generators=generators, depth_backends=runnable_backends(str(settings.models_dir) if settings.models_dir else None), queue_length=store.queue_length(),
        cluster=_cluster(request),
    )


def _cluster(request: Request):
    """The Ray cluster's snapshot (``--ray`` only); never waits on Ray."""
    status = getattr(getattr(request.app.state, "pool", None), "cluster_status", None)
    return status() if status is not None else None
