"""Writes python/libgo/_async.py from python/libgo/_sync.py.

The asyncio client has exactly the blocking client's methods, as coroutines, so it is
derived from it rather than kept by hand; tests/test_typing.py checks that it is current.
Run: python bindings/python/gen_async.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "python" / "libgo"


def generate(src: str) -> str:
    a = src.replace(
        '"""The blocking client. Every method releases the GIL while the engine works."""',
        '"""The asyncio client: the methods of :class:`libgo.Client`, as coroutines.\n\n'
        'Generated from ``_sync.py`` by ``bindings/python/gen_async.py``; edit that file."""',
    )
    a = a.replace(
        "from ._native import Console, Native, Stream",
        "from ._native import AsyncConsole, AsyncStream, Native",
    )
    a = a.replace("class Client:", "class AsyncClient:")
    a = a.replace(
        "    def __init__(self, config: Optional[t.EngineConfig] = None) -> None:\n"
        "        self._n = Native.connect(config)\n\n"
        "    def _call(self, op: str, args: Optional[Dict[str, Any]] = None, **kw: Any) -> Any:\n"
        "        return self._n.call(op, args, **kw)",
        "    def __init__(\n"
        "        self, config: Optional[t.EngineConfig] = None, *, _native: Optional[Native] = None\n"
        "    ) -> None:\n"
        "        self._n = _native if _native is not None else Native.connect(config)\n\n"
        "    @classmethod\n"
        '    async def connect(cls, config: Optional[t.EngineConfig] = None) -> "AsyncClient":\n'
        '        """Connects without blocking the event loop."""\n'
        "        return cls(_native=await Native.connect_async(config))\n\n"
        "    async def _call(self, op: str, args: Optional[Dict[str, Any]] = None, **kw: Any) -> Any:\n"
        "        return await self._n.call_async(op, args, **kw)",
    )
    a = re.sub(r"\n    def (?!__init__)", "\n    async def ", a)
    a = a.replace("self._call(", "await self._call(")
    a = a.replace("Stream[", "AsyncStream[").replace("AsyncAsyncStream", "AsyncStream")
    a = a.replace("-> Console:", "-> AsyncConsole:").replace("cast(Console,", "cast(AsyncConsole,")
    a = a.replace(
        '        ``read(timeout=None)`` returns what the instance printed (``b""`` once the console has\n'
        '        ended), ``write(data)`` types into it; use it in a ``with`` block or ``close()`` it.',
        '        ``await read(timeout=None)`` returns what the instance printed (``b""`` once the\n'
        '        console has ended), ``await write(data)`` types into it; use it in an ``async with``\n'
        '        block or ``await aclose()`` it.',
    )
    return a


def main() -> int:
    out = generate((HERE / "_sync.py").read_text())
    (HERE / "_async.py").write_text(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
