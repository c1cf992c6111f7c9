"""Server-only additions to the ``ex4d_engine.errors`` tree (same ``code`` / ``http_status`` scheme)."""

from __future__ import annotations

from typing import Optional

from ex4d_engine.errors import Ex4dError, InputError


class FieldError(InputError):
    """An InputError that names the request field it is about (``field`` in the error body)."""

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.field = field


class TooLargeError(FieldError):
    code = "too_large"
    http_status = 413


class ConflictError(Ex4dError):
    """The request is valid but the resource is in the wrong state for it."""

    code = "conflict"
    exit_code = 5
    http_status = 409


class UnauthorizedError(Ex4dError):
    code = "unauthorized"
    exit_code = 6
    http_status = 401
