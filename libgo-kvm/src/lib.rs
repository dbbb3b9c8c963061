//! # libgo-kvm
//!
//! LibGo's KVM backend: virtual machines on libvirt, behind the same
//! [`libgo_core::Backend`] traits as containers.
//!
//! [`KvmBackend`] connects to any libvirt URI (`qemu:///system` by default,
//! `test:///default`, or a remote `qemu+ssh://host/system`). Every libvirt call runs on
//! tokio's blocking pool, and libvirt's error is read on the thread that made the call.
//!
//! ```no_run
//! use std::sync::Arc;
//! use libgo_core::{InstanceSpec, LibGo, DiskSpec};
//! use libgo_kvm::{Accelerator, KvmBackend, KvmConfig};
//!
//! # async fn demo() -> libgo_core::Result<()> {
//! let kvm = KvmBackend::connect(KvmConfig {
//!     uri: "qemu:///system".into(),
//!     accelerator: Accelerator::Auto,
//!     ..KvmConfig::default()
//! })
//! .await?;
//! let libgo = LibGo::new();
//! libgo.register(Arc::new(kvm))?;
//!
//! let mut spec = InstanceSpec::vm("web-1");
//! spec.image = Some("debian-12.qcow2".into()); // a base image in the default pool
//! spec.memory_bytes = Some(1 << 30);
//! spec.disks.push(DiskSpec { size_bytes: Some(10 << 30), ..Default::default() });
//! let vm = libgo.create(&spec).await?;
//! libgo.start(&vm.id).await?;
//! # Ok(()) }
//! ```
//!
//! ## Direct kernel boot
//!
//! A VM may boot a kernel from the host instead of its disk: set the spec's
//! `kernel_boot` ([`libgo_core::KernelBoot`]). The paths are host paths, so the spec then
//! `needs_host_privileges()`: like a host bind mount, only an administrator may ask for it.
#![deny(missing_docs)]

mod agent;
mod chain;
mod cloudinit;
mod cold_move;
mod compute;
mod conn;
mod create;
mod disks;
mod events;
mod export;
mod failover;
mod migrate;
mod network;
mod serial;
mod storage;
mod templates;
mod xml;

use std::path::PathBuf;
use std::sync::Arc;

use libgo_core::{Capabilities, ExportFormat, InstanceKind};

pub use conn::map_error;

/// Which accelerator VMs get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accelerator {
    /// Hardware virtualisation (domain type `kvm`).
    Kvm,
    /// QEMU's software emulation (domain type `qemu`): slow but works everywhere.
    Tcg,
    /// KVM where the host offers it, else TCG.
    #[default]
    Auto,
}

impl std::str::FromStr for Accelerator {
    type Err = libgo_core::Error;
    fn from_str(s: &str) -> libgo_core::Result<Self> {
        match s {
            "kvm" => Ok(Accelerator::Kvm),
            "tcg" | "qemu" => Ok(Accelerator::Tcg),
            "auto" => Ok(Accelerator::Auto),
            other => Err(libgo_core::Error::invalid(format!(
                "unknown accelerator {other:?}: expected kvm, tcg or auto"
            ))),
        }
    }
}

/// How to reach libvirt and how to build VMs.
#[derive(Debug, Clone)]
pub struct KvmConfig {
    /// Name the backend is registered under.
    pub name: String,
    /// libvirt URI.
    pub uri: String,
    /// Accelerator for new VMs.
    pub accelerator: Accelerator,
    /// Storage pool for new volumes; `default` (or the first active pool) when `None`.
    pub default_pool: Option<String>,
    /// Directory of the serial logs (on the libvirt host).
    pub log_dir: PathBuf,
    /// Directory where templates are kept, as JSON files.
    pub template_dir: PathBuf,
    /// Seconds a graceful stop waits before forcing, when the caller gives none.
    pub default_stop_timeout_secs: u64,
    /// Seconds after a VM started during which exec waits for its guest agent to connect
    /// (it starts with the guest's OS). Later, an unconnected agent is `Unsupported` at once.
    pub agent_wait_secs: u64,
    /// Whether this process takes libvirt's domain events: they feed [`events`], keep a
    /// cache of the VMs' definitions fresh (a warm list reads none of them) and index the
    /// serial logs. A short-lived reader (the `libgo list` command) turns them off: without
    /// libvirt's event loop in the process its client answers calls from several threads
    /// without handing each reply through the loop's thread (a cold list of 200 VMs reads
    /// their definitions in about half the time). libvirt has one event loop per process,
    /// so this holds for every libvirt connection of the process once one turned it on.
    ///
    /// [`events`]: libgo_core::Backend::events
    pub events: bool,
}

impl Default for KvmConfig {
    fn default() -> Self {
        KvmConfig {
            name: "kvm".into(),
            uri: "qemu:///system".into(),
            accelerator: Accelerator::Auto,
            default_pool: None,
            log_dir: PathBuf::from("/var/log/libvirt/qemu"),
            template_dir: PathBuf::from("/var/lib/libgo/kvm-templates"),
            default_stop_timeout_secs: 10,
            agent_wait_secs: 30,
            events: true,
        }
    }
}

/// The KVM backend: VMs, disk images, storage pools, volumes and networks through libvirt.
#[derive(Clone)]
pub struct KvmBackend {
    pub(crate) inner: Arc<conn::Inner>,
}

impl std::fmt::Debug for KvmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmBackend")
            .field("name", &self.inner.config.name)
            .field("uri", &self.inner.config.uri)
            .finish()
    }
}

impl KvmBackend {
    /// Connects to libvirt at `config.uri`. Fails with `Unavailable` when the daemon does
    /// not answer; later calls reconnect by themselves once it is back.
    pub async fn connect(config: KvmConfig) -> libgo_core::Result<Self> {
        libgo_core::validate::name("backend name", &config.name)?;
        let inner = conn::Inner::open(config).await?;
        Ok(KvmBackend { inner })
    }

    /// The configuration.
    pub fn config(&self) -> &KvmConfig {
        &self.inner.config
    }

    /// Whether this is libvirt's `test` driver (no real VMs, no files).
    pub fn is_test_driver(&self) -> bool {
        self.inner.is_test
    }

    pub(crate) fn caps(&self) -> Capabilities {
        let real = !self.inner.is_test;
        Capabilities {
            kinds: vec![InstanceKind::Vm],
            pause: true,
            exec: real,
            console: real,
            console_vnc: real,
            snapshots: true,
            live_snapshot: real,
            cloud_init: true,
            export_formats: if real {
                vec![
                    ExportFormat::Qcow2,
                    ExportFormat::Vmdk,
                    ExportFormat::Vdi,
                    ExportFormat::Raw,
                    ExportFormat::Ova,
                ]
            } else {
                Vec::new()
            },
            live_update: real,
            image_registry: false,
            image_build: false,
            networks: true,
            volumes: true,
            storage_pools: true,
            templates: true,
            // libvirt's test driver has no device hot-plug and runs no guest.
            disks: real,
            guest_password: real,
        }
    }
}

#[async_trait::async_trait]
impl libgo_core::Backend for KvmBackend {
    fn name(&self) -> &str {
        &self.inner.config.name
    }

    fn capabilities(&self) -> Capabilities {
        self.caps()
    }

    async fn info(&self) -> libgo_core::Result<libgo_core::BackendInfo> {
        let (version, uri, engine_id) = self
            .inner
            .run(|c| {
                let v = c
                    .hyp_version()
                    .or_else(|_| c.lib_version())
                    .map_err(map_error)?;
                let uri = c.uri().map_err(map_error)?;
                // The host UUID of the daemon (its `host_uuid`), from its capabilities.
                let engine_id = c.capabilities().ok().and_then(|caps| {
                    let host = caps.split("<host>").nth(1)?;
                    let uuid = host.split("<uuid>").nth(1)?.split("</uuid>").next()?;
                    Some(uuid.trim().to_string())
                });
                Ok((v, uri, engine_id))
            })
            .await?;
        Ok(libgo_core::BackendInfo {
            name: self.inner.config.name.clone(),
            engine: "libvirt".into(),
            version: format!(
                "{}.{}.{}",
                version / 1_000_000,
                (version / 1000) % 1000,
                version % 1000
            ),
            api_version: virt::connect::Connect::version()
                .ok()
                .map(|v| format!("{}.{}.{}", v / 1_000_000, (v / 1000) % 1000, v % 1000)),
            endpoint: uri,
            kinds: vec![InstanceKind::Vm],
            engine_id: if self.inner.is_test {
                // Every test:///default connection is its own engine.
                Some(format!("test:{}", self.inner.config.name))
            } else {
                engine_id
            },
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn host_resources(&self) -> libgo_core::Result<libgo_core::HostResources> {
        let inner = self.inner.clone();
        let mut resources = self
            .inner
            .run(move |c| host_resources_blocking(c, inner.default_pool(c)?))
            .await?;
        if self.inner.is_test {
            // The test driver's machine is made up (3 GiB, while its own domain claims 8):
            // its memory is unknown, so placement and admission never refuse for it.
            resources.capacity.memory_bytes = 0;
            resources.usage.memory_bytes = None;
        }
        Ok(resources)
    }

    async fn health(&self) -> libgo_core::Health {
        let started = std::time::Instant::now();
        let answer = self.inner.run(|c| c.lib_version().map_err(map_error)).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        match answer {
            Ok(v) => libgo_core::Health {
                backend: self.inner.config.name.clone(),
                up: true,
                message: format!(
                    "libvirt {}.{}.{}",
                    v / 1_000_000,
                    (v / 1000) % 1000,
                    v % 1000
                ),
                latency_ms,
            },
            Err(e) => libgo_core::Health {
                backend: self.inner.config.name.clone(),
                up: false,
                message: e.to_string(),
                latency_ms,
            },
        }
    }
}

/// The host's CPUs and memory (node info), memory in use (node memory stats), CPU use
/// (two node CPU samples 100 ms apart) and the default pool's size and use.
fn host_resources_blocking(
    c: &virt::connect::Connect,
    pool: &str,
) -> libgo_core::Result<libgo_core::HostResources> {
    use libgo_core::hosts::{HostCapacity, HostUsage};
    let node = c.node_info().map_err(map_error)?;
    let pool_info = c
        .lookup_storage_pool_by_name(pool)
        .and_then(|p| p.info())
        .ok();
    let free = c.free_memory().ok();
    let busy = || -> Option<(u64, u64)> {
        let s = node_cpu_stats(c)?;
        let get = |k: &str| s.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
        let idle = get("idle") + get("iowait");
        let total = get("kernel") + get("user") + idle;
        Some((total - idle.min(total), total))
    };
    let cpu_percent = busy().and_then(|(b0, t0)| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (b1, t1) = busy()?;
        (t1 > t0).then(|| (b1.saturating_sub(b0)) as f64 * 100.0 / (t1 - t0) as f64)
    });
    let memory_bytes = node.memory.saturating_mul(1024);
    Ok(libgo_core::HostResources {
        capacity: HostCapacity {
            cpus: node.cpus,
            memory_bytes,
            disk_bytes: pool_info.as_ref().map(|p| p.capacity),
        },
        usage: HostUsage {
            cpu_percent,
            memory_bytes: free.map(|f| memory_bytes.saturating_sub(f)),
            disk_bytes: pool_info.as_ref().map(|p| p.allocation),
            rx_bytes: None,
            tx_bytes: None,
        },
    })
}

/// The host's cumulative CPU times by kind (`kernel`, `user`, `idle`, `iowait`, in ns),
/// from `virNodeGetCPUStats`, which the `virt` crate does not wrap.
fn node_cpu_stats(c: &virt::connect::Connect) -> Option<Vec<(String, u64)>> {
    use virt::sys;
    let mut n: std::os::raw::c_int = 0;
    // SAFETY: a null params pointer with nparams 0 asks libvirt how many there are.
    let r = unsafe {
        sys::virNodeGetCPUStats(
            c.as_ptr(),
            sys::VIR_NODE_CPU_STATS_ALL_CPUS,
            std::ptr::null_mut(),
            &mut n,
            0,
        )
    };
    if r < 0 || n <= 0 || n > 64 {
        return None;
    }
    let mut params = vec![
        sys::virNodeCPUStats {
            field: [0; 80],
            value: 0,
        };
        n as usize
    ];
    // SAFETY: `params` holds `n` entries, as libvirt was told.
    let r = unsafe {
        sys::virNodeGetCPUStats(
            c.as_ptr(),
            sys::VIR_NODE_CPU_STATS_ALL_CPUS,
            params.as_mut_ptr(),
            &mut n,
            0,
        )
    };
    if r < 0 {
        return None;
    }
    Some(
        params
            .iter()
            .take(n.max(0) as usize)
            .map(|p| {
                // SAFETY: libvirt NUL-terminates the field name within its 80 bytes.
                let name = unsafe { std::ffi::CStr::from_ptr(p.field.as_ptr()) };
                (name.to_string_lossy().into_owned(), p.value)
            })
            .collect(),
    )
}
