"""The one error table of ex4d, and the exception tree built on it.

Every failure anybody can see has a row in :data:`ERROR_TABLE`: its ``code`` (what the HTTP API
and the job rows carry), the CLI exit code, the HTTP status, the level the Blender add-on reports
it at, whether it is a bug (then the traceback is in the log), and a message template.
The CLI (``ex4d_engine/cli``), the server (``server/app.py``, ``server/worker.py``) and the add-on
translate errors through this table only; README's exit-code table and docs/api.md's error table
are tested against it (tests/contract/test_error_table.py).

Standard library only: the add-on gets this module vendored at build time.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import ClassVar, Optional


@dataclass(frozen=True)
class ErrorKind:
    """One row of the error table.

    Attributes:
        code: machine-readable name, the ``error`` field of every error body and job row.
        exit_code: what ``ex4d`` exits with; None = never raised by the CLI (HTTP or add-on only).
        http_status: what the server answers; None = never an HTTP answer (found by the add-on itself).
        blender_level: the ``self.report`` level of the add-on: ERROR, WARNING or INFO.
        bug: True when the user cannot fix it; it is reported as a bug with the traceback in the log.
        meaning: one line for the docs.
        template: how the message reads when the code builds it itself (``{detail}`` is filled in).
    """

    code: str
    exit_code: Optional[int]
    http_status: Optional[int]
    blender_level: str
    bug: bool
    meaning: str
    template: str = "{detail}"


ERROR_TABLE: tuple[ErrorKind, ...] = (
    ErrorKind("invalid_input", 2, 422, "ERROR", False,
              "bad input: a malformed file, a wrong shape, a value out of range"),
    ErrorKind("too_large", 2, 413, "ERROR", False,
              "an upload, a file or a request over a stated limit"),
    ErrorKind("not_found", 3, 404, "ERROR", False,
              "a named file, scene, job or model does not exist"),
    ErrorKind("resource_unavailable", 4, 503, "ERROR", False,
              "something needed to run is missing: weights, an extra, GPU memory, a backend, disk space"),
    ErrorKind("conflict", None, 409, "WARNING", False,
              "the request is valid but the scene or job is in the wrong state for it (HTTP only)"),
    ErrorKind("unauthorized", None, 401, "ERROR", False,
              "the bearer token is missing or wrong (HTTP only)",
              "The engine rejected the token ({detail}). Copy it from <data-dir>/token into the add-on "
              "preferences, or leave the field empty for a local engine."),
    ErrorKind("bad_request", None, 400, "ERROR", False,
              "the Host header names the server by a name it does not answer to (DNS-rebinding guard; HTTP only)"),
    ErrorKind("method_not_allowed", None, 405, "ERROR", True,
              "a known route called with the wrong HTTP method (HTTP only; the `Allow` header lists the right ones)"),
    ErrorKind("unsupported_media_type", None, 415, "ERROR", True,
              "a request body of a content type the route does not take (HTTP only)"),
    ErrorKind("cancelled", 130, 409, "INFO", False, "the user cancelled the work; not a failure"),
    ErrorKind("unreachable", None, None, "ERROR", False,
              "the add-on cannot reach the engine (add-on only)",
              "Cannot reach the EX-4D engine at {detail}. Is `ex4d serve` running?"),
    ErrorKind("timeout", None, None, "ERROR", False,
              "the engine did not answer in time (add-on only)",
              "The EX-4D engine at {detail} did not answer in time (busy or stuck?)."),
    ErrorKind("version_mismatch", None, None, "ERROR", False,
              "the add-on and the engine speak different protocol or contract versions (add-on only)"),
    ErrorKind("bad_response", None, None, "ERROR", True,
              "the engine answered something the protocol does not allow (add-on only)",
              "The engine's answer to {detail} does not follow the ex4d protocol."),
    # found by the add-on itself, before anything reaches the engine
    ErrorKind("bad_url", None, None, "ERROR", False, "the engine URL in the preferences is not an http(s) URL"),
    ErrorKind("offline", None, None, "ERROR", False,
              "the engine is on another machine and Blender's online access is off"),
    ErrorKind("missing_dependency", None, None, "ERROR", False,
              "a feature needs a Python package this Blender lacks (numpy); the panel names it"),
    ErrorKind("no_scene", None, None, "ERROR", False, "no imported EX-4D scene to work on"),
    ErrorKind("no_camera", None, None, "ERROR", False, "the scene has no camera to film the shot with"),
    ErrorKind("no_view", None, None, "ERROR", False, "no 3D view to show the shot in"),
    ErrorKind("no_take", None, None, "ERROR", False, "no take is selected"),
    ErrorKind("not_ready", None, None, "WARNING", False, "the take or scene has not finished yet"),
    ErrorKind("not_running", None, None, "WARNING", False, "there is nothing running to cancel"),
    ErrorKind("busy", None, None, "WARNING", False, "the same work is already running"),
    ErrorKind("internal_error", 1, 500, "ERROR", True,
              "a bug in ex4d: the traceback is in the log",
              "A bug in ex4d: {detail}. The traceback is in the log; please report it."),
    ErrorKind("worker_crashed", None, 500, "ERROR", True,
              "the engine's worker process died while running the job",
              "The engine's worker process died during the job ({detail}); see the server log."),
    ErrorKind("interrupted", None, 500, "ERROR", False,
              "server restarts interrupted the job more often than the retry policy allows",
              "Interrupted by a server restart {detail} times; not retried again."),
)

KINDS: dict[str, ErrorKind] = {kind.code: kind for kind in ERROR_TABLE}
#: The general code of an HTTP status (its first row): what the server answers for errors it did not raise itself.
CODE_OF_STATUS: dict[int, str] = {kind.http_status: kind.code for kind in reversed(ERROR_TABLE) if kind.http_status}


class Ex4dError(Exception):
    """Base of every error ex4d reports. ``message`` is written for the artist.

    Subclasses name their row: ``class NotFoundError(Ex4dError, code="not_found")``.
    """

    kind: ClassVar[ErrorKind] = KINDS["internal_error"]
    code: ClassVar[str] = kind.code
    exit_code: ClassVar[Optional[int]] = kind.exit_code
    http_status: ClassVar[Optional[int]] = kind.http_status

    def __init_subclass__(cls, code: Optional[str] = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.kind = KINDS[code]
            cls.code, cls.exit_code, cls.http_status = code, cls.kind.exit_code, cls.kind.http_status

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.message = message
        #: The request field at fault, when there is one (the ``field`` of the HTTP error body).
        self.field = field

    @classmethod
    def from_template(cls, detail: str, field: Optional[str] = None) -> "Ex4dError":
        return cls(cls.kind.template.format(detail=detail), field)

    @property
    def is_bug(self) -> bool:
        return self.kind.bug

    def to_dict(self) -> dict:
        body = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class InputError(Ex4dError, code="invalid_input"):
    """Bad input: malformed file, wrong shape, value out of range."""


class TooLargeError(InputError, code="too_large"):
    """An upload, file or request over a stated limit."""


class NotFoundError(Ex4dError, code="not_found"):
    """A named file, scene, job or model does not exist."""


class ResourceError(Ex4dError, code="resource_unavailable"):
    """Something needed to run is missing: weights, VRAM, a backend, disk space."""


class ConflictError(Ex4dError, code="conflict"):
    """The request is valid but the resource is in the wrong state for it."""


class UnauthorizedError(Ex4dError, code="unauthorized"):
    """The bearer token is missing or wrong."""


class BadRequestError(Ex4dError, code="bad_request"):
    """The Host header names the server by a name it does not answer to."""


class MethodNotAllowedError(Ex4dError, code="method_not_allowed"):
    """A known route, the wrong HTTP method."""


class UnsupportedMediaTypeError(Ex4dError, code="unsupported_media_type"):
    """A body of a content type the route does not take."""


class JobCancelledError(Ex4dError, code="cancelled"):
    """The user cancelled the work; not a failure."""


class EngineUnreachableError(Ex4dError, code="unreachable"):
    """The add-on cannot reach the engine."""


class EngineTimeoutError(Ex4dError, code="timeout"):
    """The engine did not answer in time."""


class VersionMismatchError(Ex4dError, code="version_mismatch"):
    """The add-on and the engine speak different versions."""


class BadResponseError(Ex4dError, code="bad_response"):
    """The engine's answer breaks the protocol."""


class WorkerCrashedError(Ex4dError, code="worker_crashed"):
    """The worker process died during the job."""


class InterruptedJobError(Ex4dError, code="interrupted"):
    """Server restarts interrupted the job too often."""


class InternalError(Ex4dError, code="internal_error"):
    """A bug. Built from the unexpected exception by :func:`as_ex4d_error`."""


#: code -> the class raised for it (the add-on rebuilds typed errors from HTTP bodies with this).
ERROR_CLASSES: dict[str, type[Ex4dError]] = {
    cls.code: cls for cls in (InputError, TooLargeError, NotFoundError, ResourceError, ConflictError,
                              UnauthorizedError, BadRequestError, MethodNotAllowedError, UnsupportedMediaTypeError,
                              JobCancelledError, EngineUnreachableError, EngineTimeoutError,
                              VersionMismatchError, BadResponseError, WorkerCrashedError, InterruptedJobError,
                              InternalError)
}
#: Rows only the add-on produces (no exit code, no HTTP status): it raises them by code, no class needed.
ADDON_ONLY_CODES = frozenset(k.code for k in ERROR_TABLE if k.exit_code is None and k.http_status is None)
assert set(KINDS) - ADDON_ONLY_CODES <= set(ERROR_CLASSES), "every CLI or HTTP row of the table has its class"


def error_from_body(body: object, status: int = 0) -> Ex4dError:
    """Rebuild the typed error of an HTTP error body ``{"error", "message", "field"?}``.

    An unknown code (a newer engine) keeps its message and becomes the class of its HTTP status.
    """
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return BadResponseError.from_template(f"an HTTP {status} error without a message")
    code = str(body.get("error") or "")
    cls = ERROR_CLASSES.get(code) or _class_of_status(status)
    error = cls(body["message"], body.get("field") if isinstance(body.get("field"), str) else None)
    return error


def _class_of_status(status: int) -> type[Ex4dError]:
    for cls in ERROR_CLASSES.values():
        if cls.http_status == status:
            return cls
    return InputError if 400 <= status < 500 else InternalError


def as_ex4d_error(exc: BaseException, where: str = "") -> Ex4dError:
    """The error the user sees for ``exc``: itself when it is ours, else an ``internal_error`` (a bug).

    The caller logs ``traceback_text(exc)`` for bugs; the message carries no traceback and no path.
    """
    if isinstance(exc, Ex4dError):
        return exc
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    detail = f"{type(exc).__name__}{' during ' + where if where else ''}{': ' + text if text else ''}"
    return InternalError.from_template(detail)


def traceback_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def markdown_table() -> str:
    """The table as README / docs/api.md show it (tests compare them with this)."""
    rows = ["| code | exit code | HTTP | Blender | bug | meaning |", "|---|---|---|---|---|---|"]
    for kind in ERROR_TABLE:
        rows.append(f"| `{kind.code}` | {kind.exit_code if kind.exit_code is not None else '—'} | "
                    f"{kind.http_status if kind.http_status is not None else '—'} | {kind.blender_level} | "
                    f"{'yes' if kind.bug else ''} | {kind.meaning} |")
    return "\n".join(rows)


def write_table_into(path: str) -> None:
    """Replace the ``<!-- error-table -->`` block of a markdown file with the current table."""
    import re

    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    block = f"<!-- error-table -->\n{markdown_table()}\n<!-- /error-table -->"
    new = re.sub(r"<!-- error-table -->\n.*?<!-- /error-table -->", lambda _: block, text, flags=re.S)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(new)


if __name__ == "__main__":  # python -m ex4d_engine.errors [FILE.md ...]: print the table, or rewrite it in FILEs
    import sys

    for name in sys.argv[1:]:
        write_table_into(name)
    if len(sys.argv) == 1:
        print(markdown_table())
