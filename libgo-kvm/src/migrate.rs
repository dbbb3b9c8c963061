//! Moving a VM to another libvirt host: libvirt's own migration, with its disks copied
//! (storage is not shared between hosts), the destination's disks made by libvirt in the
//! destination's pool, and the source's copies deleted once the VM runs there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use libgo_core::{
    Error, MigrationKind, MigrationReport, MigrationSpec, Progress, ProgressSink, Result,
};
use virt::connect::Connect;
use virt::domain::{Domain, MigrateParameters};
use virt::sys;

use crate::KvmBackend;
use crate::compute::{facts, lookup};
use crate::conn::LvExt;

/// Where a migration to `target` goes: `tcp://ADDRESS` of the destination's QEMU, from the
/// spec's address or else the host part of the destination's libvirt URI.
fn migration_uri(target: &KvmBackend, address: Option<&str>) -> Result<String> {
    let host = match address {
        Some(a) => a.to_string(),
        None => uri_host(&target.config().uri).ok_or_else(|| {
            Error::invalid(format!(
                "backend {:?} ({}) has no address other hosts can reach its QEMU at; \
                 give its host a migrationAddress",
                target.config().name,
                target.config().uri
            ))
        })?,
    };
    if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
        return Err(Error::invalid(format!("bad migration address {host:?}")));
    }
    Ok(format!("tcp://{host}"))
}

/// The host of a libvirt URI (`qemu+tcp://10.0.0.2/system` → `10.0.0.2`), if it names one.
fn uri_host(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host.split(':').next()?
    };
    (!host.is_empty() && host != "localhost").then(|| host.to_string())
}

/// Migrates VM `id` from `source` to `target` (see [`libgo_core::Compute::migrate`]).
pub(crate) async fn migrate(
    source: &KvmBackend,
    id: &str,
    target: &KvmBackend,
    spec: &MigrationSpec,
    progress: ProgressSink,
) -> Result<MigrationReport> {
    if source.is_test_driver() || target.is_test_driver() {
        return Err(Error::unsupported(
            "libvirt's test driver cannot migrate VMs",
        ));
    }
    if source.config().uri == target.config().uri {
        return Err(Error::invalid("the VM is on that host already"));
    }
    let uri = migration_uri(target, spec.address.as_deref())?;
    let src = source.inner.connection_now()?;
    let dst = target.inner.connection_now()?;
    let live = spec.live;
    let s_inner = source.inner.clone();
    let id = id.to_string();
    let started = Instant::now();
    let (domain, copied_disks, name) = {
        let src = src.clone();
        let dst = dst.clone();
        let sink = progress.clone();
        let stopped = tokio::task::spawn_blocking(move || -> Result<_> {
            let d = lookup(&src, &id)?;
            let f = facts(&s_inner, &d)?;
            if !d.is_active().lv()? {
                // libvirt migrates the disks of a running VM only: a stopped one is copied.
                sink.report(Progress {
                    percent: Some(0.0),
                    message: format!("moving stopped VM {}", f.name),
                    id: None,
                });
                let (moved, copied) = crate::cold_move::move_stopped(&src, &dst, &d, &f, &sink)?;
                return Ok(Err((moved, copied, f.name.clone())));
            }
            let disks: Vec<DiskRef> = f
                .disks
                .iter()
                .filter(|d| d.device == "disk" && !d.readonly)
                .filter_map(|d| match (&d.pool, &d.volume, &d.file) {
                    (Some(p), Some(v), _) => Some(DiskRef::Volume(p.clone(), v.clone())),
                    (_, _, Some(f)) => Some(DiskRef::Path(f.clone())),
                    _ => None,
                })
                .collect();
            Ok(Ok((d, disks, f.name.clone())))
        })
        .await
        .map_err(|e| Error::internal(format!("libvirt worker failed: {e}")))??;
        match stopped {
            Ok(running) => running,
            Err((moved, copied, name)) => {
                return moved_report(source, target, moved, name, copied, started, progress).await;
            }
        }
    };
    progress.report(Progress {
        percent: Some(0.0),
        message: format!("migrating {name} to {uri}"),
        id: None,
    });

    let flags = sys::VIR_MIGRATE_PERSIST_DEST
        | sys::VIR_MIGRATE_UNDEFINE_SOURCE
        | sys::VIR_MIGRATE_NON_SHARED_DISK
        | sys::VIR_MIGRATE_ABORT_ON_ERROR
        | if live { sys::VIR_MIGRATE_LIVE } else { 0 };
    let params = MigrateParameters {
        uri: Some(uri.clone()),
        ..Default::default()
    };
    let domain = Arc::new(domain);
    let run = {
        let d = domain.clone();
        let dst = dst.clone();
        tokio::task::spawn_blocking(move || -> Result<Domain> {
            d.migrate3(&dst, params, flags).lv()
        })
    };
    tokio::pin!(run);
    let migrated = loop {
        tokio::select! {
            answer = &mut run => break answer
                .map_err(|e| Error::internal(format!("libvirt worker failed: {e}")))?,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let d = domain.clone();
                if let Ok(Some(stats)) = tokio::task::spawn_blocking(move || job_stats(&d, 0)).await
                    && let Some(p) = job_progress(&stats)
                {
                    progress.report(p);
                }
            }
        }
    };
    let migrated = migrated.map_err(|e| {
        e.with_context("instance", name.clone())
            .with_context("destination", target.config().name.clone())
    })?;
    let elapsed = started.elapsed();
    source.inner.shared.invalidate_all();
    target.inner.shared.invalidate_all();

    // libvirt hands the job's statistics to the destination: downtime comes from there.
    let (downtime_ms, transferred) = {
        let d = Arc::new(migrated);
        let dd = d.clone();
        let stats = tokio::task::spawn_blocking(move || {
            job_stats(&dd, sys::VIR_DOMAIN_JOB_STATS_COMPLETED)
        })
        .await
        .ok()
        .flatten();
        (
            stats.as_ref().and_then(|s| s.downtime),
            stats
                .as_ref()
                .map(|s| s.data_processed.unwrap_or(0) + s.disk_processed.unwrap_or(0)),
        )
    };

    // The source keeps its copies of the disks: they are the VM's no more.
    let left = delete_copies(&src, copied_disks).await;
    if !left.is_empty() {
        tracing::warn!(instance = %name, disks = ?left, "source disks left after migration");
    }
    let instance = libgo_core::Compute::get(target, &name).await?;
    progress.report(Progress {
        percent: Some(100.0),
        message: format!("{name} runs on {}", target.config().name),
        id: None,
    });
    Ok(MigrationReport {
        instance,
        kind: if live {
            MigrationKind::Live
        } else {
            MigrationKind::Offline
        },
        from_backend: source.config().name.clone(),
        to_backend: target.config().name.clone(),
        elapsed_ms: elapsed.as_millis() as u64,
        downtime_ms,
        transferred_bytes: transferred,
    })
}

/// The answer for a stopped VM copied to `target` as `moved`.
async fn moved_report(
    source: &KvmBackend,
    target: &KvmBackend,
    moved: Domain,
    name: String,
    copied: u64,
    started: Instant,
    progress: ProgressSink,
) -> Result<MigrationReport> {
    drop(moved);
    source.inner.shared.invalidate_all();
    target.inner.shared.invalidate_all();
    let instance = libgo_core::Compute::get(target, &name).await?;
    progress.report(Progress {
        percent: Some(100.0),
        message: format!("{name} is on {} (stopped)", target.config().name),
        id: None,
    });
    Ok(MigrationReport {
        instance,
        kind: MigrationKind::Move,
        from_backend: source.config().name.clone(),
        to_backend: target.config().name.clone(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        downtime_ms: None,
        transferred_bytes: Some(copied),
    })
}

/// The figures of a domain job LibGo reads.
#[derive(Debug, Default)]
struct JobFigures {
    data_total: Option<u64>,
    data_processed: Option<u64>,
    disk_total: Option<u64>,
    disk_processed: Option<u64>,
    mem_iteration: Option<u64>,
    downtime: Option<u64>,
}

/// A domain's job statistics (`virDomainGetJobStats`), `None` when there is no job.
///
/// Not `virt`'s `Domain::job_stats`: it builds a `Vec` from the pointer libvirt returns,
/// which is null when there is no job (undefined behaviour, seen here as an abort in a
/// debug build), and frees libvirt's memory with Rust's allocator.
fn job_stats(d: &Domain, flags: u32) -> Option<JobFigures> {
    let mut kind: std::os::raw::c_int = 0;
    let mut params: sys::virTypedParameterPtr = std::ptr::null_mut();
    let mut n: std::os::raw::c_int = 0;
    // SAFETY: libvirt fills the three out-parameters; `params` is libvirt's to free.
    let r = unsafe { sys::virDomainGetJobStats(d.as_ptr(), &mut kind, &mut params, &mut n, flags) };
    if r < 0 || params.is_null() {
        return None;
    }
    let get = |name: &std::ffi::CStr| {
        let mut v: std::os::raw::c_ulonglong = 0;
        // SAFETY: `params` holds `n` parameters from libvirt; `name` is NUL-terminated.
        let found = unsafe { sys::virTypedParamsGetULLong(params, n, name.as_ptr(), &mut v) };
        (found == 1).then_some(v)
    };
    let figures = (kind != sys::VIR_DOMAIN_JOB_NONE as i32).then(|| JobFigures {
        data_total: get(sys::VIR_DOMAIN_JOB_DATA_TOTAL),
        data_processed: get(sys::VIR_DOMAIN_JOB_DATA_PROCESSED),
        disk_total: get(sys::VIR_DOMAIN_JOB_DISK_TOTAL),
        disk_processed: get(sys::VIR_DOMAIN_JOB_DISK_PROCESSED),
        mem_iteration: get(sys::VIR_DOMAIN_JOB_MEMORY_ITERATION),
        downtime: get(sys::VIR_DOMAIN_JOB_DOWNTIME),
    });
    // SAFETY: frees what libvirt allocated, once.
    unsafe { sys::virTypedParamsFree(params, n) };
    figures
}

/// Progress from libvirt's job statistics: disks first, then memory.
fn job_progress(s: &JobFigures) -> Option<Progress> {
    let total = s.data_total.unwrap_or(0) + s.disk_total.unwrap_or(0);
    let done = s.data_processed.unwrap_or(0) + s.disk_processed.unwrap_or(0);
    let percent = (total > 0).then(|| (done as f64 * 100.0 / total as f64).min(99.0));
    Some(Progress {
        percent,
        message: format!(
            "copied {} of {} MiB (disks {} of {} MiB), memory pass {}",
            done >> 20,
            total >> 20,
            s.disk_processed.unwrap_or(0) >> 20,
            s.disk_total.unwrap_or(0) >> 20,
            s.mem_iteration.unwrap_or(0)
        ),
        id: None,
    })
}

/// A disk of a domain: a volume of a pool, or a file.
#[derive(Debug, Clone)]
enum DiskRef {
    Volume(String, String),
    Path(String),
}

/// Deletes the volumes `disks` on `c`; answers those it could not delete.
async fn delete_copies(c: &Arc<Connect>, disks: Vec<DiskRef>) -> Vec<DiskRef> {
    let c = c.clone();
    tokio::task::spawn_blocking(move || {
        disks
            .into_iter()
            .filter(|d| {
                let vol = match d {
                    DiskRef::Volume(pool, name) => c
                        .lookup_storage_pool_by_name(pool)
                        .and_then(|p| p.refresh(0).map(|_| p))
                        .and_then(|p| p.lookup_storage_vol_by_name(name)),
                    DiskRef::Path(path) => c.lookup_storage_vol_by_path(path),
                };
                vol.and_then(|v| v.delete(0)).is_err()
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_comes_from_the_uri_unless_given() {
        assert_eq!(
            uri_host("qemu+tcp://10.0.0.2/system").as_deref(),
            Some("10.0.0.2")
        );
        assert_eq!(
            uri_host("qemu+ssh://root@h2:22/system").as_deref(),
            Some("h2")
        );
        assert_eq!(
            uri_host("qemu+tls://[fd00::2]/system").as_deref(),
            Some("fd00::2")
        );
        assert_eq!(uri_host("qemu:///system"), None);
        assert_eq!(uri_host("qemu+tcp://localhost/system"), None);
    }
}
