"""Exceptions of LibGo: one class per error kind of the core, all under :class:`LibGoError`.

Every exception carries ``code`` — the stable code of its kind, the same as the REST API's
(``NOT_FOUND``, ``INVALID_INPUT``, ``RESOURCE_CONFLICT``…) — and ``message``.
"""

from __future__ import annotations

import builtins

__all__ = [
    "LibGoError",
    "NotFoundError",
    "InvalidInputError",
    "ConflictError",
    "UnauthorizedError",
    "ForbiddenError",
    "UnsupportedError",
    "UnavailableError",
    "TimeoutError",
    "InternalError",
]


class LibGoError(Exception):
    """Base of every LibGo error."""

    code: str = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFoundError(LibGoError, LookupError):
    """The object does not exist."""

    code = "NOT_FOUND"


class InvalidInputError(LibGoError, ValueError):
    """The request is malformed or out of bounds."""

    code = "INVALID_INPUT"


class ConflictError(LibGoError):
    """The object exists already, or its state forbids the operation."""

    code = "RESOURCE_CONFLICT"


class UnauthorizedError(LibGoError):
    """No valid credentials were given."""

    code = "UNAUTHORIZED"


class ForbiddenError(LibGoError, PermissionError):
    """The credentials do not allow the operation."""

    code = "FORBIDDEN"


class UnsupportedError(LibGoError, NotImplementedError):
    """The backend cannot do this at all."""

    code = "UNSUPPORTED"


class UnavailableError(LibGoError, ConnectionError):
    """The engine cannot be reached."""

    code = "BACKEND_UNAVAILABLE"


class TimeoutError(LibGoError, builtins.TimeoutError):
    """The operation did not finish in time."""

    code = "TIMEOUT"


class InternalError(LibGoError):
    """Anything else: a bug or an unexpected engine answer."""

    code = "INTERNAL_SERVER_ERROR"
