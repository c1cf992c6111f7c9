"""HTTP client for the EX-4D engine (``ex4d serve``) on the standard library's ``urllib``.

No bpy and no third-party module here: the client runs in worker threads and on a Blender that
ships neither ``requests`` nor ``numpy``. Every failure becomes :class:`ServerError` with a message
written for the artist.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import time
import uuid
from typing import Any, Callable, Iterator
from urllib import error as urlerror, request as urlrequest
from urllib.parse import urlparse

from ._engine import CONTRACT_VERSION
from ._engine.errors import KINDS
from ._engine.protocol import API_VERSION, DEFAULT_URL, Job, JobOptions, JobRequest, Scene, SceneOptions, \
    SceneState
from .reporting import UserError

CHUNK = 1 << 20


class ServerError(UserError):
    """The engine could not be reached or refused a request.

    Attributes:
        message: written for the artist.
        status: HTTP status (0 when the engine was not reached).
        code: the engine's error code (``invalid_input``, ``not_found``, ...) or a client one
            (``unreachable``, ``unauthorized``, ``version_mismatch``, ``cancelled``, ``timeout``,
            ``bad_url``, ``bad_response``).
    """

    def __init__(self, message: str, status: int = 0, code: str = "internal_error"):
        kind = KINDS.get(code)
        super().__init__(message, code, kind.blender_level if kind else "ERROR")
        self.status = status
        #: The error table says the artist cannot fix it: reported as a bug (bad_response, internal_error...).
        self.bug = bool(kind and kind.bug)


def is_loopback(url: str) -> bool:
    """True when ``url`` points at this machine (always allowed, even without online access)."""
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Response:
    """What :meth:`EngineClient._request` returns: status, headers and the open body."""

    def __init__(self, raw):
        self.raw = raw
        self.status_code = raw.status

    def read(self) -> bytes:
        return self.raw.read()

    def close(self) -> None:
        self.raw.close()


def _multipart(fields: dict[str, str], files: dict[str, str]) -> tuple[str, int, Iterator[bytes]]:
    """(content type, length, body chunks) of a multipart/form-data body; files are streamed from disk."""
    boundary = f"ex4d-{uuid.uuid4().hex}"
    parts: list[bytes | str] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, path in files.items():
        filename = os.path.basename(path).replace('"', "_")
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode())
        parts.append(path)  # a path: streamed
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    length = sum(os.path.getsize(p) if isinstance(p, str) else len(p) for p in parts)

    def chunks() -> Iterator[bytes]:
        for part in parts:
            if isinstance(part, str):
                with open(part, "rb") as handle:
                    while block := handle.read(CHUNK):
                        yield block
            else:
                yield part

    return f"multipart/form-data; boundary={boundary}", length, chunks()


class EngineClient:
    """One engine at ``url``; ``token`` is sent as a bearer token when set."""

    def __init__(self, url: str, token: str = "", timeout_s: float = 30.0):
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ServerError(f"Engine URL must look like http://127.0.0.1:8420, got {url!r}", code="bad_url")
        self.url = url.rstrip("/")
        self.token = token.strip()
        self.timeout_s = timeout_s

    # ------------------------------------------------------------------ plumbing
    def _request(self, method: str, path: str, *, json_body: Any = None, body: Any = None,
                 headers: dict | None = None, timeout: float | None = None) -> _Response:
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        req = urlrequest.Request(self.url + path, data=body, headers=headers, method=method)
        timeout = timeout or self.timeout_s
        # A desktop's http_proxy must not swallow requests to an engine on this machine.
        opener = urlrequest.build_opener(*([urlrequest.ProxyHandler({})] if is_loopback(self.url) else []))
        try:
            return _Response(opener.open(req, timeout=timeout))
        except urlerror.HTTPError as exc:
            raise _error_from_response(exc.code, exc.read(), self.url) from None
        except (socket.timeout, TimeoutError):
            raise ServerError(f"The EX-4D engine at {self.url} did not answer within {timeout:.0f} s "
                              "(busy or stuck? raise the timeout in the add-on preferences)",
                              code="timeout") from None
        except (urlerror.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise ServerError(f"The EX-4D engine at {self.url} did not answer within {timeout:.0f} s",
                                  code="timeout") from None
            raise ServerError(f"Cannot reach the EX-4D engine at {self.url} ({type(reason).__name__}). "
                              "Is `ex4d serve` running? Start it or use 'Start local engine' "
                              "in the add-on preferences.", code="unreachable") from None

    def _json(self, method: str, path: str, **kwargs: Any) -> dict:
        response = self._request(method, path, **kwargs)
        try:
            text = response.read()
        finally:
            response.close()
        try:
            data = json.loads(text)
        except ValueError:
            raise ServerError(f"The engine answered {method} {path} with something that is not JSON "
                              f"({text[:80]!r})", response.status_code, "bad_response") from None
        if not isinstance(data, dict):
            raise ServerError(f"The engine answered {method} {path} with {type(data).__name__}, expected an object",
                              response.status_code, "bad_response")
        return data

    def _download(self, path: str, dest: str, should_cancel: Callable[[], bool] | None = None) -> str:
        """Stream ``path`` to ``dest`` through a temporary name, renamed only when complete."""
        response = self._request("GET", path, timeout=max(self.timeout_s, 120.0))
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        tmp = f"{dest}.part-{os.getpid()}"
        try:
            with open(tmp, "wb") as handle:
                while chunk := response.raw.read(CHUNK):
                    if should_cancel and should_cancel():
                        raise ServerError("Download cancelled", code="cancelled")
                    handle.write(chunk)
            os.replace(tmp, dest)
        finally:
            response.close()
            if os.path.exists(tmp):
                os.remove(tmp)
        return dest

    def _typed(self, cls, data: dict, where: str):
        """``cls.from_dict(data)``: an answer outside the protocol is the engine's fault, said so."""
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as exc:  # the protocol's InputError is a ValueError too
            raise ServerError(f"The engine's answer to {where} does not follow the ex4d protocol: "
                              f"{getattr(exc, 'message', exc)}", 200, "bad_response") from None

    # ------------------------------------------------------------------ API
    def health(self) -> dict:
        return self._json("GET", "/v1/health")

    def check_compatible(self) -> tuple[str, str]:
        """Health + contract handshake + token: (short verdict, full verdict), or :class:`ServerError`."""
        info = self.health()
        engine_contract = info.get("contract_version")
        engine_api = info.get("api_version", API_VERSION)
        if engine_api != API_VERSION:
            raise ServerError(f"Version mismatch: the engine at {self.url} speaks protocol v{engine_api}, this add-on "
                              f"v{API_VERSION}. Update the add-on or the engine so they match.", 200,
                              "version_mismatch")
        if engine_contract != CONTRACT_VERSION:
            raise ServerError(f"Version mismatch: the engine at {self.url} speaks trajectory contract "
                              f"v{engine_contract}, this add-on speaks v{CONTRACT_VERSION}. "
                              "Update the add-on or the engine so they match.", 200, "version_mismatch")
        # Health is public on some engines; make sure the token is accepted too.
        self._json("GET", "/v1/jobs")
        version = info.get("version") or "?"
        names = []
        for generator in info.get("generators") or []:
            if isinstance(generator, dict):
                state = "" if generator.get("available", True) else " (unavailable)"
                names.append(f"{generator.get('name', '?')}{state}")
            else:
                names.append(str(generator))
        full = (f"Connected: EX-4D engine {version}, contract v{engine_contract}, "
                f"generators: {', '.join(names) or 'none listed'}, queue: {info.get('queue_length', 0)}")
        return f"Engine {version} ready", full

    def upload_video(self, video_path: str, options: SceneOptions, depth_path: str = "") -> str:
        """POST /v1/scenes with the video (and a depth file, if given; options become form fields).

        Returns the new scene id.
        """
        for what, path in (("Video", video_path), ("Depth", depth_path)):
            if path and not os.path.isfile(path):
                raise ServerError(f"{what} file not found: {path}", code="not_found")
        fields = {k: str(v).lower() if isinstance(v, bool) else str(v)
                  for k, v in options.to_dict().items() if v is not None}
        files = {"video": video_path, **({"depth": depth_path} if depth_path else {})}
        content_type, length, chunks = _multipart(fields, files)
        data = self._json("POST", "/v1/scenes", body=chunks,
                          headers={"Content-Type": content_type, "Content-Length": str(length)},
                          timeout=max(self.timeout_s, 300.0))
        return self._typed(Scene, data, "POST /v1/scenes").id

    def scene(self, scene_id: str) -> Scene:
        return self._typed(Scene, self._json("GET", f"/v1/scenes/{scene_id}"), "GET /v1/scenes/{id}")

    def wait_for_scene(self, scene_id: str, should_cancel: Callable[[], bool],
                       on_progress: Callable[[Job | Scene], None], poll_s: float = 0.5) -> Scene:
        """Poll the scene (and its recon job, for progress) until ready; ServerError if it failed."""
        cancel_sent = False
        while True:
            scene = self.scene(scene_id)
            if should_cancel() and not cancel_sent:
                try:
                    self.cancel_job(scene.recon_job_id)
                except ServerError:
                    pass  # finished meanwhile
                cancel_sent = True
            if scene.state == SceneState.ready:
                return scene
            if scene.state == SceneState.cancelled:
                raise ServerError("Cancelled", code="cancelled")
            if scene.state == SceneState.failed:
                error = scene.error
                raise ServerError(f"Engine reconstruction failed: {error.message if error else 'no reason given'}",
                                  code=error.error if error else "internal_error")
            on_progress(self.job(scene.recon_job_id) if scene.recon_job_id else scene)
            time.sleep(poll_s)

    def download_package(self, scene_id: str, dest: str, should_cancel=None) -> str:
        return self._download(f"/v1/scenes/{scene_id}/package", dest, should_cancel)

    def submit_job(self, scene_id: str, trajectory: dict, options: JobOptions) -> str:
        """POST /v1/jobs; returns the job id."""
        body = JobRequest(scene_id=scene_id, trajectory=trajectory, options=options).to_dict()
        return self._typed(Job, self._json("POST", "/v1/jobs", json_body=body), "POST /v1/jobs").id

    def job(self, job_id: str) -> Job:
        return self._typed(Job, self._json("GET", f"/v1/jobs/{job_id}"), "GET /v1/jobs/{id}")

    def cancel_job(self, job_id: str) -> Job:
        return self._typed(Job, self._json("DELETE", f"/v1/jobs/{job_id}"), "DELETE /v1/jobs/{id}")

    def download_result(self, job_id: str, dest: str, should_cancel=None) -> str:
        return self._download(f"/v1/jobs/{job_id}/result", dest, should_cancel)

    def download_eye(self, job_id: str, dest: str, eye: str, should_cancel=None) -> str:
        """One eye of a stereo job (``left`` or ``right``); ``download_result`` is the packed pair."""
        return self._download(f"/v1/jobs/{job_id}/result/{eye}", dest, should_cancel)

    def download_conditioning(self, job_id: str, dest: str, which: str, should_cancel=None) -> str:
        """``which``: ``colour`` (masked render) or ``mask``."""
        return self._download(f"/v1/jobs/{job_id}/conditioning/{which}", dest, should_cancel)


def _error_from_response(status: int, raw: bytes, url: str) -> ServerError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("error") or "internal_error")
    message = body.get("message") or body.get("detail")
    if not isinstance(message, str):
        message = str(message) if message else raw[:200].decode("utf-8", "replace")
    if status == 401:
        return ServerError(f"The engine at {url} rejected the token (HTTP {status}). Copy the token from the "
                           "engine's data directory (token file) into the add-on preferences.", status, "unauthorized")
    if status >= 500 and not body:
        return ServerError(f"The engine failed (HTTP {status}); see the engine's log.", status, code)
    return ServerError(f"Engine: {message} (HTTP {status})", status, code)
