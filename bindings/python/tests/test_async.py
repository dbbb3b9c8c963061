"""The asyncio client against the real dockerd."""

from __future__ import annotations

import asyncio

import pytest

import libgo
from conftest import IDLE, IMAGE, unique


async def lifecycle() -> None:
    client = await libgo.AsyncClient.connect({"docker": "required", "kvm": "off"})
    name = unique("apy")
    inst = await client.create({"name": name, "kind": "container", "image": IMAGE, "command": IDLE})
    try:
        events = await client.events({"instance": name, "actions": ["started"]})
        await client.start(name)
        event = await events.__anext__()
        await events.aclose()
        assert event["action"] == "started" and event["instanceId"] == inst["id"]

        # Several calls in flight at once on one client.
        got, out, stats = await asyncio.gather(
            client.get(name), client.exec(name, ["echo", "async"]), client.stats(name)
        )
        assert got["state"] == "running" and out["stdout"] == "async\n"
        assert stats["memoryBytes"] > 0

        seen = ""
        async with await client.logs(name, follow=True) as logs:
            async for entry in logs:
                seen += entry["message"]
                if "libgo-ready" in seen:
                    break
        assert "libgo-ready" in seen

        page = await client.list({"name": name})
        assert page["count"] == 1
        await client.stop(name, timeout_secs=5)
        assert (await client.get(name))["state"] == "stopped"
    finally:
        await client.delete(name, force=True)
    with pytest.raises(libgo.errors.NotFoundError) as missing:
        await client.get(name)
    assert missing.value.code == "NOT_FOUND"


def test_async_client_lifecycle_events_and_logs() -> None:
    asyncio.run(lifecycle())


async def errors() -> None:
    client = libgo.AsyncClient({"docker": "required", "kvm": "off"})
    with pytest.raises(libgo.errors.InvalidInputError):
        await client.create({"name": "Bad!", "kind": "container", "image": IMAGE})
    with pytest.raises(libgo.errors.NotFoundError):
        await client.network_inspect(unique("nonet"))
    assert "docker" in await client.backends()


def test_async_client_errors() -> None:
    asyncio.run(errors())


async def console() -> None:
    client = await libgo.AsyncClient.connect({"docker": "required", "kvm": "off"})
    name = unique("acon")
    await client.create({"name": name, "kind": "container", "image": IMAGE, "command": IDLE, "start": True})
    try:
        async with await client.console(name) as shell:
            await shell.write(b"echo async-$((6*7))\n")
            seen = b""
            while b"async-42" not in seen:
                seen += await asyncio.wait_for(shell.read(), 10)
            await shell.write(b"exit\n")
            while await shell.read(timeout=10):
                pass
        assert await shell.read() == b""
        async with await client.exec_interactive(name, command=["sh", "-c", "read x; exit $x"]) as cmd:
            await cmd.write(b"5\n")
            while await cmd.read(timeout=10):
                pass
            assert await cmd.exit_code() == 5
    finally:
        await client.delete(name, force=True)


def test_async_console() -> None:
    asyncio.run(console())
