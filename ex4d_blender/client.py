"""HTTP client for the EX-4D engine (``ex4d serve``), on the ``requests`` that Blender ships.

No bpy here: the client runs in worker threads. Every failure becomes :class:`ServerError`
with a message written for the artist; the operators show it as is.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import time
from typing import Any, Callable
from urllib.parse import urlparse

from .contract import CONTRACT_VERSION

DEFAULT_URL = "http://127.0.0.1:8420"
#: Job states the engine reports (GET /v1/jobs/{id}).
TERMINAL_STATES = ("succeeded", "failed", "cancelled")


class ServerError(Exception):
    """The engine could not be reached or refused a request.

    Attributes:
        message: written for the artist.
        status: HTTP status (0 when the engine was not reached).
        code: the engine's error code (``invalid_input``, ``not_found``, ...) or a client one
            (``unreachable``, ``unauthorized``, ``version_mismatch``, ``cancelled``).
    """

    def __init__(self, message: str, status: int = 0, code: str = "engine_error"):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def is_loopback(url: str) -> bool:
    """True when ``url`` points at this machine (always allowed, even without online access)."""
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    def _request(self, method: str, path: str, *, stream: bool = False, **kwargs: Any):
        import requests  # deferred: keeps add-on registration light

        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = requests.request(method, self.url + path, headers=headers, stream=stream,
                                        timeout=kwargs.pop("timeout", self.timeout_s), **kwargs)
        except requests.exceptions.Timeout:
            raise ServerError(f"The EX-4D engine at {self.url} did not answer within {self.timeout_s:.0f} s "
                              "(busy or stuck? raise the timeout in the add-on preferences)",
                              code="timeout") from None
        except requests.exceptions.RequestException as exc:
            raise ServerError(f"Cannot reach the EX-4D engine at {self.url} ({type(exc).__name__}). "
                              "Is `ex4d serve` running? Start it or use 'Start local engine' "
                              "in the add-on preferences.", code="unreachable") from None
        if response.status_code >= 400:
            raise _error_from_response(response, self.url)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict:
        response = self._request(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError:
            raise ServerError(f"The engine answered {method} {path} with something that is not JSON "
                              f"({response.text[:80]!r})", response.status_code, "bad_response") from None
        if not isinstance(data, dict):
            raise ServerError(f"The engine answered {method} {path} with {type(data).__name__}, expected an object",
                              response.status_code, "bad_response")
        return data

    def _download(self, path: str, dest: str, should_cancel: Callable[[], bool] | None = None) -> str:
        """Stream ``path`` to ``dest`` through a temporary name, renamed only when complete."""
        response = self._request("GET", path, stream=True, timeout=max(self.timeout_s, 120.0))
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        tmp = f"{dest}.part-{os.getpid()}"
        try:
            with open(tmp, "wb") as handle:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    if should_cancel and should_cancel():
                        raise ServerError("Download cancelled", code="cancelled")
                    handle.write(chunk)
            os.replace(tmp, dest)
        finally:
            response.close()
            if os.path.exists(tmp):
                os.remove(tmp)
        return dest

    # ------------------------------------------------------------------ API
    def health(self) -> dict:
        return self._json("GET", "/v1/health")

    def check_compatible(self) -> str:
        """Health + contract handshake: a one-line verdict, or :class:`ServerError` saying what is wrong."""
        info = self.health()
        engine_contract = info.get("contract_version")
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
        return (f"Connected: EX-4D engine {version}, contract v{engine_contract}, "
                f"generators: {', '.join(names) or 'none listed'}, queue: {info.get('queue_length', 0)}")

    def upload_video(self, video_path: str, options: dict | None = None, depth_path: str = "") -> str:
        """POST /v1/scenes with the video (and a depth file, if given; options become form fields).

        Returns the new scene id.
        """
        for what, path in (("Video", video_path), ("Depth", depth_path)):
            if path and not os.path.isfile(path):
                raise ServerError(f"{what} file not found: {path}", code="not_found")
        fields = {k: str(v).lower() if isinstance(v, bool) else str(v)
                  for k, v in (options or {}).items() if v is not None}
        with contextlib.ExitStack() as stack:
            files = {"video": (os.path.basename(video_path), stack.enter_context(open(video_path, "rb")),
                               "application/octet-stream")}
            if depth_path:
                files["depth"] = (os.path.basename(depth_path), stack.enter_context(open(depth_path, "rb")),
                                  "application/octet-stream")
            data = self._json("POST", "/v1/scenes", files=files, data=fields, timeout=max(self.timeout_s, 300.0))
        return _required(data, ("id", "scene_id"), "POST /v1/scenes")

    def scene(self, scene_id: str) -> dict:
        return self._json("GET", f"/v1/scenes/{scene_id}")

    def wait_for_scene(self, scene_id: str, should_cancel: Callable[[], bool],
                       on_progress: Callable[[dict], None], poll_s: float = 0.5) -> dict:
        """Poll the scene (and its recon job, for progress) until ready; ServerError if it failed."""
        cancel_sent = False
        while True:
            info = self.scene(scene_id)
            recon_job = info.get("recon_job_id")
            if should_cancel() and not cancel_sent:
                if recon_job:
                    try:
                        self.cancel_job(recon_job)
                    except ServerError:
                        pass  # finished meanwhile
                cancel_sent = True
            state = info.get("state")
            if state == "ready":
                return info
            if state in ("failed", "cancelled"):
                if state == "cancelled":
                    raise ServerError("Cancelled", code="cancelled")
                raise ServerError(f"Engine reconstruction failed: {_job_message(info, 'no reason given')}", code=state)
            on_progress(self.job(recon_job) if recon_job else info)
            time.sleep(poll_s)

    def download_package(self, scene_id: str, dest: str, should_cancel=None) -> str:
        return self._download(f"/v1/scenes/{scene_id}/package", dest, should_cancel)

    def submit_job(self, scene_id: str, trajectory: dict, options: dict) -> str:
        """POST /v1/jobs; returns the job id."""
        body = {"scene_id": scene_id, "trajectory": trajectory, "options": options}
        return _required(self._json("POST", "/v1/jobs", json=body), ("job_id", "id"), "POST /v1/jobs")

    def job(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> dict:
        return self._json("DELETE", f"/v1/jobs/{job_id}")

    def download_result(self, job_id: str, dest: str, should_cancel=None) -> str:
        return self._download(f"/v1/jobs/{job_id}/result", dest, should_cancel)

    def download_conditioning(self, job_id: str, dest: str, which: str, should_cancel=None) -> str:
        """``which``: ``colour`` (masked render) or ``mask``."""
        return self._download(f"/v1/jobs/{job_id}/conditioning/{which}", dest, should_cancel)


def _required(data: dict, keys: tuple[str, ...], where: str) -> str:
    for key in keys:
        if data.get(key):
            return str(data[key])
    raise ServerError(f"The engine's answer to {where} has no {keys[0]!r}: {str(data)[:120]}", code="bad_response")


def _job_message(info: dict, default: str) -> str:
    error = info.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("error") or default)
    return str(info.get("message") or error or default)


def _error_from_response(response, url: str) -> ServerError:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("error") or "engine_error")
    message = body.get("message") or body.get("detail")
    if not isinstance(message, str):
        message = str(message) if message else response.text[:200]
    if status == 401 or status == 403:
        return ServerError(f"The engine at {url} rejected the token (HTTP {status}). Copy the token from the "
                           "engine's data directory (token file) into the add-on preferences.", status, "unauthorized")
    if status >= 500 and not body:
        return ServerError(f"The engine failed (HTTP {status}); see the engine's log.", status, code)
    return ServerError(f"Engine: {message} (HTTP {status})", status, code)
