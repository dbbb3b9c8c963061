"""The blocking client against the real engines."""

from __future__ import annotations

import io
import tarfile
import threading
import time
from pathlib import Path
from typing import List

import pytest

import libgo
from conftest import IDLE, IMAGE, unique


def test_lifecycle_of_a_container(client: libgo.Client) -> None:
    name = unique("life")
    label = unique("lbl")
    inst = client.create(
        {
            "name": name,
            "kind": "container",
            "image": IMAGE,
            "command": IDLE,
            "labels": {"test.libgo.test": label},
            "env": {"GREETING": "hi"},
        }
    )
    try:
        assert inst["name"] == name and inst["kind"] == "container"
        assert inst["state"] == "stopped"
        client.start(name)
        assert client.get(inst["id"])["state"] == "running"

        page = client.list({"labels": {"test.libgo.test": label}})
        assert page["count"] == 1 and page["items"][0]["name"] == name
        assert [i["name"] for i in client.list_all({"name": name})] == [name]

        out = client.exec(name, ["sh", "-c", "echo $GREETING; echo oops >&2; exit 3"])
        assert out == {"exitCode": 3, "stdout": "hi\n", "stderr": "oops\n", "truncated": False}

        stats = client.stats(name)
        assert stats["memoryBytes"] > 0

        client.pause(name)
        assert client.get(name)["state"] == "paused"
        client.resume(name)
        client.restart(name, timeout_secs=5)
        assert client.get(name)["state"] == "running"
        client.stop(name, timeout_secs=5)
        assert client.get(name)["state"] == "stopped"
        client.start(name)
        client.kill(name, "SIGKILL")
        client.update(name, memory_bytes=64 * 1024 * 1024)
    finally:
        client.delete(name, force=True)
    with pytest.raises(libgo.NotFoundError):
        client.get(name)


def test_errors_are_typed_and_carry_codes(client: libgo.Client) -> None:
    with pytest.raises(libgo.errors.NotFoundError) as missing:
        client.get(unique("missing"))
    assert missing.value.code == "NOT_FOUND"
    assert isinstance(missing.value, libgo.errors.LibGoError)
    assert isinstance(missing.value, LookupError)

    with pytest.raises(libgo.errors.InvalidInputError) as bad:
        client.create({"name": "Not A Name!", "kind": "container", "image": IMAGE})
    assert bad.value.code == "INVALID_INPUT"

    with pytest.raises(libgo.errors.InvalidInputError):
        client.stop("x", timeout_secs=-1)

    with pytest.raises(libgo.errors.UnavailableError):
        client.create({"name": unique("vm"), "kind": "vm"})

    with pytest.raises(libgo.errors.InvalidInputError):
        libgo.Client({"docker": "sometimes"})  # type: ignore[arg-type]

    # Unknown fields and arguments are refused by name, not dropped.
    with pytest.raises(libgo.errors.InvalidInputError) as unknown:
        client.list({"stat": "running"})  # type: ignore[arg-type]
    assert "stat" in str(unknown.value)
    with pytest.raises(libgo.errors.InvalidInputError) as unknown:
        client._call("image_remove", {"id": IMAGE, "forse": True})
    assert "forse" in str(unknown.value)
    # The generated methods take exactly the table's arguments (and a spread struct's fields).
    with pytest.raises(TypeError, match="forse"):
        client.image_remove(IMAGE, forse=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="timeout_sec"):
        client.stop("libgo-none", timeout_sec=1)  # type: ignore[call-arg]


def test_duplicate_names_conflict(client: libgo.Client, container: libgo.types.Instance) -> None:
    with pytest.raises(libgo.errors.ConflictError) as dup:
        client.create({"name": container["name"], "kind": "container", "image": IMAGE})
    assert dup.value.code == "RESOURCE_CONFLICT"


def test_logs_tail_and_follow(client: libgo.Client, container: libgo.types.Instance) -> None:
    with client.logs(container["name"], follow=True) as stream:
        seen = ""
        for entry in stream:
            assert entry["stream"] in ("stdout", "stderr")
            seen += entry["message"]
            if "libgo-ready" in seen:
                break
    assert "libgo-ready" in seen
    # A non-following read ends by itself.
    lines = list(client.logs(container["id"], tail=5, timestamps=True))
    assert any("libgo-ready" in e["message"] for e in lines)


def test_stats_stream_yields_samples(client: libgo.Client, container: libgo.types.Instance) -> None:
    stream = client.stats_stream(container["name"])
    first = next(stream)
    assert first["memoryBytes"] > 0
    stream.close()
    assert list(stream) == []


def test_console_is_an_interactive_shell(client: libgo.Client, container: libgo.types.Instance) -> None:
    with client.console(container["name"]) as console:
        # Nothing typed yet: a short read times out and loses nothing.
        with pytest.raises(libgo.errors.TimeoutError):
            while True:
                console.read(timeout=0.3)
        console.write(b"echo console-$((6*7))\n")
        seen = b""
        while b"console-42" not in seen:
            seen += console.read(timeout=10)
        console.write(b"exit\n")
        rest = b""
        while chunk := console.read(timeout=10):
            rest += chunk
    assert console.read() == b""
    with pytest.raises(libgo.errors.InvalidInputError):
        console.write(b"too late\n")
    # The shell ended; the container did not.
    assert client.get(container["name"])["state"] == "running"


def test_exec_interactive_is_a_tty_with_a_size_and_an_exit_code(
    client: libgo.Client, container: libgo.types.Instance
) -> None:
    with client.exec_interactive(container["name"], command=["sh"], tty=True) as shell:
        assert shell.exit_code() is None
        shell.resize(33, 97)
        shell.write(b"stty size; echo tty-$((6*7)); exit 7\n")
        seen = b""
        while chunk := shell.read(timeout=10):
            seen += chunk
        assert b"33 97" in seen, seen
        assert b"tty-42" in seen, seen
        assert shell.exit_code() == 7
    # An instance's console has no size to set and no exit code.
    with client.console(container["name"]) as console:
        with pytest.raises(libgo.errors.UnsupportedError):
            console.resize(10, 10)
        assert console.exit_code() is None


def test_events_iterator_sees_a_start(client: libgo.Client) -> None:
    name = unique("ev")
    client.create({"name": name, "kind": "container", "image": IMAGE, "command": IDLE})
    try:
        events = client.events({"instance": name, "actions": ["started"]})
        client.start(name)
        event = next(events)
        events.close()
        assert event["action"] == "started"
        assert event["instanceName"] == name and event["backend"] == "docker"
    finally:
        client.delete(name, force=True)


def test_snapshots_and_export(
    client: libgo.Client, container: libgo.types.Instance, tmp_path: Path
) -> None:
    name = container["name"]
    client.exec(name, ["sh", "-c", "echo v1 > /marker"])
    snap = client.snapshot_create(name, "s1", description="first")
    assert snap["name"] == "s1"
    assert [s["name"] for s in client.snapshot_list(name)] == ["s1"]
    one = client.snapshot_get(name, "s1")
    assert one["current"] is True and one["parent"] is None
    client.exec(name, ["sh", "-c", "echo v2 > /marker"])
    client.snapshot_revert(name, "s1")
    client.start(name)
    assert client.exec(name, ["cat", "/marker"])["stdout"] == "v1\n"
    client.snapshot_delete(name, "s1")
    assert client.snapshot_list(name) == []

    reports: list[libgo.types.Progress] = []
    out = client.export(name, "tar", tmp_path / "fs.tar", progress=reports.append)
    assert out["format"] == "tar" and out["sizeBytes"] > 0
    assert tarfile.is_tarfile(out["path"])
    with pytest.raises(libgo.errors.UnsupportedError):
        client.export(name, "qcow2", tmp_path / "disk.qcow2")
    # Disks are a VM's: Docker says why not; a disk without a source is refused first.
    with pytest.raises(libgo.errors.UnsupportedError, match="Docker cannot add mounts"):
        client.disk_attach(name, size_bytes=16 << 20)
    with pytest.raises(libgo.errors.InvalidInputError, match="volume"):
        client.disk_attach(name)
    with pytest.raises(libgo.errors.UnsupportedError) as refused:
        client.guest_password(name, "root", password="py-secret-1")
    assert "py-secret-1" not in str(refused.value)


def test_images(client: libgo.Client, tmp_path: Path) -> None:
    assert any(IMAGE in i["tags"] for i in client.image_list())
    image = client.image_inspect(IMAGE)
    assert image["kind"] == "container" and image["backend"] == "docker"

    tag = f"libgo-test/{unique('py')}:v1"
    dockerfile = f"FROM {IMAGE}\nRUN echo built > /built\n".encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    steps: list[libgo.types.Progress] = []
    built = client.image_build(
        context.getvalue(), tags=[tag], labels={"test.libgo.test": "py"}, progress=steps.append
    )
    try:
        assert tag in built["tags"] and built["labels"]["test.libgo.test"] == "py"
        assert steps, "the build reported progress"
        other = tag.replace(":v1", ":v2")
        client.image_tag(tag, other)
        assert other in client.image_inspect(other)["tags"]
        client.image_remove(other)
        saved = client.image_save(tag, tmp_path / "image.tar")
        assert saved["sizeBytes"] > 0
    finally:
        client.image_remove(tag, force=True)
    with pytest.raises(libgo.errors.NotFoundError):
        client.image_inspect(tag)
    with pytest.raises(libgo.errors.InvalidInputError):
        client.image_build(b"", tags=[tag])
    assert isinstance(client.image_prune()["deleted"], list)


def test_networks_and_volumes(client: libgo.Client, container: libgo.types.Instance) -> None:
    net = unique("pynet")
    created = client.network_create({"name": net, "labels": {"test.libgo.test": "py"}})
    try:
        assert created["name"] == net
        assert client.network_inspect(net)["id"] == created["id"]
        assert any(n["name"] == net for n in client.network_list())
        client.network_connect(net, container["name"])
        assert net in client.get(container["name"])["networks"]
        client.network_disconnect(net, container["name"])
    finally:
        client.network_delete(net)
    with pytest.raises(libgo.errors.NotFoundError):
        client.network_inspect(net)

    vol = unique("pyvol")
    v = client.volume_create({"name": vol, "labels": {"test.libgo.test": "py"}})
    assert v["name"] == vol and v["backend"] == "docker"
    assert client.volume_inspect(vol)["labels"]["test.libgo.test"] == "py"
    assert any(x["name"] == vol for x in client.volume_list())
    client.volume_delete(vol)
    with pytest.raises(libgo.errors.NotFoundError):
        client.volume_inspect(vol)
    assert isinstance(client.volume_prune()["deleted"], list)


def test_backend_reports(client: libgo.Client) -> None:
    assert client.backends() == ["docker"]
    assert client.health()[0]["up"] is True
    assert client.info()[0]["engine"] == "docker"
    caps = client.capabilities("docker")
    assert caps["exec"] and "container" in caps["kinds"]
    with pytest.raises(libgo.errors.NotFoundError):
        client.capabilities("nope")


def test_the_gil_is_released_during_engine_calls(
    client: libgo.Client, container: libgo.types.Instance
) -> None:
    done = threading.Event()

    def slow() -> None:
        client.exec(container["name"], ["sleep", "1"])
        done.set()

    worker = threading.Thread(target=slow)
    started = time.monotonic()
    worker.start()
    ticks = 0
    while not done.is_set() and time.monotonic() - started < 30:
        ticks += 1
        time.sleep(0.001)
    worker.join()
    # With the GIL held for the whole exec, this loop could not have run meanwhile.
    assert ticks > 100


def test_vm_verbs_on_libvirt_test_driver() -> None:
    vm = libgo.Client({"docker": "off", "kvm": "required", "libvirtUri": "test:///default"})
    assert vm.backends() == ["kvm"]
    domains = vm.list_all({"kind": "vm"})
    assert domains and all(d["kind"] == "vm" for d in domains)
    name = domains[0]["name"]
    if vm.get(name)["state"] != "running":
        vm.start(name)
    vm.pause(name)
    assert vm.get(name)["state"] == "paused"
    vm.resume(name)
    assert vm.get(name)["state"] == "running"
    vm.stop(name, force=True)
    assert vm.get(name)["state"] == "stopped"
    with pytest.raises(libgo.errors.UnsupportedError):
        vm.exec(name, ["true"])
    # The test driver has one pool, "default-pool".
    assert [p["name"] for p in vm.pool_list()] == ["default-pool"]


def test_named_backends_from_the_config() -> None:
    """`backends` adds engines under their own names: here a real libvirtd over its remote
    protocol and libvirt's test driver, each its own engine."""
    many = libgo.Client(
        {
            "docker": "off",
            "kvm": "off",
            "backends": [
                {"name": "kvm-a", "engine": "kvm", "url": "qemu+tcp://127.0.0.1/system"},
                {"name": "kvm-b", "engine": "kvm", "url": "test:///default", "mode": "required"},
            ],
        }
    )
    assert many.backends() == ["kvm-a", "kvm-b"]
    name = unique("py-named")
    made = many.create({"name": name, "kind": "vm", "backend": "kvm-b", "memoryBytes": 64 << 20})
    assert made["backend"] == "kvm-b"
    assert many.list_all({"backend": "kvm-a", "name": name}) == []
    many.delete(name, force=True)
    with pytest.raises(libgo.errors.InvalidInputError):
        libgo.Client({"backends": [{"name": "x", "engine": "kvm", "uri": "test:///default"}]})  # type: ignore[arg-type]


def test_every_operation_of_the_core_is_a_method() -> None:
    """The operation table (bindings/common) is the one declaration of the verbs: each is a
    method of both clients, and neither client has a verb the table lacks."""
    from libgo._native import Native

    ops = set(Native.operations())
    for cls in (libgo.Client, libgo.AsyncClient):
        methods = {
            n
            for n, v in vars(cls).items()
            if callable(v) and not n.startswith("_") and n not in ("connect", "close")
        }
        assert ops - methods == set(), f"{cls.__name__} lacks {sorted(ops - methods)}"
        assert methods - ops == set(), f"{cls.__name__} has undeclared {sorted(methods - ops)}"


def test_hosts_and_migration_refusals(client: libgo.Client, container: libgo.types.Instance) -> None:
    """Hosts come from the core: the library's own machine is host ``local``; moving to a
    host that does not exist, or to the one it is on, is refused with the right error."""
    hosts = client.host_list()
    assert [h["name"] for h in hosts] == ["local"]
    assert hosts[0]["alive"] and hosts[0]["capacity"]["memoryBytes"] > 0
    assert client.host_get("local")["engines"][0]["kind"] == "docker"
    assert client.zone_status()["hosts"]["on"] == 1
    assert [p["name"] for p in client.compute_pool_list()] == ["default"]
    with pytest.raises(libgo.errors.NotFoundError):
        client.migrate(container["id"], "nowhere")
    with pytest.raises(libgo.errors.ConflictError):
        client.migrate(container["id"], "local", live=True)


def test_batches_of_containers(client: libgo.Client) -> None:
    """Batch create and delete come from the core: names by rule, each item reported."""
    prefix = unique("pyb")
    seen: List[libgo.types.Progress] = []
    report = client.create_batch(
        {
            "spec": {"name": "x", "kind": "container", "image": IMAGE, "command": IDLE},
            "count": 2,
            "namePattern": prefix + "-{n}",
        },
        progress=seen.append,
    )
    assert report["succeeded"] == 2 and report["failed"] == 0, report
    assert [i["name"] for i in report["items"]] == [f"{prefix}-1", f"{prefix}-2"]
    assert client.get(f"{prefix}-2")["kind"] == "container"
    assert seen and seen[-1]["message"] == "2/2"
    gone = client.delete_batch([f"{prefix}-1", f"{prefix}-2", f"{prefix}-none"], force=True)
    assert (gone["succeeded"], gone["failed"]) == (2, 1), gone
    assert gone["items"][2]["error"] is not None
    assert gone["items"][2]["error"]["code"] == "NOT_FOUND"
    with pytest.raises(libgo.NotFoundError):
        client.get(f"{prefix}-1")
    with pytest.raises(libgo.InvalidInputError):
        client.create_batch({"spec": {"name": "x", "kind": "container"}, "count": 0})


def test_a_client_started_before_its_engine_gets_it(tmp_path: Path) -> None:
    """Docker down at start (its socket not there yet) joins the client once it answers."""
    import select
    import socket
    import socketserver

    path = str(tmp_path / "docker.sock")
    late = libgo.Client(
        {"docker": "auto", "dockerHost": f"unix://{path}", "kvm": "off", "reconnectSecs": 1}
    )
    assert late.backends() == []

    class Forward(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            engine = socket.socket(socket.AF_UNIX)
            engine.connect("/var/run/docker.sock")
            ends = [self.request, engine]
            while True:
                ready, _, _ = select.select(ends, [], [], 5)
                if not ready:
                    break
                for end in ready:
                    data = end.recv(65536)
                    if not data:
                        engine.close()
                        return
                    (engine if end is self.request else self.request).sendall(data)
            engine.close()

    server = socketserver.ThreadingUnixStreamServer(path, Forward)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for _ in range(100):
            if late.backends() == ["docker"]:
                break
            time.sleep(0.1)
        assert late.backends() == ["docker"]
        assert any(IMAGE in i["tags"] for i in late.image_list())
    finally:
        server.shutdown()
        server.server_close()


def test_every_list_pages(client: libgo.Client) -> None:
    """Images, networks, volumes, pools and templates page like instances (from the core)."""
    whole = client.image_list()
    first = client.image_page(page=1, page_size=1)
    assert first["count"] == len(whole) and first["pageSize"] == 1
    assert [i["id"] for i in first["items"]] == [whole[0]["id"]]
    assert "unavailable" not in first
    assert client.network_page()["count"] == len(client.network_list())
    assert client.volume_page(page_size=100)["page"] == 1
    with pytest.raises(libgo.InvalidInputError):
        client.image_page(page=0)
