"""The Ray actor of one GPU group (``ex4d serve --ray``): models resident, one job at a time.

Runs on any node of the cluster, in Ray's worker process; it never sees the server's data dir or
database. Its inputs arrive through :mod:`server.ray_transfer` into a node-local scratch folder laid
out like a data dir, so the job code of :mod:`server.tasks` runs unchanged; the outputs go back the
same way and the server writes them into its data dir. Progress and cancel travel by ``poll``,
which the server calls a few times a second while ``run_job`` works (a threaded actor: both run
at once). Imports ray only through the server's ``ray.remote(ShotActor)``.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import socket
import tempfile
import threading
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from ex4d_engine import __version__
from ex4d_engine.errors import JobCancelledError, NotFoundError
from ex4d_engine.protocol import JobKind

from .artefacts import Artefacts
from .job_context import JobContext, ServerStopping
from .store import JobRow, SceneRow
from .worker import Resident, describe_failure, is_out_of_memory, probe_gpus

log = logging.getLogger("ex4d.ray_actor")

#: Names a job may send back; anything else an actor returns is ignored.
RESULT_NAMES = {
    JobKind.recon: ("scene.npz", "scene.ex4dscene.zip"),
    JobKind.generate: ("conditioning_colour.mp4", "conditioning_mask.mp4", "result.mp4"),
}
SCENES_KEPT_ON_NODE = 2


@dataclass(frozen=True)
class ActorConfig:
    group_size: int
    #: The server's --models-dir; a node's own EX4D_MODELS_DIR (set where ``ray start`` runs) wins.
    models_dir: Optional[str]
    progress_interval_s: float
    preload: bool = False


@dataclass(frozen=True)
class JobSpec:
    """One job as the actor needs it: plain data, pickled by Ray."""

    job: JobRow
    #: For recon: the scene row; its source/depth paths are file *names* among the inputs.
    scene: Optional[SceneRow]
    trajectory_json: Optional[str]
    #: name -> an ObjectRef or a shared-folder path (server.ray_transfer); fetched by the actor.
    inputs: dict[str, Any] = field(default_factory=dict)
    #: A folder on the shared mount for the outputs, or None: outputs come back in the return value.
    shared_out: Optional[str] = None


class _Run:
    """The job in progress, shared between ``run_job`` and ``poll``."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        self.stage = "starting"
        self.progress = 0.0
        self.cancel = threading.Event()
        self.stop = threading.Event()


class _ActorStore:
    """The few store calls the job code makes, answered from the job spec and the current run."""

    def __init__(self, actor: "ShotActor"):
        self.actor = actor

    def get_scene(self, scene_id: str) -> SceneRow:
        spec = self.actor.spec
        if spec is None or spec.scene is None or spec.scene.id != scene_id:
            raise NotFoundError(f"scene {scene_id!r} not found on this node")
        return spec.scene

    def trajectory_json(self, job_id: str) -> Optional[str]:
        return self.actor.spec.trajectory_json if self.actor.spec else None

    def set_progress(self, job_id: str, token: str, stage: str, progress: float) -> bool:
        run = self.actor.run
        if run is None or run.job_id != job_id or run.stop.is_set():
            return False
        run.stage, run.progress = stage, min(1.0, max(0.0, float(progress)))
        return True

    def run_status(self, job_id: str, token: str) -> tuple[bool, bool]:
        run = self.actor.run
        if run is None or run.job_id != job_id or run.stop.is_set():
            return False, True
        return True, run.cancel.is_set()


class ShotActor:
    """Owns ``group_size`` GPUs (Ray sets CUDA_VISIBLE_DEVICES) and the resident models."""

    def __init__(self, config: ActorConfig):
        from ex4d_engine.generation.gpu_groups import MULTICAST_OFF_ENV

        os.environ.update(MULTICAST_OFF_ENV)  # before torch or a gang starts
        if os.environ.get("OMP_NUM_THREADS") == "1":  # Ray's default for a 1-CPU actor; CPU stages use the node's
            del os.environ["OMP_NUM_THREADS"]          # cores, as a local worker process does
        logging.basicConfig(level=logging.INFO, format="%(asctime)s ex4d-actor %(levelname)s %(message)s")
        self.config = SimpleNamespace(progress_interval_s=config.progress_interval_s)
        models_dir = os.environ.get("EX4D_MODELS_DIR") or config.models_dir
        self.scratch = Path(tempfile.mkdtemp(prefix="ex4d-actor-"))
        self.artefacts = Artefacts(self.scratch)
        self.resident = Resident(Path(models_dir) if models_dir else None, config.group_size)
        self.store = _ActorStore(self)
        self.spec: Optional[JobSpec] = None
        self.run: Optional[_Run] = None
        self._scenes_on_disk: collections.OrderedDict[str, None] = collections.OrderedDict()
        if config.preload:
            self.resident.preload()

    # ------------------------------------------------------------------ called by the server
    def info(self) -> dict[str, Any]:
        """Where this actor runs and what it owns (for /v1/health); also the "ready" answer."""
        import ray

        from ex4d_engine.generation.registry import all_statuses

        context = ray.get_runtime_context()
        return {
            "version": __version__, "pid": os.getpid(), "hostname": socket.gethostname(),
            "node_id": context.get_node_id(), "node_address": ray.util.get_node_ip_address(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "gpus": probe_gpus(),
            "loaded": self.resident.loaded_names(),
            "generators": {status.name: status.available for status in all_statuses(self.resident.models_dir)},
        }

    def run_job(self, spec: JobSpec) -> dict[str, Any]:
        """Run one job; returns {"state", "error", "scene_metadata", "outputs"} (never raises for a job fault)."""
        from . import tasks  # the engine loads on the first job
        from .ray_transfer import fetch_inputs, send_outputs

        job = spec.job
        self.spec, self.run = spec, _Run(job.id)
        ctx = JobContext(self, job, "ray")
        work_dir = (self.artefacts.scene_dir(job.scene_id, create=True) if job.kind == JobKind.recon
                    else self.artefacts.job_dir(job.id, create=True))
        outcome: dict[str, Any] = {"state": "failed", "error": None, "scene_metadata": None, "outputs": {}}
        log.info("job %s (%s) started", job.id, job.kind.value)
        try:
            ctx.progress(0.0, "fetch inputs")
            scene_dir = self.artefacts.scene_dir(job.scene_id, create=True)
            fetch_inputs(spec.inputs, scene_dir)
            self._remember_scene(job.scene_id)
            if spec.scene is not None:  # the recon inputs now lie in this node's scratch folder
                self.spec = _with_local_inputs(spec, scene_dir)
            if job.kind == JobKind.recon:
                outcome["scene_metadata"] = tasks.run_recon(ctx)
            else:
                tasks.run_generate(ctx)
            ctx.progress(1.0, "send results")
            outcome["outputs"] = send_outputs(work_dir, RESULT_NAMES[job.kind], spec.shared_out)
            outcome["state"] = "succeeded"
        except ServerStopping:
            outcome["state"] = "given_back"
        except JobCancelledError as exc:
            outcome.update(state="cancelled", error=(exc.code, exc.message))
        except Exception as exc:  # noqa: BLE001 - every failure ends up on the job row
            outcome["error"] = describe_failure(exc, ctx.stage)
            log.error("job %s failed: %s\n%s", job.id, outcome["error"][1], traceback.format_exc())
            if is_out_of_memory(exc):
                self.resident.free_memory()
        finally:
            self._clean_up(job)
            self.spec, self.run = None, None
        return outcome

    def poll(self, job_id: str, cancel: bool, stop: bool) -> Optional[dict[str, Any]]:
        """Progress of ``job_id``; passes on a cancel request or a stop (the server gives the job back)."""
        run = self.run
        if run is None or run.job_id != job_id:
            return None
        if cancel:
            run.cancel.set()
        if stop:
            run.stop.set()
        return {"stage": run.stage, "progress": run.progress}

    def close(self) -> None:
        self.resident.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    # ------------------------------------------------------------------ what JobContext calls
    def _should_stop(self) -> bool:
        return self.run is None or self.run.stop.is_set()

    # ------------------------------------------------------------------ scratch
    def _remember_scene(self, scene_id: str) -> None:
        self._scenes_on_disk[scene_id] = None
        self._scenes_on_disk.move_to_end(scene_id)

    def _clean_up(self, job: JobRow) -> None:
        """Keep only the arrays of the last scenes (a next job of the same scene needs no transfer)."""
        self.artefacts.remove_tree(self.artefacts.job_dir(job.id))
        while len(self._scenes_on_disk) > SCENES_KEPT_ON_NODE:
            old, _ = self._scenes_on_disk.popitem(last=False)
            self.artefacts.remove_tree(self.artefacts.scene_dir(old))
        for scene_id in self._scenes_on_disk:
            directory = self.artefacts.scene_dir(scene_id)
            if directory.is_dir():
                for entry in directory.iterdir():
                    if entry.name != "scene.npz":
                        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


def _with_local_inputs(spec: JobSpec, scene_dir: Path) -> JobSpec:
    scene = spec.scene
    depth = str(scene_dir / scene.depth_path) if scene.depth_path else None
    return replace(spec, scene=replace(scene, source_path=str(scene_dir / scene.source_path), depth_path=depth))
