//! Disks and media of an existing VM: attach (hot-plugged into a running guest and kept in
//! its configuration), detach, resize (online growth through QEMU, offline through the
//! volume), and the CD-ROM drive's media.
//!
//! A disk made by attach (`sizeBytes`) is a volume of its own, `<vm>-<target>.<format>`:
//! like a volume attached by name it stays when detached or when the VM is deleted.

use std::time::{Duration, Instant};

use libgo_core::*;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::storage_vol::StorageVol;
use virt::sys;

use crate::compute::{checked_format, find_volume, is_active_domain, lookup, pool_of};
use crate::conn::{Inner, LvExt};
use crate::xml::{self, DiskFacts, DiskSource};

/// How long a running guest gets to release a detached disk.
const DETACH_WAIT: Duration = Duration::from_secs(20);

fn domain_disks(d: &Domain) -> Result<(String, Vec<DiskFacts>)> {
    // The live definition of a running VM (its current media), else the persistent one.
    let f = xml::parse_domain(&d.xml_desc(0).lv()?)?;
    Ok((f.name, f.disks))
}

fn source_of(f: &DiskFacts) -> Option<DiskSource> {
    match (&f.pool, &f.volume, &f.file) {
        (Some(pool), Some(volume), _) => Some(DiskSource::Volume {
            pool: pool.clone(),
            volume: volume.clone(),
        }),
        (_, _, Some(path)) => Some(DiskSource::File(path.clone())),
        _ => None,
    }
}

fn volume_of(c: &Connect, f: &DiskFacts) -> Option<StorageVol> {
    match source_of(f)? {
        DiskSource::Volume { pool, volume } => c
            .lookup_storage_pool_by_name(&pool)
            .ok()?
            .lookup_storage_vol_by_name(&volume)
            .ok(),
        DiskSource::File(path) => c.lookup_storage_vol_by_path(&path).ok(),
    }
}

fn describe(inner: &Inner, c: &Connect, f: &DiskFacts) -> AttachedDisk {
    let vol = volume_of(c, f);
    let volume = vol.as_ref().and_then(|v| {
        let pool = v.lookup_storage_pool().ok()?.name().ok()?;
        let name = v.name().ok()?;
        Some(if inner.default_pool(c).ok() == Some(pool.as_str()) {
            name
        } else {
            format!("{pool}/{name}")
        })
    });
    let path = vol
        .as_ref()
        .and_then(|v| v.path().ok())
        .or_else(|| f.file.clone());
    AttachedDisk {
        target: f.target.clone(),
        device: f.device.clone(),
        bus: f.bus.clone(),
        volume,
        path,
        format: f.format.clone(),
        size_bytes: vol.as_ref().and_then(|v| v.info().ok()).map(|i| i.capacity),
        read_only: f.readonly,
    }
}

fn find_disk(name: &str, disks: Vec<DiskFacts>, target: &str) -> Result<DiskFacts> {
    disks
        .into_iter()
        .find(|d| d.target == target)
        .ok_or_else(|| Error::not_found(format!("VM {name:?} has no disk {target:?}")))
}

fn flags(running: bool) -> u32 {
    let mut f = sys::VIR_DOMAIN_AFFECT_CONFIG;
    if running {
        f |= sys::VIR_DOMAIN_AFFECT_LIVE;
    }
    f
}

fn forget(inner: &Inner, d: &Domain) {
    if let Ok(u) = d.uuid_string() {
        inner.shared.invalidate(&u);
    }
}

/// The VMs (other than `except`) whose disks are `vol`.
fn users_of(c: &Connect, vol: &StorageVol, except: &str) -> Result<Vec<String>> {
    let path = vol.path().lv()?;
    let pool = vol.lookup_storage_pool().lv()?.name().lv()?;
    let name = vol.name().lv()?;
    let mut users = Vec::new();
    for d in c.list_all_domains(0).lv()? {
        let Ok(x) = d.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE) else {
            continue;
        };
        let uses = xml::disk_refs(&x)?.into_iter().any(|r| match r {
            xml::DiskRef::Path(p) => p == path,
            xml::DiskRef::Volume { pool: p, volume: v } => p == pool && v == name,
        });
        let n = d.name().lv()?;
        if uses && n != except {
            users.push(n);
        }
    }
    Ok(users)
}

fn free_target(disks: &[DiskFacts], prefix: &str) -> Result<String> {
    (b'a'..=b'z')
        .map(|l| format!("{prefix}{}", l as char))
        .find(|t| disks.iter().all(|d| &d.target != t))
        .ok_or_else(|| Error::conflict(format!("no free {prefix}X device name is left")))
}

pub(crate) fn list(inner: &Inner, c: &Connect, id: &str) -> Result<Vec<AttachedDisk>> {
    let d = lookup(c, id)?;
    let (_, disks) = domain_disks(&d)?;
    Ok(disks.iter().map(|f| describe(inner, c, f)).collect())
}

pub(crate) fn attach(
    inner: &Inner,
    c: &Connect,
    id: &str,
    spec: &DiskAttach,
) -> Result<AttachedDisk> {
    let d = lookup(c, id)?;
    let running = is_active_domain(&d)?;
    let bus = spec.bus.unwrap_or_default();
    if running && bus != DiskBus::Virtio {
        return Err(Error::conflict(format!(
            "only virtio disks can be hot-plugged: shut the VM off to attach a {} disk",
            bus.as_str()
        ))
        .with_field("bus"));
    }
    let (name, disks) = domain_disks(&d)?;
    let target = free_target(&disks, if bus == DiskBus::Virtio { "vd" } else { "sd" })?;
    let mut made: Option<StorageVol> = None;
    let (source, format) = if let Some(v) = &spec.volume {
        let vol = find_volume(inner, c, v).map_err(|e| e.with_field("volume"))?;
        let users = users_of(c, &vol, "")?;
        if !users.is_empty() {
            return Err(
                Error::conflict(format!("volume {v:?} is in use by {}", users.join(", ")))
                    .with_field("volume"),
            );
        }
        let format = checked_format(inner, c, &vol)?;
        let pool = vol.lookup_storage_pool().lv()?.name().lv()?;
        (
            DiskSource::Volume {
                pool,
                volume: vol.name().lv()?,
            },
            format,
        )
    } else {
        let pool = pool_of(inner, c, spec.pool.as_deref())?;
        let format = spec.format.unwrap_or(DiskFormat::Qcow2);
        let vol_name = format!("{name}-{target}.{}", format.as_str());
        if pool.lookup_storage_vol_by_name(&vol_name).is_ok() {
            return Err(Error::conflict(format!(
                "volume {vol_name:?} exists already: attach it by name"
            )));
        }
        let x = xml::volume_xml(&xml::VolumePlan {
            name: &vol_name,
            capacity: spec.size_bytes.unwrap_or(1 << 30),
            format: format.as_str(),
            backing: None,
        })?;
        made = Some(StorageVol::create_xml(&pool, &x, 0).lv()?);
        (
            DiskSource::Volume {
                pool: pool.name().lv()?,
                volume: vol_name,
            },
            format.as_str().to_string(),
        )
    };
    let x = xml::disk_device_xml(
        Some(&source),
        &format,
        "disk",
        &target,
        bus.as_str(),
        spec.read_only,
    )?;
    if let Err(e) = d.attach_device_flags(&x, flags(running)).lv() {
        if let Some(v) = made
            && let Err(e) = v.delete(0)
        {
            tracing::warn!(error = %e, "attach failed: cannot delete the new volume");
        }
        return Err(e);
    }
    forget(inner, &d);
    let (_, disks) = domain_disks(&d)?;
    Ok(describe(inner, c, &find_disk(&name, disks, &target)?))
}

pub(crate) fn detach(inner: &Inner, c: &Connect, id: &str, target: &str) -> Result<()> {
    let d = lookup(c, id)?;
    let running = is_active_domain(&d)?;
    let (name, disks) = domain_disks(&d)?;
    let disk = find_disk(&name, disks, target)?;
    if running && disk.device == "cdrom" {
        return Err(Error::conflict(
            "a running VM's CD-ROM drive cannot be removed: eject its media, or shut the VM off",
        ));
    }
    let x = xml::disk_device_xml(
        source_of(&disk).as_ref(),
        disk.format.as_deref().unwrap_or("raw"),
        &disk.device,
        &disk.target,
        &disk.bus,
        disk.readonly,
    )?;
    d.detach_device_flags(&x, flags(running)).lv()?;
    forget(inner, &d);
    if !running {
        return Ok(());
    }
    // QEMU unplugs once the guest lets go of the device; until then the disk is still there.
    let started = Instant::now();
    loop {
        let (_, disks) = domain_disks(&d)?;
        if disks.iter().all(|f| f.target != target) {
            return Ok(());
        }
        if started.elapsed() > DETACH_WAIT {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the guest has not released {target} after {} s; it is gone from the VM's \
                     configuration and leaves the running VM once the guest lets go of it",
                    DETACH_WAIT.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn resize(
    inner: &Inner,
    c: &Connect,
    id: &str,
    target: &str,
    r: &DiskResize,
) -> Result<AttachedDisk> {
    let d = lookup(c, id)?;
    let running = is_active_domain(&d)?;
    let (name, disks) = domain_disks(&d)?;
    let disk = find_disk(&name, disks, target)?;
    if disk.device != "disk" {
        return Err(Error::invalid(format!(
            "{target} is a {}, not a disk",
            disk.device
        )));
    }
    let vol = volume_of(c, &disk).ok_or_else(|| {
        Error::unsupported(format!(
            "{target} is not a volume of a storage pool; LibGo resizes only those"
        ))
    })?;
    let current = vol.info().lv()?.capacity;
    if r.size_bytes < current {
        if running {
            return Err(Error::conflict(format!(
                "a running VM's disk only grows ({target} has {current} bytes): shut the VM off \
                 and set allowShrink to shrink it"
            ))
            .with_field("sizeBytes"));
        }
        if !r.allow_shrink {
            return Err(Error::invalid(format!(
                "{r_size} bytes is smaller than {target}'s {current}: data past it would be \
                 lost; set allowShrink to shrink anyway",
                r_size = r.size_bytes
            ))
            .with_field("allowShrink"));
        }
    }
    if running {
        d.block_resize(target, r.size_bytes, sys::VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            .lv()?;
    } else {
        let shrink = if r.size_bytes < current {
            sys::VIR_STORAGE_VOL_RESIZE_SHRINK
        } else {
            0
        };
        vol.resize(r.size_bytes, shrink).lv()?;
    }
    forget(inner, &d);
    let (_, disks) = domain_disks(&d)?;
    Ok(describe(inner, c, &find_disk(&name, disks, target)?))
}

pub(crate) fn insert(
    inner: &Inner,
    c: &Connect,
    id: &str,
    m: &MediaInsert,
) -> Result<AttachedDisk> {
    let d = lookup(c, id)?;
    let running = is_active_domain(&d)?;
    let vol = find_volume(inner, c, &m.image).map_err(|e| e.with_field("image"))?;
    let source = DiskSource::Volume {
        pool: vol.lookup_storage_pool().lv()?.name().lv()?,
        volume: vol.name().lv()?,
    };
    let (name, disks) = domain_disks(&d)?;
    let target = match disks.iter().find(|f| f.device == "cdrom") {
        Some(cd) => {
            let x = xml::disk_device_xml(Some(&source), "raw", "cdrom", &cd.target, &cd.bus, true)?;
            d.update_device_flags(&x, flags(running) | sys::VIR_DOMAIN_DEVICE_MODIFY_FORCE)
                .lv()?;
            cd.target.clone()
        }
        None if running => {
            return Err(Error::conflict(
                "the VM has no CD-ROM drive, and one can be added only while it is shut off",
            ));
        }
        None => {
            let target = free_target(&disks, "hd")?;
            let x = xml::disk_device_xml(Some(&source), "raw", "cdrom", &target, "ide", true)?;
            d.attach_device_flags(&x, sys::VIR_DOMAIN_AFFECT_CONFIG)
                .lv()?;
            target
        }
    };
    forget(inner, &d);
    let (_, disks) = domain_disks(&d)?;
    Ok(describe(inner, c, &find_disk(&name, disks, &target)?))
}

pub(crate) fn eject(inner: &Inner, c: &Connect, id: &str) -> Result<()> {
    let d = lookup(c, id)?;
    let running = is_active_domain(&d)?;
    let (name, disks) = domain_disks(&d)?;
    let cd = disks
        .into_iter()
        .find(|f| f.device == "cdrom")
        .ok_or_else(|| Error::not_found(format!("VM {name:?} has no CD-ROM drive")))?;
    if source_of(&cd).is_none() {
        return Ok(());
    }
    let x = xml::disk_device_xml(None, "raw", "cdrom", &cd.target, &cd.bus, true)?;
    d.update_device_flags(&x, flags(running) | sys::VIR_DOMAIN_DEVICE_MODIFY_FORCE)
        .lv()?;
    forget(inner, &d);
    Ok(())
}
