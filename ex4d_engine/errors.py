"""The one exception tree of ex4d.

Every error a user can cause or fix is an :class:`Ex4dError`. Each class carries the
CLI exit code and the HTTP status it maps to, so the CLI, the server and the Blender
add-on translate errors in exactly one place each (see docs/errors in README).
"""

from __future__ import annotations


class Ex4dError(Exception):
    """Base of all user-facing errors. ``message`` is written for the artist."""

    code = "ex4d_error"
    exit_code = 1
    http_status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict:
        return {"error": self.code, "message": self.message}


class InputError(Ex4dError):
    """Bad input: malformed file, wrong shape, value out of range."""

    code = "invalid_input"
    exit_code = 2
    http_status = 422


class NotFoundError(Ex4dError):
    """A named file, scene, job or model does not exist."""

    code = "not_found"
    exit_code = 3
    http_status = 404


class ResourceError(Ex4dError):
    """Something needed to run is missing: weights, VRAM, a backend, disk space."""

    code = "resource_unavailable"
    exit_code = 4
    http_status = 503


class JobCancelledError(Ex4dError):
    """The user cancelled the work; not a failure."""

    code = "cancelled"
    exit_code = 130
    http_status = 409
