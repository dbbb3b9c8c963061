//! Storage: pools, volumes, and base images / ISO media (the Images trait).

use async_trait::async_trait;
use libgo_core::*;
use virt::connect::Connect;
use virt::storage_pool::StoragePool as VirPool;
use virt::storage_vol::StorageVol;

use crate::KvmBackend;
use crate::compute::find_volume;
use crate::conn::{Inner, LvExt};
use crate::xml;

fn disk_format(s: Option<&str>) -> Option<DiskFormat> {
    match s? {
        "qcow2" => Some(DiskFormat::Qcow2),
        "raw" => Some(DiskFormat::Raw),
        "vmdk" => Some(DiskFormat::Vmdk),
        "vdi" => Some(DiskFormat::Vdi),
        "iso" => Some(DiskFormat::Iso),
        _ => None,
    }
}

fn describe_volume(inner: &Inner, c: &Connect, pool: &str, v: &StorageVol) -> Result<Volume> {
    let f = xml::parse_volume(&v.xml_desc(0).lv()?)?;
    let name = v.name().lv()?;
    let mut format = disk_format(f.format.as_deref());
    if name.ends_with(".iso") {
        format = Some(DiskFormat::Iso);
    }
    Ok(Volume {
        name: if inner.default_pool(c).ok() == Some(pool) {
            name
        } else {
            format!("{pool}/{name}")
        },
        backend: inner.config.name.clone(),
        driver: pool.to_string(),
        pool: Some(pool.to_string()),
        path: f.path,
        format,
        capacity_bytes: Some(f.capacity),
        allocation_bytes: Some(f.allocation),
        created_at: f.created,
        labels: Default::default(),
        used_by: Vec::new(),
    })
}

/// Fills each volume's `used_by` with the domains (defined or running) whose disks are it,
/// by path or by pool and name: a volume in use belongs to those instances.
fn with_users(c: &Connect, volumes: &mut [Volume]) -> Result<()> {
    let mut users: Vec<(xml::DiskRef, String)> = Vec::new();
    for d in c.list_all_domains(0).lv()? {
        let refs = match d.xml_desc(0).lv().and_then(|x| xml::disk_refs(&x)) {
            Ok(r) => r,
            // Undefined since the listing (by another client): it uses nothing now.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let name = d.name().lv()?;
        users.extend(refs.into_iter().map(|r| (r, name.clone())));
    }
    for v in volumes {
        let base = v.name.rsplit('/').next().unwrap_or(&v.name);
        let mut used_by: Vec<String> = users
            .iter()
            .filter(|(r, _)| match r {
                xml::DiskRef::Path(p) => v.path.as_deref() == Some(p.as_str()),
                xml::DiskRef::Volume { pool, volume } => {
                    v.pool.as_deref() == Some(pool.as_str()) && volume == base
                }
            })
            .map(|(_, name)| name.clone())
            .collect();
        used_by.sort();
        used_by.dedup();
        v.used_by = used_by;
    }
    Ok(())
}

fn all_volumes(inner: &Inner, c: &Connect) -> Result<Vec<Volume>> {
    let mut out = Vec::new();
    for p in c
        .list_all_storage_pools(virt::sys::VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
        .lv()?
    {
        let pname = p.name().lv()?;
        for v in p.list_all_volumes(0).lv()? {
            match describe_volume(inner, c, &pname, &v) {
                Ok(volume) => out.push(volume),
                // Deleted since the listing (by another client): no longer in the answer.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

fn image_of(v: Volume) -> Image {
    let kind = if v.format == Some(DiskFormat::Iso) {
        ImageKind::Iso
    } else {
        ImageKind::Disk
    };
    Image {
        id: v.path.clone().unwrap_or_else(|| v.name.clone()),
        tags: vec![v.name.clone()],
        kind,
        backend: v.backend,
        size_bytes: v.allocation_bytes.unwrap_or(0),
        created_at: v.created_at,
        labels: v.labels,
        format: v.format,
    }
}

fn pool_by_name(c: &Connect, name: &str) -> Result<VirPool> {
    let missing = || Error::not_found(format!("no storage pool {name:?}"));
    if validate::name("pool", name).is_err() {
        return Err(missing());
    }
    c.lookup_storage_pool_by_name(name).lv().map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            missing()
        } else {
            e
        }
    })
}

fn describe_pool(inner: &Inner, p: &VirPool) -> Result<StoragePool> {
    let info = p.info().lv()?;
    let (pool_type, path) = xml::parse_pool(&p.xml_desc(0).lv()?)?;
    Ok(StoragePool {
        name: p.name().lv()?,
        backend: inner.config.name.clone(),
        pool_type,
        path,
        active: p.is_active().lv()?,
        autostart: p.autostart().lv()?,
        capacity_bytes: info.capacity,
        allocation_bytes: info.allocation,
        available_bytes: info.available,
    })
}

fn volume_in(inner: &Inner, c: &Connect, name: &str) -> Result<(String, StorageVol)> {
    let v = find_volume(inner, c, name)?;
    let pool = v.lookup_storage_pool().lv()?.name().lv()?;
    Ok((pool, v))
}

impl KvmBackend {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, &Connect) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        self.inner.run(move |c| f(&inner, c)).await
    }
}

#[async_trait]
impl Images for KvmBackend {
    async fn image_list(&self) -> Result<Vec<Image>> {
        self.blocking(|i, c| Ok(all_volumes(i, c)?.into_iter().map(image_of).collect()))
            .await
    }

    async fn image_inspect(&self, id: &str) -> Result<Image> {
        let id = id.to_string();
        self.blocking(move |i, c| {
            let (pool, v) = volume_in(i, c, &id)?;
            Ok(image_of(describe_volume(i, c, &pool, &v)?))
        })
        .await
    }

    async fn image_remove(&self, id: &str, _force: bool) -> Result<()> {
        let id = id.to_string();
        self.blocking(move |i, c| volume_in(i, c, &id)?.1.delete(0).lv())
            .await
    }
}

#[async_trait]
impl Volumes for KvmBackend {
    async fn volume_list(&self) -> Result<Vec<Volume>> {
        self.blocking(|i, c| {
            let mut volumes = all_volumes(i, c)?;
            with_users(c, &mut volumes)?;
            Ok(volumes)
        })
        .await
    }

    async fn volume_create(&self, spec: &VolumeSpec) -> Result<Volume> {
        validate::owned_volume_spec(spec)?;
        if spec.driver.is_some() {
            return Err(Error::unsupported("VM volumes take a pool, not a driver"));
        }
        let spec = spec.clone();
        self.blocking(move |i, c| {
            let (pool_name, name) = match spec.name.split_once('/') {
                Some((p, n)) => (p.to_string(), n.to_string()),
                None => (
                    match &spec.pool {
                        Some(p) => p.clone(),
                        None => i.default_pool(c)?.to_string(),
                    },
                    spec.name.clone(),
                ),
            };
            let pool = pool_by_name(c, &pool_name)?;
            if pool.lookup_storage_vol_by_name(&name).is_ok() {
                return Err(Error::conflict(format!(
                    "volume {:?} exists already",
                    spec.name
                )));
            }
            let format = spec.format.unwrap_or(DiskFormat::Qcow2);
            if format == DiskFormat::Iso {
                return Err(Error::invalid(
                    "create ISO volumes by uploading an ISO file",
                ));
            }
            let x = xml::volume_xml(&xml::VolumePlan {
                name: &name,
                capacity: spec.size_bytes.unwrap_or(1 << 30),
                format: format.as_str(),
                backing: None,
            })?;
            let v = StorageVol::create_xml(&pool, &x, 0).lv().map_err(|e| {
                // Created by someone else since the check above.
                if pool.lookup_storage_vol_by_name(&name).is_ok() {
                    Error::conflict(format!("volume {:?} exists already", spec.name))
                } else {
                    e
                }
            })?;
            describe_volume(i, c, &pool_name, &v)
        })
        .await
    }

    async fn volume_inspect(&self, name: &str) -> Result<Volume> {
        let name = name.to_string();
        self.blocking(move |i, c| {
            let (pool, v) = volume_in(i, c, &name)?;
            let mut volume = [describe_volume(i, c, &pool, &v)?];
            with_users(c, &mut volume)?;
            let [volume] = volume;
            Ok(volume)
        })
        .await
    }

    async fn volume_delete(&self, name: &str, _force: bool) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |i, c| volume_in(i, c, &name)?.1.delete(0).lv())
            .await
    }

    async fn volume_resize(&self, name: &str, size_bytes: u64) -> Result<Volume> {
        validate::disk_size(size_bytes)?;
        let name = name.to_string();
        self.blocking(move |i, c| {
            let (pool, v) = volume_in(i, c, &name)?;
            let current = v.info().lv()?.capacity;
            if size_bytes < current {
                return Err(Error::invalid(format!(
                    "volumes only grow: {name:?} has {current} bytes, asked for {size_bytes}"
                )));
            }
            v.resize(size_bytes, 0).lv().map_err(|e| {
                // qemu-img resizes qcow2 and raw; libvirt reports the others as an internal
                // error of its child process.
                let said = e.to_string();
                if said.contains("does not support resize") {
                    Error::unsupported(format!(
                        "volume {name:?} is in a format that cannot be resized (qcow2 and raw can)"
                    ))
                } else if said.contains("which has snapshots") {
                    Error::conflict(format!(
                        "volume {name:?} holds internal snapshots (of the VM that uses it), and a \
                         qcow2 v2 image with snapshots cannot be resized: delete them first"
                    ))
                } else {
                    e
                }
            })?;
            describe_volume(i, c, &pool, &v)
        })
        .await
    }

    async fn volume_wipe(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |i, c| volume_in(i, c, &name)?.1.wipe(0).lv())
            .await
    }

    async fn volume_clone(&self, source: &str, target: &str) -> Result<Volume> {
        validate::volume_name(target)?;
        let (source, target) = (source.to_string(), target.to_string());
        self.blocking(move |i, c| {
            let (pool_name, src) = volume_in(i, c, &source)?;
            let (tpool, tname) = match target.split_once('/') {
                Some((p, n)) => (p.to_string(), n.to_string()),
                None => (pool_name.clone(), target.clone()),
            };
            let pool = pool_by_name(c, &tpool)?;
            if pool.lookup_storage_vol_by_name(&tname).is_ok() {
                return Err(Error::conflict(format!("volume {target:?} exists already")));
            }
            let f = xml::parse_volume(&src.xml_desc(0).lv()?)?;
            let x = xml::volume_xml(&xml::VolumePlan {
                name: &tname,
                capacity: f.capacity,
                format: f.format.as_deref().unwrap_or("raw"),
                backing: None,
            })?;
            let v = StorageVol::create_xml_from(&pool, &x, &src, 0).lv()?;
            describe_volume(i, c, &tpool, &v)
        })
        .await
    }

    async fn volume_upload(&self, name: &str, file: &std::path::Path) -> Result<Volume> {
        let name = name.to_string();
        let file = file.to_path_buf();
        self.blocking(move |i, c| {
            let (pool, v) = volume_in(i, c, &name)?;
            let len = std::fs::metadata(&file)?.len();
            let cap = v.info().lv()?.capacity;
            if len > cap {
                v.resize(len, 0).lv()?;
            }
            crate::compute::upload_file(c, &v, &file)?;
            describe_volume(i, c, &pool, &v)
        })
        .await
    }

    async fn pool_list(&self) -> Result<Vec<StoragePool>> {
        self.blocking(|i, c| {
            c.list_all_storage_pools(0)
                .lv()?
                .iter()
                .map(|p| describe_pool(i, p))
                .collect()
        })
        .await
    }

    async fn pool_create(&self, spec: &StoragePoolSpec) -> Result<StoragePool> {
        validate::pool_spec(spec)?;
        let spec = spec.clone();
        self.blocking(move |i, c| {
            if c.lookup_storage_pool_by_name(&spec.name).is_ok() {
                return Err(Error::conflict(format!(
                    "storage pool {:?} exists already",
                    spec.name
                )));
            }
            let x = xml::pool_xml(&spec.name, &spec.path)?;
            let p = c.define_storage_pool_xml(&x, 0).lv()?;
            let started = p
                .build(0)
                .lv()
                .and_then(|_| p.create(0).lv())
                .and_then(|_| p.set_autostart(spec.autostart).lv());
            if let Err(e) = started {
                let _ = p.destroy();
                let _ = p.undefine();
                return Err(e);
            }
            describe_pool(i, &p)
        })
        .await
    }

    async fn pool_inspect(&self, name: &str) -> Result<StoragePool> {
        let name = name.to_string();
        self.blocking(move |i, c| describe_pool(i, &pool_by_name(c, &name)?))
            .await
    }

    async fn pool_activate(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |_, c| pool_by_name(c, &name)?.create(0).lv().map(|_| ()))
            .await
    }

    async fn pool_deactivate(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |_, c| pool_by_name(c, &name)?.destroy().lv())
            .await
    }

    async fn pool_delete(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |_, c| {
            let p = pool_by_name(c, &name)?;
            if p.is_active().lv()? {
                // Another host sharing the pool's directory may have removed its volumes.
                if let Err(e) = p.refresh(0) {
                    tracing::debug!(error = %e, "storage pool refresh failed");
                }
                if !p.list_all_volumes(0).lv()?.is_empty() {
                    return Err(Error::conflict(format!(
                        "storage pool {name:?} is not empty"
                    )));
                }
                p.destroy().lv()?;
            }
            p.undefine().lv()
        })
        .await
    }
}
