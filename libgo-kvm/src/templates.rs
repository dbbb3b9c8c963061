//! VM templates (Kimchi): JSON files under the configured template directory, one
//! directory per backend name.

use std::path::PathBuf;

use libgo_core::{Error, InstanceSpec, Result, Template, validate};

use crate::KvmBackend;

fn dir(b: &KvmBackend) -> PathBuf {
    b.inner.config.template_dir.join(&b.inner.config.name)
}

fn path(b: &KvmBackend, name: &str) -> Result<PathBuf> {
    validate::name("template name", name)
        .map_err(|_| Error::not_found(format!("no template {name:?}")))?;
    Ok(dir(b).join(format!("{name}.json")))
}

/// Fills what the spec leaves empty from the template.
pub(crate) fn apply(spec: &mut InstanceSpec, t: &Template) {
    if spec.image.is_none() {
        spec.image = t.image.clone();
    }
    if spec.cpus.is_none() {
        spec.cpus = t.cpus;
    }
    if spec.memory_bytes.is_none() {
        spec.memory_bytes = t.memory_bytes;
    }
    if spec.disks.is_empty() {
        spec.disks = t.disks.clone();
    }
    if spec.networks.is_empty() {
        spec.networks = t.networks.clone();
    }
    if spec.cloud_init.is_none() {
        spec.cloud_init = t.cloud_init.clone();
    }
}

pub(crate) async fn list(b: &KvmBackend) -> Result<Vec<Template>> {
    let d = dir(b);
    let mut out = Vec::new();
    let mut entries = match tokio::fs::read_dir(&d).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    while let Some(e) = entries.next_entry().await? {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let bytes = tokio::fs::read(&p).await?;
        match serde_json::from_slice::<Template>(&bytes) {
            Ok(mut t) => {
                t.backend = b.inner.config.name.clone();
                out.push(t);
            }
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "unreadable template skipped")
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub(crate) async fn create(b: &KvmBackend, t: &Template) -> Result<Template> {
    validate::template(t)?;
    let mut t = t.clone();
    t.backend = b.inner.config.name.clone();
    let p = path(b, &t.name)?;
    tokio::fs::create_dir_all(dir(b)).await?;
    // Secrets are not serialised (serde skips them), so a template never stores passwords.
    let body = serde_json::to_vec_pretty(&t)?;
    let mut f = match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .await
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::conflict(format!(
                "template {:?} exists already",
                t.name
            )));
        }
        Err(e) => return Err(e.into()),
    };
    tokio::io::AsyncWriteExt::write_all(&mut f, &body).await?;
    Ok(t)
}

pub(crate) async fn delete(b: &KvmBackend, name: &str) -> Result<()> {
    let p = path(b, name)?;
    match tokio::fs::remove_file(&p).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::not_found(format!("no template {name:?}")))
        }
        Err(e) => Err(e.into()),
    }
}

impl KvmBackend {
    pub(crate) async fn template_get_inner(&self, name: &str) -> Result<Template> {
        let p = path(self, name)?;
        let bytes = match tokio::fs::read(&p).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::not_found(format!("no template {name:?}")));
            }
            Err(e) => return Err(e.into()),
        };
        let mut t: Template = serde_json::from_slice(&bytes)?;
        t.backend = self.inner.config.name.clone();
        Ok(t)
    }
}
