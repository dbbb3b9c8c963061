//! The data types of the API. Their serde form (camelCase JSON) is the JSON of the REST API
//! and of the bindings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What an instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum InstanceKind {
    /// A virtual machine (libvirt).
    Vm,
    /// A container (Docker).
    Container,
}

impl InstanceKind {
    /// `"vm"` or `"container"`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceKind::Vm => "vm",
            InstanceKind::Container => "container",
        }
    }
}

impl std::str::FromStr for InstanceKind {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "vm" => Ok(InstanceKind::Vm),
            "container" => Ok(InstanceKind::Container),
            other => Err(crate::Error::invalid(format!(
                "unknown instance kind {other:?}: expected \"vm\" or \"container\""
            ))),
        }
    }
}

/// One state vocabulary for VMs and containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Being created, or starting (Docker's `restarting` too).
    #[serde(alias = "restarting")]
    Creating,
    /// Running.
    Running,
    /// Frozen: paused container, suspended VM.
    Paused,
    /// Defined but not running (created, exited, shut off). Docker's and libvirt's words
    /// (`exited`, `created`, `dead`, `shutoff`) are read as this, in filters of every front end.
    #[serde(alias = "exited", alias = "created", alias = "dead", alias = "shutoff")]
    Stopped,
    /// Crashed or dead.
    Error,
    /// The engine reported something LibGo does not know.
    Unknown,
    /// On a host whose engine does not answer: last seen there, state unknown now.
    Lost,
}

impl InstanceState {
    /// Running or paused: the instance holds its host's memory (what admission and
    /// placement count).
    pub fn holds_memory(self) -> bool {
        matches!(self, InstanceState::Running | InstanceState::Paused)
    }

    /// The lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Creating => "creating",
            InstanceState::Running => "running",
            InstanceState::Paused => "paused",
            InstanceState::Stopped => "stopped",
            InstanceState::Error => "error",
            InstanceState::Unknown => "unknown",
            InstanceState::Lost => "lost",
        }
    }
}

impl InstanceState {
    /// Every word [`InstanceState::from_str`](std::str::FromStr) takes: the states, and the
    /// engines' own words for them (`exited`, `shutoff`, …).
    pub const WORDS: &'static [&'static str] = &[
        "creating",
        "restarting",
        "running",
        "paused",
        "stopped",
        "exited",
        "created",
        "dead",
        "shutoff",
        "error",
        "unknown",
        "lost",
    ];
}

impl std::str::FromStr for InstanceState {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        Ok(match s {
            "creating" | "restarting" => InstanceState::Creating,
            "running" => InstanceState::Running,
            "paused" => InstanceState::Paused,
            "stopped" | "exited" | "created" | "dead" | "shutoff" => InstanceState::Stopped,
            "error" => InstanceState::Error,
            "unknown" => InstanceState::Unknown,
            "lost" => InstanceState::Lost,
            other => {
                return Err(crate::Error::invalid(format!(
                    "unknown instance state {other:?}"
                )));
            }
        })
    }
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `"tcp"` or `"udp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A port of the instance published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortMapping {
    /// Port inside the instance.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub container_port: u16,
    /// Port on the host; `None` lets the engine choose.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub host_port: Option<u16>,
    /// Host address to bind; `None` binds every address.
    #[serde(default)]
    pub host_ip: Option<String>,
    /// Protocol.
    #[serde(default)]
    pub protocol: Protocol,
}

/// What a mount's source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A named volume of the backend.
    #[default]
    Volume,
    /// A host path. Only administrators may ask for one.
    Bind,
    /// A memory file system; `source` is ignored.
    Tmpfs,
}

/// A file system mounted into the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MountSpec {
    /// Kind of source.
    #[serde(default)]
    pub kind: MountKind,
    /// Volume name or host path.
    #[serde(default)]
    pub source: String,
    /// Absolute path inside the instance.
    pub target: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// Disk image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// QEMU copy-on-write v2.
    Qcow2,
    /// Raw bytes.
    Raw,
    /// VMware.
    Vmdk,
    /// VirtualBox.
    Vdi,
    /// An ISO 9660 image.
    Iso,
}

impl DiskFormat {
    /// The name qemu-img and libvirt use.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Vdi => "vdi",
            DiskFormat::Iso => "iso",
        }
    }
}

/// A VM disk: a new blank disk (`size_bytes`), an overlay on a base image (`base_image`),
/// or an existing volume (`volume`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskSpec {
    /// Size of a new disk, or the virtual size of an overlay (at least the base's).
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1048576, maximum = 70368744177664_u64)
    )]
    pub size_bytes: Option<u64>,
    /// Base image (name in a pool, or path) to put a copy-on-write overlay on.
    #[serde(default)]
    pub base_image: Option<String>,
    /// An existing volume to attach as it is. It is not deleted with the instance.
    #[serde(default)]
    pub volume: Option<String>,
    /// Storage pool for new volumes; the backend's default when `None`.
    #[serde(default)]
    pub pool: Option<String>,
    /// Format of a new volume; qcow2 when `None`.
    #[serde(default)]
    pub format: Option<DiskFormat>,
}

/// A kernel booted straight from files on the host instead of the VM's disk (libvirt's
/// `<kernel>`/`<initrd>`/`<cmdline>`). The files are host paths: only administrators may
/// ask for one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KernelBoot {
    /// Absolute host path of the kernel.
    pub kernel: String,
    /// Absolute host path of the initrd.
    #[serde(default)]
    pub initrd: Option<String>,
    /// Kernel command line.
    #[serde(default)]
    pub cmdline: Option<String>,
}

/// A user created by cloud-init.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudInitUser {
    /// Login name.
    pub name: String,
    /// SSH public keys.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
    /// Plain password. A secret: never logged.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// Sudo rule, e.g. `ALL=(ALL) NOPASSWD:ALL`.
    #[serde(default)]
    pub sudo: Option<String>,
    /// Login shell.
    #[serde(default)]
    pub shell: Option<String>,
}

/// A file cloud-init writes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudInitFile {
    /// Absolute path in the guest.
    pub path: String,
    /// Content.
    pub content: String,
    /// Octal mode such as `0644`.
    #[serde(default)]
    pub permissions: Option<String>,
}

/// A NoCloud seed for a VM. Secrets in it are never serialised back out nor logged.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudInit {
    /// Guest hostname (`local-hostname`).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Users to create.
    #[serde(default)]
    pub users: Vec<CloudInitUser>,
    /// Keys for the default user.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
    /// Password of the default user. A secret: never serialised back out.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// Commands run at first boot.
    #[serde(default)]
    pub runcmd: Vec<String>,
    /// Files written at first boot.
    #[serde(default)]
    pub write_files: Vec<CloudInitFile>,
    /// Raw user-data; replaces the generated one when set.
    #[serde(default, skip_serializing)]
    pub user_data: Option<String>,
    /// Raw network-config (v2 YAML).
    #[serde(default)]
    pub network_config: Option<String>,
}

/// Restart policy of a container (VMs use `autostart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restart.
    #[default]
    No,
    /// Restart whenever it stops.
    Always,
    /// Restart unless stopped by the user.
    UnlessStopped,
    /// Restart when it exits non-zero.
    OnFailure,
}

/// Everything needed to create an instance of either kind. Fields a backend does not use
/// must be left empty; a backend rejects those it cannot honour with `Unsupported`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstanceSpec {
    /// Unique name, DNS-label-like.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)
    )]
    pub name: String,
    /// VM or container.
    pub kind: Option<InstanceKind>,
    /// Backend to create it on; when `None`, a backend of `kind` on the host placement
    /// picks (see `host` and `pool`).
    #[serde(default)]
    pub backend: Option<String>,
    /// Host to create it on (a pin); placement picks one when `None`.
    #[serde(default)]
    pub host: Option<String>,
    /// Compute pool to place it in; any pool when `None`.
    #[serde(default)]
    pub pool: Option<String>,
    /// Container image, or VM base image for the first disk.
    #[serde(default)]
    pub image: Option<String>,
    /// VM template to start from (its values fill what the spec leaves empty).
    #[serde(default)]
    pub template: Option<String>,
    /// Virtual CPUs (VM) or CPU limit (container).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 512))]
    pub cpus: Option<u32>,
    /// Memory in bytes.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 6291456, maximum = 4398046511104_u64)
    )]
    pub memory_bytes: Option<u64>,
    /// VM disks.
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    /// ISO attached as a CD-ROM (VMs).
    #[serde(default)]
    pub cdrom: Option<String>,
    /// Boot a kernel from host files (VMs). Only administrators may ask for it.
    #[serde(default)]
    pub kernel_boot: Option<KernelBoot>,
    /// Networks to attach.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Addresses from address pools (libgo-server keeps the pools): each on the pool's
    /// network, before `networks`.
    #[serde(default)]
    pub addresses: Vec<crate::AddressRequest>,
    /// The addresses allocated for `addresses`, filled by whoever keeps the pools; never
    /// read from a request.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub assigned: Vec<crate::AddressAssignment>,
    /// Published ports (containers).
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Environment variables (containers).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Mounts (containers).
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// Command and arguments (containers).
    #[serde(default)]
    pub command: Vec<String>,
    /// Entry point override (containers).
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Working directory (containers).
    #[serde(default)]
    pub workdir: Option<String>,
    /// Allocate a TTY (containers).
    #[serde(default)]
    pub tty: bool,
    /// Cloud-init seed (VMs).
    #[serde(default)]
    pub cloud_init: Option<CloudInit>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Restart policy (containers).
    #[serde(default)]
    pub restart_policy: Option<RestartPolicy>,
    /// Start with the host (VMs).
    #[serde(default)]
    pub autostart: bool,
    /// Boot order (VMs): the devices the firmware tries in turn. Empty: the disk, then the
    /// CD-ROM. Not with `kernelBoot`.
    #[serde(default)]
    pub boot: Vec<BootDevice>,
    /// Privileged container: only administrators may ask for one.
    #[serde(default)]
    pub privileged: bool,
    /// Host devices to pass through: only administrators may ask for them.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Start the instance once created.
    #[serde(default)]
    pub start: bool,
}

impl InstanceSpec {
    /// A container spec with a name and an image.
    pub fn container(name: impl Into<String>, image: impl Into<String>) -> Self {
        InstanceSpec {
            name: name.into(),
            kind: Some(InstanceKind::Container),
            image: Some(image.into()),
            ..Default::default()
        }
    }

    /// A VM spec with a name.
    pub fn vm(name: impl Into<String>) -> Self {
        InstanceSpec {
            name: name.into(),
            kind: Some(InstanceKind::Vm),
            ..Default::default()
        }
    }

    /// Whether the spec asks for something that makes its owner root on the host
    /// (privileged mode, a host bind mount, a host device, a kernel from host files, the
    /// host's network namespace or none). Networks that attach to a host bridge are
    /// checked by the caller, which can look them up.
    pub fn needs_host_privileges(&self) -> bool {
        self.privileged
            || !self.devices.is_empty()
            || self.kernel_boot.is_some()
            || self.mounts.iter().any(|m| m.kind == MountKind::Bind)
            || self
                .networks
                .iter()
                .any(|n| n == "host" || n == "none" || n.starts_with("container:"))
    }
}

/// An instance as the engine reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Engine id (container id, domain UUID).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// VM or container.
    pub kind: InstanceKind,
    /// Name of the backend it lives on.
    pub backend: String,
    /// Host it lives on (`local` for the machine LibGo runs on). Set by the facade, which
    /// knows each backend's host; a backend leaves it empty.
    #[serde(default)]
    pub host: String,
    /// State.
    pub state: InstanceState,
    /// Image it was made from, where known.
    pub image: Option<String>,
    /// CPUs (VM) or CPU limit (container), where set.
    pub cpus: Option<f64>,
    /// Memory limit in bytes, where set.
    pub memory_bytes: Option<u64>,
    /// Creation time, where known.
    pub created_at: Option<DateTime<Utc>>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// Networks it is attached to.
    pub networks: Vec<String>,
    /// IP addresses, where known.
    pub ip_addresses: Vec<String>,
    /// Exit code of a stopped container, where known.
    pub exit_code: Option<i64>,
}

/// Filters for [`crate::Compute::list`]. Empty fields match everything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstanceFilter {
    /// Only this kind.
    #[serde(default)]
    pub kind: Option<InstanceKind>,
    /// Only this state.
    #[serde(default)]
    pub state: Option<InstanceState>,
    /// Names containing this text.
    #[serde(default)]
    pub name: Option<String>,
    /// Labels that must all be present with these values.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Only this backend.
    #[serde(default)]
    pub backend: Option<String>,
    /// Only instances whose label `.0` has one of the values `.1`. Not part of the wire
    /// form: a server sets it to keep a caller to the instances of its groups.
    #[serde(skip)]
    pub label_in: Option<(String, Vec<String>)>,
}

impl InstanceFilter {
    /// Whether `instance` passes the filter.
    pub fn matches(&self, instance: &Instance) -> bool {
        self.kind.is_none_or(|k| k == instance.kind)
            && self.state.is_none_or(|s| s == instance.state)
            && self
                .name
                .as_deref()
                .is_none_or(|n| instance.name.contains(n))
            && self
                .backend
                .as_deref()
                .is_none_or(|b| b == instance.backend)
            && self
                .labels
                .iter()
                .all(|(k, v)| instance.labels.get(k) == Some(v))
            && self.label_in.as_ref().is_none_or(|(k, values)| {
                instance.labels.get(k).is_some_and(|v| values.contains(v))
            })
    }
}

/// The label recording the user who had LibGo create an instance.
pub const LABEL_OWNER: &str = "io.libgo.owner";
/// The label recording the group an instance belongs to.
pub const LABEL_GROUP: &str = "io.libgo.group";

/// Who an instance is made for: recorded in its [`LABEL_OWNER`] and [`LABEL_GROUP`] labels,
/// which user input cannot set (their prefix is reserved) and which stay for the
/// instance's life (labels are fixed at creation).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ownership {
    /// The user's name.
    pub owner: String,
    /// The group, if any.
    pub group: Option<String>,
}

impl Ownership {
    /// Writes the ownership labels into `labels`.
    pub fn stamp(&self, labels: &mut BTreeMap<String, String>) {
        labels.insert(LABEL_OWNER.to_string(), self.owner.clone());
        if let Some(g) = &self.group {
            labels.insert(LABEL_GROUP.to_string(), g.clone());
        }
    }
}

/// A page request: `page` from 1, `page_size` from 1 to [`Pagination::MAX_PAGE_SIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// Page number, from 1.
    pub page: u32,
    /// Items per page.
    pub page_size: u32,
}

impl Pagination {
    /// Largest page size.
    pub const MAX_PAGE_SIZE: u32 = 100;
    /// Page size when none is given.
    pub const DEFAULT_PAGE_SIZE: u32 = 50;
}

impl Default for Pagination {
    fn default() -> Self {
        Pagination {
            page: 1,
            page_size: Self::DEFAULT_PAGE_SIZE,
        }
    }
}

/// One page of a list and the total count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// Items of this page.
    pub items: Vec<T>,
    /// Items in all pages.
    pub count: usize,
    /// Page number, from 1.
    pub page: u32,
    /// Items per page.
    pub page_size: u32,
    /// Backends that could not be asked, so that their items are missing from this answer
    /// (absent when every backend answered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<Unavailable>,
}

/// A backend whose part of an answer is missing, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Unavailable {
    /// Backend name.
    pub backend: String,
    /// What went wrong.
    pub message: String,
}

/// Changes to a created instance: its limits, its name, and how it starts by itself.
/// `None` leaves a value as it is.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceUpdate {
    /// A new name (unique across backends); the id, snapshots and volumes stay. A VM must
    /// be shut off (libvirt renames only defined, inactive domains).
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)
    )]
    pub name: Option<String>,
    /// VMs: start when the host (libvirt) starts. Containers use `restartPolicy`.
    #[serde(default)]
    pub autostart: Option<bool>,
    /// Containers: when Docker restarts it. VMs use `autostart`.
    #[serde(default)]
    pub restart_policy: Option<RestartPolicy>,
    /// CPUs.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 512))]
    pub cpus: Option<u32>,
    /// Memory in bytes.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 6291456, maximum = 4398046511104_u64)
    )]
    pub memory_bytes: Option<u64>,
    /// New boot order (VMs); it applies at the next start.
    #[serde(default)]
    pub boot: Option<Vec<BootDevice>>,
}

/// Resource usage, normalised across engines.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// When the sample was taken.
    pub timestamp: DateTime<Utc>,
    /// CPU use in percent of one CPU (200 = two CPUs busy).
    pub cpu_percent: f64,
    /// Memory in use, in bytes.
    pub memory_bytes: u64,
    /// Memory limit in bytes (0 when unknown).
    pub memory_limit_bytes: u64,
    /// Bytes read from block devices.
    pub block_read_bytes: u64,
    /// Bytes written to block devices.
    pub block_write_bytes: u64,
    /// Bytes received on every interface.
    pub net_rx_bytes: u64,
    /// Bytes sent on every interface.
    pub net_tx_bytes: u64,
    /// Processes (containers), where known.
    pub pids: Option<u64>,
}

/// What to read from an instance's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogOptions {
    /// Only the last N lines.
    #[serde(default)]
    pub tail: Option<usize>,
    /// Only lines at or after this time.
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// Only lines before this time.
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
    /// Keep streaming new lines.
    #[serde(default)]
    pub follow: bool,
    /// Prefix each line with its time where the engine records one.
    #[serde(default)]
    pub timestamps: bool,
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A VM's serial console.
    Console,
}

/// A chunk of log output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Source stream.
    pub stream: LogStream,
    /// Time of the line, where the engine records one.
    pub timestamp: Option<DateTime<Utc>>,
    /// The text (lossy UTF-8).
    pub message: String,
}

/// A command to run inside an instance.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecSpec {
    /// Program and arguments.
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub command: Vec<String>,
    /// Extra environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(default)]
    pub workdir: Option<String>,
    /// User to run as.
    #[serde(default)]
    pub user: Option<String>,
    /// Allocate a TTY (stdout and stderr are merged).
    #[serde(default)]
    pub tty: bool,
    /// Most bytes of output kept per stream; the rest is dropped and the result says
    /// `truncated` ([`ExecSpec::DEFAULT_MAX_OUTPUT`] when absent).
    #[serde(default)]
    pub max_output_bytes: Option<u64>,
}

impl ExecSpec {
    /// Output kept per stream when [`ExecSpec::max_output_bytes`] is absent: 16 MiB, as the
    /// QEMU guest agent keeps.
    pub const DEFAULT_MAX_OUTPUT: u64 = 16 << 20;

    /// The output limit in force.
    pub fn output_limit(&self) -> u64 {
        self.max_output_bytes.unwrap_or(Self::DEFAULT_MAX_OUTPUT)
    }
}

/// The outcome of an [`ExecSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ExecResult {
    /// Exit code of the command.
    pub exit_code: i64,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8; empty with a TTY).
    pub stderr: String,
    /// Output was cut at the limit. A container command still running then is left to end
    /// on its own (its pipe is closed) and `exitCode` is -1.
    #[serde(default)]
    pub truncated: bool,
}

/// A point-in-time copy of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Name, unique per instance.
    pub name: String,
    /// Instance id.
    pub instance_id: String,
    /// When it was taken.
    pub created_at: Option<DateTime<Utc>>,
    /// Free text.
    pub description: Option<String>,
    /// Whether memory state is included (running VMs).
    pub includes_memory: bool,
    /// Engine reference (the committed image id of a container snapshot).
    pub reference: Option<String>,
    /// The snapshot it was taken on top of (the current one then): the snapshot tree.
    #[serde(default)]
    pub parent: Option<String>,
    /// Whether it is the current snapshot: the last one taken or reverted to.
    #[serde(default)]
    pub current: bool,
}

/// A device a VM's firmware boots from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BootDevice {
    /// The first disk.
    Disk,
    /// The CD-ROM drive (boot from media).
    Cdrom,
    /// The network (PXE).
    Network,
}

/// The bus a VM's disk is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DiskBus {
    /// virtio-blk: hot-pluggable, `vdX` in the guest.
    #[default]
    Virtio,
    /// SATA (AHCI): for guests without virtio drivers; only while the VM is shut off.
    Sata,
    /// SCSI (virtio-scsi): only while the VM is shut off.
    Scsi,
}

impl DiskBus {
    /// libvirt's name.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskBus::Virtio => "virtio",
            DiskBus::Sata => "sata",
            DiskBus::Scsi => "scsi",
        }
    }
}

/// A disk to attach to an existing VM: an existing volume, or a new blank one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskAttach {
    /// An existing volume (`pool/name`, or a name in the default pool) that no other
    /// instance uses.
    #[serde(default)]
    pub volume: Option<String>,
    /// Or the size of a new blank volume, made in `pool` as `<vm>-<target>.<format>`.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1048576, maximum = 70368744177664_u64)
    )]
    pub size_bytes: Option<u64>,
    /// Format of the new volume (qcow2 by default).
    #[serde(default)]
    pub format: Option<DiskFormat>,
    /// Pool of the new volume (the default pool by default).
    #[serde(default)]
    pub pool: Option<String>,
    /// Bus (virtio by default; the others only while the VM is shut off).
    #[serde(default)]
    pub bus: Option<DiskBus>,
    /// Attach read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// A disk or CD-ROM drive of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AttachedDisk {
    /// Device name in the VM's configuration (`vda`, `vdb`, `hdc`, `sda`).
    pub target: String,
    /// `disk` or `cdrom`.
    pub device: String,
    /// Bus (`virtio`, `sata`, `scsi`, `ide`, …).
    pub bus: String,
    /// The volume it is (`pool/name`, or the name in the default pool), where it is one.
    pub volume: Option<String>,
    /// Host path of its file, where known (`None` for an empty CD-ROM drive).
    pub path: Option<String>,
    /// Image format (`qcow2`, `raw`).
    pub format: Option<String>,
    /// Its size, where known.
    pub size_bytes: Option<u64>,
    /// Read-only.
    pub read_only: bool,
}

/// A disk's new size.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskResize {
    /// New size in bytes. A running VM's disk only grows (and the guest sees it at once).
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1048576, maximum = 70368744177664_u64)
    )]
    pub size_bytes: u64,
    /// Allow a smaller size: data past it is lost. Only while the VM is shut off.
    #[serde(default)]
    pub allow_shrink: bool,
}

/// Media to insert into a VM's CD-ROM drive.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MediaInsert {
    /// An ISO volume (`pool/name`, or a name in the default pool).
    pub image: String,
}

/// What to rebuild an instance from (Nano's reset system).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReinstallSpec {
    /// The image (a container image, or a VM's base disk image); the one it was made from
    /// when absent.
    #[serde(default)]
    pub image: Option<String>,
}

/// A password to set for a user inside a VM's guest, through its QEMU guest agent.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GuestPassword {
    /// The guest's user (`root`).
    pub user: String,
    /// The new password, or its crypt(3) hash when `crypted`. A secret: never serialised
    /// back out, logged or put in an error.
    #[serde(skip_serializing_if = "never_out")]
    #[cfg_attr(feature = "openapi", schema(write_only, required = true))]
    pub password: String,
    /// `password` is already a crypt(3) hash (`$6$…`).
    #[serde(default)]
    pub crypted: bool,
}

impl std::fmt::Debug for GuestPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestPassword")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("crypted", &self.crypted)
            .finish()
    }
}

/// A snapshot to take.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotSpec {
    /// Name, DNS-label-like.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)
    )]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// Formats an instance can be exported to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// VM disk as qcow2.
    Qcow2,
    /// VM disk as VMDK.
    Vmdk,
    /// VM disk as VDI.
    Vdi,
    /// VM disk as raw bytes.
    Raw,
    /// VM as an OVA: OVF descriptor, stream-optimised VMDK and manifest in a tar.
    Ova,
    /// A container's file system as a tar.
    Tar,
    /// A container's image as `docker save` writes it.
    ImageTar,
}

/// Where and how to export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExportSpec {
    /// Format.
    pub format: ExportFormat,
    /// File to write. It must not exist.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub destination: PathBuf,
}

/// A finished export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ExportResult {
    /// The file written.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub path: PathBuf,
    /// Format.
    pub format: ExportFormat,
    /// Bytes written.
    pub size_bytes: u64,
}

/// Progress of a long operation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// 0–100 where known.
    pub percent: Option<f64>,
    /// What is happening.
    pub message: String,
    /// Which part (an image layer id, a disk).
    pub id: Option<String>,
}

/// Receives [`Progress`] from a long operation. Cheap to clone.
#[derive(Clone, Default)]
pub struct ProgressSink(Option<Arc<dyn Fn(Progress) + Send + Sync>>);

impl ProgressSink {
    /// A sink calling `f` for every report.
    pub fn new(f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        ProgressSink(Some(Arc::new(f)))
    }

    /// A sink that drops every report.
    pub fn none() -> Self {
        ProgressSink(None)
    }

    /// Reports progress.
    pub fn report(&self, progress: Progress) {
        if let Some(f) = &self.0 {
            f(progress)
        }
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

/// Kinds of images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    /// An OCI/Docker image.
    Container,
    /// A VM disk image (base image).
    Disk,
    /// Installation media.
    Iso,
}

/// An image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// Engine id (image digest, volume key).
    pub id: String,
    /// References (`repo:tag`) or the volume name.
    pub tags: Vec<String>,
    /// Kind.
    pub kind: ImageKind,
    /// Backend it lives on.
    pub backend: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Creation time, where known.
    pub created_at: Option<DateTime<Utc>>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Disk format, for disk images.
    pub format: Option<DiskFormat>,
}

/// Keeps a secret field out of every serialisation (while the schema still describes it
/// as a field to send).
fn never_out<T>(_: &T) -> bool {
    true
}

/// Credentials for a registry.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistryAuth {
    /// User name.
    pub username: String,
    /// Password or token. A secret: never serialised back out.
    #[serde(skip_serializing_if = "never_out")]
    #[cfg_attr(feature = "openapi", schema(write_only, required = true))]
    pub password: String,
    /// Registry address; taken from the reference when `None`.
    #[serde(default)]
    pub server: Option<String>,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("server", &self.server)
            .finish()
    }
}

/// An image build.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BuildSpec {
    /// The build context as a tar archive in memory.
    #[serde(skip)]
    pub context_tar: Vec<u8>,
    /// The build context as a tar archive in a file, streamed to the engine as it is read
    /// (used instead of `context_tar` when set).
    #[serde(skip)]
    pub context_file: Option<std::path::PathBuf>,
    /// Dockerfile path inside the context (`Dockerfile` when `None`).
    #[serde(default)]
    pub dockerfile: Option<String>,
    /// Tags to give the result.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Build arguments.
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl std::fmt::Debug for BuildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildSpec")
            .field(
                "context_tar",
                &format_args!("{} bytes", self.context_tar.len()),
            )
            .field("context_file", &self.context_file)
            .field("dockerfile", &self.dockerfile)
            .field("tags", &self.tags)
            .finish()
    }
}

/// What a prune removed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    /// Removed ids or names.
    pub deleted: Vec<String>,
    /// Bytes freed.
    pub space_reclaimed_bytes: u64,
}

/// A network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// Engine id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Backend it lives on.
    pub backend: String,
    /// Driver or mode (bridge, nat, isolated, ovs…).
    pub driver: String,
    /// Subnet in CIDR form.
    pub subnet: Option<String>,
    /// Gateway address.
    pub gateway: Option<String>,
    /// No route to the outside.
    pub internal: bool,
    /// Active (libvirt) — always true for Docker.
    pub active: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Ids of attached instances, where the engine reports them.
    pub instances: Vec<String>,
    /// Whether it attaches its instances to a host bridge or interface (libvirt `bridge`
    /// and `ovs`, Docker `macvlan`/`ipvlan`/`host`): a host privilege.
    #[serde(default)]
    pub host_attached: bool,
}

/// A network to create.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Name, DNS-label-like.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)
    )]
    pub name: String,
    /// Backend to create it on.
    #[serde(default)]
    pub backend: Option<String>,
    /// Driver or mode; the backend's default when `None`.
    #[serde(default)]
    pub driver: Option<String>,
    /// Subnet in CIDR form.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Gateway address inside the subnet.
    #[serde(default)]
    pub gateway: Option<String>,
    /// No route to the outside.
    #[serde(default)]
    pub internal: bool,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Name.
    pub name: String,
    /// Backend it lives on.
    pub backend: String,
    /// Driver (Docker) or storage pool (libvirt).
    pub driver: String,
    /// Storage pool, for VM volumes.
    pub pool: Option<String>,
    /// Path or mount point on the host.
    pub path: Option<String>,
    /// Format, for VM volumes.
    pub format: Option<DiskFormat>,
    /// Virtual size in bytes, where known.
    pub capacity_bytes: Option<u64>,
    /// Bytes used on the host, where known.
    pub allocation_bytes: Option<u64>,
    /// Creation time, where known.
    pub created_at: Option<DateTime<Utc>>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Instances whose definitions use it as a disk, where the engine tells (libvirt; empty
    /// for Docker volumes, which containers share by design).
    #[serde(default)]
    pub used_by: Vec<String>,
}

/// A volume to create.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VolumeSpec {
    /// Name, DNS-label-like (a file extension is allowed for VM volumes).
    pub name: String,
    /// Backend to create it on.
    #[serde(default)]
    pub backend: Option<String>,
    /// Volume driver (Docker).
    #[serde(default)]
    pub driver: Option<String>,
    /// Storage pool (libvirt).
    #[serde(default)]
    pub pool: Option<String>,
    /// Size in bytes (libvirt).
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1048576, maximum = 70368744177664_u64)
    )]
    pub size_bytes: Option<u64>,
    /// Format (libvirt).
    #[serde(default)]
    pub format: Option<DiskFormat>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A storage pool (libvirt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StoragePool {
    /// Name.
    pub name: String,
    /// Backend it lives on.
    pub backend: String,
    /// Pool type (`dir`, …).
    pub pool_type: String,
    /// Target path.
    pub path: Option<String>,
    /// Active.
    pub active: bool,
    /// Autostart.
    pub autostart: bool,
    /// Total bytes.
    pub capacity_bytes: u64,
    /// Bytes allocated.
    pub allocation_bytes: u64,
    /// Bytes free.
    pub available_bytes: u64,
}

/// A storage pool to create.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StoragePoolSpec {
    /// Name, DNS-label-like.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)
    )]
    pub name: String,
    /// Backend to create it on.
    #[serde(default)]
    pub backend: Option<String>,
    /// Pool type; `dir` when `None`.
    #[serde(default)]
    pub pool_type: Option<String>,
    /// Target directory (absolute).
    pub path: String,
    /// Start with the host.
    #[serde(default)]
    pub autostart: bool,
}

/// What happened to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EventAction {
    /// Created.
    Created,
    /// Started.
    Started,
    /// Stopped by request.
    Stopped,
    /// Paused.
    Paused,
    /// Resumed.
    Resumed,
    /// Ended on its own or crashed.
    Died,
    /// Deleted.
    Deleted,
}

/// A lifecycle event, from whatever caused it — LibGo or another tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// When the engine saw it.
    pub time: DateTime<Utc>,
    /// Backend name.
    pub backend: String,
    /// Instance kind.
    pub kind: InstanceKind,
    /// Instance id.
    pub instance_id: String,
    /// Instance name, where known.
    pub instance_name: Option<String>,
    /// What happened.
    pub action: EventAction,
    /// Engine details (exit code, reason…).
    pub attributes: BTreeMap<String, String>,
}

/// What the engine behind a backend is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BackendInfo {
    /// Registered name.
    pub name: String,
    /// Engine (`docker`, `libvirt`).
    pub engine: String,
    /// Engine version.
    pub version: String,
    /// Negotiated API version, where there is one.
    pub api_version: Option<String>,
    /// Where it is reached (socket, URI).
    pub endpoint: String,
    /// Instance kinds it manages.
    pub kinds: Vec<InstanceKind>,
    /// The engine's own identity (Docker's daemon id, libvirt's host UUID), the same
    /// however it is reached: one engine is never added twice.
    pub engine_id: Option<String>,
}

/// Whether a backend answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Registered name.
    pub backend: String,
    /// It answered.
    pub up: bool,
    /// Why not, or the engine version.
    pub message: String,
    /// Round trip in milliseconds.
    pub latency_ms: u64,
}

/// What a backend supports. An unsupported call returns [`crate::ErrorKind::Unsupported`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// Instance kinds it manages.
    pub kinds: Vec<InstanceKind>,
    /// Pause and resume.
    pub pause: bool,
    /// Exec inside the instance.
    pub exec: bool,
    /// Interactive console stream.
    pub console: bool,
    /// VNC display.
    pub console_vnc: bool,
    /// Snapshots.
    pub snapshots: bool,
    /// Snapshots of a running instance include memory.
    pub live_snapshot: bool,
    /// Cloud-init seeds.
    pub cloud_init: bool,
    /// Export formats.
    pub export_formats: Vec<ExportFormat>,
    /// Live resource updates.
    pub live_update: bool,
    /// Image pull/push/build.
    pub image_registry: bool,
    /// Image build.
    pub image_build: bool,
    /// Networks.
    pub networks: bool,
    /// Volumes.
    pub volumes: bool,
    /// Storage pools.
    pub storage_pools: bool,
    /// Templates.
    pub templates: bool,
    /// Disks attached, detached and resized on an existing instance; CD-ROM media.
    #[serde(default)]
    pub disks: bool,
    /// A user's password set inside the guest (through an agent).
    #[serde(default)]
    pub guest_password: bool,
}

/// Many instances from one spec: `count` of them, named by `namePattern`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BatchSpec {
    /// The spec; its name is replaced by the name rule.
    pub spec: InstanceSpec,
    /// How many, 1 to 100.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub count: u32,
    /// Name rule with `{n}` for the number (from `first`); `<spec name>-{n}` when absent.
    #[serde(default)]
    pub name_pattern: Option<String>,
    /// First number (default 1).
    #[serde(default)]
    pub first: Option<u32>,
}

impl BatchSpec {
    /// The most instances one batch makes or deletes.
    pub const MAX_COUNT: u32 = 100;

    /// The names the batch gives, checked: the count in range, the rule with `{n}`, each
    /// name valid.
    pub fn names(&self) -> Result<Vec<String>, crate::Error> {
        if self.count == 0 || self.count > Self::MAX_COUNT {
            return Err(crate::Error::invalid(format!(
                "count must be between 1 and {}",
                Self::MAX_COUNT
            )));
        }
        let pattern = self
            .name_pattern
            .clone()
            .unwrap_or_else(|| format!("{}-{{n}}", self.spec.name));
        if !pattern.contains("{n}") {
            return Err(crate::Error::invalid("namePattern must contain {n}"));
        }
        let first = self.first.unwrap_or(1);
        let names: Vec<String> = (first..first.saturating_add(self.count))
            .map(|n| pattern.replace("{n}", &n.to_string()))
            .collect();
        if names.len() != self.count as usize {
            return Err(crate::Error::invalid(
                "first + count runs past the largest number",
            ));
        }
        for n in &names {
            crate::validate::name("name", n)?;
        }
        Ok(names)
    }
}

/// What became of one item of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BatchStatus {
    /// Made.
    Created,
    /// Deleted.
    Deleted,
    /// Stopped (a host's evacuation).
    Stopped,
    /// Moved to another host (a host's evacuation).
    Moved,
    /// Failed; `error` says why.
    Failed,
}

/// Why one item of a batch failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BatchError {
    /// The error kind's code (`NOT_FOUND`, `RESOURCE_CONFLICT`, …).
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// The outcome for one item of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BatchItem {
    /// Name or id.
    pub name: String,
    /// What became of it.
    pub status: BatchStatus,
    /// The instance id, when created.
    pub id: Option<String>,
    /// Why it failed.
    pub error: Option<BatchError>,
}

/// Every item of a batch, in order, and the counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BatchReport {
    /// Each item.
    pub items: Vec<BatchItem>,
    /// Items that worked.
    pub succeeded: usize,
    /// Items that failed.
    pub failed: usize,
}

/// How to stop an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StopOptions {
    /// Seconds to wait for a graceful stop before forcing it; the backend's default
    /// (10 s) when `None`.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Skip the graceful stop.
    #[serde(default)]
    pub force: bool,
}

/// How to delete an instance ([`crate::LibGo::delete`], [`crate::LibGo::delete_batch`]).
/// Build it with `..Default::default()` so that a later option breaks no caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeleteOptions {
    /// Stop a running instance first instead of refusing.
    pub force: bool,
}

/// How to remove an image ([`crate::LibGo::image_remove`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageRemoveOptions {
    /// The backend holding it; found by id or reference when `None`.
    pub backend: Option<String>,
    /// Remove it even when containers use it or it has several tags.
    pub force: bool,
}

/// Which backend a call on a named object (an image, network, volume, pool or template)
/// goes to: the named one, or — the default — whichever one backend holds the object
/// (several holding it is a conflict that asks for the name). Prunes with no backend prune
/// every backend; creates with none use the first backend that can.
///
/// ```
/// use libgo_core::On;
/// assert_eq!(On::any().backend, None);
/// assert_eq!(On::backend("docker").backend.as_deref(), Some("docker"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct On {
    /// The backend's name; `None` for any.
    pub backend: Option<String>,
}

impl On {
    /// Whichever backend holds the object.
    pub fn any() -> Self {
        On::default()
    }

    /// The backend named `name`.
    pub fn backend(name: impl Into<String>) -> Self {
        On {
            backend: Some(name.into()),
        }
    }

    /// The backend named `name`, if any: the shape of an optional query parameter.
    pub fn maybe(name: Option<&str>) -> Self {
        On {
            backend: name.map(str::to_string),
        }
    }
}

/// How to reach a registry ([`crate::LibGo::image_pull`], [`crate::LibGo::image_push`]).
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// The backend that pulls or pushes; `None` for the first that can.
    pub backend: Option<String>,
    /// Credentials for the registry.
    pub auth: Option<RegistryAuth>,
}

/// How to delete a volume ([`crate::LibGo::volume_delete`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeDeleteOptions {
    /// The backend holding it; found by name when `None`.
    pub backend: Option<String>,
    /// Delete it even when an instance uses it.
    pub force: bool,
}

/// Something an existing instance holds of its host that makes whoever runs code in it, or
/// changes it, root on that host. Backends read it from the engine, not from what LibGo
/// remembers of the create call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", content = "detail", rename_all = "camelCase")]
pub enum HostAccess {
    /// Privileged mode, added capabilities or a disabled security profile.
    Privileged(String),
    /// A host path mounted or used as a disk.
    HostPath(String),
    /// A host device passed through.
    Device(String),
    /// A host namespace shared (network `host`, `none`, `container:*`; pid, ipc, uts or
    /// user namespace `host`).
    HostNamespace(String),
    /// A network that attaches to a host bridge or interface.
    HostNetwork(String),
    /// A kernel booted from host files.
    KernelBoot(String),
}

impl std::fmt::Display for HostAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostAccess::Privileged(d) => write!(f, "privileged ({d})"),
            HostAccess::HostPath(d) => write!(f, "host path {d}"),
            HostAccess::Device(d) => write!(f, "host device {d}"),
            HostAccess::HostNamespace(d) => write!(f, "host namespace {d}"),
            HostAccess::HostNetwork(d) => write!(f, "host-attached network {d}"),
            HostAccess::KernelBoot(d) => write!(f, "kernel booted from host file {d}"),
        }
    }
}

/// Where a VM's graphical display listens, for a VNC client or WebSocket proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VncDisplay {
    /// Listen address (loopback).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// A named VM template (Kimchi): values VMs are created from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Template {
    /// Name, DNS-label-like.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)
    )]
    pub name: String,
    /// Backend it lives on (set by the backend).
    #[serde(default)]
    pub backend: String,
    /// Free-form OS name (`debian12`, …).
    #[serde(default)]
    pub os: Option<String>,
    /// Base image of the first disk.
    #[serde(default)]
    pub image: Option<String>,
    /// Virtual CPUs.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 512))]
    pub cpus: Option<u32>,
    /// Memory in bytes.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 6291456, maximum = 4398046511104_u64)
    )]
    pub memory_bytes: Option<u64>,
    /// Disks.
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    /// Networks.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Cloud-init defaults.
    #[serde(default)]
    pub cloud_init: Option<CloudInit>,
}

/// Which events to receive. Empty fields match everything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventFilter {
    /// Only this kind.
    #[serde(default)]
    pub kind: Option<InstanceKind>,
    /// Only this backend.
    #[serde(default)]
    pub backend: Option<String>,
    /// Only this instance (id or name).
    #[serde(default)]
    pub instance: Option<String>,
    /// Only these actions.
    #[serde(default)]
    pub actions: Vec<EventAction>,
}

impl EventFilter {
    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        self.kind.is_none_or(|k| k == event.kind)
            && self.backend.as_deref().is_none_or(|b| b == event.backend)
            && self
                .instance
                .as_deref()
                .is_none_or(|i| i == event.instance_id || event.instance_name.as_deref() == Some(i))
            && (self.actions.is_empty() || self.actions.contains(&event.action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Docker's and libvirt's state words mean LibGo's, in query strings and JSON filters.
    #[test]
    fn engine_state_words_are_synonyms() {
        for word in ["exited", "created", "dead", "shutoff", "stopped"] {
            assert_eq!(
                word.parse::<InstanceState>().unwrap(),
                InstanceState::Stopped
            );
            let f: InstanceFilter =
                serde_json::from_value(serde_json::json!({ "state": word })).unwrap();
            assert_eq!(f.state, Some(InstanceState::Stopped), "{word}");
        }
        assert_eq!(
            "restarting".parse::<InstanceState>().unwrap(),
            InstanceState::Creating
        );
        assert!("sleeping".parse::<InstanceState>().is_err());
        // WORDS (what the OpenAPI document lists) are what the parser takes.
        for word in InstanceState::WORDS {
            assert!(word.parse::<InstanceState>().is_ok(), "{word}");
        }
        for state in [
            InstanceState::Creating,
            InstanceState::Running,
            InstanceState::Paused,
            InstanceState::Stopped,
            InstanceState::Error,
            InstanceState::Unknown,
            InstanceState::Lost,
        ] {
            assert!(InstanceState::WORDS.contains(&state.as_str()), "{state:?}");
        }
        assert_eq!(
            serde_json::to_value(InstanceState::Stopped).unwrap(),
            serde_json::json!("stopped")
        );
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;
    use crate::ErrorKind;

    fn batch(count: u32, pattern: Option<&str>, first: Option<u32>) -> BatchSpec {
        BatchSpec {
            spec: InstanceSpec::container("web", "busybox"),
            count,
            name_pattern: pattern.map(str::to_string),
            first,
        }
    }

    /// The name rule: `{n}` from `first`, the spec's name by default, every name valid,
    /// and a wrong batch refused as a whole.
    #[test]
    fn batch_names_follow_the_rule() {
        assert_eq!(
            batch(3, None, None).names().unwrap(),
            ["web-1", "web-2", "web-3"]
        );
        assert_eq!(
            batch(2, Some("db{n}-x"), Some(9)).names().unwrap(),
            ["db9-x", "db10-x"]
        );
        for wrong in [
            batch(0, None, None),
            batch(101, None, None),
            batch(2, Some("same"), None),
            batch(2, Some("Bad{n}"), None),
            batch(2, None, Some(u32::MAX)),
        ] {
            assert_eq!(
                wrong.names().unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{wrong:?}"
            );
        }
    }
}
