//! Moving a stopped VM to another libvirt host. libvirt's migration copies the disks of a
//! running VM only (an offline migration moves the definition alone), so a stopped VM's
//! volumes are copied through libvirt streams (download there, upload here: works between
//! remote hosts, nothing but libvirt's protocol), then its definition is defined on the
//! destination and undefined at the source, whose copies are deleted last.
//!
//! What a disk needs and does not own (a base image under an overlay, an installation ISO)
//! is copied when the destination lacks it and left at the source: other VMs may use it.

use std::collections::HashSet;

use libgo_core::{Error, ErrorKind, Progress, ProgressSink, Result};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;
use virt::sys;

use crate::conn::LvExt;
use crate::xml::{self, DomainFacts};

/// The longest backing chain followed.
const MAX_CHAIN: usize = 16;

/// A volume the move copies.
#[derive(Debug, Clone)]
struct VolumeCopy {
    pool: String,
    name: String,
    path: String,
    /// The VM's own (a writable disk, or a volume LibGo made for it): deleted at the source
    /// once the VM is defined on the destination. Otherwise copied only where missing.
    owned: bool,
    /// Named by its path (a file disk, a backing file): it must land at the same path.
    by_path: bool,
    /// Bytes libvirt says it occupies, for progress.
    allocation: u64,
}

/// What a move copied and made, so that a failure can take it back.
#[derive(Default)]
struct Made {
    volumes: Vec<StorageVol>,
    domain: Option<Domain>,
}

impl Made {
    fn undo(self) {
        if let Some(d) = self.domain
            && let Err(e) = d.undefine()
        {
            tracing::warn!(error = %e, "cold move rollback: undefine on the destination failed");
        }
        for v in self.volumes {
            if let Err(e) = v.delete(0) {
                tracing::warn!(error = %e, "cold move rollback: a copied volume stays");
            }
        }
    }
}

/// Moves stopped domain `d` (facts `f`) from `src` to `dst`; answers the domain as defined
/// on the destination and the bytes copied.
pub(crate) fn move_stopped(
    src: &Connect,
    dst: &Connect,
    d: &Domain,
    f: &DomainFacts,
    progress: &ProgressSink,
) -> Result<(Domain, u64)> {
    let snapshots = d.list_all_snapshots(0).lv()?.len();
    if snapshots > 0 {
        return Err(Error::conflict(format!(
            "{} has {snapshots} snapshot(s): libvirt cannot move snapshots between hosts; \
             delete them first",
            f.name
        )));
    }
    if d.has_managed_save(0).lv()? {
        return Err(Error::conflict(format!(
            "{} has a saved memory state: start it (or discard the state) before moving it",
            f.name
        )));
    }
    if dst.lookup_domain_by_uuid_string(&f.uuid).is_ok()
        || dst.lookup_domain_by_name(&f.name).is_ok()
    {
        return Err(Error::conflict(format!(
            "the destination has a VM named {:?} or with its id already",
            f.name
        )));
    }
    let copies = plan(src, f)?;
    let total: u64 = copies.iter().map(|c| c.allocation).sum();
    let mut made = Made::default();
    match copy_and_define(src, dst, d, f, &copies, total, progress, &mut made) {
        Ok(copied) => {
            let Some(moved) = made.domain.take() else {
                made.undo();
                return Err(Error::internal("the cold move defined no domain"));
            };
            // The destination holds the VM now: the source's definition and copies go.
            if let Err(e) = undefine(d) {
                let _ = moved.undefine();
                made.domain = None;
                made.undo();
                return Err(e.with_context("step", "undefine at the source"));
            }
            for c in copies.iter().filter(|c| c.owned) {
                if let Err(e) = src
                    .lookup_storage_vol_by_path(&c.path)
                    .and_then(|v| v.delete(0))
                {
                    tracing::warn!(volume = %c.path, error = %e, "source copy left after a cold move");
                }
            }
            Ok((moved, copied))
        }
        Err(e) => {
            made.undo();
            Err(e)
        }
    }
}

/// The volumes the VM's disks need, owned ones first, then what they rest on.
fn plan(c: &Connect, f: &DomainFacts) -> Result<Vec<VolumeCopy>> {
    let mut copies: Vec<VolumeCopy> = Vec::new();
    let mut seen = HashSet::new();
    for disk in &f.disks {
        let (vol, by_path) = match (&disk.pool, &disk.volume, &disk.file) {
            (Some(p), Some(v), _) => (
                c.lookup_storage_pool_by_name(p)
                    .and_then(|p| p.lookup_storage_vol_by_name(v))
                    .lv()?,
                false,
            ),
            (_, _, Some(file)) => (
                c.lookup_storage_vol_by_path(file).map_err(|_| {
                    Error::conflict(format!(
                        "disk {} ({file}) is not a volume of a storage pool: libvirt cannot \
                         copy it to another host",
                        disk.target
                    ))
                })?,
                true,
            ),
            // An empty CD-ROM drive.
            _ => continue,
        };
        let pool = vol.lookup_storage_pool().lv()?.name().lv()?;
        let name = vol.name().lv()?;
        let owned = !disk.readonly || f.meta.owned.contains(&format!("{pool}/{name}"));
        let mut next = Some((vol, pool, name, owned, by_path));
        for _ in 0..MAX_CHAIN {
            let Some((vol, pool, name, owned, by_path)) = next.take() else {
                break;
            };
            let path = vol.path().lv()?;
            let facts = xml::parse_volume(&vol.xml_desc(0).lv()?)?;
            if seen.insert(path.clone()) {
                copies.push(VolumeCopy {
                    pool,
                    name,
                    path: path.clone(),
                    owned,
                    by_path,
                    allocation: facts.allocation,
                });
            }
            if let Some(backing) = facts.backing {
                let base = c.lookup_storage_vol_by_path(&backing).map_err(|_| {
                    Error::conflict(format!(
                        "{path} rests on {backing}, which is not a volume of a storage pool: \
                         libvirt cannot copy it to another host"
                    ))
                })?;
                let pool = base.lookup_storage_pool().lv()?.name().lv()?;
                let name = base.name().lv()?;
                next = Some((base, pool, name, false, true));
            }
        }
        if next.is_some() {
            return Err(Error::conflict(format!(
                "disk {} has a backing chain longer than {MAX_CHAIN} images",
                disk.target
            )));
        }
    }
    Ok(copies)
}

#[allow(clippy::too_many_arguments)]
fn copy_and_define(
    src: &Connect,
    dst: &Connect,
    d: &Domain,
    f: &DomainFacts,
    copies: &[VolumeCopy],
    total: u64,
    progress: &ProgressSink,
    made: &mut Made,
) -> Result<u64> {
    let mut copied = 0u64;
    for c in copies {
        if !c.owned && dst.lookup_storage_vol_by_path(&c.path).is_ok() {
            continue;
        }
        let pool = dst.lookup_storage_pool_by_name(&c.pool).map_err(|_| {
            Error::conflict(format!(
                "the destination has no storage pool {:?} for {}",
                c.pool, c.name
            ))
        })?;
        if pool.lookup_storage_vol_by_name(&c.name).is_ok() {
            return Err(Error::conflict(format!(
                "the destination's pool {:?} has a volume {:?} already",
                c.pool, c.name
            )));
        }
        let source = src.lookup_storage_vol_by_path(&c.path).lv()?;
        let facts = xml::parse_volume(&source.xml_desc(0).lv()?)?;
        let x = xml::volume_xml(&xml::VolumePlan {
            name: &c.name,
            capacity: facts.capacity,
            format: facts.format.as_deref().unwrap_or("raw"),
            backing: None,
        })?;
        let target = StorageVol::create_xml(&pool, &x, 0).lv()?;
        made.volumes.push(target.clone());
        let there = target.path().lv()?;
        if c.by_path && there != c.path {
            return Err(Error::conflict(format!(
                "{} would be at {there} on the destination, not {}: the VM names it by path",
                c.name, c.path
            )));
        }
        progress.report(Progress {
            percent: Some(percent(copied, total)),
            message: format!("copying {}/{}", c.pool, c.name),
            id: None,
        });
        copied += stream_copy(src, &source, dst, &target, |n| {
            progress.report(Progress {
                percent: Some(percent(copied + n, total)),
                message: format!("copying {}/{}: {} MiB", c.pool, c.name, n >> 20),
                id: None,
            })
        })?;
        // libvirt reads the header it now holds (format, backing file, allocation).
        pool.refresh(0).lv()?;
    }
    if d.is_active().lv()? {
        return Err(Error::conflict(format!(
            "{} was started while its disks were copied; nothing moved",
            f.name
        )));
    }
    let definition = d
        .xml_desc(sys::VIR_DOMAIN_XML_INACTIVE | sys::VIR_DOMAIN_XML_SECURE)
        .lv()?;
    let moved = dst.define_domain_xml(&definition).lv()?;
    made.domain = Some(moved.clone());
    if d.autostart().lv()? {
        moved.set_autostart(true).lv()?;
    }
    Ok(copied)
}

fn percent(done: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (done as f64 * 100.0 / total as f64).min(99.0)
    }
}

/// Copies the bytes of `from` (on `src`) into `to` (on `dst`); answers how many.
fn stream_copy(
    src: &Connect,
    from: &StorageVol,
    dst: &Connect,
    to: &StorageVol,
    mut report: impl FnMut(u64),
) -> Result<u64> {
    let down = Stream::new(src, 0).lv()?;
    from.download(&down, 0, 0, 0).lv()?;
    let up = match Stream::new(dst, 0)
        .lv()
        .and_then(|up| to.upload(&up, 0, 0, 0).lv().map(|_| up))
    {
        Ok(up) => up,
        Err(e) => {
            let _ = down.abort();
            return Err(e);
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut last_report = 0u64;
    let failed = loop {
        let n = match down.recv(&mut buf).lv() {
            Ok(n) if n > 0 => n as usize,
            Ok(0) => break None,
            Ok(_) => break Some(Error::internal("the download stream stopped")),
            Err(e) => break Some(e),
        };
        let mut sent = 0;
        while sent < n {
            match up.send(&buf[sent..n]).lv() {
                Ok(k) if k > 0 => sent += k as usize,
                Ok(_) => break,
                Err(e) => return abort_both(down, up, e),
            }
        }
        if sent < n {
            break Some(Error::internal("the upload stream stopped"));
        }
        total += n as u64;
        if total - last_report >= 16 << 20 {
            last_report = total;
            report(total);
        }
    };
    if let Some(e) = failed {
        return abort_both(down, up, e);
    }
    down.finish().lv()?;
    up.finish().lv()?;
    Ok(total)
}

fn abort_both(down: Stream, up: Stream, e: Error) -> Result<u64> {
    let _ = down.abort();
    let _ = up.abort();
    Err(e)
}

/// Undefines the source's definition (its disks are deleted by the caller).
fn undefine(d: &Domain) -> Result<()> {
    match d
        .undefine_flags(
            sys::VIR_DOMAIN_UNDEFINE_NVRAM | sys::VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA,
        )
        .lv()
    {
        Err(e) if matches!(e.kind(), ErrorKind::Unsupported | ErrorKind::InvalidInput) => {
            d.undefine().lv()
        }
        other => other,
    }
}
