//! Making a VM, in four steps: plan (which disks, from the spec alone), provision (the
//! volumes, the cloud-init seed and the DHCP host entries it needs), define (the domain from
//! its plan) and start. Whatever a step made is undone when a later one fails.

use libgo_core::validate;
use libgo_core::*;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::storage_vol::StorageVol;

use crate::compute::{
    checked_format, find_volume, fits_host, instance_blocking, pool_of, serial_log_path,
    start_domain, upload_bytes, volume_path,
};
use crate::conn::{Inner, LvExt};
use crate::xml::{self, DiskSource, DomainPlan, Meta, PlannedDisk, PlannedNic};

/// Default memory of a VM when the spec gives none: 512 MiB.
const DEFAULT_MEMORY: u64 = libgo_core::hosts::VM_DEFAULT_MEMORY_BYTES;

/// Undoes what a failed create made.
struct Rollback<'a> {
    conn: &'a Connect,
    volumes: Vec<StorageVol>,
    domain: Option<Domain>,
    /// DHCP host entries added: (network, MAC).
    dhcp_hosts: Vec<(String, String)>,
}

impl Rollback<'_> {
    fn run(self) {
        if let Some(d) = self.domain {
            let _ = d.destroy();
            if let Err(e) = d.undefine() {
                tracing::warn!(error = %e, "rollback: undefine failed");
            }
        }
        for v in self.volumes {
            if let Err(e) = v.delete(0) {
                tracing::warn!(error = %e, "rollback: volume delete failed");
            }
        }
        for (network, mac) in self.dhcp_hosts {
            if let Err(e) = crate::network::dhcp_host(self.conn, &network, &mac, None) {
                tracing::warn!(error = %e, "rollback: DHCP host entry removal failed");
            }
        }
    }

    /// Everything made is kept.
    fn keep(&mut self) {
        self.domain = None;
        self.volumes.clear();
        self.dhcp_hosts.clear();
    }
}

/// The device name of the `i`th disk: `vda` … `vdz`, `vdaa` ….
fn disk_target(i: usize) -> String {
    let letter = (b'a' + (i % 26) as u8) as char;
    if i < 26 {
        format!("vd{letter}")
    } else {
        format!("vd{}{letter}", (b'a' + (i / 26 - 1) as u8) as char)
    }
}

/// Creates a VM; everything made is removed again when a step fails.
pub(crate) fn create_blocking(
    inner: &Inner,
    c: &Connect,
    spec: &InstanceSpec,
    boot: Option<&KernelBoot>,
) -> Result<Instance> {
    match c.lookup_domain_by_name(&spec.name).lv() {
        Ok(_) => {
            return Err(Error::conflict(format!(
                "a VM named {:?} exists already",
                spec.name
            )));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fits_host(c, spec.memory_bytes.unwrap_or(DEFAULT_MEMORY))?;
    for n in &spec.networks {
        c.lookup_network_by_name(n)
            .lv()
            .map_err(|e| e.with_context("network", n.clone()))?;
    }
    let mut rb = Rollback {
        conn: c,
        volumes: Vec::new(),
        domain: None,
        dhcp_hosts: Vec::new(),
    };
    match create_steps(inner, c, spec, boot, &mut rb) {
        Ok(i) => {
            rb.keep();
            Ok(i)
        }
        Err(e) => {
            rb.run();
            Err(e)
        }
    }
}

fn create_steps(
    inner: &Inner,
    c: &Connect,
    spec: &InstanceSpec,
    boot: Option<&KernelBoot>,
    rb: &mut Rollback<'_>,
) -> Result<Instance> {
    let disks = plan_disks(spec);
    let mut storage = Storage::default();
    for (i, d) in disks.iter().enumerate() {
        provision_disk(inner, c, spec, i, d, &mut storage, rb)?;
    }
    if let Some(ci) = &spec.cloud_init {
        provision_seed(inner, c, spec, ci, &mut storage, rb)?;
    }
    if let Some(iso) = &spec.cdrom {
        storage.disks.push(cdrom(inner, c, iso)?);
    }
    let nics = provision_nics(c, spec, rb)?;
    let d = define(inner, c, spec, boot, storage, nics, rb)?;
    if spec.start {
        start_domain(inner, &d)?;
    }
    instance_blocking(inner, &d)
}

/// Plan: the spec's disks, with a copy-on-write disk over `image` first when no disk names
/// a base image.
fn plan_disks(spec: &InstanceSpec) -> Vec<DiskSpec> {
    let mut disks = spec.disks.clone();
    if let Some(image) = &spec.image
        && !disks.iter().any(|d| d.base_image.is_some())
    {
        disks.insert(
            0,
            DiskSpec {
                base_image: Some(image.clone()),
                ..Default::default()
            },
        );
    }
    disks
}

/// The disks of the domain being made and the volumes it owns (`pool/name`, deleted with it).
#[derive(Default)]
struct Storage {
    disks: Vec<PlannedDisk>,
    owned: Vec<String>,
}

/// Provision: the `i`th disk, an existing volume or a new one (blank, or an overlay).
fn provision_disk(
    inner: &Inner,
    c: &Connect,
    spec: &InstanceSpec,
    i: usize,
    d: &DiskSpec,
    storage: &mut Storage,
    rb: &mut Rollback<'_>,
) -> Result<()> {
    let target = disk_target(i);
    if let Some(v) = &d.volume {
        let vol = find_volume(inner, c, v)?;
        let format = checked_format(inner, c, &vol)?;
        let pool = vol.lookup_storage_pool().lv()?.name().lv()?;
        storage.disks.push(PlannedDisk {
            source: DiskSource::Volume {
                pool,
                volume: vol.name().lv()?,
            },
            format,
            cdrom: false,
            readonly: false,
            target,
        });
        return Ok(());
    }
    let pool = pool_of(inner, c, d.pool.as_deref())?;
    let pool_name = pool.name().lv()?;
    let (vol_xml, format) = if let Some(base) = &d.base_image {
        let base_vol = find_volume(inner, c, base)?;
        let base_path = volume_path(&base_vol)?;
        let base_format = checked_format(inner, c, &base_vol)?;
        let base_cap = base_vol.info().lv()?.capacity;
        let cap = d.size_bytes.unwrap_or(base_cap).max(base_cap);
        let name = format!("{}-disk{i}.qcow2", spec.name);
        let x = xml::volume_xml(&xml::VolumePlan {
            name: &name,
            capacity: cap,
            format: "qcow2",
            backing: Some((&base_path, &base_format)),
        })?;
        (x, "qcow2".to_string())
    } else {
        let format = d.format.unwrap_or(DiskFormat::Qcow2);
        if format == DiskFormat::Iso {
            return Err(Error::invalid("a new blank disk cannot be an ISO"));
        }
        let name = format!("{}-disk{i}.{}", spec.name, format.as_str());
        let x = xml::volume_xml(&xml::VolumePlan {
            name: &name,
            capacity: d.size_bytes.unwrap_or(1 << 30),
            format: format.as_str(),
            backing: None,
        })?;
        (x, format.as_str().to_string())
    };
    let vol = StorageVol::create_xml(&pool, &vol_xml, 0).lv()?;
    let vol_name = vol.name().lv()?;
    rb.volumes.push(vol);
    storage.owned.push(format!("{pool_name}/{vol_name}"));
    storage.disks.push(PlannedDisk {
        source: DiskSource::Volume {
            pool: pool_name,
            volume: vol_name,
        },
        format,
        cdrom: false,
        readonly: false,
        target,
    });
    Ok(())
}

/// Provision: the cloud-init seed, a FAT volume in the default pool, read-only to the guest.
fn provision_seed(
    inner: &Inner,
    c: &Connect,
    spec: &InstanceSpec,
    ci: &CloudInit,
    storage: &mut Storage,
    rb: &mut Rollback<'_>,
) -> Result<()> {
    if inner.is_test {
        return Err(Error::unsupported(
            "libvirt's test driver cannot hold a cloud-init seed (its volumes have no content)",
        ));
    }
    let image = crate::cloudinit::fat_seed(ci, &spec.name)?;
    let pool = pool_of(inner, c, None)?;
    let pool_name = pool.name().lv()?;
    let name = format!("{}-cidata.img", spec.name);
    let x = xml::volume_xml(&xml::VolumePlan {
        name: &name,
        capacity: image.len() as u64,
        format: "raw",
        backing: None,
    })?;
    let vol = StorageVol::create_xml(&pool, &x, 0).lv()?;
    rb.volumes.push(vol.clone());
    upload_bytes(c, &vol, &image)?;
    storage.owned.push(format!("{pool_name}/{name}"));
    storage.disks.push(PlannedDisk {
        source: DiskSource::Volume {
            pool: pool_name,
            volume: name,
        },
        format: "raw".into(),
        cdrom: false,
        readonly: true,
        target: disk_target(storage.disks.len()),
    });
    Ok(())
}

/// The CD-ROM: a volume, or a file on the host that no pool holds.
fn cdrom(inner: &Inner, c: &Connect, iso: &str) -> Result<PlannedDisk> {
    let source = if iso.starts_with('/') && c.lookup_storage_vol_by_path(iso).is_err() {
        validate::absolute_path("cdrom", iso)?;
        DiskSource::File(iso.to_string())
    } else {
        let vol = find_volume(inner, c, iso)?;
        DiskSource::Volume {
            pool: vol.lookup_storage_pool().lv()?.name().lv()?,
            volume: vol.name().lv()?,
        }
    };
    Ok(PlannedDisk {
        source,
        format: "raw".into(),
        cdrom: true,
        readonly: true,
        target: "hdc".into(),
    })
}

/// Provision: the network interfaces. An address pool's address reaches the guest by DHCP:
/// a host entry for the address's own MAC, on the pool's network.
fn provision_nics(
    c: &Connect,
    spec: &InstanceSpec,
    rb: &mut Rollback<'_>,
) -> Result<Vec<PlannedNic>> {
    let mut nics = Vec::with_capacity(spec.networks.len());
    for n in &spec.networks {
        match spec.assigned.iter().find(|a| &a.network.name == n) {
            Some(a) => {
                let mac = a.mac();
                crate::network::dhcp_host(c, n, &mac, Some((a.address, &spec.name)))
                    .map_err(|e| e.with_context("network", n.clone()))?;
                rb.dhcp_hosts.push((n.clone(), mac.clone()));
                nics.push(PlannedNic::NetworkWithMac(n.clone(), mac));
            }
            None => nics.push(PlannedNic::Network(n.clone())),
        }
    }
    Ok(nics)
}

/// Define: the domain from its plan, with LibGo's facts in its metadata, and its autostart.
fn define(
    inner: &Inner,
    c: &Connect,
    spec: &InstanceSpec,
    boot: Option<&KernelBoot>,
    storage: Storage,
    nics: Vec<PlannedNic>,
    rb: &mut Rollback<'_>,
) -> Result<Domain> {
    let plan = DomainPlan {
        name: spec.name.clone(),
        domain_type: inner.domain_type(c)?.to_string(),
        memory_bytes: spec.memory_bytes.unwrap_or(DEFAULT_MEMORY),
        cpus: spec.cpus.unwrap_or(1),
        boot: boot.cloned(),
        boot_order: spec.boot.clone(),
        disks: storage.disks,
        nics,
        serial_log: (!inner.is_test).then(|| serial_log_path(inner, &spec.name)),
        vnc: !inner.is_test,
        agent: !inner.is_test,
        meta: Meta {
            created: Some(chrono::Utc::now()),
            image: spec.image.clone(),
            template: spec.template.clone(),
            labels: spec.labels.clone(),
            owned: storage.owned,
        },
    };
    let dom_xml = xml::domain_xml(&plan)?;
    tracing::debug!(instance = %spec.name, "defining domain");
    let d = c.define_domain_xml(&dom_xml).lv()?;
    rb.domain = Some(d.clone());
    if spec.autostart {
        d.set_autostart(true).lv()?;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_targets_follow_libvirts_names() {
        assert_eq!(disk_target(0), "vda");
        assert_eq!(disk_target(25), "vdz");
        assert_eq!(disk_target(26), "vdaa");
        for i in 0..200 {
            validate::disk_target(&disk_target(i)).expect("a valid target");
        }
    }

    #[test]
    fn an_image_becomes_the_first_disk_unless_a_disk_names_a_base() {
        let spec = InstanceSpec {
            image: Some("base.qcow2".into()),
            disks: vec![DiskSpec {
                size_bytes: Some(1 << 30),
                ..Default::default()
            }],
            ..Default::default()
        };
        let disks = plan_disks(&spec);
        assert_eq!(disks.len(), 2);
        assert_eq!(disks[0].base_image.as_deref(), Some("base.qcow2"));
        let spec = InstanceSpec {
            image: Some("base.qcow2".into()),
            disks: vec![DiskSpec {
                base_image: Some("other.qcow2".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(plan_disks(&spec).len(), 1);
    }
}
