# Stubs of the native module (Rust, pyo3). Use libgo.Client / libgo.AsyncClient instead.
from typing import Any, AsyncIterator, Awaitable, Callable, Generic, Iterator, TypeVar

from types import TracebackType

T = TypeVar("T")

class Native:
    @staticmethod
    def connect(config: object | None = None) -> Native: ...
    @staticmethod
    def connect_async(config: object | None = None) -> Awaitable[Native]: ...
    @staticmethod
    def operations() -> list[str]: ...
    def call(
        self,
        op: str,
        args: object | None = None,
        data: bytes | None = None,
        progress: Callable[[Any], None] | None = None,
    ) -> Any: ...
    def call_async(
        self,
        op: str,
        args: object | None = None,
        data: bytes | None = None,
        progress: Callable[[Any], None] | None = None,
    ) -> Awaitable[Any]: ...

class Stream(Generic[T]):
    def __iter__(self) -> Iterator[T]: ...
    def __next__(self) -> T: ...
    def close(self) -> None: ...
    def __enter__(self) -> Stream[T]: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...

class AsyncStream(Generic[T]):
    def __aiter__(self) -> AsyncIterator[T]: ...
    def __anext__(self) -> Awaitable[T]: ...
    def aclose(self) -> Awaitable[None]: ...
    def __aenter__(self) -> Awaitable[AsyncStream[T]]: ...
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Awaitable[bool]: ...
