"""The FastAPI application: ``create_app(settings)`` and ``serve(settings)`` (what ``ex4d serve`` runs).

The lifespan takes the data-dir lock, opens the store, applies the restart-recovery policy, starts
the worker processes, and stops them on the way out. Errors are translated once, here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ex4d_engine import __version__
from ex4d_engine.atomic import atomic_write
from ex4d_engine.errors import CODE_OF_STATUS, Ex4dError, InputError, InternalError, ResourceError, TooLargeError

from .artefacts import Artefacts
from .guard import HostGuard, HostRule, TokenGuard
from .settings import Settings, is_loopback, resolve_token
from .store import Store

log = logging.getLogger("ex4d.server")

SERVER_FILE = "server.json"
LOCK_FILE = "server.lock"



def create_app(settings: Settings, *, url: Optional[str] = None, lock=None) -> FastAPI:
    """The app for ``settings``; ``url`` (if known) is written to ``<data_dir>/server.json`` once ready.

    ``lock``: the data-dir lock if the caller already holds it (``serve`` does), else the lifespan takes it.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from .supervisor import WorkerPool

        held = lock or _lock_data_dir(settings)
        try:
            app.state.settings = settings
            app.state.token = resolve_token(settings)
            app.state.artefacts = artefacts = Artefacts(settings.data_dir)
            app.state.store = store = Store(artefacts.database)
            app.state.stopping = threading.Event()
            recovered = store.recover_after_restart(settings.max_attempts)
            if any(recovered.values()):
                log.warning("recovered after restart: %s", recovered)
            orphans = artefacts.remove_orphans(*store.known_ids())
            if orphans:
                log.warning("removed folders left by an interrupted upload: %s", orphans)
            if settings.ray:
                from .ray_pool import RayPool  # imports ray only when asked for

                app.state.pool = pool = RayPool(settings, store)
            else:
                app.state.pool = pool = WorkerPool(settings, store)
            pool.start()
            if url:
                atomic_write(settings.data_dir / SERVER_FILE, json.dumps(
                    {"url": url, "pid": os.getpid(), "version": __version__, "api_version": 1}))
            try:
                yield
            finally:
                app.state.stopping.set()
                pool.stop()
                with contextlib.suppress(FileNotFoundError):
                    (settings.data_dir / SERVER_FILE).unlink()
        finally:
            held.close()

    app = FastAPI(title="ex4d engine", version=__version__, lifespan=lifespan,
                  description="EX-4D camera re-shooting: the local engine process. See docs/api.md.")
    # Outermost last: Host check, CORS (answers preflights), token, body limit, then the routes.
    # The host and token guards look at headers only: no body is read for a request they refuse.
    app.add_middleware(BodyLimitMiddleware, upload_bytes=settings.max_upload_mb << 20,
                       json_bytes=settings.max_json_mb << 20)
    app.add_middleware(TokenGuard, token=lambda scope: scope["app"].state.token)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(HostGuard, rule=HostRule(is_loopback(settings.host), settings.allowed_hosts))
    _install_error_handlers(app)

    from .routes import health, jobs, scenes

    app.include_router(health.router)
    app.include_router(scenes.router)
    app.include_router(jobs.router)
    return app


def serve(settings: Settings) -> int:
    """Bind, then run uvicorn until stopped. Returns the exit code: 0 after SIGTERM, 130 after SIGINT.

    Refuses a non-loopback host without an explicit, strong token. Everything the server writes is
    private to its user: umask 077, the data dir 0700.
    """
    import uvicorn

    from .connections import StopSignalServer, protocol_with_header_deadline

    settings.check_bind()
    if settings.token_explicit:  # before anything is created: a weak token for a network bind is refused
        settings.check_token_strength(resolve_token(settings))
    settings.check_ray()  # validate --ray / --gpus before anything starts
    if settings.ray:
        from .ray_pool import check_reachable

        check_reachable(settings.ray)
    else:
        devices = settings.worker_devices()
        if any(d[:1].isdigit() for d in devices) and not os.path.exists("/dev/nvidiactl"):
            print(f"ex4d serve: WARNING: --gpus {settings.gpus} names GPUs but no NVIDIA GPU is visible here; "
                  "every worker runs on the CPU", file=sys.stderr, flush=True)
    os.umask(0o077)  # database, uploads, results, server.json: 0600; the workers inherit it
    lock = _lock_data_dir(settings)
    resolve_token(settings)  # create it now, so its path can be printed
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP;
    # without it keep-alive responses wait 40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        raise ResourceError(f"cannot bind {settings.host}:{settings.port}: {exc.strerror}") from None
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    app = create_app(settings, url=url, lock=lock)
    config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=5, access_log=False,
                            http=protocol_with_header_deadline(settings.header_timeout_s),
                            timeout_keep_alive=settings.keep_alive_timeout_s,
                            limit_concurrency=settings.max_connections)
    token_source = "EX4D_TOKEN" if settings.token else settings.token_file or settings.data_dir / "token"
    print(f"ex4d serve: {url} (data dir {settings.data_dir}; token from {token_source})", flush=True)
    server = StopSignalServer(config)
    server.run(sockets=[sock])
    if not server.started:
        raise ResourceError("the server failed to start; see the log above")
    return 130 if signal.SIGINT in server.stop_signals else 0


# ---------------------------------------------------------------------- errors
def error_response(status: int, code: str, message: str, field: Optional[str] = None,
                   headers: Optional[dict[str, str]] = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, "field": field}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Ex4dError)
    async def ex4d_error(request: Request, exc: Ex4dError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        if exc.is_bug:
            log.error("error on %s %s: %s", request.method, request.url.path, exc.message)
        return error_response(exc.http_status, exc.code, exc.message, getattr(exc, "field", None), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":  # loc holds the character position, not a field
            detail = (first.get("ctx") or {}).get("error", "")
            return error_response(422, InputError.code, f"request body is not valid JSON: {detail}".rstrip(": "))
        field = _field_name(first.get("loc", ()))
        message = first.get("msg", "invalid value")
        if first.get("type") == "missing":
            message = "field required"
        elif "input" in first:
            message = f"{message} (got {_short(first['input'])})"
        return error_response(422, InputError.code, f"{field or 'request'}: {message}", field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body that cannot be parsed (bad multipart): like bad JSON, a 422
            detail = exc.detail if isinstance(exc.detail, str) else "cannot parse the request body"
            return error_response(422, InputError.code, f"request body: {detail}")
        code = CODE_OF_STATUS.get(exc.status_code, InternalError.code)
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Starlette names only the first route of the path in Allow
            allowed = _allowed_methods(request)
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            message = f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        return error_response(exc.status_code, code, message, None, headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, InternalError.code, "internal server error; see the server log")


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route takes on this path (asked through ``matches``, the public routing API)."""
    from starlette.routing import Match

    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


def _field_name(loc: tuple) -> Optional[str]:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------- body size
class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body is larger than the limit of {limit >> 20} MB")


class BodyLimitMiddleware:
    """Refuse bodies over the limit: at once from Content-Length, else while they stream in."""

    def __init__(self, app, upload_bytes: int, json_bytes: int):
        self.app = app
        self.upload_bytes = upload_bytes
        self.json_bytes = json_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        limit = self.upload_bytes if content_type.startswith("multipart/form-data") else self.json_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            response = error_response(TooLargeError.http_status, TooLargeError.code, BodyTooLarge(limit).detail)
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return await self.app(scope, limited_receive, send)


def _lock_data_dir(settings: Settings):
    """One server per data dir: a second one would fight over the queue and the GPU."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(settings.data_dir, 0o700)  # jobs, uploads and the token are nobody else's business
    handle = open(settings.data_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ResourceError(f"another ex4d server is using the data dir {settings.data_dir}") from None
    return handle
