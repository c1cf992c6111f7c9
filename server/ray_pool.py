"""``ex4d serve --ray ADDRESS``: the job queue dispatched to Ray actors, one per GPU group, on any node.

Lives in the HTTP process in place of :class:`server.supervisor.WorkerPool` (same ``start`` /
``wake`` / ``stop``). The SQLite store stays the one queue: a monitor thread keeps one actor per
``--group-size`` GPUs the cluster has (:mod:`server.ray_actor`), and whenever an actor is idle it
claims the oldest queued job for it (FIFO) and hands the job to a thread that ships the inputs,
polls progress (and passes a cancel on) a few times a second, and writes the outputs into the data
dir. Each claim carries a run token, so a result is committed at most once.

Faults: an actor or its node that dies mid-job loses the run; the job goes back to its place in
the queue unless it has already been tried ``--max-attempts`` times (then it fails), and a
replacement actor is started as soon as the cluster has the GPUs for it. The HTTP side never
waits on Ray: health reads a snapshot this thread refreshes.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from ex4d_engine import __version__
from ex4d_engine.errors import Ex4dError, InternalError, ResourceError
from ex4d_engine.protocol import JobKind, JobState

from .artefacts import SCENE_ARRAYS, Artefacts
from .ray_actor import RESULT_NAMES, ActorConfig, JobSpec, ShotActor
from .ray_transfer import Transfer
from .settings import Settings
from .store import JobRow, Store
from .worker import describe_failure

log = logging.getLogger("ex4d.ray_pool")

#: How often a running job's progress is fetched (and a cancel passed on): well inside the 2 s promise.
POLL_S = 0.2
NODES_REFRESH_S = 1.0
#: An actor that answers no progress poll for this long is given up (its job is retried elsewhere).
SILENT_ACTOR_S = 60.0
#: An actor that dies sooner than this after its start counts as a crash loop: back off.
QUICK_DEATH_S = 5.0
MAX_BACKOFF_S = 30.0
DEAD_NODES_SHOWN = 8


class ActorLost(Exception):
    """The actor running a job is gone (it died, its node left, or it stopped answering)."""


class _Slot:
    """One GPU group's place: the current actor (if any) and its history."""

    def __init__(self, index: int):
        self.index = index
        self.handle: Any = None
        self.ready_ref: Any = None
        self.state = "restarting"  # starting | idle | busy | restarting (no actor: waiting for GPUs / back-off)
        self.info: dict[str, Any] = {}
        self.job_id: Optional[str] = None
        self.restarts = -1  # the first start is not a restart
        self.last_exit: Optional[str] = None
        self.started_at = 0.0
        self.backoff_s = 0.0
        self.retry_at = 0.0
        self.node_gone = False


class RayPool:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self.artefacts = Artefacts(settings.data_dir)
        self.transfer = Transfer(settings.ray_shared_dir)
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._jobs: dict[str, threading.Thread] = {}
        self._monitor_thread: Optional[threading.Thread] = None
        self._nodes: list[dict[str, Any]] = []
        self._connected = False
        self._problem: Optional[str] = None
        self.counters = {"dispatched": 0, "requeued": 0, "results_committed": 0, "results_discarded": 0,
                         "actors_lost": 0}
        self._remote_actor: Any = None

    # ------------------------------------------------------------------ public (as WorkerPool)
    def start(self) -> None:
        import ray

        address = self.settings.ray
        check_reachable(address)
        uvicorn_sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it with sys.exit in the main thread
        try:
            ray.init(address=address, namespace="ex4d", logging_level=logging.WARNING)
        except Exception as exc:  # ConnectionError, AuthenticationError, ...
            ray.shutdown()
            raise ResourceError(f"cannot connect to the Ray cluster at {address!r}: {_short(exc)}") from None
        finally:
            if threading.current_thread() is threading.main_thread() and uvicorn_sigterm is not None:
                signal.signal(signal.SIGTERM, uvicorn_sigterm)  # SIGTERM stops the server in order, as without --ray
        self._remote_actor = ray.remote(ShotActor)
        self._refresh_nodes()
        self._connected = True
        log.info("connected to the Ray cluster at %s: %d node(s), %g GPU(s)", self.settings.ray,
                 sum(n["alive"] for n in self._nodes), sum(n["gpus"] for n in self._nodes if n["alive"]))
        self._monitor_thread = threading.Thread(target=self._monitor, name="ex4d-ray-pool", daemon=True)
        self._monitor_thread.start()

    def wake(self) -> None:
        self._wake.set()

    def pids(self) -> list[int]:
        return []  # no local worker processes: the actors live in Ray's workers, possibly on other hosts

    def stop(self, timeout_s: float = 10.0) -> None:
        """Running jobs are given back to the queue (the actors stop at their next step), then the actors end."""
        import ray

        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        for thread in list(self._jobs.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._monitor_thread is not None:
            self._monitor_thread.join(5)
        for slot in self._slots:
            if slot.handle is not None:
                try:
                    ray.get(slot.handle.close.remote(), timeout=max(1.0, deadline - time.monotonic()))
                except Exception:  # noqa: BLE001 - it is killed anyway
                    pass
                ray.kill(slot.handle, no_restart=True)
                slot.handle = None
        ray.shutdown()

    def cluster_status(self) -> dict[str, Any]:
        """What /v1/health shows: nodes, actors (with their GPUs) and the dispatch counters. Never blocks on Ray."""
        with self._lock:
            actors = [{
                "slot": s.index, "state": s.state, "job_id": s.job_id, "restarts": max(0, s.restarts),
                "last_exit": s.last_exit, "node_id": s.info.get("node_id"), "node_address": s.info.get("node_address"),
                "hostname": s.info.get("hostname"), "pid": s.info.get("pid"), "gpu_ids": s.info.get("gpu_ids", []),
                "gpus": s.info.get("gpus", []), "loaded": s.info.get("loaded", []),
            } for s in self._slots]
            return {"address": self.settings.ray, "connected": self._connected, "problem": self._problem,
                    "group_size": self.settings.group_size, "nodes": list(self._nodes), "actors": actors,
                    "counters": dict(self.counters)}

    # ------------------------------------------------------------------ monitor thread
    def _monitor(self) -> None:
        next_nodes = 0.0
        while not self._stopping.is_set():
            try:
                if time.monotonic() >= next_nodes:
                    self._refresh_nodes()
                    next_nodes = time.monotonic() + NODES_REFRESH_S
                self._start_actors()
                self._check_starting()
                self._dispatch()
                self._connected, self._problem = True, None
            except Exception as exc:  # noqa: BLE001 - the cluster may be unreachable for a while; keep serving
                if self._connected:
                    log.warning("the Ray cluster is not answering: %s", exc)
                self._connected, self._problem = False, f"{type(exc).__name__}: {exc}"[:300]
            self._wake.wait(0.25)
            self._wake.clear()

    def _refresh_nodes(self) -> None:
        import ray

        nodes = []
        for node in ray.nodes():
            resources = node.get("Resources") or {}
            nodes.append({"node_id": node["NodeID"], "address": node.get("NodeManagerAddress"),
                          "hostname": node.get("NodeManagerHostname"), "alive": bool(node.get("Alive")),
                          "gpus": float(resources.get("GPU", 0)), "cpus": float(resources.get("CPU", 0))})
        alive = {n["node_id"] for n in nodes if n["alive"]}
        dead = [n for n in nodes if not n["alive"]][-DEAD_NODES_SHOWN:]
        with self._lock:
            self._nodes = [n for n in nodes if n["alive"]] + dead
            for slot in self._slots:
                node_id = slot.info.get("node_id")
                if slot.handle is not None and node_id and node_id not in alive:
                    slot.node_gone = True
        for slot in list(self._slots):
            if slot.node_gone and slot.state in ("idle", "starting"):  # a busy one is handled by its job thread
                self._lose_actor(slot, f"its node {slot.info.get('node_address')} left the cluster")

    def _target(self) -> int:
        """--ray-actors if given (an actor beyond the free GPUs waits for them: an autoscaler's cue to add a
        node), else one per group of GPUs the alive nodes hold."""
        if self.settings.ray_actors is not None:
            return self.settings.ray_actors
        group = self.settings.group_size
        return sum(int(n["gpus"] + 1e-6) // group for n in self._nodes if n["alive"])

    def _start_actors(self) -> None:
        """One actor per GPU group the cluster can hold; a lost one is replaced once its GPUs are there."""
        target = self._target()
        while len(self._slots) < target:
            self._slots.append(_Slot(len(self._slots)))
        live = sum(1 for s in self._slots if s.handle is not None)
        now = time.monotonic()
        for slot in self._slots:
            if live >= target:
                break
            if slot.handle is None and slot.retry_at <= now:
                self._start_actor(slot)
                live += 1

    def _start_actor(self, slot: _Slot) -> None:
        s = self.settings
        config = ActorConfig(group_size=s.group_size, models_dir=str(s.models_dir) if s.models_dir else None,
                             progress_interval_s=s.progress_interval_s, preload=s.preload)
        handle = self._remote_actor.options(
            num_gpus=s.group_size, num_cpus=1, max_concurrency=4, max_restarts=0, scheduling_strategy="SPREAD",
        ).remote(config)
        with self._lock:
            slot.handle, slot.ready_ref = handle, handle.info.remote()
            slot.state, slot.info, slot.node_gone, slot.job_id = "starting", {}, False, None
            slot.started_at = time.monotonic()
            slot.restarts += 1
        self._publish(slot)
        log.info("actor %d starting (%d GPU(s))", slot.index, s.group_size)

    def _check_starting(self) -> None:
        import ray

        for slot in self._slots:
            if slot.state != "starting" or slot.ready_ref is None:
                continue
            ready, _ = ray.wait([slot.ready_ref], timeout=0)
            if not ready:
                continue  # still waiting for a node with free GPUs, or loading
            try:
                info = ray.get(slot.ready_ref)
            except Exception as exc:  # noqa: BLE001 - the actor could not start
                self._lose_actor(slot, f"it failed to start: {_short(exc)}")
                continue
            if info.get("version") != __version__:
                self._lose_actor(slot, f"its node runs ex4d {info.get('version')}, the server {__version__}; "
                                       "install the same version on every node")
                continue
            with self._lock:
                slot.info, slot.ready_ref, slot.state = info, None, "idle"
            self._publish(slot)
            log.info("actor %d ready on node %s (%s), GPUs %s", slot.index, info["node_address"],
                     info["hostname"], ",".join(info["gpu_ids"]) or "none")

    def _dispatch(self) -> None:
        """Idle actors take the oldest queued jobs, one each."""
        for slot in self._slots:
            if self._stopping.is_set():
                return
            if slot.state != "idle":
                continue
            claimed = self.store.claim_next(slot.info.get("pid") or 0)
            if claimed is None:
                return
            job, token = claimed
            with self._lock:
                slot.state, slot.job_id = "busy", job.id
                self.counters["dispatched"] += 1
            self._publish(slot)
            thread = threading.Thread(target=self._run_job, args=(slot, job, token), name=f"ex4d-ray-{job.id}",
                                      daemon=True)
            self._jobs[job.id] = thread
            thread.start()

    # ------------------------------------------------------------------ one job (its own thread)
    def _run_job(self, slot: _Slot, job: JobRow, token: str) -> None:
        import ray
        from ray.exceptions import RayTaskError

        run_key = f"{job.id}-{token[:8]}"
        handle = slot.handle
        try:
            try:
                spec = self._spec_for(job, run_key)
            except (Ex4dError, OSError) as exc:
                self.store.finish(job.id, token, JobState.failed, error=describe_failure(exc, "sending the inputs"))
                return
            log.info("job %s (%s) -> actor %d on %s", job.id, job.kind.value, slot.index, slot.info.get("node_address"))
            try:
                outcome = self._follow(slot, handle, job, token, handle.run_job.remote(spec))
            except RayTaskError as exc:  # run_job itself broke (not the job): a bug, reported on the job
                self.store.finish(job.id, token, JobState.failed, error=(InternalError.code, _short(exc)))
                return
            except (ActorLost, ray.exceptions.RayError) as exc:
                reason = _loss_reason(exc)
                self._lose_actor(slot, reason)
                state = self.store.retry_or_fail(
                    job.id, token, self.settings.max_attempts,
                    f"the Ray actor on node {slot.info.get('node_address')} was lost while running this job ({reason})")
                if state == JobState.queued:
                    with self._lock:
                        self.counters["requeued"] += 1
                log.warning("job %s: actor %d lost (%s); job %s", job.id, slot.index, reason,
                            state.value if state else "no longer ours")
                return
            self._commit(job, token, outcome)
            self._refresh_actor_info(slot, handle)
        finally:
            self.transfer.clean(run_key)
            with self._lock:
                if slot.handle is handle and slot.state == "busy":
                    slot.state, slot.job_id = "idle", None
            self._publish(slot)
            self._jobs.pop(job.id, None)
            self._wake.set()

    def _spec_for(self, job: JobRow, run_key: str) -> JobSpec:
        """The job's inputs, read from the server's disk and sent on: the node needs none of it mounted."""
        if job.kind == JobKind.recon:
            scene = self.store.get_scene(job.scene_id)
            files = {"source" + Path(scene.source_path).suffix.lower(): Path(scene.source_path)}
            if scene.depth_path:
                files["depth" + Path(scene.depth_path).suffix.lower()] = Path(scene.depth_path)
            names = list(files)
            scene = replace(scene, source_path=names[0], depth_path=names[1] if len(names) > 1 else None)
            trajectory = None
        else:
            scene = None
            files = {SCENE_ARRAYS: self.artefacts.existing(self.artefacts.scene_dir(job.scene_id) / SCENE_ARRAYS,
                                                           "scene arrays")}
            trajectory = self.store.trajectory_json(job.id)
        inputs, shared_out = self.transfer.send_inputs(files, run_key)
        return JobSpec(job=job, scene=scene, trajectory_json=trajectory, inputs=inputs, shared_out=shared_out)

    def _follow(self, slot: _Slot, handle: Any, job: JobRow, token: str, result_ref: Any) -> dict[str, Any]:
        """Wait for the result; meanwhile copy progress into the store and pass cancel / stop to the actor."""
        import ray

        poll_ref = None
        answered = time.monotonic()
        while True:
            ready, _ = ray.wait([result_ref], timeout=POLL_S)
            if ready:
                return ray.get(result_ref)
            if slot.node_gone:
                raise ActorLost(f"its node {slot.info.get('node_address')} left the cluster")
            if poll_ref is not None and ray.wait([poll_ref], timeout=0)[0]:
                status, poll_ref, answered = ray.get(poll_ref), None, time.monotonic()
                if status:
                    self.store.set_progress(job.id, token, status["stage"], status["progress"])
            if poll_ref is None:
                owned, cancel = self.store.run_status(job.id, token)
                poll_ref = handle.poll.remote(job.id, cancel and owned, self._stopping.is_set() or not owned)
            elif time.monotonic() - answered > SILENT_ACTOR_S:
                raise ActorLost(f"it answered no progress poll for {SILENT_ACTOR_S:.0f} s")

    def _commit(self, job: JobRow, token: str, outcome: dict[str, Any]) -> None:
        """The actor's answer onto the job row (and its files into the data dir), if this run still owns it."""
        state = outcome["state"]
        if state == "given_back":
            self.store.requeue(job.id, token)
            return
        if state == "cancelled":
            if job.kind == JobKind.generate:
                self.artefacts.remove_tree(self.artefacts.job_dir(job.id))
            self.store.finish(job.id, token, JobState.cancelled, error=tuple(outcome["error"]))
            return
        if state != "succeeded":
            self.store.finish(job.id, token, JobState.failed, error=tuple(outcome["error"]))
            return
        if not self.store.run_status(job.id, token)[0]:
            self._count("results_discarded")
            log.warning("job %s: a result arrived for a run that no longer owns it; discarded", job.id)
            return
        final_dir = (self.artefacts.scene_dir(job.scene_id, create=True) if job.kind == JobKind.recon
                     else self.artefacts.job_dir(job.id, create=True))
        try:
            self.transfer.receive_outputs(outcome["outputs"], RESULT_NAMES[job.kind], final_dir)
        except Exception as exc:  # noqa: BLE001 - a full disk, a vanished shared folder: the job fails
            self.store.finish(job.id, token, JobState.failed, error=describe_failure(exc, "receiving the results"))
            return
        if self.store.finish(job.id, token, JobState.succeeded, scene_metadata=outcome.get("scene_metadata")):
            self._count("results_committed")
            log.info("job %s succeeded", job.id)
        else:
            self._count("results_discarded")

    # ------------------------------------------------------------------ actor bookkeeping
    def _lose_actor(self, slot: _Slot, reason: str) -> None:
        import ray

        with self._lock:
            handle = slot.handle
            if handle is None:
                return
            lived = time.monotonic() - slot.started_at
            slot.backoff_s = 0.0 if lived > QUICK_DEATH_S else min(MAX_BACKOFF_S, max(1.0, slot.backoff_s * 2))
            slot.retry_at = time.monotonic() + slot.backoff_s
            slot.handle, slot.ready_ref, slot.state, slot.job_id = None, None, "restarting", None
            slot.last_exit, slot.node_gone = reason, False
            self.counters["actors_lost"] += 1
        log.error("actor %d lost: %s; a replacement starts when the cluster has %d free GPU(s)%s", slot.index,
                  reason, self.settings.group_size, f" (back-off {slot.backoff_s:.0f} s)" if slot.backoff_s else "")
        try:
            ray.kill(handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._publish(slot)
        self._wake.set()

    def _refresh_actor_info(self, slot: _Slot, handle: Any) -> None:
        """After a job: which generators the actor now holds (health's ``loaded``)."""
        import ray

        try:
            info = ray.get(handle.info.remote(), timeout=10)
        except Exception:  # noqa: BLE001 - only informational
            return
        with self._lock:
            if slot.handle is handle:
                slot.info = info

    def _publish(self, slot: _Slot) -> None:
        """The slot as a row of the workers table (health's ``workers``)."""
        info = slot.info
        gpu_ids = info.get("gpu_ids", [])
        where = f"ray {info['node_address']}" if info.get("node_address") else "ray (not placed)"
        self.store.set_worker(
            slot.index, pid=info.get("pid"), state=slot.state, job_id=slot.job_id,
            device=f"{where} gpu {','.join(gpu_ids)}" if gpu_ids else where, restarts=max(0, slot.restarts),
            info={"gpu_group": [int(g) for g in gpu_ids if str(g).isdigit()], "loaded": info.get("loaded", []),
                  "cuda_visible_devices": info.get("cuda_visible_devices"), "last_exit": slot.last_exit,
                  "node_id": info.get("node_id"), "node_address": info.get("node_address")})

    def _count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after Ray's minute of retries, when nothing listens at HOST:PORT."""
    if address == "auto":
        return  # ray.init finds this machine's cluster or says at once that there is none
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ResourceError(f"cannot connect to the Ray cluster at {address!r}: nothing answers there "
                            f"({exc.strerror or exc}); start the head with `ray start --head` (docs/cluster.md)") from None


def _loss_reason(exc: BaseException) -> str:
    """Why a run's actor is counted as lost, in words for the job row and health."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError

    if isinstance(exc, ActorLost):
        return str(exc)
    if isinstance(exc, ActorUnavailableError):  # Ray cannot tell whether it comes back; the run is given up
        return f"it became unreachable, its node may have left the cluster ({_short(exc)[:160]})"
    if isinstance(exc, ActorDiedError):
        return f"it died ({_short(exc)[:160]})"
    return f"{type(exc).__name__}: {_short(exc)[:160]}"


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:300] if text else "") or type(exc).__name__
