"""The shapes of LibGo's data, as ``TypedDict``s.

Results are plain dicts with the camelCase keys of LibGo's JSON — the same JSON as the REST
API, the Node package and the C ABI — so they print, compare and ``json.dumps`` as they
are and cost nothing to build; these ``TypedDict``s give them static types (checked by
mypy) without a class per type at run time. Specs passed in have the same shape; keys
marked ``NotRequired`` may be left out.
"""

from __future__ import annotations

import sys
from typing import Dict, List, Literal, Optional, TypedDict

if sys.version_info >= (3, 11):
    from typing import NotRequired
else:  # pragma: no cover
    from typing_extensions import NotRequired

InstanceKind = Literal["vm", "container"]
InstanceState = Literal["creating", "running", "paused", "stopped", "error", "unknown"]
EngineMode = Literal["auto", "required", "off"]
ExportFormat = Literal["qcow2", "vmdk", "vdi", "raw", "ova", "tar", "imagetar"]
DiskFormat = Literal["qcow2", "raw", "vmdk", "vdi", "iso"]
EventAction = Literal["created", "started", "stopped", "paused", "resumed", "died", "deleted"]


class _BackendConfigRequired(TypedDict):
    name: str
    engine: Literal["docker", "kvm"]


class BackendConfig(_BackendConfigRequired, total=False):
    """One more engine under its own name (a Docker daemon or a libvirt host)."""

    mode: EngineMode
    url: Optional[str]
    accelerator: Optional[Literal["auto", "kvm", "tcg"]]


class EngineConfig(TypedDict, total=False):
    """Which engines to connect, and where."""

    docker: EngineMode
    dockerName: str
    dockerHost: Optional[str]
    kvm: EngineMode
    kvmName: str
    libvirtUri: str
    accelerator: Literal["auto", "kvm", "tcg"]
    templateDir: Optional[str]
    backends: List[BackendConfig]


class PortMapping(TypedDict):
    containerPort: int
    hostPort: NotRequired[Optional[int]]
    hostIp: NotRequired[Optional[str]]
    protocol: NotRequired[Literal["tcp", "udp"]]


class MountSpec(TypedDict):
    target: str
    kind: NotRequired[Literal["volume", "bind", "tmpfs"]]
    source: NotRequired[str]
    readOnly: NotRequired[bool]


class DiskSpec(TypedDict, total=False):
    sizeBytes: Optional[int]
    baseImage: Optional[str]
    volume: Optional[str]
    pool: Optional[str]
    format: Optional[DiskFormat]


class CloudInit(TypedDict, total=False):
    hostname: Optional[str]
    users: List[Dict[str, object]]
    sshAuthorizedKeys: List[str]
    password: Optional[str]
    runcmd: List[str]
    writeFiles: List[Dict[str, object]]
    userData: Optional[str]
    networkConfig: Optional[str]


class InstanceSpec(TypedDict):
    """What to create: a VM or a container."""

    name: str
    kind: NotRequired[Optional[InstanceKind]]
    backend: NotRequired[Optional[str]]
    image: NotRequired[Optional[str]]
    template: NotRequired[Optional[str]]
    cpus: NotRequired[Optional[int]]
    memoryBytes: NotRequired[Optional[int]]
    disks: NotRequired[List[DiskSpec]]
    cdrom: NotRequired[Optional[str]]
    networks: NotRequired[List[str]]
    ports: NotRequired[List[PortMapping]]
    env: NotRequired[Dict[str, str]]
    mounts: NotRequired[List[MountSpec]]
    command: NotRequired[List[str]]
    entrypoint: NotRequired[Optional[List[str]]]
    workdir: NotRequired[Optional[str]]
    tty: NotRequired[bool]
    cloudInit: NotRequired[Optional[CloudInit]]
    labels: NotRequired[Dict[str, str]]
    restartPolicy: NotRequired[Optional[Literal["no", "always", "unless-stopped", "on-failure"]]]
    autostart: NotRequired[bool]
    privileged: NotRequired[bool]
    devices: NotRequired[List[str]]
    start: NotRequired[bool]


class Instance(TypedDict):
    id: str
    name: str
    kind: InstanceKind
    backend: str
    state: InstanceState
    image: Optional[str]
    cpus: Optional[float]
    memoryBytes: Optional[int]
    createdAt: Optional[str]
    labels: Dict[str, str]
    ports: List[PortMapping]
    networks: List[str]
    ipAddresses: List[str]
    exitCode: Optional[int]


class InstanceFilter(TypedDict, total=False):
    kind: Optional[InstanceKind]
    state: Optional[InstanceState]
    name: Optional[str]
    labels: Dict[str, str]
    backend: Optional[str]


class Unavailable(TypedDict):
    backend: str
    message: str


class InstancePage(TypedDict):
    items: List[Instance]
    count: int
    page: int
    pageSize: int
    unavailable: NotRequired[List["Unavailable"]]


class Stats(TypedDict):
    timestamp: str
    cpuPercent: float
    memoryBytes: int
    memoryLimitBytes: int
    blockReadBytes: int
    blockWriteBytes: int
    netRxBytes: int
    netTxBytes: int
    pids: Optional[int]


class LogEntry(TypedDict):
    stream: Literal["stdout", "stderr", "console"]
    timestamp: Optional[str]
    message: str


class ExecResult(TypedDict):
    exitCode: int
    stdout: str
    stderr: str
    truncated: bool


class Snapshot(TypedDict):
    name: str
    instanceId: str
    createdAt: Optional[str]
    description: Optional[str]
    includesMemory: bool
    reference: Optional[str]


class ExportResult(TypedDict):
    path: str
    format: ExportFormat
    sizeBytes: int


class Progress(TypedDict):
    percent: Optional[float]
    message: str
    id: Optional[str]


class VncDisplay(TypedDict):
    host: str
    port: int


class Event(TypedDict):
    time: str
    backend: str
    kind: InstanceKind
    instanceId: str
    instanceName: Optional[str]
    action: EventAction
    attributes: Dict[str, str]


class EventFilter(TypedDict, total=False):
    kind: Optional[InstanceKind]
    backend: Optional[str]
    instance: Optional[str]
    actions: List[EventAction]


class Image(TypedDict):
    id: str
    tags: List[str]
    kind: Literal["container", "disk", "iso"]
    backend: str
    sizeBytes: int
    createdAt: Optional[str]
    labels: Dict[str, str]
    format: Optional[DiskFormat]


class RegistryAuth(TypedDict):
    username: str
    password: str
    server: NotRequired[Optional[str]]


class PruneReport(TypedDict):
    deleted: List[str]
    spaceReclaimedBytes: int


class Network(TypedDict):
    id: str
    name: str
    backend: str
    driver: str
    subnet: Optional[str]
    gateway: Optional[str]
    internal: bool
    active: bool
    labels: Dict[str, str]
    instances: List[str]
    hostAttached: bool


class NetworkSpec(TypedDict):
    name: str
    backend: NotRequired[Optional[str]]
    driver: NotRequired[Optional[str]]
    subnet: NotRequired[Optional[str]]
    gateway: NotRequired[Optional[str]]
    internal: NotRequired[bool]
    labels: NotRequired[Dict[str, str]]


class Volume(TypedDict):
    name: str
    backend: str
    driver: str
    pool: Optional[str]
    path: Optional[str]
    format: Optional[DiskFormat]
    capacityBytes: Optional[int]
    allocationBytes: Optional[int]
    createdAt: Optional[str]
    labels: Dict[str, str]
    usedBy: List[str]


class VolumeSpec(TypedDict):
    name: str
    backend: NotRequired[Optional[str]]
    driver: NotRequired[Optional[str]]
    pool: NotRequired[Optional[str]]
    sizeBytes: NotRequired[Optional[int]]
    format: NotRequired[Optional[DiskFormat]]
    labels: NotRequired[Dict[str, str]]


class StoragePool(TypedDict):
    name: str
    backend: str
    poolType: str
    path: Optional[str]
    active: bool
    autostart: bool
    capacityBytes: int
    allocationBytes: int
    availableBytes: int


class StoragePoolSpec(TypedDict):
    name: str
    path: str
    backend: NotRequired[Optional[str]]
    poolType: NotRequired[Optional[str]]
    autostart: NotRequired[bool]


class Template(TypedDict):
    name: str
    backend: NotRequired[str]
    os: NotRequired[Optional[str]]
    image: NotRequired[Optional[str]]
    cpus: NotRequired[Optional[int]]
    memoryBytes: NotRequired[Optional[int]]
    disks: NotRequired[List[DiskSpec]]
    networks: NotRequired[List[str]]
    cloudInit: NotRequired[Optional[CloudInit]]


class Health(TypedDict):
    backend: str
    up: bool
    message: str
    latencyMs: int


class BackendInfo(TypedDict):
    name: str
    engine: str
    version: str
    apiVersion: Optional[str]
    endpoint: str
    kinds: List[InstanceKind]


class Capabilities(TypedDict):
    kinds: List[InstanceKind]
    pause: bool
    exec: bool
    console: bool
    consoleVnc: bool
    snapshots: bool
    liveSnapshot: bool
    cloudInit: bool
    exportFormats: List[ExportFormat]
    liveUpdate: bool
    imageRegistry: bool
    imageBuild: bool
    networks: bool
    volumes: bool
    storagePools: bool
    templates: bool
