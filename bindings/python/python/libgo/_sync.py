"""The blocking client. Every method releases the GIL while the engine works."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Union, cast

from . import types as t
from ._native import Console, Native, Stream

Path = Union[str, "os.PathLike[str]"]
When = Union[str, datetime]
ProgressFn = Callable[[t.Progress], None]


class Client:
    """A connection to the engines (local Docker and libvirt by default).

    ``config`` is an :class:`libgo.types.EngineConfig`, e.g. ``{"kvm": "off"}``. Calls take
    an instance's id or its name and return plain dicts typed by :mod:`libgo.types`; errors
    are the exceptions of :mod:`libgo.errors`.
    """

    def __init__(self, config: Optional[t.EngineConfig] = None) -> None:
        self._n = Native.connect(config)

    def _call(self, op: str, args: Optional[Dict[str, Any]] = None, **kw: Any) -> Any:
        return self._n.call(op, args, **kw)

    # ---- backends ----

    def backends(self) -> List[str]:
        """Names of the connected backends."""
        return cast(List[str], self._call("backends"))

    def health(self) -> List[t.Health]:
        """Health of every backend."""
        return cast(List[t.Health], self._call("health"))

    def info(self) -> List[t.BackendInfo]:
        """Info of every backend that answers."""
        return cast(List[t.BackendInfo], self._call("info"))

    def capabilities(self, backend: str) -> t.Capabilities:
        """What a backend supports."""
        return cast(t.Capabilities, self._call("capabilities", {"backend": backend}))

    # ---- instances ----

    def create(self, spec: t.InstanceSpec) -> t.Instance:
        """Creates a VM or a container (and starts it when ``spec["start"]``)."""
        return cast(t.Instance, self._call("create", {"spec": spec}))

    def get(self, id: str) -> t.Instance:
        """One instance by id or name."""
        return cast(t.Instance, self._call("get", {"id": id}))

    def list(
        self, filter: Optional[t.InstanceFilter] = None, *, page: int = 1, page_size: int = 50
    ) -> t.InstancePage:
        """One page of the instances of every backend, sorted by name."""
        args = {"filter": filter, "page": page, "pageSize": page_size}
        return cast(t.InstancePage, self._call("list", args))

    def list_all(self, filter: Optional[t.InstanceFilter] = None) -> List[t.Instance]:
        """Every instance of every backend that passes ``filter``, sorted by name."""
        return cast(List[t.Instance], self._call("list_all", {"filter": filter}))

    def start(self, id: str) -> None:
        """Starts an instance."""
        self._call("start", {"id": id})

    def stop(self, id: str, *, timeout_secs: Optional[int] = None, force: bool = False) -> None:
        """Stops an instance: gracefully within ``timeout_secs``, then forcibly."""
        self._call("stop", {"id": id, "options": {"timeoutSecs": timeout_secs, "force": force}})

    def restart(
        self, id: str, *, timeout_secs: Optional[int] = None, force: bool = False
    ) -> None:
        """Restarts an instance."""
        options = {"timeoutSecs": timeout_secs, "force": force}
        self._call("restart", {"id": id, "options": options})

    def kill(self, id: str, signal: Optional[str] = None) -> None:
        """Sends a signal to a container, or pulls a VM's plug."""
        self._call("kill", {"id": id, "signal": signal})

    def pause(self, id: str) -> None:
        """Freezes an instance."""
        self._call("pause", {"id": id})

    def resume(self, id: str) -> None:
        """Thaws a paused instance."""
        self._call("resume", {"id": id})

    def delete(self, id: str, *, force: bool = False) -> None:
        """Deletes an instance; ``force`` stops it first."""
        self._call("delete", {"id": id, "force": force})

    def create_batch(
        self, batch: t.BatchSpec, *, progress: Optional[ProgressFn] = None
    ) -> t.BatchReport:
        """Creates ``count`` instances from one spec, named by ``namePattern`` (``{n}`` is
        the number); a failed item is reported and the batch goes on."""
        return cast(t.BatchReport, self._call("create_batch", {"batch": batch}, progress=progress))

    def delete_batch(
        self, ids: List[str], *, force: bool = False, progress: Optional[ProgressFn] = None
    ) -> t.BatchReport:
        """Deletes many instances (at most 100), reporting each."""
        result = self._call("delete_batch", {"ids": ids, "force": force}, progress=progress)
        return cast(t.BatchReport, result)

    def update(
        self, id: str, *, cpus: Optional[int] = None, memory_bytes: Optional[int] = None
    ) -> t.Instance:
        """Changes CPU and memory limits."""
        update = {"cpus": cpus, "memoryBytes": memory_bytes}
        return cast(t.Instance, self._call("update", {"id": id, "update": update}))

    def stats(self, id: str) -> t.Stats:
        """One resource-usage sample."""
        return cast(t.Stats, self._call("stats", {"id": id}))

    def stats_stream(self, id: str) -> Stream[t.Stats]:
        """Samples, about one a second, until the stream is closed."""
        return cast("Stream[t.Stats]", self._call("stats_stream", {"id": id}))

    def logs(
        self,
        id: str,
        *,
        tail: Optional[int] = None,
        since: Optional[When] = None,
        until: Optional[When] = None,
        follow: bool = False,
        timestamps: bool = False,
    ) -> Stream[t.LogEntry]:
        """Log entries; with ``follow``, new ones as they come, until the stream is closed."""
        options = {
            "tail": tail,
            "since": since,
            "until": until,
            "follow": follow,
            "timestamps": timestamps,
        }
        return cast("Stream[t.LogEntry]", self._call("logs", {"id": id, "options": options}))

    def exec(
        self,
        id: str,
        command: List[str],
        *,
        env: Optional[Dict[str, str]] = None,
        workdir: Optional[str] = None,
        user: Optional[str] = None,
        tty: bool = False,
    ) -> t.ExecResult:
        """Runs a command inside an instance and waits for it."""
        spec = {"command": command, "env": env or {}, "workdir": workdir, "user": user, "tty": tty}
        return cast(t.ExecResult, self._call("exec", {"id": id, "spec": spec}))

    def vnc_display(self, id: str) -> t.VncDisplay:
        """Where a VM's display listens."""
        return cast(t.VncDisplay, self._call("vnc_display", {"id": id}))

    def console(self, id: str) -> Console:
        """An interactive console: a shell in a container, the serial console of a VM.

        ``read(timeout=None)`` returns what the instance printed (``b""`` once the console has
        ended), ``write(data)`` types into it; use it in a ``with`` block or ``close()`` it.
        """
        return cast(Console, self._call("console", {"id": id}))

    def screenshot(self, id: str) -> bytes:
        """A PNG screenshot of a VM."""
        return cast(bytes, self._call("screenshot", {"id": id}))

    def snapshot_create(
        self, id: str, name: str, *, description: Optional[str] = None
    ) -> t.Snapshot:
        """Takes a snapshot."""
        spec = {"name": name, "description": description}
        return cast(t.Snapshot, self._call("snapshot_create", {"id": id, "spec": spec}))

    def snapshot_list(self, id: str) -> List[t.Snapshot]:
        """Snapshots of an instance."""
        return cast(List[t.Snapshot], self._call("snapshot_list", {"id": id}))

    def snapshot_revert(self, id: str, name: str) -> None:
        """Reverts an instance to a snapshot."""
        self._call("snapshot_revert", {"id": id, "snapshot": name})

    def snapshot_delete(self, id: str, name: str) -> None:
        """Deletes a snapshot."""
        self._call("snapshot_delete", {"id": id, "snapshot": name})

    def export(
        self,
        id: str,
        format: t.ExportFormat,
        destination: Path,
        *,
        progress: Optional[ProgressFn] = None,
    ) -> t.ExportResult:
        """Exports an instance to a new file (``tar``/``imagetar`` for containers)."""
        spec = {"format": format, "destination": destination}
        result = self._call("export", {"id": id, "spec": spec}, progress=progress)
        return cast(t.ExportResult, result)

    def events(self, filter: Optional[t.EventFilter] = None) -> Stream[t.Event]:
        """Lifecycle events of every backend, as they happen, until the stream is closed."""
        return cast("Stream[t.Event]", self._call("events", {"filter": filter}))

    # ---- images ----

    def image_list(self) -> List[t.Image]:
        """Images of every backend."""
        return cast(List[t.Image], self._call("image_list"))

    def image_page(self, *, page: int = 1, page_size: int = 50) -> t.ImagePage:
        """One page of the images of every backend; ``unavailable`` names the backends
        that could not be listed."""
        args = {"page": page, "pageSize": page_size}
        return cast(t.ImagePage, self._call("image_page", args))

    def image_inspect(self, id: str, *, backend: Optional[str] = None) -> t.Image:
        """One image by id or reference."""
        return cast(t.Image, self._call("image_inspect", {"id": id, "backend": backend}))

    def image_pull(
        self,
        reference: str,
        *,
        auth: Optional[t.RegistryAuth] = None,
        backend: Optional[str] = None,
        progress: Optional[ProgressFn] = None,
    ) -> t.Image:
        """Pulls an image."""
        args = {"reference": reference, "auth": auth, "backend": backend}
        return cast(t.Image, self._call("image_pull", args, progress=progress))

    def image_push(
        self,
        reference: str,
        *,
        auth: Optional[t.RegistryAuth] = None,
        backend: Optional[str] = None,
        progress: Optional[ProgressFn] = None,
    ) -> None:
        """Pushes an image."""
        args = {"reference": reference, "auth": auth, "backend": backend}
        self._call("image_push", args, progress=progress)

    def image_build(
        self,
        context_tar: bytes,
        *,
        tags: Optional[List[str]] = None,
        dockerfile: Optional[str] = None,
        build_args: Optional[Dict[str, str]] = None,
        labels: Optional[Dict[str, str]] = None,
        backend: Optional[str] = None,
        progress: Optional[ProgressFn] = None,
    ) -> t.Image:
        """Builds an image from a context tar archive."""
        spec = {
            "tags": tags or [],
            "dockerfile": dockerfile,
            "buildArgs": build_args or {},
            "labels": labels or {},
        }
        args = {"spec": spec, "backend": backend}
        return cast(t.Image, self._call("image_build", args, data=context_tar, progress=progress))

    def image_tag(self, source: str, target: str, *, backend: Optional[str] = None) -> None:
        """Gives an image another reference."""
        self._call("image_tag", {"source": source, "target": target, "backend": backend})

    def image_remove(
        self, id: str, *, force: bool = False, backend: Optional[str] = None
    ) -> None:
        """Removes an image."""
        self._call("image_remove", {"id": id, "force": force, "backend": backend})

    def image_prune(self, *, backend: Optional[str] = None) -> t.PruneReport:
        """Removes unused images."""
        return cast(t.PruneReport, self._call("image_prune", {"backend": backend}))

    def image_save(
        self, id: str, destination: Path, *, backend: Optional[str] = None
    ) -> t.ExportResult:
        """Saves an image to a new tar file."""
        args = {"id": id, "destination": destination, "backend": backend}
        return cast(t.ExportResult, self._call("image_save", args))

    # ---- networks ----

    def network_list(self) -> List[t.Network]:
        """Networks of every backend."""
        return cast(List[t.Network], self._call("network_list"))

    def network_page(self, *, page: int = 1, page_size: int = 50) -> t.NetworkPage:
        """One page of the networks of every backend; ``unavailable`` names the backends
        that could not be listed."""
        args = {"page": page, "pageSize": page_size}
        return cast(t.NetworkPage, self._call("network_page", args))

    def network_create(self, spec: t.NetworkSpec) -> t.Network:
        """Creates a network."""
        return cast(t.Network, self._call("network_create", {"spec": spec}))

    def network_inspect(self, id: str, *, backend: Optional[str] = None) -> t.Network:
        """One network by id or name."""
        return cast(t.Network, self._call("network_inspect", {"id": id, "backend": backend}))

    def network_delete(self, id: str, *, backend: Optional[str] = None) -> None:
        """Deletes a network."""
        self._call("network_delete", {"id": id, "backend": backend})

    def network_start(self, id: str, *, backend: Optional[str] = None) -> None:
        """Activates a network (libvirt)."""
        self._call("network_start", {"id": id, "backend": backend})

    def network_stop(self, id: str, *, backend: Optional[str] = None) -> None:
        """Deactivates a network (libvirt)."""
        self._call("network_stop", {"id": id, "backend": backend})

    def network_connect(self, network: str, instance: str) -> None:
        """Attaches an instance to a network."""
        self._call("network_connect", {"network": network, "instance": instance})

    def network_disconnect(self, network: str, instance: str) -> None:
        """Detaches an instance from a network."""
        self._call("network_disconnect", {"network": network, "instance": instance})

    # ---- volumes ----

    def volume_list(self) -> List[t.Volume]:
        """Volumes of every backend."""
        return cast(List[t.Volume], self._call("volume_list"))

    def volume_page(self, *, page: int = 1, page_size: int = 50) -> t.VolumePage:
        """One page of the volumes of every backend; ``unavailable`` names the backends
        that could not be listed."""
        args = {"page": page, "pageSize": page_size}
        return cast(t.VolumePage, self._call("volume_page", args))

    def volume_create(self, spec: t.VolumeSpec) -> t.Volume:
        """Creates a volume."""
        return cast(t.Volume, self._call("volume_create", {"spec": spec}))

    def volume_inspect(self, name: str, *, backend: Optional[str] = None) -> t.Volume:
        """One volume."""
        return cast(t.Volume, self._call("volume_inspect", {"name": name, "backend": backend}))

    def volume_delete(
        self, name: str, *, force: bool = False, backend: Optional[str] = None
    ) -> None:
        """Deletes a volume."""
        self._call("volume_delete", {"name": name, "force": force, "backend": backend})

    def volume_prune(self, *, backend: Optional[str] = None) -> t.PruneReport:
        """Removes unused volumes."""
        return cast(t.PruneReport, self._call("volume_prune", {"backend": backend}))

    def volume_resize(
        self, name: str, size_bytes: int, *, backend: Optional[str] = None
    ) -> t.Volume:
        """Grows a VM volume."""
        args = {"name": name, "sizeBytes": size_bytes, "backend": backend}
        return cast(t.Volume, self._call("volume_resize", args))

    def volume_wipe(self, name: str, *, backend: Optional[str] = None) -> None:
        """Zeroes a VM volume."""
        self._call("volume_wipe", {"name": name, "backend": backend})

    def volume_clone(
        self, source: str, target: str, *, backend: Optional[str] = None
    ) -> t.Volume:
        """Copies a VM volume."""
        args = {"source": source, "target": target, "backend": backend}
        return cast(t.Volume, self._call("volume_clone", args))

    def volume_upload(self, name: str, file: Path, *, backend: Optional[str] = None) -> t.Volume:
        """Fills a VM volume from a host file."""
        args = {"name": name, "file": file, "backend": backend}
        return cast(t.Volume, self._call("volume_upload", args))

    # ---- storage pools ----

    def pool_list(self) -> List[t.StoragePool]:
        """Storage pools of every backend."""
        return cast(List[t.StoragePool], self._call("pool_list"))

    def pool_page(self, *, page: int = 1, page_size: int = 50) -> t.StoragePoolPage:
        """One page of the storage pools of every backend; ``unavailable`` names the backends
        that could not be listed."""
        args = {"page": page, "pageSize": page_size}
        return cast(t.StoragePoolPage, self._call("pool_page", args))

    def pool_create(self, spec: t.StoragePoolSpec) -> t.StoragePool:
        """Creates a storage pool."""
        return cast(t.StoragePool, self._call("pool_create", {"spec": spec}))

    def pool_inspect(self, name: str, *, backend: Optional[str] = None) -> t.StoragePool:
        """One storage pool."""
        return cast(t.StoragePool, self._call("pool_inspect", {"name": name, "backend": backend}))

    def pool_activate(self, name: str, *, backend: Optional[str] = None) -> None:
        """Starts a storage pool."""
        self._call("pool_activate", {"name": name, "backend": backend})

    def pool_deactivate(self, name: str, *, backend: Optional[str] = None) -> None:
        """Stops a storage pool."""
        self._call("pool_deactivate", {"name": name, "backend": backend})

    def pool_delete(self, name: str, *, backend: Optional[str] = None) -> None:
        """Deletes a storage pool."""
        self._call("pool_delete", {"name": name, "backend": backend})

    # ---- templates ----

    def template_list(self) -> List[t.Template]:
        """VM templates of every backend."""
        return cast(List[t.Template], self._call("template_list"))

    def template_page(self, *, page: int = 1, page_size: int = 50) -> t.TemplatePage:
        """One page of the templates of every backend; ``unavailable`` names the backends
        that could not be listed."""
        args = {"page": page, "pageSize": page_size}
        return cast(t.TemplatePage, self._call("template_page", args))

    def template_create(
        self, template: t.Template, *, backend: Optional[str] = None
    ) -> t.Template:
        """Saves a VM template."""
        args = {"template": template, "backend": backend}
        return cast(t.Template, self._call("template_create", args))

    def template_get(self, name: str, *, backend: Optional[str] = None) -> t.Template:
        """One VM template."""
        return cast(t.Template, self._call("template_get", {"name": name, "backend": backend}))

    def template_delete(self, name: str, *, backend: Optional[str] = None) -> None:
        """Deletes a VM template."""
        self._call("template_delete", {"name": name, "backend": backend})
