"""Shared fixtures: the tests run against the real dockerd that scripts/docker.sh starts,
with its locally built busybox image, and libvirt's test:///default driver."""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

import libgo

IMAGE = "libgo-test/busybox:latest"
# Traps TERM so that a graceful stop is quick, prints a marker, then idles.
IDLE = ["sh", "-c", "trap 'exit 0' TERM; echo libgo-ready; while true; do sleep 1; done"]


def unique(prefix: str) -> str:
    """A fresh lowercase name, so that reruns never collide with leftovers."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def client() -> libgo.Client:
    return libgo.Client({"docker": "required", "kvm": "off"})


@pytest.fixture
def container(client: libgo.Client) -> Iterator[libgo.types.Instance]:
    """A running container, deleted afterwards."""
    name = unique("py")
    inst = client.create(
        {"name": name, "kind": "container", "image": IMAGE, "command": IDLE, "start": True}
    )
    try:
        yield inst
    finally:
        try:
            client.delete(name, force=True)
        except libgo.NotFoundError:
            pass
