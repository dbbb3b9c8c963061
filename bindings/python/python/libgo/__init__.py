"""LibGo: one API for virtual machines and containers.

>>> import libgo
>>> client = libgo.Client({"kvm": "off"})           # local Docker only
>>> web = client.create({"name": "web", "kind": "container",
...                      "image": "busybox:latest", "command": ["sleep", "60"],
...                      "start": True})             # doctest: +SKIP

``Client`` blocks (releasing the GIL); ``AsyncClient`` has the same methods as coroutines.
Results are dicts typed by :mod:`libgo.types`; errors are the exceptions of
:mod:`libgo.errors`.
"""

from . import errors, types
from ._async import AsyncClient
from ._native import AsyncConsole, AsyncStream, Console, Stream
from ._sync import Client
from .errors import (
    ConflictError,
    ForbiddenError,
    InternalError,
    InvalidInputError,
    LibGoError,
    NotFoundError,
    TimeoutError,
    UnauthorizedError,
    UnavailableError,
    UnsupportedError,
)

__all__ = [
    "AsyncClient",
    "AsyncConsole",
    "AsyncStream",
    "Client",
    "Console",
    "ConflictError",
    "ForbiddenError",
    "InternalError",
    "InvalidInputError",
    "LibGoError",
    "NotFoundError",
    "Stream",
    "TimeoutError",
    "UnauthorizedError",
    "UnavailableError",
    "UnsupportedError",
    "errors",
    "types",
]
