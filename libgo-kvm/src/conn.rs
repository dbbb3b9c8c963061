//! The libvirt connection: opened by URI, shared by every call, reopened after the daemon
//! went away. Calls run on tokio's blocking pool; libvirt's thread-local error is read on
//! the thread that made the call (the `virt` crate does so inside each wrapper).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};

use libgo_core::{Error, ErrorKind, Event, Result};
use tokio::sync::broadcast;
use virt::connect::Connect;
use virt::error::{ErrorDomain, ErrorNumber};

use crate::{Accelerator, KvmConfig};

/// Maps a libvirt error to a LibGo error of the right kind.
pub fn map_error(e: virt::error::Error) -> Error {
    use ErrorNumber as N;
    let kind = match e.code() {
        virt::enumutil::Enum::Known(code) => match code {
            N::NoDomain
            | N::NoNetwork
            | N::NoStoragePool
            | N::NoStorageVolume
            | N::NoDomainSnapshot
            | N::NoNetworkPort
            | N::NoSecret
            | N::NoInterface
            | N::NoNodeDevice
            | N::NoNwfilter
            | N::NoDomainMetadata
            | N::NoDomainCheckpoint => ErrorKind::NotFound,
            N::DomExist
            | N::NetworkExist
            | N::StorageVolExist
            | N::StoragePoolBuilt
            | N::OperationInvalid
            | N::ResourceBusy
            | N::SnapshotRevertRisky
            | N::BlockCopyActive
            | N::NetworkPortExists
            | N::MultipleDomains => ErrorKind::Conflict,
            N::InvalidArg
            | N::XmlError
            | N::XmlDetail
            | N::XmlInvalidSchema
            | N::InvalidMac
            | N::Overflow
            | N::NoName
            | N::NoSource
            | N::NoTarget
            | N::NoKernel
            | N::CpuIncompatible => ErrorKind::InvalidInput,
            N::NoSupport
            | N::OperationUnsupported
            | N::ArgumentUnsupported
            | N::ConfigUnsupported => ErrorKind::Unsupported,
            N::AuthFailed | N::AuthCancelled | N::AuthUnavailable => ErrorKind::Unauthorized,
            N::AccessDenied | N::OperationDenied => ErrorKind::Forbidden,
            N::OperationTimeout | N::AgentCommandTimeout => ErrorKind::Timeout,
            N::AgentUnresponsive => ErrorKind::Unsupported,
            N::NoConnect | N::InvalidConn | N::Rpc | N::NoServer => ErrorKind::Unavailable,
            N::SystemError
                if e.domain()
                    .is_known_and(|d| matches!(d, ErrorDomain::Rpc | ErrorDomain::Remote)) =>
            {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Internal,
        },
        virt::enumutil::Enum::Unknown(_) => ErrorKind::Internal,
    };
    // A disk image a running QEMU holds (qemu-img's image locking): in use, not a fault.
    if kind == ErrorKind::Internal && is_image_locked(e.message()) {
        return Error::conflict(IMAGE_LOCKED).with_source(e);
    }
    // ENOSPC: the pool's file system is full, a state of the host, not a fault of LibGo.
    if kind == ErrorKind::Internal && e.message().contains("No space left on device") {
        return Error::conflict(format!(
            "the storage pool is full; free space in it or use another pool ({})",
            e.message()
        ))
        .with_source(e);
    }
    // EFBIG: a size the pool's file system cannot hold in one file (ext4 stops at 16 TiB).
    if kind == ErrorKind::Internal && e.message().contains("File too large") {
        return Error::invalid(format!(
            "the size is larger than the storage pool's file system allows for one file ({})",
            e.message()
        ))
        .with_field("sizeBytes")
        .with_source(e);
    }
    // Two pools of one host on one directory: libvirt refuses the second.
    if kind == ErrorKind::Internal && e.message().contains("Storage source conflict") {
        return Error::conflict(format!(
            "another storage pool of this host uses that path ({})",
            e.message()
        ))
        .with_field("path")
        .with_source(e);
    }
    Error::new(kind, e.message().to_string()).with_source(e)
}

/// What an image another QEMU holds the lock of reads as, once mapped.
const IMAGE_LOCKED: &str =
    "the volume is in use by a running VM; stop the VM first (QEMU holds its lock)";

/// Whether `e` is [`map_error`]'s answer to an image another QEMU holds locked.
pub(crate) fn is_image_lock_conflict(e: &Error) -> bool {
    e.kind() == ErrorKind::Conflict && e.message() == IMAGE_LOCKED
}

/// Whether a libvirt message is qemu-img failing on the image lock QEMU holds.
fn is_image_locked(message: &str) -> bool {
    message.contains("Failed to get shared \"write\" lock")
        || message.contains("Failed to get \"write\" lock")
}

/// Shorthand used by the modules: a libvirt result into a LibGo one.
pub(crate) trait LvExt<T> {
    fn lv(self) -> Result<T>;
}

impl<T> LvExt<T> for std::result::Result<T, virt::error::Error> {
    fn lv(self) -> Result<T> {
        self.map_err(map_error)
    }
}

static EVENT_LOOP: Once = Once::new();
static QUIET_ERRORS: Once = Once::new();

/// libvirt prints every error to stderr unless told otherwise: LibGo reports them.
fn quiet_errors() {
    QUIET_ERRORS.call_once(virt::error::clear_error_callback);
}

/// Registers libvirt's default event loop and runs it on a thread of its own. It must be
/// registered before the first connection is opened for that connection to get events.
fn start_event_loop() {
    EVENT_LOOP.call_once(|| {
        if let Err(e) = virt::event::event_register_default_impl() {
            tracing::warn!(error = %e, "libvirt event loop unavailable: no events");
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("libvirt-events".into())
            .spawn(|| {
                loop {
                    if let Err(e) = virt::event::event_run_default_impl() {
                        tracing::warn!(error = %e, "libvirt event loop iteration failed");
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the libvirt event thread");
        }
    });
}

/// What the event callbacks share with the backend.
pub(crate) struct Shared {
    pub backend: String,
    pub events: broadcast::Sender<Event>,
    /// Parsed static facts of domains (labels, disks…), keyed by UUID; kept fresh by events.
    pub cache: Mutex<HashMap<String, Arc<crate::xml::DomainFacts>>>,
    /// Whether events arrive on the current connection (else the cache is bypassed).
    pub events_live: AtomicBool,
    /// Set by the close callback: the connection must be reopened.
    pub closed: AtomicBool,
    /// Last action published per domain UUID (to tell a resume from the unpause at start).
    pub last_action: Mutex<HashMap<String, libgo_core::EventAction>>,
    /// Bumped whenever the cache is cleared, so a filler racing a clear does not insert.
    pub generation: AtomicU64,
    /// When each running domain was seen to start (events, or LibGo's own starts).
    pub started: Mutex<HashMap<String, std::time::Instant>>,
    /// The backend, for work the event callbacks hand to other threads.
    pub inner: std::sync::OnceLock<std::sync::Weak<Inner>>,
    /// Whether serial logs are indexed (a local, real driver).
    pub index_logs: AtomicBool,
}

impl Shared {
    pub fn invalidate(&self, uuid: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut c) = self.cache.lock() {
            c.remove(uuid);
        }
    }

    /// Records that a domain started now.
    pub fn mark_started(&self, uuid: &str) {
        if let Ok(mut s) = self.started.lock() {
            s.insert(uuid.to_string(), std::time::Instant::now());
        }
    }

    /// Forgets a domain's start (it stopped or went away).
    pub fn mark_stopped(&self, uuid: &str) {
        if let Ok(mut s) = self.started.lock() {
            s.remove(uuid);
        }
    }

    /// When a domain was seen to start, if LibGo saw it.
    pub fn started_at(&self, uuid: &str) -> Option<std::time::Instant> {
        self.started.lock().ok()?.get(uuid).copied()
    }

    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }
}

struct Live {
    conn: Arc<Connect>,
    _registration: Option<crate::events::Registration>,
}

/// The backend's state.
pub(crate) struct Inner {
    pub config: KvmConfig,
    pub is_test: bool,
    /// `kvm`, `qemu` or `test`, once a create needed it (see [`Inner::domain_type`]).
    domain_type: OnceLock<String>,
    /// See [`Inner::default_pool`].
    default_pool: OnceLock<String>,
    pub shared: Arc<Shared>,
    live: Mutex<Option<Live>>,
    /// Flags for undefining a domain with its metadata; 0 once the driver refused them.
    pub undefine_flags: std::sync::atomic::AtomicU32,
    /// Last CPU time sample per domain, for CPU percentages.
    pub cpu_samples: Mutex<HashMap<String, (std::time::Instant, u64)>>,
}

impl Inner {
    pub async fn open(config: KvmConfig) -> Result<Arc<Inner>> {
        if config.uri.contains('\0') {
            return Err(Error::invalid("libvirt URI must not contain NUL bytes"));
        }
        let (tx, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            backend: config.name.clone(),
            events: tx,
            cache: Mutex::new(HashMap::new()),
            events_live: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            last_action: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            started: Mutex::new(HashMap::new()),
            inner: std::sync::OnceLock::new(),
            index_logs: AtomicBool::new(false),
        });
        let cfg = config.clone();
        let sh = shared.clone();
        let (live, is_test) = tokio::task::spawn_blocking(move || -> Result<_> {
            let live = open_live(&cfg.uri, &sh, cfg.events)?;
            let is_test = live.conn.driver_type().lv()?.eq_ignore_ascii_case("test");
            Ok((live, is_test))
        })
        .await
        .map_err(|e| Error::internal(format!("libvirt worker failed: {e}")))??;
        tracing::info!(uri = %config.uri, "connected to libvirt");
        let inner = Arc::new(Inner {
            config,
            is_test,
            domain_type: OnceLock::new(),
            default_pool: OnceLock::new(),
            shared: shared.clone(),
            live: Mutex::new(Some(live)),
            undefine_flags: std::sync::atomic::AtomicU32::new(
                virt::sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | virt::sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                    | virt::sys::VIR_DOMAIN_UNDEFINE_NVRAM
                    | virt::sys::VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA,
            ),
            cpu_samples: Mutex::new(HashMap::new()),
        });
        let _ = shared.inner.set(Arc::downgrade(&inner));
        // The index follows starts and stops through events: without them it would fall behind.
        if inner.config.events && !inner.is_test && crate::compute::is_local(&inner) {
            shared.index_logs.store(true, Ordering::SeqCst);
            // Index the serial logs of the VMs running now (in the background).
            let i = inner.clone();
            tokio::task::spawn_blocking(move || crate::serial::scan(&i));
        }
        Ok(inner)
    }

    /// The current connection, reopened when it was lost.
    fn connection(&self) -> Result<Arc<Connect>> {
        let mut guard = self
            .live
            .lock()
            .map_err(|_| Error::internal("connection lock poisoned"))?;
        if self.shared.closed.swap(false, Ordering::SeqCst) {
            tracing::warn!(uri = %self.config.uri, "libvirt connection closed; reconnecting");
            *guard = None;
        }
        if let Some(live) = guard.as_ref() {
            return Ok(live.conn.clone());
        }
        let live = open_live(&self.config.uri, &self.shared, self.config.events)?;
        let conn = live.conn.clone();
        *guard = Some(live);
        Ok(conn)
    }

    /// The domain type of new VMs: `test` on the test driver, else from the accelerator
    /// (`auto`: `kvm` when the host's capabilities offer it). Asked of libvirt on first use
    /// only, since most calls (lists, reads) never need it.
    pub fn domain_type(&self, c: &Connect) -> Result<&str> {
        if let Some(t) = self.domain_type.get() {
            return Ok(t);
        }
        let t = if self.is_test {
            "test".to_string()
        } else {
            match self.config.accelerator {
                Accelerator::Kvm => "kvm".into(),
                Accelerator::Tcg => "qemu".into(),
                Accelerator::Auto => {
                    if c.capabilities().lv()?.contains("<domain type='kvm'") {
                        "kvm".into()
                    } else {
                        "qemu".into()
                    }
                }
            }
        };
        Ok(self.domain_type.get_or_init(|| t))
    }

    /// The storage pool of volumes named without one: the configured one, else `default`,
    /// else the first active pool. Looked up on first use.
    pub fn default_pool(&self, c: &Connect) -> Result<&str> {
        if let Some(p) = self.default_pool.get() {
            return Ok(p);
        }
        let p = match &self.config.default_pool {
            Some(p) => p.clone(),
            None => pick_default_pool(c)?,
        };
        Ok(self.default_pool.get_or_init(|| p))
    }

    /// The current connection (reopened when it was lost), for work that needs two
    /// connections at once (migration).
    pub fn connection_now(&self) -> Result<Arc<Connect>> {
        self.connection()
            .map_err(|e| e.with_context("backend", self.config.name.clone()))
    }

    fn drop_connection(&self) {
        if let Ok(mut guard) = self.live.lock() {
            *guard = None;
        }
        self.shared.events_live.store(false, Ordering::SeqCst);
        self.shared.invalidate_all();
    }

    /// Runs `f` with the connection on the blocking pool. An `Unavailable` answer drops the
    /// connection so that the next call reconnects.
    pub async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> Result<T> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.run_blocking(f))
            .await
            .map_err(|e| Error::internal(format!("libvirt worker failed: {e}")))?
    }

    /// [`Inner::run`] for code already on a blocking thread.
    pub fn run_blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connect) -> Result<T>,
    {
        let conn = self.connection()?;
        let out = f(&conn);
        if let Err(e) = &out
            && e.kind() == ErrorKind::Unavailable
        {
            self.drop_connection();
        }
        out.map_err(|e| e.with_context("backend", self.config.name.clone()))
    }
}

fn open_live(uri: &str, shared: &Arc<Shared>, events: bool) -> Result<Live> {
    quiet_errors();
    if events {
        start_event_loop();
    }
    let conn = Connect::open(Some(uri)).map_err(|e| {
        let mut err = map_error(e);
        if err.kind() == ErrorKind::Internal {
            err = Error::unavailable(format!("cannot connect to libvirt at {uri}: {err}"));
        }
        err.with_context("uri", uri.to_string())
    })?;
    let conn = Arc::new(conn);
    // Keepalive notices a dead daemon on remote connections; local ones ignore it.
    let _ = conn.set_keep_alive(5, 3);
    // Once the event loop runs, a connection without callbacks is slower still from several
    // threads (libvirt's client then serves each call's reply by itself: measured 2 ms a
    // call on a cold list of 1,000 VMs).
    let registration = if events {
        crate::events::register(&conn, shared.clone())
    } else {
        None
    };
    shared
        .events_live
        .store(registration.is_some(), Ordering::SeqCst);
    shared.invalidate_all();
    Ok(Live {
        conn,
        _registration: registration,
    })
}

fn pick_default_pool(c: &Connect) -> Result<String> {
    match c.lookup_storage_pool_by_name("default") {
        Ok(_) => return Ok("default".into()),
        Err(e) => {
            let e = map_error(e);
            if e.kind() != ErrorKind::NotFound {
                return Err(e);
            }
        }
    }
    let pools = c
        .list_all_storage_pools(virt::sys::VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
        .lv()?;
    match pools.first() {
        Some(p) => p.name().lv(),
        None => Ok("default".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_image_reads_as_in_use() {
        // libvirt's words when a volume of a running VM is cloned (found by the API fuzzer).
        assert!(is_image_locked(
            "internal error: Child process (/usr/bin/qemu-img convert -f qcow2 -O qcow2 \
             /var/lib/libvirt/images/v-disk0.qcow2 /var/lib/libvirt/images/c) unexpected exit \
             status 1: qemu-img: Could not open '/var/lib/libvirt/images/v-disk0.qcow2': \
             Failed to get shared \"write\" lock"
        ));
        assert!(!is_image_locked("Cannot allocate memory"));
    }
}
