"""Jobs and scenes in SQLite (WAL), shared by the HTTP process and the worker processes.

One connection per thread (and per process). Writers that must be atomic across processes use
``BEGIN IMMEDIATE``. A running job carries a ``run_token``; every write of its progress or result
names the token, so a worker that lost its job (server restarted, job re-queued) cannot touch it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ex4d_engine.errors import (ConflictError, InterruptedJobError, JobCancelledError, NotFoundError,
                                WorkerCrashedError)
from ex4d_engine.protocol import SCENE_STATE_OF_RECON, JobKind, JobState, SceneState

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class JobRow:
    id: str
    seq: int
    kind: JobKind
    scene_id: str
    state: JobState
    stage: str
    progress: float
    created_at: float
    started_at: Optional[float]
    finished_at: Optional[float]
    error_code: Optional[str]
    error_message: Optional[str]
    options: dict[str, Any]
    num_frames: Optional[int]
    fps: Optional[float]
    cancel_requested: bool
    attempts: int
    run_token: Optional[str]
    worker_pid: Optional[int]
    version: int


@dataclass(frozen=True)
class SceneRow:
    id: str
    state: SceneState
    created_at: float
    recon_job_id: str
    source_name: str
    source_path: str
    depth_path: Optional[str]
    options: dict[str, Any]
    metadata: Optional[dict[str, Any]]
    error_code: Optional[str]
    error_message: Optional[str]


@dataclass(frozen=True)
class WorkerRow:
    slot: int
    pid: Optional[int]
    state: str
    job_id: Optional[str]
    device: str
    restarts: int
    info: dict[str, Any]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scenes (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    recon_job_id TEXT NOT NULL,
    source_name TEXT NOT NULL,
    source_path TEXT NOT NULL,
    depth_path TEXT,
    options_json TEXT NOT NULL,
    metadata_json TEXT,
    error_code TEXT,
    error_message TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    scene_id TEXT NOT NULL,
    state TEXT NOT NULL,
    stage TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    error_code TEXT,
    error_message TEXT,
    options_json TEXT NOT NULL,
    trajectory_json TEXT,
    num_frames INTEGER,
    fps REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_token TEXT,
    worker_pid INTEGER,
    version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state_seq ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS workers (
    slot INTEGER PRIMARY KEY,
    pid INTEGER,
    state TEXT NOT NULL,
    job_id TEXT,
    device TEXT NOT NULL,
    restarts INTEGER NOT NULL DEFAULT 0,
    info_json TEXT NOT NULL DEFAULT '{}'
);
"""

_JOB_COLUMNS = ("id, seq, kind, scene_id, state, stage, progress, created_at, started_at, finished_at, "
                "error_code, error_message, options_json, num_frames, fps, cancel_requested, attempts, "
                "run_token, worker_pid, version")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


class Store:
    """The SQLite database at ``path``; safe to share between threads (one connection each)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        db = self._db()
        db.executescript(_SCHEMA)  # idempotent; executescript manages its own transaction
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    # ------------------------------------------------------------------ plumbing
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=True)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes (kill -9)
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    class _Transaction:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type, exc, tb) -> None:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _write(self) -> "Store._Transaction":
        return Store._Transaction(self._db())

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # ------------------------------------------------------------------ scenes
    def create_scene(self, *, source_name: str, source_path: str, depth_path: Optional[str],
                     options: dict[str, Any], scene_id: Optional[str] = None) -> tuple[SceneRow, JobRow]:
        """A new scene and its recon job, in one transaction."""
        scene_id = scene_id or new_id("s")
        job_id = new_id("j")
        now = time.time()
        with self._write() as db:
            db.execute(
                "INSERT INTO scenes (id, state, created_at, recon_job_id, source_name, source_path, depth_path, "
                "options_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (scene_id, SceneState.pending.value, now, job_id, source_name, source_path, depth_path,
                 json.dumps(options)),
            )
            self._insert_job(db, job_id, JobKind.recon, scene_id, options, None, options.get("num_frames"), None, now)
        return self.get_scene(scene_id), self.get_job(job_id)

    def get_scene(self, scene_id: str) -> SceneRow:
        row = self._db().execute("SELECT * FROM scenes WHERE id = ?", (scene_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"scene {scene_id!r} not found")
        return _scene(row)

    def list_scenes(self, limit: int = 100) -> list[SceneRow]:
        rows = self._db().execute("SELECT * FROM scenes ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [_scene(r) for r in rows]

    # ------------------------------------------------------------------ jobs
    def create_job(self, *, scene_id: str, options: dict[str, Any], trajectory_json: str,
                   num_frames: int, fps: float) -> JobRow:
        job_id = new_id("j")
        with self._write() as db:
            self._insert_job(db, job_id, JobKind.generate, scene_id, options, trajectory_json, num_frames, fps,
                             time.time())
        return self.get_job(job_id)

    @staticmethod
    def _insert_job(db, job_id, kind, scene_id, options, trajectory_json, num_frames, fps, now) -> None:
        db.execute(
            "INSERT INTO jobs (id, kind, scene_id, state, stage, created_at, options_json, trajectory_json, "
            "num_frames, fps) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
            (job_id, kind.value, scene_id, JobState.queued.value, now, json.dumps(options), trajectory_json,
             num_frames, fps),
        )

    def get_job(self, job_id: str) -> JobRow:
        row = self._db().execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"job {job_id!r} not found")
        return _job(row)

    def job_version(self, job_id: str) -> Optional[int]:
        """The job's change counter (one indexed read; cheap enough for the event loop), None if unknown."""
        row = self._db().execute("SELECT version FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else int(row[0])

    def list_jobs(self, state: Optional[JobState] = None, limit: int = 100) -> list[JobRow]:
        if state is None:
            rows = self._db().execute(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY seq DESC LIMIT ?", (limit,))
        else:
            rows = self._db().execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state = ? ORDER BY seq DESC LIMIT ?",
                                      (state.value, limit))
        return [_job(r) for r in rows.fetchall()]

    def trajectory_json(self, job_id: str) -> Optional[str]:
        row = self._db().execute("SELECT trajectory_json FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else row[0]

    def queue_length(self) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").fetchone()[0])

    def queue_position(self, job: JobRow) -> Optional[int]:
        if job.state != JobState.queued:
            return None
        ahead = self._db().execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND seq < ?",
                                   (job.seq,)).fetchone()[0]
        return int(ahead) + 1

    # ------------------------------------------------------------------ worker side
    def claim_next(self, worker_pid: int) -> Optional[tuple[JobRow, str]]:
        """Take the oldest queued job (FIFO); returns it with its run token, or None."""
        token = uuid.uuid4().hex
        with self._write() as db:
            row = db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = 'running', stage = 'starting', progress = 0, started_at = ?, "
                "attempts = attempts + 1, run_token = ?, worker_pid = ?, version = version + 1 WHERE id = ?",
                (time.time(), token, worker_pid, row["id"]),
            )
        return self.get_job(row["id"]), token

    def set_progress(self, job_id: str, token: str, stage: str, progress: float) -> bool:
        """Returns False when this run no longer owns the job."""
        cur = self._db().execute(
            "UPDATE jobs SET stage = ?, progress = ?, version = version + 1 "
            "WHERE id = ? AND run_token = ? AND state = 'running'",
            (stage, min(1.0, max(0.0, float(progress))), job_id, token),
        )
        return cur.rowcount == 1

    def run_status(self, job_id: str, token: str) -> tuple[bool, bool]:
        """(still owned by this run, cancel requested)."""
        row = self._db().execute("SELECT run_token, state, cancel_requested FROM jobs WHERE id = ?",
                                 (job_id,)).fetchone()
        if row is None or row["run_token"] != token or row["state"] != JobState.running.value:
            return False, True
        return True, bool(row["cancel_requested"])

    def finish(self, job_id: str, token: str, state: JobState, *, error: Optional[tuple[str, str]] = None,
               scene_metadata: Optional[dict[str, Any]] = None) -> bool:
        """Move a running job to a terminal state (and its scene, for recon). False if not owned."""
        assert state.terminal
        code, message = error or (None, None)
        with self._write() as db:
            cur = db.execute(
                "UPDATE jobs SET state = ?, stage = ?, progress = CASE WHEN ? THEN 1.0 ELSE progress END, "
                "finished_at = ?, error_code = ?, error_message = ?, run_token = NULL, version = version + 1 "
                "WHERE id = ? AND run_token = ? AND state = 'running'",
                (state.value, "done" if state == JobState.succeeded else state.value,
                 state == JobState.succeeded, time.time(), code, message, job_id, token),
            )
            if cur.rowcount != 1:
                return False
            self._finish_scene_of(db, job_id, state, code, message, scene_metadata)
        return True

    def requeue(self, job_id: str, token: str) -> bool:
        """Give a running job back to the queue at its place (server shutting down; not its fault)."""
        cur = self._db().execute(
            "UPDATE jobs SET state = 'queued', stage = 'queued (server restarted)', progress = 0, "
            "started_at = NULL, attempts = MAX(0, attempts - 1), run_token = NULL, worker_pid = NULL, "
            "version = version + 1 WHERE id = ? AND run_token = ? AND state = 'running'",
            (job_id, token),
        )
        return cur.rowcount == 1

    def give_back_jobs_of_worker(self, worker_pid: int) -> list[str]:
        """Server stopping and this worker had to be killed: its job goes back to the queue, uncounted."""
        with self._write() as db:
            ids = [row["id"] for row in db.execute(
                "SELECT id FROM jobs WHERE state = 'running' AND worker_pid = ?", (worker_pid,)).fetchall()]
            db.execute(
                "UPDATE jobs SET state = 'queued', stage = 'queued (server restarted)', progress = 0, "
                "started_at = NULL, attempts = MAX(0, attempts - 1), run_token = NULL, worker_pid = NULL, "
                "version = version + 1 WHERE state = 'running' AND worker_pid = ?", (worker_pid,))
        return ids

    @staticmethod
    def _finish_scene_of(db, job_id, state, code, message, scene_metadata=None) -> None:
        row = db.execute("SELECT kind, scene_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or row["kind"] != JobKind.recon.value:
            return
        db.execute(
            "UPDATE scenes SET state = ?, metadata_json = ?, error_code = ?, error_message = ? WHERE id = ?",
            (SCENE_STATE_OF_RECON[state].value, json.dumps(scene_metadata) if scene_metadata else None,
             code, message, row["scene_id"]),
        )

    # ------------------------------------------------------------------ cancel
    def request_cancel(self, job_id: str) -> JobRow:
        """Queued -> cancelled now; running -> cancel requested (the worker stops at its next step)."""
        with self._write() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"job {job_id!r} not found")
            state = JobState(row["state"])
            if state.terminal:
                raise ConflictError(f"job {job_id!r} already finished ({state.value}); nothing to cancel")
            if state == JobState.queued:
                message = "cancelled by the user before it started"
                db.execute(
                    "UPDATE jobs SET state = 'cancelled', stage = 'cancelled', finished_at = ?, "
                    "error_code = ?, error_message = ?, version = version + 1 WHERE id = ?",
                    (time.time(), JobCancelledError.code, message, job_id),
                )
                self._finish_scene_of(db, job_id, JobState.cancelled, JobCancelledError.code, message)
            else:
                db.execute("UPDATE jobs SET cancel_requested = 1, version = version + 1 WHERE id = ?", (job_id,))
        return self.get_job(job_id)

    # ------------------------------------------------------------------ recovery
    def fail_jobs_of_worker(self, worker_pid: int, message: str) -> list[str]:
        """The worker process died: fail (or, if cancel was asked, cancel) what it was running."""
        failed = []
        with self._write() as db:
            rows = db.execute("SELECT id, cancel_requested FROM jobs WHERE state = 'running' AND worker_pid = ?",
                              (worker_pid,)).fetchall()
            for row in rows:
                state, code = ((JobState.cancelled, JobCancelledError.code) if row["cancel_requested"]
                               else (JobState.failed, WorkerCrashedError.code))
                db.execute(
                    "UPDATE jobs SET state = ?, stage = ?, finished_at = ?, error_code = ?, error_message = ?, "
                    "run_token = NULL, version = version + 1 WHERE id = ?",
                    (state.value, state.value, time.time(), code, message, row["id"]),
                )
                self._finish_scene_of(db, row["id"], state, code, message)
                failed.append(row["id"])
        return failed

    def retry_or_fail(self, job_id: str, token: str, max_attempts: int, message: str) -> Optional[JobState]:
        """The run's executor was lost (a Ray actor or node died): re-queue the job at its place, or fail it
        once it has been tried ``max_attempts`` times (the restart-recovery policy). None if not owned."""
        with self._write() as db:
            row = db.execute("SELECT attempts, cancel_requested FROM jobs WHERE id = ? AND run_token = ? "
                             "AND state = 'running'", (job_id, token)).fetchone()
            if row is None:
                return None
            if row["cancel_requested"]:
                state, code, message = JobState.cancelled, "cancelled", "cancelled by the user"
            elif row["attempts"] >= max_attempts:
                state, code = JobState.failed, "worker_crashed"
                message = f"{message}; tried {row['attempts']} times, not retried again"
            else:
                db.execute(
                    "UPDATE jobs SET state = 'queued', stage = 'queued (its worker was lost; retrying)', "
                    "progress = 0, started_at = NULL, run_token = NULL, worker_pid = NULL, "
                    "version = version + 1 WHERE id = ?", (job_id,))
                return JobState.queued
            db.execute(
                "UPDATE jobs SET state = ?, stage = ?, finished_at = ?, error_code = ?, error_message = ?, "
                "run_token = NULL, version = version + 1 WHERE id = ?",
                (state.value, state.value, time.time(), code, message, job_id),
            )
            self._finish_scene_of(db, job_id, state, code, message)
        return state

    def recover_after_restart(self, max_attempts: int) -> dict[str, list[str]]:
        """Start-up: running jobs were interrupted by the server's death. See docs/api.md."""
        result: dict[str, list[str]] = {"requeued": [], "failed": [], "cancelled": []}
        now = time.time()
        with self._write() as db:
            rows = db.execute("SELECT id, attempts, cancel_requested FROM jobs WHERE state = 'running'").fetchall()
            for row in rows:
                if row["cancel_requested"]:
                    state, code, message = JobState.cancelled, JobCancelledError.code, "cancelled by the user"
                elif row["attempts"] >= max_attempts:
                    error = InterruptedJobError.from_template(str(row["attempts"]))
                    state, code, message = JobState.failed, error.code, error.message
                else:
                    db.execute(
                        "UPDATE jobs SET state = 'queued', stage = 'queued (re-queued after a server restart)', "
                        "progress = 0, started_at = NULL, run_token = NULL, worker_pid = NULL, "
                        "version = version + 1 WHERE id = ?", (row["id"],))
                    result["requeued"].append(row["id"])
                    continue
                db.execute(
                    "UPDATE jobs SET state = ?, stage = ?, finished_at = ?, error_code = ?, error_message = ?, "
                    "run_token = NULL, version = version + 1 WHERE id = ?",
                    (state.value, state.value, now, code, message, row["id"]),
                )
                self._finish_scene_of(db, row["id"], state, code, message)
                result[state.value].append(row["id"])
            db.execute("DELETE FROM workers")
        return result

    def known_ids(self) -> tuple[set[str], set[str]]:
        """(scene ids, job ids) that have a row."""
        db = self._db()
        return ({r[0] for r in db.execute("SELECT id FROM scenes")}, {r[0] for r in db.execute("SELECT id FROM jobs")})

    # ------------------------------------------------------------------ workers
    def set_worker(self, slot: int, *, pid: Optional[int], state: str, device: str,
                   job_id: Optional[str] = None, restarts: Optional[int] = None,
                   info: Optional[dict[str, Any]] = None) -> None:
        with self._write() as db:
            old = db.execute("SELECT restarts, info_json FROM workers WHERE slot = ?", (slot,)).fetchone()
            keep_restarts = old["restarts"] if old else 0
            keep_info = old["info_json"] if old else "{}"
            db.execute(
                "INSERT OR REPLACE INTO workers (slot, pid, state, job_id, device, restarts, info_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (slot, pid, state, job_id, device, keep_restarts if restarts is None else restarts,
                 keep_info if info is None else json.dumps(info)),
            )

    def list_workers(self) -> list[WorkerRow]:
        rows = self._db().execute("SELECT * FROM workers ORDER BY slot").fetchall()
        return [WorkerRow(r["slot"], r["pid"], r["state"], r["job_id"], r["device"], r["restarts"],
                          json.loads(r["info_json"])) for r in rows]


def _job(row: sqlite3.Row) -> JobRow:
    return JobRow(
        id=row["id"], seq=row["seq"], kind=JobKind(row["kind"]), scene_id=row["scene_id"],
        state=JobState(row["state"]), stage=row["stage"], progress=float(row["progress"]),
        created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
        error_code=row["error_code"], error_message=row["error_message"],
        options=json.loads(row["options_json"]), num_frames=row["num_frames"], fps=row["fps"],
        cancel_requested=bool(row["cancel_requested"]), attempts=int(row["attempts"]),
        run_token=row["run_token"], worker_pid=row["worker_pid"], version=int(row["version"]),
    )


def _scene(row: sqlite3.Row) -> SceneRow:
    return SceneRow(
        id=row["id"], state=SceneState(row["state"]), created_at=row["created_at"],
        recon_job_id=row["recon_job_id"], source_name=row["source_name"], source_path=row["source_path"],
        depth_path=row["depth_path"], options=json.loads(row["options_json"]),
        metadata=json.loads(row["metadata_json"]) if row["metadata_json"] else None,
        error_code=row["error_code"], error_message=row["error_message"],
    )
