"""Starts the worker processes (one per GPU group), restarts one that dies, and stops them in order.

Lives in the HTTP process (a thread; no FastAPI import). A worker that dies while running a job
fails that job with the exit reason; the queue goes on with a fresh worker. A group whose worker
keeps dying (a crash loop: a broken GPU, a gang that cannot start) is restarted with growing
back-off, on its own clock: the other groups keep taking jobs and are restarted at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from typing import Optional

from ex4d_engine.generation.gpu_groups import MULTICAST_OFF_ENV

from .settings import Settings
from .store import Store
from .worker import WorkerConfig, worker_main

log = logging.getLogger("ex4d.supervisor")

#: A worker that dies sooner than this after its start counts as a crash loop: back off.
QUICK_DEATH_S = 5.0
MAX_BACKOFF_S = 30.0


class _Slot:
    def __init__(self, index: int, device: str):
        self.index = index
        self.device = device
        self.process: Optional[multiprocessing.process.BaseProcess] = None
        self.started_at = 0.0
        self.restarts = 0
        self.backoff_s = 0.0
        self.restart_at: Optional[float] = None  # monotonic time of a pending restart
        self.last_exit: Optional[str] = None
        self.wake = None
        self.stop = None


class WorkerPool:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self._context = multiprocessing.get_context("spawn")  # never fork a threaded server
        self._slots = [_Slot(i, device) for i, device in enumerate(settings.worker_devices())]
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._started = threading.Event()
        self._stop_timeout_s = 10.0

    # ------------------------------------------------------------------ public
    def start(self) -> None:
        # Workers inherit this at exec (spawn), and the gangs they start inherit it from them.
        os.environ.update(MULTICAST_OFF_ENV)
        # Processes are spawned from the monitor thread only: the worker's parent-death signal is
        # tied to the thread that created it, and this thread lives until every worker has exited.
        self._thread = threading.Thread(target=self._monitor, name="ex4d-supervisor", daemon=True)
        self._thread.start()
        self._started.wait(30)

    def wake(self) -> None:
        """Tell idle workers a job is waiting (they also poll, so this only saves latency)."""
        for slot in self._slots:
            if slot.wake is not None:
                slot.wake.set()

    def pids(self) -> list[int]:
        return [s.process.pid for s in self._slots if s.process is not None and s.process.pid]

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask workers to stop (a running job is given back to the queue), then make sure they did.

        The monitor thread does the waiting: it spawned the workers, and their parent-death signal
        fires when it ends, so it must outlive them (a worker killed mid-job would count as interrupted).
        """
        self._stop_timeout_s = timeout_s
        self._stopping.set()
        for slot in self._slots:
            if slot.stop is not None:
                slot.stop.set()
                slot.wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s + 15)

    # ------------------------------------------------------------------ monitor
    def _monitor(self) -> None:
        try:
            for slot in self._slots:
                self._spawn(slot)
            self._started.set()
            self._watch()
        finally:
            self._started.set()
            self._stop_workers()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            sentinels = {slot.process.sentinel: slot for slot in self._slots if slot.process is not None}
            pending = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
            timeout = max(0.0, min([0.5] + [at - time.monotonic() for at in pending]))
            ready = multiprocessing.connection.wait(list(sentinels), timeout=timeout) if sentinels else []
            if not sentinels:
                self._stopping.wait(timeout)
            if self._stopping.is_set():
                break
            for sentinel in ready:
                self._handle_death(sentinels[sentinel])
            now = time.monotonic()
            for slot in self._slots:
                if slot.restart_at is not None and slot.restart_at <= now:
                    slot.restart_at = None
                    self._spawn(slot)

    def _stop_workers(self) -> None:
        """Wait for the workers to give their jobs back and exit; kill (and give back for them) the late ones."""
        deadline = time.monotonic() + self._stop_timeout_s
        for slot in self._slots:
            if slot.stop is not None:
                slot.stop.set()
                slot.wake.set()
        for slot in self._slots:
            process = slot.process
            if process is None:
                continue
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker %d did not stop in time; killing it", slot.index)
                process.kill()
                process.join(5)
                given_back = self.store.give_back_jobs_of_worker(process.pid)
                if given_back:
                    log.warning("jobs of the killed worker given back to the queue: %s", given_back)
            slot.wake = slot.stop = None  # release the semaphores now, not at interpreter exit

    def _spawn(self, slot: _Slot) -> None:
        slot.wake = self._context.Event()
        slot.stop = self._context.Event()
        s = self.settings
        config = WorkerConfig(
            slot=slot.index, device=slot.device, data_dir=str(s.data_dir),
            models_dir=str(s.models_dir) if s.models_dir else None, preload=s.preload,
            min_free_mb=s.min_free_mb, progress_interval_s=s.progress_interval_s, parent_pid=os.getpid(),
            last_exit=slot.last_exit,
        )
        process = self._context.Process(target=worker_main, args=(config, slot.wake, slot.stop),
                                        name=f"ex4d-worker-{slot.index}", daemon=True)
        process.start()
        slot.process = process
        slot.started_at = time.monotonic()
        self.store.set_worker(slot.index, pid=process.pid, state="starting", device=slot.device,
                              restarts=slot.restarts)
        log.info("worker %d started (pid %d, device %s)", slot.index, process.pid, slot.device)

    def _handle_death(self, slot: _Slot) -> None:
        """Fail its job, then schedule the restart (at once, or after the crash-loop back-off)."""
        process = slot.process
        process.join(1)
        slot.process = None
        reason = _exit_reason(process.exitcode)
        failed = self.store.fail_jobs_of_worker(
            process.pid, f"the worker process died ({reason}) while running this job; it has been restarted")
        log.error("worker %d (device %s, pid %d) died (%s); failed jobs: %s", slot.index, slot.device, process.pid,
                  reason, failed or "none")
        lived = time.monotonic() - slot.started_at
        slot.backoff_s = 0.0 if lived > QUICK_DEATH_S else min(MAX_BACKOFF_S, max(1.0, slot.backoff_s * 2))
        slot.restarts += 1
        slot.last_exit = reason
        slot.restart_at = time.monotonic() + slot.backoff_s
        if slot.backoff_s:
            log.warning("worker %d keeps dying; next start in %.0f s", slot.index, slot.backoff_s)
        self.store.set_worker(slot.index, pid=None, state="restarting", device=slot.device, restarts=slot.restarts,
                              info={"gpu_group": _group_indices(slot.device), "last_exit": reason,
                                    "restart_in_s": slot.backoff_s})


def _group_indices(device: str) -> list[int]:
    parts = device.split(",")
    return [int(p) for p in parts] if all(p.isdigit() for p in parts) else []


def _exit_reason(exitcode: Optional[int]) -> str:
    if exitcode is None:
        return "unknown exit"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"
