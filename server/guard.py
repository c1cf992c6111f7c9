"""ASGI guards that run before any route and before any request body is read (docs/security.md).

* :class:`HostGuard` (DNS rebinding): a web page whose name was re-pointed at this machine sends
  its own name in ``Host``. Accepted: IP literals of the bind's kind and ``localhost`` on a loopback
  bind; on any other bind also every IP literal and the names given with ``--allowed-host``.
* :class:`TokenGuard`: the bearer token, checked from the headers alone, so a request without it
  never has its body spooled to disk or parsed (a cross-origin form POST costs the server nothing).
  Only ``GET /v1/health`` is open; ``/docs``, ``/redoc`` and ``/openapi.json`` need the token too.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from typing import Callable, Iterable, Optional

from ex4d_engine.errors import BadRequestError, UnauthorizedError

#: Routes answered without the token (method, path).
OPEN_ROUTES = {("GET", "/v1/health"), ("HEAD", "/v1/health")}


def _json(status: int, code: str, message: str, headers: Optional[dict[str, str]] = None):
    """A minimal ASGI JSON error answer (same body as server.app.error_response)."""
    body = json.dumps({"error": code, "message": message, "field": None}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]

    async def respond(send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    return respond


def _header(scope, name: bytes) -> Optional[str]:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return None


def host_name(host_header: str) -> str:
    """``Host`` without its port, lower-case; IPv6 brackets removed."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class HostRule:
    """Which ``Host`` names this server answers to."""

    def __init__(self, bind_loopback: bool, allowed_hosts: Iterable[str] = ()):
        self.bind_loopback = bind_loopback
        self.names = {"localhost"} | {h.strip().lower().rstrip(".") for h in allowed_hosts if h.strip()}

    def allows(self, host_header: Optional[str]) -> bool:
        if not host_header:
            return False
        host = host_name(host_header).rstrip(".")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host in self.names
        # An IP literal cannot be a rebound name: a page can only send it by being served from it.
        return address.is_loopback or not self.bind_loopback


class HostGuard:
    def __init__(self, app, rule: HostRule):
        self.app = app
        self.rule = rule

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and not self.rule.allows(_header(scope, b"host")):
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await _json(BadRequestError.http_status, BadRequestError.code, "this server does not answer to that Host name "
                                                   "(see --allowed-host in docs/security.md)")(send)
        return await self.app(scope, receive, send)


class TokenGuard:
    def __init__(self, app, token: Callable[[object], str]):
        self.app = app
        self.token = token  # called with the scope: the token is resolved in the lifespan

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or (scope["method"], scope["path"]) in OPEN_ROUTES:
            return await self.app(scope, receive, send)
        problem = self._problem(scope)
        if problem:
            return await _json(UnauthorizedError.http_status, UnauthorizedError.code, problem, {"WWW-Authenticate": "Bearer"})(send)
        return await self.app(scope, receive, send)

    def _problem(self, scope) -> Optional[str]:
        header = _header(scope, b"authorization")
        scheme, _, credentials = (header or "").partition(" ")
        if not header or scheme.lower() != "bearer" or not credentials.strip():
            return ("missing bearer token: send 'Authorization: Bearer <token>' "
                    "(the token is in <data-dir>/token)")
        if not secrets.compare_digest(credentials.strip().encode(), self.token(scope).encode()):
            return "wrong bearer token"
        return None
