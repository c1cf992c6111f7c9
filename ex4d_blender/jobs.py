"""Background work: HTTP in worker threads, results applied on Blender's main thread.

Worker threads never touch bpy. They get plain values (URL, token, trajectory dict, paths)
and put :class:`Message` objects on one queue. :func:`poll` drains that queue on the main
thread and hands each message to a callback (``takes.apply_message``), which updates the takes
and inserts strips. In Blender a ``bpy.app.timers`` tick calls :func:`poll`; timers do not fire
in the pip ``bpy`` module, so tests call it directly.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ._engine.protocol import JobOptions, JobState, SceneOptions
from .client import EngineClient, ServerError
from .reporting import describe

POLL_INTERVAL_S = 0.5


@dataclass
class Message:
    """What a worker reports. ``kind``: progress, submitted, succeeded, failed, cancelled, scene_ready."""

    task_key: str
    kind: str
    data: dict = field(default_factory=dict)


@dataclass
class Task:
    key: str
    scene_name: str
    cancel_event: threading.Event
    thread: threading.Thread


_messages: "queue.Queue[Message]" = queue.Queue()
_tasks: dict[str, Task] = {}
_lock = threading.Lock()


def start(key: str, scene_name: str, work: Callable[["Reporter"], None]) -> Task:
    """Run ``work(reporter)`` in a daemon thread; one task per key at a time."""
    with _lock:
        if key in _tasks and _tasks[key].thread.is_alive():
            raise ServerError(f"Take {key} is already running", code="busy")
        cancel_event = threading.Event()
        reporter = Reporter(key, cancel_event)
        thread = threading.Thread(target=_run, args=(work, reporter), name=f"ex4d-{key}", daemon=True)
        task = Task(key, scene_name, cancel_event, thread)
        _tasks[key] = task
    thread.start()
    return task


def cancel(key: str) -> bool:
    """Ask the task to stop; it reports ``cancelled`` once the engine confirmed. False if not running."""
    task = _tasks.get(key)
    if task is None or not task.thread.is_alive():
        return False
    task.cancel_event.set()
    return True


def is_running(key: str) -> bool:
    task = _tasks.get(key)
    return task is not None and task.thread.is_alive()


def active_count() -> int:
    return sum(1 for task in _tasks.values() if task.thread.is_alive())


def busy() -> bool:
    """Work is running or its messages are not all applied yet."""
    return active_count() > 0 or not _messages.empty()


def scene_name_of(key: str) -> str | None:
    task = _tasks.get(key)
    return task.scene_name if task else None


def poll(apply: Callable[[Message, str | None], None]) -> bool:
    """Main thread: hand every queued message to ``apply(message, scene_name)``.

    Returns True while work is still running or messages are pending (timer keeps ticking).
    """
    while True:
        try:
            message = _messages.get_nowait()
        except queue.Empty:
            break
        apply(message, scene_name_of(message.task_key))
        if message.kind in ("succeeded", "failed", "cancelled", "scene_ready"):
            with _lock:
                task = _tasks.get(message.task_key)
                if task is not None and not task.thread.is_alive():
                    _tasks.pop(message.task_key, None)
    with _lock:
        for key in [k for k, t in _tasks.items() if not t.thread.is_alive() and _messages.empty()]:
            _tasks.pop(key, None)
    return active_count() > 0 or not _messages.empty()


def wait_all(apply: Callable[[Message, str | None], None], timeout_s: float = 120.0) -> None:
    """Block until every task finished, applying messages as they come (background mode / tests)."""
    deadline = time.monotonic() + timeout_s
    while poll(apply):
        if time.monotonic() > deadline:
            raise TimeoutError(f"EX-4D jobs still running after {timeout_s:.0f} s")
        time.sleep(0.05)


class Reporter:
    """What a worker holds: post messages, check for cancel. No bpy."""

    def __init__(self, key: str, cancel_event: threading.Event):
        self.key = key
        self.cancel_event = cancel_event

    def post(self, kind: str, **data) -> None:
        _messages.put(Message(self.key, kind, data))

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


def _run(work: Callable[[Reporter], None], reporter: Reporter) -> None:
    try:
        work(reporter)
    except Exception as exc:  # noqa: BLE001 - every failure reaches the UI (a bug with its traceback printed)
        code = getattr(exc, "code", "")
        _level, text, bug = describe(exc)
        kind = "cancelled" if code == "cancelled" else "failed"
        reporter.post(kind, message=text, code="internal_error" if bug else (code or "internal_error"))


# ---------------------------------------------------------------------- work items
def generate_work(url: str, token: str, timeout_s: float, scene_id: str, trajectory: dict, options: JobOptions,
                  result_path: str, conditioning_paths: dict[str, str] | None = None, job_id: str = ""):
    """A job: submit (unless ``job_id`` names one already submitted: resume after a reload), follow
    its progress, download the result (and conditioning videos), or cancel it."""

    def work(reporter: Reporter) -> None:
        client = EngineClient(url, token, timeout_s)
        current = job_id
        if not current:
            current = client.submit_job(scene_id, trajectory, options)
            reporter.post("submitted", job_id=current)
        _follow_job(client, current, reporter, result_path, conditioning_paths or {})

    return work


def _follow_job(client: EngineClient, job_id: str, reporter: Reporter, result_path: str,
                conditioning_paths: dict[str, str]) -> None:
    cancel_sent = False
    while True:
        if reporter.cancelled() and not cancel_sent:
            try:
                client.cancel_job(job_id)
            except ServerError as exc:
                if exc.status != 409:  # 409: it finished meanwhile; the state below says how
                    raise
            cancel_sent = True
        job = client.job(job_id)
        reporter.post("progress", state=job.state.value, stage=job.stage, progress=job.progress, eta_s=job.eta_s)
        if job.state.terminal:
            break
        time.sleep(POLL_INTERVAL_S / (4 if cancel_sent else 1))
    if job.state == JobState.cancelled:
        reporter.post("cancelled", message="Cancelled", job_id=job_id)
        return
    if job.state == JobState.failed:
        reporter.post("failed", message=f"Engine job failed: {job.error.message if job.error else 'no reason given'}",
                      job_id=job_id, code=job.error.error if job.error else "internal_error")
        return
    client.download_result(job_id, result_path, reporter.cancelled)
    downloaded = {}
    for which, path in conditioning_paths.items():
        downloaded[which] = client.download_conditioning(job_id, path, which, reporter.cancelled)
    eyes = {}
    if job.eye_urls is not None:  # a stereo take: the strip plays the packed pair; each eye lies beside it
        stem = os.path.splitext(result_path)[0]
        for eye in ("left", "right"):
            eyes[eye] = client.download_eye(job_id, f"{stem}_{eye}.mp4", eye, reporter.cancelled)
    reporter.post("succeeded", job_id=job_id, result_path=result_path, conditioning=downloaded, eyes=eyes,
                  info={"fps": job.fps, "num_frames": job.num_frames})


def scene_upload_work(url: str, token: str, timeout_s: float, video_path: str, options: SceneOptions,
                      package_path: str, depth_path: str = "", name: str = "", attach_to: str = ""):
    """Upload a video, wait for the engine's reconstruction, download the scene package (unless the
    scene is only ``attach_to`` an existing collection). ``name``: the clip's name, for the collection."""

    def work(reporter: Reporter) -> None:
        client = EngineClient(url, token, timeout_s)
        reporter.post("progress", state="uploading", stage="upload", progress=0.0)
        scene_id = client.upload_video(video_path, options, depth_path)
        reporter.post("submitted", scene_id=scene_id)

        def on_progress(status) -> None:  # the recon Job, or the Scene before its job is known
            reporter.post("progress", state=status.state.value, stage=getattr(status, "stage", "") or "reconstruct",
                          progress=getattr(status, "progress", 0.0))

        scene = client.wait_for_scene(scene_id, reporter.cancelled, on_progress)
        if not attach_to:
            client.download_package(scene_id, package_path, reporter.cancelled)
        metadata = scene.metadata
        engine_scene = ({"width": metadata.width, "height": metadata.height, "num_frames": metadata.num_frames}
                        if metadata else {})
        reporter.post("scene_ready", scene_id=scene_id, package_path=package_path, url=url, name=name,
                      attach_to=attach_to, engine_scene=engine_scene)

    return work
