//! Instances: domains.

use std::collections::HashMap;
use std::ffi::{CStr, c_char};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use libgo_core::validate;
use libgo_core::*;
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::sys;

use crate::KvmBackend;
use crate::conn::{Inner, LvExt};
use crate::xml::{self, DomainFacts};

pub(crate) fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn not_found(id: &str) -> Error {
    Error::not_found(format!("no VM {id:?}")).with_context("instance", id.to_string())
}

/// A domain by UUID or name.
pub(crate) fn lookup(c: &Connect, id: &str) -> Result<Domain> {
    if id.is_empty() || id.contains('\0') {
        return Err(not_found(id));
    }
    if is_uuid(id) {
        match c.lookup_domain_by_uuid_string(id).lv() {
            Ok(d) => return Ok(d),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    c.lookup_domain_by_name(id).lv().map_err(|e| {
        if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::InvalidInput {
            not_found(id)
        } else {
            e
        }
    })
}

pub(crate) fn state_of(s: DomainState) -> InstanceState {
    match s {
        DomainState::Running | DomainState::Blocked | DomainState::Shutdown => {
            InstanceState::Running
        }
        DomainState::Paused | DomainState::PMSuspended => InstanceState::Paused,
        DomainState::Shutoff => InstanceState::Stopped,
        DomainState::Crashed => InstanceState::Error,
        DomainState::NoState => InstanceState::Unknown,
    }
}

fn state_from_raw(raw: u64) -> InstanceState {
    match raw as u32 {
        sys::VIR_DOMAIN_RUNNING | sys::VIR_DOMAIN_BLOCKED | sys::VIR_DOMAIN_SHUTDOWN => {
            InstanceState::Running
        }
        sys::VIR_DOMAIN_PAUSED | sys::VIR_DOMAIN_PMSUSPENDED => InstanceState::Paused,
        sys::VIR_DOMAIN_SHUTOFF => InstanceState::Stopped,
        sys::VIR_DOMAIN_CRASHED => InstanceState::Error,
        _ => InstanceState::Unknown,
    }
}

/// A Conflict for `verb` on a domain that is not running: drivers disagree on the error
/// (qemu says the operation is invalid, the test driver reports an internal error).
fn not_stopped(d: &Domain, verb: &str) -> Result<()> {
    if domain_state(d)? == InstanceState::Stopped {
        return Err(Error::conflict(format!("cannot {verb} a stopped VM")));
    }
    Ok(())
}

/// A failed state change of a domain that is in `target` already is a Conflict (which the
/// facade answers as success), whatever words the driver chose.
fn already(d: &Domain, target: InstanceState, e: Error) -> Error {
    match domain_state(d) {
        Ok(state) if state == target => {
            Error::conflict(format!("the VM is {} already", target.as_str()))
        }
        _ => e,
    }
}

fn domain_state(d: &Domain) -> Result<InstanceState> {
    let (s, _) = d.state().lv()?;
    Ok(match s {
        virt::enumutil::Enum::Known(k) => state_of(k),
        virt::enumutil::Enum::Unknown(_) => InstanceState::Unknown,
    })
}

/// Facts of a domain from the cache, when events keep it fresh.
fn cached_facts(inner: &Inner, d: &Domain) -> Option<Arc<DomainFacts>> {
    if !inner.shared.events_live.load(Ordering::SeqCst) {
        return None;
    }
    let uuid = d.uuid_string().ok()?;
    inner.shared.cache.lock().ok()?.get(&uuid).cloned()
}

/// Threads that read the XML of listed domains not in the cache: each read is one round
/// trip to libvirtd, whose workers serve them side by side (a cold list of 1,000 VMs).
const FACT_READERS: usize = 4;

/// [`facts`] of many domains, in their order; the ones not cached are read in parallel.
fn facts_of_all(inner: &Inner, domains: &[&Domain]) -> Vec<Result<Arc<DomainFacts>>> {
    let mut out: Vec<Option<Result<Arc<DomainFacts>>>> = domains
        .iter()
        .map(|d| cached_facts(inner, d).map(Ok))
        .collect();
    let missing: Vec<usize> = (0..domains.len()).filter(|i| out[*i].is_none()).collect();
    if missing.len() < 16 {
        for i in missing {
            out[i] = Some(facts(inner, domains[i]));
        }
    } else {
        let per = missing.len().div_ceil(FACT_READERS);
        std::thread::scope(|s| {
            let readers: Vec<_> = missing
                .chunks(per)
                .map(|part| {
                    let handle = s.spawn(move || {
                        part.iter()
                            .map(|i| (*i, facts(inner, domains[*i])))
                            .collect::<Vec<_>>()
                    });
                    (part, handle)
                })
                .collect();
            for (part, handle) in readers {
                match handle.join() {
                    Ok(read) => read.into_iter().for_each(|(i, f)| out[i] = Some(f)),
                    Err(_) => part.iter().for_each(|i| {
                        out[*i] = Some(Err(Error::internal("a libvirt reader thread panicked")))
                    }),
                }
            }
        });
    }
    out.into_iter()
        .map(|f| f.unwrap_or_else(|| Err(Error::internal("domain facts not read"))))
        .collect()
}

/// Facts of a domain from the cache (kept fresh by events), or from its XML.
pub(crate) fn facts(inner: &Inner, d: &Domain) -> Result<Arc<DomainFacts>> {
    if let Some(f) = cached_facts(inner, d) {
        return Ok(f);
    }
    let uuid = d.uuid_string().lv()?;
    let live = inner.shared.events_live.load(Ordering::SeqCst);
    let generation = inner.shared.generation.load(Ordering::SeqCst);
    let xml = d.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).lv()?;
    let f = Arc::new(xml::parse_domain(&xml)?);
    if live
        && inner.shared.generation.load(Ordering::SeqCst) == generation
        && let Ok(mut cache) = inner.shared.cache.lock()
    {
        cache.insert(uuid, f.clone());
    }
    Ok(f)
}

fn instance_of(
    inner: &Inner,
    f: &DomainFacts,
    state: InstanceState,
    memory: Option<u64>,
    cpus: Option<u32>,
) -> Instance {
    Instance {
        id: f.uuid.clone(),
        name: f.name.clone(),
        kind: InstanceKind::Vm,
        backend: inner.config.name.clone(),
        host: String::new(),
        state,
        image: f.meta.image.clone(),
        cpus: Some(f64::from(cpus.unwrap_or(f.vcpus))),
        memory_bytes: Some(memory.unwrap_or(f.memory_bytes)),
        created_at: f.meta.created,
        labels: f.meta.labels.clone(),
        ports: Vec::new(),
        networks: f
            .nics
            .iter()
            .filter_map(|n| n.network.clone().or_else(|| n.bridge.clone()))
            .collect(),
        ip_addresses: Vec::new(),
        exit_code: None,
    }
}

pub(crate) fn get_blocking(inner: &Inner, c: &Connect, id: &str) -> Result<Instance> {
    instance_blocking(inner, &lookup(c, id)?)
}

/// The instance a domain is.
pub(crate) fn instance_blocking(inner: &Inner, d: &Domain) -> Result<Instance> {
    let f = facts(inner, d)?;
    let state = domain_state(d)?;
    // Memory and CPUs as configured (what the VM is set to have), like a container's
    // limits; the balloon's actual size is in `stats`.
    let mut i = instance_of(inner, &f, state, None, None);
    if state == InstanceState::Running {
        // Addresses from DHCP leases of libvirt networks: one local lookup, no guest agent.
        if let Ok(ifaces) = d.interface_addresses(sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0)
        {
            i.ip_addresses = ifaces
                .iter()
                .flat_map(|i| i.addrs.iter().map(|a| a.addr.clone()))
                .collect();
        }
    }
    Ok(i)
}

/// A typed parameter's value.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Int(i64),
    UInt(u64),
    Float(f64),
}

impl Param {
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Param::Int(i) => u64::try_from(*i).ok(),
            Param::UInt(u) => Some(*u),
            Param::Float(f) => Some(*f as u64),
        }
    }
}

/// One record of bulk stats.
pub(crate) struct StatsRecord {
    pub domain: Domain,
    pub params: HashMap<String, Param>,
}

impl StatsRecord {
    fn u64(&self, key: &str) -> Option<u64> {
        self.params.get(key).and_then(Param::as_u64)
    }
    fn sum(&self, prefix: &str, count_key: &str, suffix: &str) -> u64 {
        let n = self.u64(count_key).unwrap_or(0);
        (0..n)
            .filter_map(|i| self.u64(&format!("{prefix}.{i}.{suffix}")))
            .sum()
    }
}

/// Bulk stats of every domain (`one` = None) or of one, in one libvirt call.
pub(crate) fn bulk_stats(
    c: &Connect,
    one: Option<&Domain>,
    stats: u32,
) -> Result<Vec<StatsRecord>> {
    let mut records: *mut sys::virDomainStatsRecordPtr = std::ptr::null_mut();
    // SAFETY: the pointers come from live wrapper objects; libvirt fills `records` with a
    // NULL-terminated array that we free with virDomainStatsRecordListFree below.
    let n = unsafe {
        match one {
            None => sys::virConnectGetAllDomainStats(c.as_ptr(), stats, &mut records, 0),
            Some(d) => {
                let mut doms = [d.as_ptr(), std::ptr::null_mut()];
                sys::virDomainListGetStats(doms.as_mut_ptr(), stats, &mut records, 0)
            }
        }
    };
    if n < 0 {
        return Err(crate::conn::map_error(virt::error::Error::last_error()));
    }
    let mut out = Vec::with_capacity(n as usize);
    // SAFETY: `records` holds `n` valid records; each record's params array holds
    // `nparams` entries; strings are NUL-terminated. We take a new reference on each
    // domain before the list (and its references) is freed.
    unsafe {
        for i in 0..n as usize {
            let rec = *records.add(i);
            if rec.is_null() {
                continue;
            }
            let r = &*rec;
            if sys::virDomainRef(r.dom) < 0 {
                continue;
            }
            let domain = Domain::from_ptr(r.dom);
            let mut params = HashMap::with_capacity(r.nparams.max(0) as usize);
            for j in 0..r.nparams.max(0) as usize {
                let p = &*r.params.add(j);
                let key = CStr::from_ptr(p.field.as_ptr() as *const c_char)
                    .to_string_lossy()
                    .into_owned();
                let value = match p.type_ as u32 {
                    sys::VIR_TYPED_PARAM_INT => Param::Int(i64::from(p.value.i)),
                    sys::VIR_TYPED_PARAM_UINT => Param::UInt(u64::from(p.value.ui)),
                    sys::VIR_TYPED_PARAM_LLONG => Param::Int(p.value.l),
                    sys::VIR_TYPED_PARAM_ULLONG => Param::UInt(p.value.ul),
                    sys::VIR_TYPED_PARAM_DOUBLE => Param::Float(p.value.d),
                    sys::VIR_TYPED_PARAM_BOOLEAN => Param::UInt(u64::from(p.value.b != 0)),
                    _ => continue,
                };
                params.insert(key, value);
            }
            out.push(StatsRecord { domain, params });
        }
        if !records.is_null() {
            sys::virDomainStatsRecordListFree(records);
        }
    }
    Ok(out)
}

pub(crate) fn list_blocking(
    inner: &Inner,
    c: &Connect,
    filter: &InstanceFilter,
) -> Result<Vec<Instance>> {
    let records = bulk_stats(c, None, sys::VIR_DOMAIN_STATS_STATE)?;
    let domains: Vec<&Domain> = records.iter().map(|r| &r.domain).collect();
    let all_facts = facts_of_all(inner, &domains);
    let mut out = Vec::with_capacity(records.len());
    for (r, f) in records.iter().zip(all_facts) {
        let f = match f {
            Ok(f) => f,
            // Undefined between the list and now.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let state = r
            .u64("state.state")
            .map_or(InstanceState::Unknown, state_from_raw);
        let i = instance_of(inner, &f, state, None, None);
        if filter.matches(&i) {
            out.push(i);
        }
    }
    Ok(out)
}

/// A volume reference `pool/name`, `name` (default pool) or an absolute path.
pub(crate) fn find_volume(inner: &Inner, c: &Connect, reference: &str) -> Result<StorageVol> {
    let missing = || Error::not_found(format!("no volume or image {reference:?}"));
    if reference.starts_with('/') {
        return c.lookup_storage_vol_by_path(reference).lv().map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                missing()
            } else {
                e
            }
        });
    }
    if validate::volume_name(reference).is_err() {
        return Err(missing());
    }
    let (pool, name) = match reference.split_once('/') {
        Some((p, n)) => (p, n),
        None => (inner.default_pool(c)?, reference),
    };
    let pool = c.lookup_storage_pool_by_name(pool).lv().map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            missing()
        } else {
            e
        }
    })?;
    pool.lookup_storage_vol_by_name(name).lv().map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            missing()
        } else {
            e
        }
    })
}

pub(crate) fn pool_of(inner: &Inner, c: &Connect, name: Option<&str>) -> Result<StoragePool> {
    let name = match name {
        Some(n) => n,
        None => inner.default_pool(c)?,
    };
    c.lookup_storage_pool_by_name(name)
        .lv()
        .map_err(|e| e.with_context("pool", name.to_string()))
}

pub(crate) fn volume_path(v: &StorageVol) -> Result<String> {
    v.path().lv()
}

fn volume_format(v: &StorageVol) -> Result<String> {
    let f = xml::parse_volume(&v.xml_desc(0).lv()?)?;
    Ok(f.format.unwrap_or_else(|| "raw".into()))
}

/// The format of an existing volume a new VM will open, once its backing chain is known to
/// stay inside the pools (libvirt may have probed the format from guest-written bytes).
pub(crate) fn checked_format(inner: &Inner, c: &Connect, v: &StorageVol) -> Result<String> {
    if crate::chain::checkable(inner) {
        crate::chain::check(c, &volume_path(v)?, None)?;
    } else if !inner.is_test {
        crate::chain::check_by_libvirt(c, v)?;
    }
    volume_format(v)
}

pub(crate) fn serial_log_path(inner: &Inner, name: &str) -> String {
    inner
        .config
        .log_dir
        .join(format!("{name}-serial.log"))
        .to_string_lossy()
        .into_owned()
}

/// Writes `data` into a volume through a libvirt stream (works on remote hosts too).
pub(crate) fn upload_bytes(c: &Connect, vol: &StorageVol, data: &[u8]) -> Result<()> {
    upload_from(c, vol, data.len() as u64, &mut &data[..])
}

/// Fills a volume from file `path`, a chunk at a time: an image of any size is uploaded in
/// the memory of one chunk.
pub(crate) fn upload_file(c: &Connect, vol: &StorageVol, path: &std::path::Path) -> Result<()> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    upload_from(c, vol, len, &mut file)
}

/// Sends `len` bytes of `source` into a volume through a libvirt stream, aborting the
/// stream on any failure (libvirt then drops what was sent).
fn upload_from(
    c: &Connect,
    vol: &StorageVol,
    len: u64,
    source: &mut dyn std::io::Read,
) -> Result<()> {
    const CHUNK: usize = 256 * 1024;
    let stream = virt::stream::Stream::new(c, 0).lv()?;
    vol.upload(&stream, 0, len, 0).lv()?;
    let sent = (|| -> Result<()> {
        let mut buf = vec![0u8; CHUNK];
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
            let n = source.read(&mut buf[..want])?;
            if n == 0 {
                return Err(Error::conflict("the file shrank while it was uploaded"));
            }
            let mut off = 0;
            while off < n {
                let k = stream.send(&buf[off..n]).lv()?;
                if k <= 0 {
                    return Err(Error::internal("volume upload stream stopped"));
                }
                off += k as usize;
            }
            left -= n as u64;
        }
        Ok(())
    })();
    match sent {
        Ok(()) => stream.finish().lv(),
        Err(e) => {
            let _ = stream.abort();
            Err(e)
        }
    }
}

/// Refuses a guest larger than the host's memory: QEMU would only fail at start.
pub(crate) fn fits_host(c: &Connect, memory_bytes: u64) -> Result<()> {
    let host_bytes = c.node_info().lv()?.memory.saturating_mul(1024);
    if memory_bytes > host_bytes {
        return Err(Error::invalid(format!(
            "memoryBytes {memory_bytes} is more than this host's memory ({host_bytes} bytes)"
        ))
        .with_context("field", "memoryBytes"));
    }
    Ok(())
}

/// Whether a start failed because QEMU could not reserve the guest's memory now: the host
/// is short of free memory, a state that may pass, not a bad request or a bug.
fn is_out_of_memory(e: &Error) -> bool {
    e.message().contains("Cannot allocate memory")
}

/// libvirt's words when libvirtd ended a QEMU it was starting (a concurrent destroy).
fn killed_while_starting(e: &Error) -> bool {
    e.message().contains("terminating on signal 15 from pid")
}

/// Starts a domain and notes when (exec waits for the guest agent of a booting VM).
pub(crate) fn start_domain(inner: &Inner, d: &Domain) -> Result<()> {
    if let Err(e) = d.create().lv() {
        if is_out_of_memory(&e) {
            return Err(Error::conflict(
                "the host has not enough free memory to start this VM now",
            )
            .with_source(e));
        }
        // libvirtd itself ended the starting QEMU: another request stopped or restarted
        // the VM at the same moment (found by the API fuzzer's overlapping restarts).
        if killed_while_starting(&e) {
            return Err(Error::conflict(
                "the VM was stopped by another request while it started; try again",
            )
            .with_source(e));
        }
        return Err(already(d, InstanceState::Running, e));
    }
    if let Ok(uuid) = d.uuid_string() {
        inner.shared.mark_started(&uuid);
    }
    Ok(())
}

pub(crate) fn is_active_domain(d: &Domain) -> Result<bool> {
    d.is_active().lv()
}

fn is_active(d: &Domain) -> Result<bool> {
    d.is_active().lv()
}

fn stop_blocking(d: &Domain, options: StopOptions, default_timeout: u64) -> Result<()> {
    // A forced stop destroys at once: a VM that is not running answers "not running",
    // which is success here (checked below), so no probe is needed first.
    if !options.force {
        if !is_active(d)? {
            return Ok(());
        }
        let timeout = Duration::from_secs(options.timeout_secs.unwrap_or(default_timeout));
        match d.shutdown().lv() {
            Ok(()) => {
                let deadline = Instant::now() + timeout;
                while Instant::now() < deadline {
                    if !is_active(d)? {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                tracing::info!("graceful shutdown timed out; forcing");
            }
            Err(e) if e.kind() == ErrorKind::Conflict && !is_active(d)? => return Ok(()),
            Err(e) => tracing::info!(error = %e, "graceful shutdown refused; forcing"),
        }
    }
    match d.destroy().lv() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::Conflict && !is_active(d)? => Ok(()),
        Err(e) => Err(e),
    }
}

/// Undefines `d` with its managed save, snapshot and checkpoint metadata and NVRAM; not its
/// volumes.
pub(crate) fn undefine(inner: &Inner, d: &Domain) -> Result<()> {
    // The flags this driver accepts are learnt once (the test driver refuses some).
    let flags = inner.undefine_flags.load(Ordering::Relaxed);
    if flags == 0 {
        d.undefine().lv()?;
    } else if let Err(e) = d.undefine_flags(flags).lv() {
        if e.kind() == ErrorKind::Unsupported || e.kind() == ErrorKind::InvalidInput {
            inner.undefine_flags.store(0, Ordering::Relaxed);
            d.undefine().lv()?;
        } else {
            return Err(e);
        }
    }
    Ok(())
}

fn delete_blocking(inner: &Inner, c: &Connect, id: &str, force: bool) -> Result<()> {
    let d = lookup(c, id)?;
    let f = facts(inner, &d)?;
    if is_active(&d)? {
        if !force {
            return Err(Error::conflict(format!(
                "VM {:?} is running: stop it first or delete with force",
                f.name
            )));
        }
        stop_blocking(
            &d,
            StopOptions {
                timeout_secs: None,
                force: true,
            },
            0,
        )?;
    }
    undefine(inner, &d)?;
    inner.shared.invalidate(&f.uuid);
    for nic in &f.nics {
        if let (Some(network), Some(mac)) = (&nic.network, &nic.mac)
            && network.starts_with(&libgo_core::addresses::network_name(""))
            && let Err(e) = crate::network::dhcp_host(c, network, mac, None)
        {
            tracing::warn!(%network, error = %e, "could not remove the VM's DHCP host entry");
        }
    }
    for owned in &f.meta.owned {
        match find_volume(inner, c, owned) {
            Ok(v) => {
                if let Err(e) = v.delete(0) {
                    tracing::warn!(volume = %owned, error = %e, "could not delete the VM's volume");
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(volume = %owned, error = %e, "could not find the VM's volume"),
        }
    }
    if let Some(log) = &f.serial_log
        && is_local(inner)
    {
        let _ = std::fs::remove_file(log);
        crate::serial::remove_index(std::path::Path::new(log));
    }
    Ok(())
}

pub(crate) fn is_local(inner: &Inner) -> bool {
    let uri = inner.config.uri.as_str();
    !uri.contains("://") || uri.contains(":///")
}

fn update_blocking(inner: &Inner, c: &Connect, id: &str, u: ResourceUpdate) -> Result<Instance> {
    if u.restart_policy.is_some() {
        return Err(Error::unsupported(
            "a VM starts with its host by autostart, not a restart policy",
        )
        .with_context("field", "restartPolicy"));
    }
    let d = lookup(c, id)?;
    let active = is_active(&d)?;
    // The rename first: refused on a running VM before anything else changes.
    if let Some(name) = &u.name {
        if active {
            return Err(Error::conflict(
                "a VM must be shut off to be renamed (libvirt renames only inactive domains)",
            ));
        }
        d.rename(name, 0).lv()?;
    }
    if let Some(on) = u.autostart {
        d.set_autostart(on).lv()?;
    }
    if let Some(order) = &u.boot {
        validate::boot_order(order)?;
        let x = d.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).lv()?;
        if xml::parse_domain(&x)?.direct_boot {
            return Err(Error::invalid(
                "the VM boots a kernel directly (kernelBoot): a boot order does not apply",
            )
            .with_field("boot"));
        }
        // The persistent definition: the new order applies at the next start.
        c.define_domain_xml(&xml::with_boot_order(&x, order)?)
            .lv()?;
    }
    let config = sys::VIR_DOMAIN_AFFECT_CONFIG;
    if let Some(n) = u.cpus {
        let current = d.vcpus_flags(config).lv().unwrap_or(1);
        if n >= current {
            d.set_vcpus_flags(n, config | sys::VIR_DOMAIN_VCPU_MAXIMUM)
                .lv()?;
            d.set_vcpus_flags(n, config).lv()?;
        } else {
            d.set_vcpus_flags(n, config).lv()?;
            d.set_vcpus_flags(n, config | sys::VIR_DOMAIN_VCPU_MAXIMUM)
                .lv()?;
        }
        if active && let Err(e) = d.set_vcpus_flags(n, sys::VIR_DOMAIN_AFFECT_LIVE).lv() {
            tracing::info!(error = %e, "live CPU change refused; it applies at next start");
        }
    }
    if let Some(m) = u.memory_bytes {
        fits_host(c, m)?;
        let kib = m / 1024;
        d.set_memory_flags(kib, config | sys::VIR_DOMAIN_MEM_MAXIMUM)
            .lv()?;
        d.set_memory_flags(kib, config).lv()?;
        if active && let Err(e) = d.set_memory_flags(kib, sys::VIR_DOMAIN_AFFECT_LIVE).lv() {
            tracing::info!(error = %e, "live memory change refused; it applies at next start");
        }
    }
    let uuid = d.uuid_string().lv()?;
    inner.shared.invalidate(&uuid);
    get_blocking(inner, c, &uuid)
}

/// Rebuilds a VM's root disk (its first disk, which it must own) as a new overlay on the
/// image; other disks and the configuration stay. A running VM is powered off for it and
/// started again.
fn reinstall_blocking(
    inner: &Inner,
    c: &Connect,
    id: &str,
    spec: &ReinstallSpec,
) -> Result<Instance> {
    let d = lookup(c, id)?;
    let x = d.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).lv()?;
    let f = xml::parse_domain(&x)?;
    let root = f
        .disks
        .iter()
        .find(|d| d.device == "disk")
        .ok_or_else(|| Error::conflict("the VM has no disk to rebuild"))?;
    let (Some(pool), Some(volume)) = (&root.pool, &root.volume) else {
        return Err(Error::conflict(format!(
            "{} is not a volume of a storage pool; only a disk the VM was made with is rebuilt",
            root.target
        )));
    };
    if !f
        .meta
        .owned
        .iter()
        .any(|o| *o == format!("{pool}/{volume}"))
    {
        return Err(Error::conflict(format!(
            "{} is volume {volume:?}, which the VM was not made with: reinstall rebuilds only \
             its own root disk",
            root.target
        )));
    }
    let image = spec
        .image
        .clone()
        .or_else(|| f.meta.image.clone())
        .ok_or_else(|| {
            Error::invalid("the VM was made without an image: give the image to reinstall from")
                .with_field("image")
        })?;
    if d.num_snapshots(0).lv()? > 0 {
        return Err(Error::conflict(
            "the VM has snapshots, which live in the disk being rebuilt: delete them first",
        ));
    }
    let base = find_volume(inner, c, &image).map_err(|e| e.with_field("image"))?;
    let base_path = volume_path(&base)?;
    let base_format = checked_format(inner, c, &base)?;
    let base_cap = base.info().lv()?.capacity;
    let pool_obj = pool_of(inner, c, Some(pool))?;
    let old = pool_obj.lookup_storage_vol_by_name(volume).lv()?;
    let capacity = old.info().lv()?.capacity.max(base_cap);
    let new_xml = xml::volume_xml(&xml::VolumePlan {
        name: volume,
        capacity,
        format: "qcow2",
        backing: Some((&base_path, &base_format)),
    })?;
    let was_running = is_active_domain(&d)?;
    if was_running {
        d.destroy().lv()?;
    }
    old.delete(0).lv()?;
    StorageVol::create_xml(&pool_obj, &new_xml, 0).lv()?;
    // The image it now comes from, in LibGo's metadata.
    if f.meta.image.as_deref() != Some(image.as_str())
        && let Some(old_image) = &f.meta.image
    {
        let from = format!(">{old_image}</libgo:image>");
        if x.contains(&from) {
            c.define_domain_xml(&x.replace(&from, &format!(">{image}</libgo:image>")))
                .lv()?;
        }
    }
    if was_running {
        start_domain(inner, &d)?;
    }
    let uuid = d.uuid_string().lv()?;
    inner.shared.invalidate(&uuid);
    get_blocking(inner, c, &uuid)
}

/// The bulk stats a sample reads (the test driver has only the state).
fn stats_flags(inner: &Inner) -> u32 {
    if inner.is_test {
        sys::VIR_DOMAIN_STATS_STATE
    } else {
        sys::VIR_DOMAIN_STATS_STATE
            | sys::VIR_DOMAIN_STATS_BALLOON
            | sys::VIR_DOMAIN_STATS_BLOCK
            | sys::VIR_DOMAIN_STATS_INTERFACE
            | sys::VIR_DOMAIN_STATS_CPU_TOTAL
    }
}

fn stats_blocking(inner: &Inner, c: &Connect, id: &str) -> Result<Stats> {
    let d = lookup(c, id)?;
    let uuid = d.uuid_string().lv()?;
    let info = d.info().lv()?;
    let rec = bulk_stats(c, Some(&d), stats_flags(inner))?
        .into_iter()
        .next();
    stats_of(
        inner,
        &uuid,
        &Memory::of(&info),
        rec.as_ref(),
        is_active(&d)?,
    )
}

/// Every running domain's sample from one `virConnectGetAllDomainStats` call (the domain
/// info is asked only where the record lacks the balloon's maximum: the test driver).
fn stats_all_blocking(inner: &Inner, c: &Connect) -> Result<HashMap<String, Stats>> {
    let mut out = HashMap::new();
    for rec in bulk_stats(c, None, stats_flags(inner))? {
        if rec.u64("state.state") != Some(u64::from(sys::VIR_DOMAIN_RUNNING)) {
            continue;
        }
        let uuid = rec.domain.uuid_string().lv()?;
        let memory = match (rec.u64("balloon.maximum"), rec.u64("balloon.current")) {
            (Some(max_kib), Some(current_kib)) => Memory {
                max_kib,
                current_kib,
                cpu_time: rec.u64("cpu.time").unwrap_or(0),
            },
            _ => Memory::of(&rec.domain.info().lv()?),
        };
        let stats = stats_of(inner, &uuid, &memory, Some(&rec), true)?;
        out.insert(uuid, stats);
    }
    Ok(out)
}

/// What a sample needs of a domain's info.
struct Memory {
    max_kib: u64,
    current_kib: u64,
    cpu_time: u64,
}

impl Memory {
    fn of(info: &virt::domain::DomainInfo) -> Memory {
        Memory {
            max_kib: info.max_mem,
            current_kib: info.memory,
            cpu_time: info.cpu_time,
        }
    }
}

/// A sample from a domain's info and bulk record; the CPU share from the previous sample
/// of the same domain.
fn stats_of(
    inner: &Inner,
    uuid: &str,
    info: &Memory,
    rec: Option<&StatsRecord>,
    active: bool,
) -> Result<Stats> {
    let now = Instant::now();
    let cpu_time = rec.and_then(|r| r.u64("cpu.time")).unwrap_or(info.cpu_time);
    let cpu_percent = {
        let mut samples = inner
            .cpu_samples
            .lock()
            .map_err(|_| Error::internal("stats lock poisoned"))?;
        let pct = match samples.get(uuid) {
            Some((t, prev)) if now.duration_since(*t) > Duration::from_millis(50) => {
                let dt = now.duration_since(*t).as_nanos() as f64;
                (cpu_time.saturating_sub(*prev) as f64 / dt * 100.0).max(0.0)
            }
            _ => 0.0,
        };
        samples.insert(uuid.to_string(), (now, cpu_time));
        pct
    };
    let limit = info.max_kib.saturating_mul(1024);
    let (used, block_r, block_w, rx, tx) = match rec {
        Some(r) => {
            let used = r
                .u64("balloon.rss")
                .or_else(|| {
                    let avail = r.u64("balloon.available")?;
                    let unused = r.u64("balloon.unused")?;
                    Some(avail.saturating_sub(unused))
                })
                .or_else(|| r.u64("balloon.current"))
                .map(|k| k.saturating_mul(1024))
                .unwrap_or(info.current_kib.saturating_mul(1024));
            (
                used,
                r.sum("block", "block.count", "rd.bytes"),
                r.sum("block", "block.count", "wr.bytes"),
                r.sum("net", "net.count", "rx.bytes"),
                r.sum("net", "net.count", "tx.bytes"),
            )
        }
        None => (info.current_kib.saturating_mul(1024), 0, 0, 0, 0),
    };
    Ok(Stats {
        timestamp: chrono::Utc::now(),
        cpu_percent,
        memory_bytes: if active { used } else { 0 },
        memory_limit_bytes: limit,
        block_read_bytes: block_r,
        block_write_bytes: block_w,
        net_rx_bytes: rx,
        net_tx_bytes: tx,
        pids: None,
    })
}

fn snapshot_of(uuid: &str, s: &virt::domain_snapshot::DomainSnapshot) -> Result<Snapshot> {
    let f = xml::parse_snapshot(&s.xml_desc(0).lv()?)?;
    Ok(Snapshot {
        name: f.name,
        instance_id: uuid.to_string(),
        created_at: f.created,
        description: f.description,
        includes_memory: f.memory,
        reference: None,
        parent: f.parent,
        current: s.is_current(0).lv()?,
    })
}

fn find_snapshot(d: &Domain, name: &str) -> Result<virt::domain_snapshot::DomainSnapshot> {
    if validate::name("snapshot", name).is_err() {
        return Err(Error::not_found(format!("no snapshot {name:?}")));
    }
    Domain::lookup_snapshot_by_name(d, name, 0)
        .lv()
        .map_err(|e| {
            if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::InvalidInput {
                Error::not_found(format!("no snapshot {name:?}"))
            } else {
                e
            }
        })
}

/// Log entries of timed lines, filtered by `since`/`until`, then the last `tail`.
fn log_entries(lines: Vec<crate::serial::TimedLine>, options: &LogOptions) -> Vec<LogEntry> {
    let mut kept: Vec<LogEntry> = lines
        .into_iter()
        .filter(|l| l.overlaps(options.since, options.until))
        .map(|l| {
            let timestamp = l.timestamp();
            LogEntry {
                stream: LogStream::Console,
                message: match timestamp {
                    Some(t) if options.timestamps => format!(
                        "{} {}",
                        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        l.text
                    ),
                    _ => l.text,
                },
                timestamp,
            }
        })
        .collect();
    if let Some(t) = options.tail {
        let skip = kept.len().saturating_sub(t);
        kept.drain(..skip);
    }
    kept
}

async fn read_timed(
    path: std::path::PathBuf,
    from: u64,
) -> Result<(Vec<crate::serial::TimedLine>, u64)> {
    tokio::task::spawn_blocking(move || crate::serial::read(&path, from))
        .await
        .map_err(|e| Error::internal(format!("log reader failed: {e}")))?
        .map_err(Error::from)
}

impl KvmBackend {
    /// Creates a VM from a validated spec; leaves no domain or volume behind on failure.
    async fn create_vm(&self, spec: &InstanceSpec) -> Result<Instance> {
        validate::owned_instance_spec(spec, InstanceKind::Vm)?;
        let mut spec = spec.clone();
        if let Some(t) = spec.template.clone() {
            let t = self.template_get_inner(&t).await?;
            crate::templates::apply(&mut spec, &t);
            validate::owned_instance_spec(&spec, InstanceKind::Vm)?;
        }
        if let Some(ci) = &spec.cloud_init {
            crate::cloudinit::validate(ci)?;
        }
        let boot = spec.kernel_boot.clone();
        let inner = self.inner.clone();
        self.inner
            .run(move |c| crate::create::create_blocking(&inner, c, &spec, boot.as_ref()))
            .await
    }

    async fn with_domain<T, F>(&self, id: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &Connect, Domain) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let id = id.to_string();
        self.inner
            .run(move |c| {
                let d = lookup(c, &id)?;
                f(&inner, c, d)
            })
            .await
    }

    /// The serial log path and whether the VM is active.
    async fn log_path(&self, id: &str) -> Result<Option<String>> {
        self.with_domain(id, |inner, _, d| Ok(facts(inner, &d)?.serial_log.clone()))
            .await
    }
}

#[async_trait]
impl Compute for KvmBackend {
    async fn create(&self, spec: &InstanceSpec) -> Result<Instance> {
        if spec.kind == Some(InstanceKind::Container) {
            return Err(Error::unsupported(
                "the KVM backend creates VMs, not containers",
            ));
        }
        self.create_vm(spec).await
    }

    async fn get(&self, id: &str) -> Result<Instance> {
        let inner = self.inner.clone();
        let id = id.to_string();
        self.inner.run(move |c| get_blocking(&inner, c, &id)).await
    }

    async fn resolve(&self, id: &str) -> Result<String> {
        let id = id.to_string();
        self.inner
            .run(move |c| lookup(c, &id)?.uuid_string().lv())
            .await
    }

    async fn list(&self, filter: &InstanceFilter) -> Result<Vec<Instance>> {
        if filter.kind == Some(InstanceKind::Container)
            || filter
                .backend
                .as_deref()
                .is_some_and(|b| b != self.inner.config.name)
        {
            return Ok(Vec::new());
        }
        let inner = self.inner.clone();
        let filter = filter.clone();
        self.inner
            .run(move |c| list_blocking(&inner, c, &filter))
            .await
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.with_domain(id, |inner, _, d| start_domain(inner, &d))
            .await
    }

    async fn stop(&self, id: &str, options: StopOptions) -> Result<()> {
        let t = self.inner.config.default_stop_timeout_secs;
        self.with_domain(id, move |_, _, d| stop_blocking(&d, options, t))
            .await
    }

    async fn restart(&self, id: &str, options: StopOptions) -> Result<()> {
        let t = self.inner.config.default_stop_timeout_secs;
        self.with_domain(id, move |inner, _, d| {
            stop_blocking(&d, options, t)?;
            start_domain(inner, &d)
        })
        .await
    }

    async fn kill(&self, id: &str, signal: Option<&str>) -> Result<()> {
        if let Some(s) = signal
            && !matches!(s, "SIGKILL" | "KILL" | "9")
        {
            return Err(Error::invalid(format!(
                "a VM cannot receive signal {s:?}; only SIGKILL (pull the plug) is accepted"
            )));
        }
        self.with_domain(id, |_, _, d| {
            stop_blocking(
                &d,
                StopOptions {
                    timeout_secs: None,
                    force: true,
                },
                0,
            )
        })
        .await
    }

    async fn pause(&self, id: &str) -> Result<()> {
        self.with_domain(id, |_, _, d| {
            not_stopped(&d, "pause")?;
            d.suspend()
                .lv()
                .map_err(|e| already(&d, InstanceState::Paused, e))
        })
        .await
    }

    async fn resume(&self, id: &str) -> Result<()> {
        self.with_domain(id, |_, _, d| {
            not_stopped(&d, "resume")?;
            d.resume()
                .lv()
                .map_err(|e| already(&d, InstanceState::Running, e))
        })
        .await
    }

    async fn delete(&self, id: &str, force: bool) -> Result<()> {
        let inner = self.inner.clone();
        let id = id.to_string();
        self.inner
            .run(move |c| delete_blocking(&inner, c, &id, force))
            .await
    }

    async fn update(&self, id: &str, update: ResourceUpdate) -> Result<Instance> {
        if let Some(n) = update.cpus {
            validate::cpus(n)?;
        }
        if let Some(m) = update.memory_bytes {
            validate::memory(m)?;
        }
        let inner = self.inner.clone();
        let id = id.to_string();
        self.inner
            .run(move |c| update_blocking(&inner, c, &id, update))
            .await
    }

    async fn stats(&self, id: &str) -> Result<Stats> {
        let inner = self.inner.clone();
        let id = id.to_string();
        self.inner
            .run(move |c| stats_blocking(&inner, c, &id))
            .await
    }

    async fn stats_all(&self) -> Result<HashMap<String, Stats>> {
        let inner = self.inner.clone();
        self.inner.run(move |c| stats_all_blocking(&inner, c)).await
    }

    async fn stats_stream(&self, id: &str) -> Result<BoxStream<Stats>> {
        let first = self.stats(id).await?;
        let me = self.clone();
        let id = id.to_string();
        let rest = futures::stream::unfold((me, id), |(me, id)| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let s = me.stats(&id).await;
            let stop = s.as_ref().is_err_and(|e| e.kind() == ErrorKind::NotFound);
            if stop { None } else { Some((s, (me, id))) }
        });
        Ok(Box::pin(
            futures::stream::once(async move { Ok(first) }).chain(rest),
        ))
    }

    /// The serial log. Lines get times from the index LibGo keeps while VMs run (see the
    /// `serial` module for its accuracy); `since`/`until` keep the lines that may have been
    /// written in the range; `tail` applies after them.
    async fn logs(&self, id: &str, options: LogOptions) -> Result<BoxStream<LogEntry>> {
        if let (Some(s), Some(u)) = (options.since, options.until)
            && u < s
        {
            return Err(Error::invalid("logs: `until` is before `since`"));
        }
        let path = self.log_path(id).await?;
        let Some(path) = path else {
            return Ok(Box::pin(futures::stream::empty()));
        };
        if !is_local(&self.inner) {
            return Err(Error::unsupported(
                "the serial log of a VM on a remote libvirt host cannot be read",
            ));
        }
        let path = std::path::PathBuf::from(path);
        let (lines, offset) = read_timed(path.clone(), 0).await?;
        let head = futures::stream::iter(log_entries(lines, &options).into_iter().map(Ok));
        if !options.follow {
            return Ok(Box::pin(head));
        }
        let until = options.until;
        let follow = LogOptions {
            tail: None,
            ..options
        };
        let tail = futures::stream::unfold(Some((path, offset)), move |state| async move {
            let (path, offset) = state?;
            loop {
                if until.is_some_and(|u| chrono::Utc::now() >= u) {
                    return None;
                }
                tokio::time::sleep(crate::serial::POLL).await;
                match read_timed(path.clone(), offset).await {
                    // Only whole lines: a partial one is read again when it is complete.
                    Ok((mut lines, next)) => {
                        let mut next = next;
                        if lines.last().is_some_and(|l| !l.text.ends_with('\n'))
                            && let Some(l) = lines.pop()
                        {
                            next -= l.len;
                        }
                        if lines.is_empty() {
                            continue;
                        }
                        let entries = log_entries(lines, &follow);
                        return Some((
                            entries.into_iter().map(Ok).collect::<Vec<_>>(),
                            Some((path, next)),
                        ));
                    }
                    Err(e) => return Some((vec![Err(e)], None)),
                }
            }
        })
        .flat_map(futures::stream::iter);
        Ok(Box::pin(head.chain(tail)))
    }

    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecResult> {
        crate::agent::exec(self, id, spec).await
    }

    async fn console(&self, id: &str) -> Result<ConsoleSession> {
        crate::network::open_console(self, id).await
    }

    async fn host_access(&self, id: &str) -> Result<Vec<HostAccess>> {
        self.with_domain(id, |_, c, d| {
            let f = xml::host_facts(&d.xml_desc(0).lv()?)?;
            let mut out = Vec::new();
            if let Some(k) = f.kernel {
                out.push(HostAccess::KernelBoot(k));
            }
            out.extend(f.hostdevs.into_iter().map(HostAccess::Device));
            out.extend(f.host_interfaces.into_iter().map(HostAccess::HostNetwork));
            out.extend(f.shared_dirs.into_iter().map(HostAccess::HostPath));
            // A disk is the guest's own when it is a volume of a storage pool.
            for p in f.disk_paths {
                if c.lookup_storage_vol_by_path(&p).is_err() {
                    out.push(HostAccess::HostPath(p));
                }
            }
            for n in f.networks {
                let attached = c
                    .lookup_network_by_name(&n)
                    .and_then(|net| net.xml_desc(0))
                    .ok()
                    .and_then(|x| xml::parse_network(&x).ok())
                    // A network that cannot be read is counted as host-attached.
                    .is_none_or(|nf| nf.ovs || nf.forward.as_deref() == Some("bridge"));
                if attached {
                    out.push(HostAccess::HostNetwork(n));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn vnc_display(&self, id: &str) -> Result<VncDisplay> {
        self.with_domain(id, |_, _, d| {
            let f = xml::parse_domain(&d.xml_desc(0).lv()?)?;
            match f.vnc_port {
                Some(port) => Ok(VncDisplay {
                    host: f.vnc_listen.unwrap_or_else(|| "127.0.0.1".into()),
                    port,
                }),
                None => Err(Error::conflict(
                    "the VM has no VNC display now: it is not running or has no graphics",
                )),
            }
        })
        .await
    }

    async fn screenshot(&self, id: &str) -> Result<Vec<u8>> {
        let raw = self
            .with_domain(id, |_, c, d| {
                if !is_active(&d)? {
                    return Err(Error::conflict("the VM is not running"));
                }
                let stream = virt::stream::Stream::new(c, 0).lv()?;
                let mime = d.screenshot(&stream, 0, 0).lv()?;
                let mut data = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = stream.recv(&mut buf).lv()?;
                    if n <= 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..n as usize]);
                }
                let _ = stream.finish();
                Ok((mime, data))
            })
            .await?;
        crate::export::screenshot_png(&raw.0, &raw.1)
    }

    async fn reinstall(&self, id: &str, spec: &ReinstallSpec) -> Result<Instance> {
        let spec = spec.clone();
        self.with_domain(id, move |inner, c, d| {
            reinstall_blocking(inner, c, &d.uuid_string().lv()?, &spec)
        })
        .await
    }

    async fn guest_password(&self, id: &str, password: &GuestPassword) -> Result<()> {
        crate::agent::set_password(self, id, password).await
    }

    async fn disk_list(&self, id: &str) -> Result<Vec<AttachedDisk>> {
        self.with_domain(id, |inner, c, d| {
            crate::disks::list(inner, c, &d.uuid_string().lv()?)
        })
        .await
    }

    async fn disk_attach(&self, id: &str, disk: &DiskAttach) -> Result<AttachedDisk> {
        let disk = disk.clone();
        self.with_domain(id, move |inner, c, d| {
            crate::disks::attach(inner, c, &d.uuid_string().lv()?, &disk)
        })
        .await
    }

    async fn disk_detach(&self, id: &str, target: &str) -> Result<()> {
        let target = target.to_string();
        self.with_domain(id, move |inner, c, d| {
            crate::disks::detach(inner, c, &d.uuid_string().lv()?, &target)
        })
        .await
    }

    async fn disk_resize(
        &self,
        id: &str,
        target: &str,
        resize: &DiskResize,
    ) -> Result<AttachedDisk> {
        let (target, resize) = (target.to_string(), resize.clone());
        self.with_domain(id, move |inner, c, d| {
            crate::disks::resize(inner, c, &d.uuid_string().lv()?, &target, &resize)
        })
        .await
    }

    async fn media_insert(&self, id: &str, media: &MediaInsert) -> Result<AttachedDisk> {
        let media = media.clone();
        self.with_domain(id, move |inner, c, d| {
            crate::disks::insert(inner, c, &d.uuid_string().lv()?, &media)
        })
        .await
    }

    async fn media_eject(&self, id: &str) -> Result<()> {
        self.with_domain(id, |inner, c, d| {
            crate::disks::eject(inner, c, &d.uuid_string().lv()?)
        })
        .await
    }

    async fn snapshot_create(&self, id: &str, spec: &SnapshotSpec) -> Result<Snapshot> {
        validate::snapshot_spec(spec)?;
        let spec = spec.clone();
        self.with_domain(id, move |_, _, d| {
            match Domain::lookup_snapshot_by_name(&d, &spec.name, 0).lv() {
                Ok(_) => {
                    return Err(Error::conflict(format!(
                        "snapshot {:?} exists already",
                        spec.name
                    )));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let x = xml::snapshot_xml(&spec.name, spec.description.as_deref())?;
            let s = d.create_snapshot_xml(&x, 0).lv()?;
            snapshot_of(&d.uuid_string().lv()?, &s)
        })
        .await
    }

    async fn snapshot_list(&self, id: &str) -> Result<Vec<Snapshot>> {
        self.with_domain(id, |_, _, d| {
            let uuid = d.uuid_string().lv()?;
            let mut out = Vec::new();
            for s in d.list_all_snapshots(0).lv()? {
                out.push(snapshot_of(&uuid, &s)?);
            }
            out.sort_by_key(|s| s.created_at);
            Ok(out)
        })
        .await
    }

    async fn snapshot_revert(&self, id: &str, snapshot: &str) -> Result<()> {
        let name = snapshot.to_string();
        self.with_domain(id, move |inner, _, d| {
            let s = find_snapshot(&d, &name)?;
            s.revert(0).lv()?;
            if let Ok(uuid) = d.uuid_string() {
                inner.shared.invalidate(&uuid);
            }
            Ok(())
        })
        .await
    }

    async fn snapshot_delete(&self, id: &str, snapshot: &str) -> Result<()> {
        let name = snapshot.to_string();
        self.with_domain(id, move |_, _, d| find_snapshot(&d, &name)?.delete(0).lv())
            .await
    }

    async fn export(
        &self,
        id: &str,
        spec: &ExportSpec,
        progress: ProgressSink,
    ) -> Result<ExportResult> {
        crate::export::export(self, id, spec, progress).await
    }

    async fn migrate(
        &self,
        id: &str,
        target: Arc<dyn libgo_core::Backend>,
        spec: &libgo_core::MigrationSpec,
        progress: ProgressSink,
    ) -> Result<libgo_core::MigrationReport> {
        let target = target
            .as_any()
            .downcast_ref::<KvmBackend>()
            .ok_or_else(|| Error::unsupported("a VM can only move to another libvirt host"))?;
        crate::migrate::migrate(self, id, target, spec, progress).await
    }

    async fn definition(&self, id: &str) -> Result<String> {
        let id = id.to_string();
        self.inner
            .run(move |c| crate::failover::definition(c, &id))
            .await
    }

    async fn restore(&self, id: &str, definition: &str, start: bool) -> Result<Instance> {
        let inner = self.inner.clone();
        let (id, definition) = (id.to_string(), definition.to_string());
        self.inner
            .run(move |c| crate::failover::restore(&inner, c, &id, &definition, start))
            .await
    }

    async fn remove_definition(&self, id: &str) -> Result<()> {
        let inner = self.inner.clone();
        let id = id.to_string();
        self.inner
            .run(move |c| crate::failover::remove_definition(&inner, c, &id))
            .await
    }

    async fn events(&self) -> Result<BoxStream<Event>> {
        // Opening the connection (if it was lost) registers the callbacks again.
        self.inner.run(|c| c.lib_version().lv()).await?;
        if !self.inner.config.events {
            return Err(Error::unsupported(
                "this backend was opened without libvirt's events (`events: false`)",
            ));
        }
        if !self.inner.shared.events_live.load(Ordering::SeqCst) {
            return Err(Error::unavailable(
                "this libvirt connection does not deliver domain events",
            ));
        }
        let rx = self.inner.shared.events.subscribe();
        let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(|r| async move {
            match r {
                Ok(e) => Some(Ok(e)),
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "event consumer too slow; events dropped");
                    None
                }
            }
        });
        Ok(Box::pin(stream))
    }

    async fn template_list(&self) -> Result<Vec<Template>> {
        crate::templates::list(self).await
    }

    async fn template_create(&self, template: &Template) -> Result<Template> {
        crate::templates::create(self, template).await
    }

    async fn template_get(&self, name: &str) -> Result<Template> {
        self.template_get_inner(name).await
    }

    async fn template_delete(&self, name: &str) -> Result<()> {
        crate::templates::delete(self, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qemu_ended_by_libvirtd_while_starting_is_told_apart() {
        let e = Error::internal(
            "internal error: qemu unexpectedly closed the monitor: 2026-12-03T21:52:00.477278Z \
             qemu-system-x86_64: terminating on signal 15 from pid 30225 (libvirtd)",
        );
        assert!(killed_while_starting(&e));
        assert!(!killed_while_starting(&Error::internal(
            "Cannot allocate memory"
        )));
    }

    #[test]
    fn a_start_short_of_host_memory_is_recognised() {
        // libvirt's words when QEMU cannot reserve the guest RAM (seen under the fuzzer).
        let e = Error::internal(
            "internal error: qemu unexpectedly closed the monitor: qemu-system-x86_64: \
             cannot set up guest memory 'pc.ram': Cannot allocate memory",
        );
        assert!(is_out_of_memory(&e));
        assert!(!is_out_of_memory(&Error::internal(
            "domain is already running"
        )));
    }
}
