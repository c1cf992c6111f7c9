"""The worker process: owns the GPU and the models, takes jobs from the store in FIFO order.

Started by :mod:`server.supervisor` with the ``spawn`` method; imports neither FastAPI nor
torch at module level. Models and the last scenes stay resident between jobs. Between steps a
job checks (through ``should_cancel``) for a cancel request, a server shutdown and the death of
the server process; every write to its row carries the run token, so a job that was taken away
(re-queued by a restarted server) is never overwritten.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import logging
import os
import re
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ex4d_engine.errors import Ex4dError, JobCancelledError, ResourceError, as_ex4d_error
from ex4d_engine.protocol import JobKind, JobState

from .artefacts import Artefacts, remove_partials
from .job_context import JobContext, ServerStopping
from .store import JobRow, Store

log = logging.getLogger("ex4d.worker")

IDLE_WAIT_S = 0.5


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs; plain data so it pickles into the spawned process."""

    slot: int
    device: str  # "auto", "cpu", or the GPU group's CUDA indices ("0", "0,1")
    data_dir: str
    models_dir: Optional[str]
    preload: bool
    min_free_mb: int
    progress_interval_s: float
    parent_pid: int
    #: Why the previous worker of this slot ended (health shows it), None at first start.
    last_exit: Optional[str] = None

    @property
    def gpu_group(self) -> list[int]:
        """The real CUDA indices this worker owns ([] for "auto"/"cpu")."""
        return [int(i) for i in self.device.split(",")] if is_gpu_group(self.device) else []


def is_gpu_group(device: str) -> bool:
    return all(part.isdigit() for part in device.split(","))


def worker_environment(device: str) -> dict[str, str]:
    """Variables a worker sets for itself (and the gangs it starts): its GPU group, multicast off."""
    from ex4d_engine.generation.gpu_groups import MULTICAST_OFF_ENV

    env = dict(MULTICAST_OFF_ENV)
    if is_gpu_group(device):
        env["CUDA_VISIBLE_DEVICES"] = device
    return env


# ---------------------------------------------------------------------- process entry
def worker_main(config: WorkerConfig, wake, stop) -> None:
    """Entry point of the worker process."""
    os.environ.update(worker_environment(config.device))  # before anything can import torch
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the server, which stops us in order
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # stop at the next step, give the job back
    _die_with_parent(config.parent_pid)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker[{config.slot}] %(levelname)s %(message)s")
    Worker(config, wake, stop).run()


def _die_with_parent(parent_pid: int) -> None:
    """Linux: get SIGKILL when the server dies (kill -9 included), so no orphan keeps the GPU."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere the loop's parent check is the fallback
    if os.getppid() != parent_pid:
        os._exit(0)


class Worker:
    def __init__(self, config: WorkerConfig, wake, stop):
        self.config = config
        self.wake = wake
        self.stop = stop
        self.pid = os.getpid()
        self.artefacts = Artefacts(config.data_dir)
        self.store = Store(self.artefacts.database)
        group = config.gpu_group
        self.resident = Resident(Path(config.models_dir) if config.models_dir else None, max(1, len(group)))
        self.gpus = probe_gpus()
        if group:  # CUDA_VISIBLE_DEVICES renumbered the group from cuda:0 here; report the real indices
            self.gpus = [dict(gpu, index=group[gpu["index"]]) for gpu in self.gpus if gpu["index"] < len(group)]
        self.device_name = "cuda:" + ",".join(str(g["index"]) for g in self.gpus) if self.gpus else "cpu"

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        self._announce("starting")
        try:
            if self.config.preload:
                self.resident.preload()
            self._announce("idle")
            while not self._should_stop():
                claimed = self.store.claim_next(self.pid)
                if claimed is None:
                    self.wake.wait(IDLE_WAIT_S)
                    self.wake.clear()
                    continue
                job, token = claimed
                self._announce("busy", job.id)
                self.run_job(job, token)
                self._announce("idle")
        finally:
            self.resident.close()  # a group's torchrun gang stops with its worker

    def _should_stop(self) -> bool:
        return self.stop.is_set() or os.getppid() != self.config.parent_pid

    def _announce(self, state: str, job_id: Optional[str] = None) -> None:
        self.store.set_worker(self.config.slot, pid=self.pid, state=state, device=self.device_name, job_id=job_id,
                              info={"gpus": self.gpus, "loaded": self.resident.loaded_names(),
                                    "gpu_group": self.config.gpu_group, "last_exit": self.config.last_exit,
                                    "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")})

    # ------------------------------------------------------------------ one job
    def run_job(self, job: JobRow, token: str) -> None:
        from . import tasks  # the engine loads on the first job, not at process start

        ctx = JobContext(self, job, token)
        work_dir = (self.artefacts.scene_dir(job.scene_id, create=True) if job.kind == JobKind.recon
                    else self.artefacts.job_dir(job.id, create=True))
        remove_partials(work_dir)
        log.info("job %s (%s) started", job.id, job.kind.value)
        try:
            self._check_disk()
            if job.kind == JobKind.recon:
                metadata = tasks.run_recon(ctx)
                self.store.finish(job.id, token, JobState.succeeded, scene_metadata=metadata)
            else:
                tasks.run_generate(ctx)
                self.store.finish(job.id, token, JobState.succeeded)
            log.info("job %s succeeded", job.id)
        except ServerStopping:
            self.store.requeue(job.id, token)
            log.info("job %s given back: the server is stopping", job.id)
        except JobCancelledError as exc:
            if job.kind == JobKind.generate:
                self.artefacts.remove_tree(work_dir)
            self.store.finish(job.id, token, JobState.cancelled, error=(exc.code, exc.message))
            log.info("job %s cancelled", job.id)
        except BaseException as exc:  # noqa: BLE001 - every failure ends up on the job row
            error = describe_failure(exc, ctx.stage)
            if as_ex4d_error(exc).is_bug:  # a bug: the traceback goes to the log, never to the client
                log.error("job %s failed: %s\n%s", job.id, error[1], traceback.format_exc())
            else:
                log.warning("job %s failed: %s", job.id, error[1])
            self.store.finish(job.id, token, JobState.failed, error=error)
            if is_out_of_memory(exc):
                self.resident.free_memory()
            if not isinstance(exc, Exception):
                raise
        finally:
            remove_partials(work_dir)

    def _check_disk(self) -> None:
        free_mb = self.artefacts.free_bytes() // (1 << 20)
        if free_mb < self.config.min_free_mb:
            raise ResourceError(f"not enough free disk space in the data dir: {free_mb} MB free, "
                                f"a job needs at least {self.config.min_free_mb} MB")


class Resident:
    """Models and scenes kept in memory between jobs."""

    SCENES_KEPT = 2

    def __init__(self, models_dir: Optional[Path], group_size: int = 1):
        self.models_dir = models_dir
        self.group_size = group_size
        self._generators: dict[tuple[str, Optional[str], Optional[str]], Any] = {}
        self._scenes: collections.OrderedDict[str, Any] = collections.OrderedDict()

    def generator(self, name: str, profile: Optional[str], speed: Optional[str] = None) -> Any:
        """The resident generator for (name, profile) that can run speed preset ``speed``; loading
        another weight family (FP8, distill LoRA) first drops the loaded ones of that name (GPU memory)."""
        from ex4d_engine.generation.registry import load_generator

        for (n, p, _), generator in self._generators.items():
            accepts = getattr(generator, "accepts", None)
            if n == name and p == profile and (accepts is None or accepts(speed)):
                return generator
        for key in [k for k in self._generators if k[0] == name]:
            del self._generators[key]
        key = (name, profile, speed)
        self._generators[key] = load_generator(name, self.models_dir, profile, group_size=self.group_size, speed=speed)
        return self._generators[key]

    def scene(self, scene_id: str, load: Callable[[], Any]) -> Any:
        if scene_id in self._scenes:
            self._scenes.move_to_end(scene_id)
            return self._scenes[scene_id]
        scene = load()
        self._scenes[scene_id] = scene
        while len(self._scenes) > self.SCENES_KEPT:
            self._scenes.popitem(last=False)
        return scene

    def preload(self) -> None:
        from ex4d_engine.generation.registry import all_statuses

        for status in all_statuses(self.models_dir):
            name = status.name
            if status.available:
                try:
                    self.generator(name, None)
                except Ex4dError as exc:
                    log.warning("preload of %s failed: %s", name, exc.message)

    def close(self) -> None:
        """Release what holds processes (a GPU group's gang)."""
        for generator in self._generators.values():
            close = getattr(generator, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:  # noqa: BLE001 - shutting down anyway
                    log.warning("closing %s failed: %s", getattr(generator, "name", generator), exc)
        self._generators.clear()

    def loaded_names(self) -> list[str]:
        return sorted({key[0] for key in self._generators})

    def free_memory(self) -> None:
        self._scenes.clear()
        torch = _torch_if_loaded()
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


# ---------------------------------------------------------------------- failures
def describe_failure(exc: BaseException, stage: str) -> tuple[str, str]:
    """(code, message) for the job row: what happened and in which stage, without server paths."""
    code, message = _describe(exc, stage)
    return code, without_paths(message)


#: An absolute path (two or more parts) inside a message; the client sees only its last part.
_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"/:,;()\[\]]+/)+([^\s'\"/:,;()\[\]]*)")


def without_paths(message: str) -> str:
    """``message`` with absolute paths cut to their file name: job errors are read by clients."""
    return _PATH.sub(lambda match: match.group(1) or "<dir>", message)


def _describe(exc: BaseException, stage: str) -> tuple[str, str]:
    if is_out_of_memory(exc):
        kind = "GPU" if type(exc).__name__ == "OutOfMemoryError" or "CUDA" in str(exc) else "host"
        return ResourceError.code, (f"{kind} out of memory during {stage}; try a smaller trajectory, fewer "
                                    f"frames or a lower-memory profile ({_first_line(exc)})")
    if isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT)
                                     or "No space left on device" in str(exc)):  # ffmpeg's stderr says so
        return ResourceError.code, f"disk full during {stage}: {exc.strerror or _first_line(exc)}"
    error = as_ex4d_error(exc, stage)
    return error.code, error.message


def is_out_of_memory(exc: BaseException) -> bool:
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "CUDA out of memory" in str(exc))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _torch_if_loaded():
    import sys

    return sys.modules.get("torch")


def probe_gpus() -> list[dict[str, Any]]:
    """The CUDA devices this worker sees; no torch import on a machine without an NVIDIA driver."""
    if not os.path.exists("/proc/driver/nvidia") and not os.path.exists("/dev/nvidiactl"):
        return []
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        gpus = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append({"index": index, "name": props.name, "memory_total_mb": int(props.total_memory // (1 << 20))})
        return gpus
    except Exception as exc:  # a broken driver is reported, not fatal
        log.warning("cannot query GPUs: %s", exc)
        return []
