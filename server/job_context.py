"""What a running job sees (:class:`JobContext`): its row, progress into a stage range, the cancel check.

Shared by the worker loop (``worker.py``), which makes one per job, and the tasks (``tasks.py``),
which use it; neither imports the other's module for it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ex4d_engine.errors import JobCancelledError

from .store import JobRow

CANCEL_POLL_S = 0.05


class ServerStopping(Exception):
    """The server is shutting down or gone: give the job back instead of failing it."""


class JobContext:
    """What a task sees: its job, progress reporting into a stage range, and the cancel check."""

    def __init__(self, worker: Any, job: JobRow, token: str):
        """``worker``: the :class:`server.worker.Worker` running the job."""
        self.worker = worker
        self.job = job
        self.token = token
        self.store = worker.store
        self.artefacts = worker.artefacts
        self.resident = worker.resident
        self.stage = "starting"
        self._last_write = 0.0
        self._last_check = 0.0

    def progress(self, fraction: float, stage: str) -> None:
        now = time.monotonic()
        if stage == self.stage and now - self._last_write < self.worker.config.progress_interval_s:
            return
        self.stage = stage
        self._last_write = now
        if not self.store.set_progress(self.job.id, self.token, stage, fraction):
            raise ServerStopping()  # the job is no longer ours

    def sub(self, stage: str, start: float, end: float) -> Callable[[float, str], None]:
        """A progress callback for one stage mapping its 0..1 onto ``start..end`` of the job."""
        self.progress(start, stage)

        def report(fraction: float, _detail: str = "") -> None:
            self.progress(start + (end - start) * min(1.0, max(0.0, float(fraction))), stage)
            self.check_cancel()

        return report

    def should_cancel(self) -> bool:
        """Cheap enough to call every step: the database is read at most every 50 ms."""
        now = time.monotonic()
        if now - self._last_check < CANCEL_POLL_S:
            return False
        self._last_check = now
        if self.worker._should_stop():
            raise ServerStopping()
        owned, cancel = self.store.run_status(self.job.id, self.token)
        if not owned:
            raise ServerStopping()
        return cancel

    def check_cancel(self) -> None:
        if self.should_cancel():
            raise JobCancelledError("cancelled by the user")
