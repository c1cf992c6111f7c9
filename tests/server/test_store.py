"""The job store (real SQLite, two connections like the HTTP and worker processes), the file rules,
and how failures are described."""

from __future__ import annotations

import errno
import os
import threading

import pytest
import torch

from ex4d_engine.errors import InputError, JobCancelledError, NotFoundError
from server.artefacts import Artefacts, atomic_path, remove_partials, resolve_import
from ex4d_engine.errors import ConflictError
from ex4d_engine.protocol import JobState, SceneState
from server.store import Store
from server.worker import describe_failure


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "db.sqlite3")


def _scene_and_job(store):
    scene, recon = store.create_scene(source_name="a.mp4", source_path="/x/a.mp4", depth_path=None,
                                      options={"num_frames": 9})
    return scene, recon


def test_claims_are_fifo_and_each_job_is_taken_once(store, tmp_path):
    scene, recon = _scene_and_job(store)
    jobs = [store.create_job(scene_id=scene.id, options={}, trajectory_json="{}", num_frames=1, fps=1.0)
            for _ in range(30)]
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(pid: int) -> None:
        own = Store(tmp_path / "db.sqlite3")  # its own connection, like a worker process
        while (got := own.claim_next(pid)) is not None:
            with lock:
                claimed.append(got[0].id)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted([recon.id] + [j.id for j in jobs])  # each exactly once
    assert len(set(claimed)) == len(claimed)


def test_one_worker_takes_jobs_in_submission_order(store):
    scene, recon = _scene_and_job(store)
    jobs = [store.create_job(scene_id=scene.id, options={}, trajectory_json="{}", num_frames=1, fps=1.0)
            for _ in range(5)]
    store.request_cancel(jobs[2].id)
    order = []
    while (got := store.claim_next(1)) is not None:
        order.append(got[0].id)
    assert order == [recon.id, jobs[0].id, jobs[1].id, jobs[3].id, jobs[4].id]


def test_run_token_guards_every_write(store):
    scene, recon = _scene_and_job(store)
    job, token = store.claim_next(11)
    assert store.set_progress(job.id, token, "recon", 0.5)
    assert not store.set_progress(job.id, "someone-else", "recon", 0.9)
    assert store.get_job(job.id).progress == 0.5
    assert store.finish(job.id, token, JobState.succeeded, scene_metadata={"width": 4})
    assert not store.finish(job.id, token, JobState.failed, error=("x", "y"))  # terminal stays terminal
    assert store.get_scene(scene.id).state == SceneState.ready
    assert store.get_scene(scene.id).metadata == {"width": 4}


def test_restart_recovery_requeues_once_then_fails(store):
    scene, recon = _scene_and_job(store)
    job, token = store.claim_next(1)
    assert store.recover_after_restart(max_attempts=2)["requeued"] == [job.id]
    assert store.get_job(job.id).state == JobState.queued
    assert not store.set_progress(job.id, token, "recon", 0.7)  # the old run lost it
    again, _ = store.claim_next(2)
    assert again.id == job.id and again.attempts == 2
    assert store.recover_after_restart(max_attempts=2)["failed"] == [job.id]
    failed = store.get_job(job.id)
    assert failed.state == JobState.failed and failed.error_code == "interrupted"
    assert store.get_scene(scene.id).state == SceneState.failed


def test_cancel_rules(store):
    scene, recon = _scene_and_job(store)
    queued = store.create_job(scene_id=scene.id, options={}, trajectory_json="{}", num_frames=1, fps=1.0)
    assert store.request_cancel(queued.id).state == JobState.cancelled
    running, token = store.claim_next(3)
    assert running.id == recon.id
    after = store.request_cancel(running.id)
    assert after.state == JobState.running and after.cancel_requested
    assert store.run_status(running.id, token) == (True, True)
    store.finish(running.id, token, JobState.cancelled, error=("cancelled", "cancelled by the user"))
    assert store.get_scene(scene.id).state == SceneState.cancelled
    with pytest.raises(ConflictError):
        store.request_cancel(running.id)
    with pytest.raises(NotFoundError):
        store.request_cancel("j_0000000000000000")


def test_worker_death_fails_only_its_jobs(store):
    scene, recon = _scene_and_job(store)
    job, _ = store.claim_next(77)
    waiting = store.create_job(scene_id=scene.id, options={}, trajectory_json="{}", num_frames=1, fps=1.0)
    assert store.fail_jobs_of_worker(77, "the worker process died (killed by SIGKILL)") == [job.id]
    assert store.get_job(job.id).error_code == "worker_crashed"
    assert store.get_job(waiting.id).state == JobState.queued


def test_graceful_requeue_does_not_count_an_attempt(store):
    _scene_and_job(store)
    job, token = store.claim_next(5)
    assert store.requeue(job.id, token)
    again, _ = store.claim_next(6)
    assert again.id == job.id and again.attempts == 1


# ---------------------------------------------------------------------- files
def test_import_paths_must_stay_in_a_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (root / "ok.mp4").write_bytes(b"x")
    (outside / "no.mp4").write_bytes(b"x")
    os.symlink(outside / "no.mp4", root / "link.mp4")
    os.symlink(outside, root / "dirlink")
    assert resolve_import(str(root / "ok.mp4"), [root], "import_path") == (root / "ok.mp4").resolve()
    for bad in (str(root / ".." / "outside" / "no.mp4"), str(root / "link.mp4"), str(root / "dirlink" / "no.mp4"),
                "ok.mp4", str(root), "/etc/passwd", "\x00"):
        with pytest.raises(InputError) as info:
            resolve_import(bad, [root], "import_path")
        assert info.value.field == "import_path"
    with pytest.raises(InputError, match="imports are disabled"):
        resolve_import(str(root / "ok.mp4"), [], "import_path")


def test_artefact_ids_and_paths_cannot_escape(tmp_path):
    artefacts = Artefacts(tmp_path / "data")
    for bad in ("../x", "s_../../../etc", "j_0123", "s_0123456789ABCDEF"):
        with pytest.raises(NotFoundError):
            artefacts.scene_dir(bad)
    with pytest.raises(InputError):
        artefacts.inside(tmp_path / "elsewhere")
    os.symlink(tmp_path, tmp_path / "data" / "jobs" / "j_0123456789abcdef")
    with pytest.raises(InputError):
        artefacts.job_dir("j_0123456789abcdef")  # a symlink out of the data dir is refused


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "result.mp4"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer died")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"whole")
    assert final.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [final]
    (tmp_path / ".partial-abc-x.mp4").write_bytes(b"")
    remove_partials(tmp_path)
    assert list(tmp_path.iterdir()) == [final]


def test_remove_orphans_keeps_known_folders(tmp_path):
    artefacts = Artefacts(tmp_path / "data")
    keep = artefacts.scene_dir("s_0123456789abcdef", create=True)
    drop = artefacts.scene_dir("s_fedcba9876543210", create=True)
    assert artefacts.remove_orphans({"s_0123456789abcdef"}, set()) == ["scenes/s_fedcba9876543210"]
    assert keep.is_dir() and not drop.exists()


# ---------------------------------------------------------------------- failures
@pytest.mark.parametrize("exc,code,text", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "resource_unavailable",
     "GPU out of memory during generate"),
    (MemoryError(), "resource_unavailable", "host out of memory during generate"),
    (OSError(errno.ENOSPC, "No space left on device"), "resource_unavailable", "disk full during generate"),
    (OSError("ffmpeg failed writing result.mp4: Error writing trailer: No space left on device"),
     "resource_unavailable", "disk full during generate"),
    (InputError("trajectory has 48 frames, video has 49"), "invalid_input", "trajectory has 48 frames"),
    (JobCancelledError("cancelled by the user"), "cancelled", "cancelled by the user"),
    (ZeroDivisionError("division by zero"), "internal_error", "ZeroDivisionError during generate"),
])
def test_failures_are_described_with_their_stage(exc, code, text):
    got_code, message = describe_failure(exc, "generate")
    assert got_code == code and text in message
