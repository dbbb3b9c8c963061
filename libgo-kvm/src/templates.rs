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
    // Written whole beside it, then linked in place: a reader never sees a partial file,
    // and the link fails if the name is taken (two creates race to one winner). tokio's
    // file writes finish in the background unless flushed, so it is flushed and synced
    // before the answer (a caller that exits right after lost the template before).
    static STAGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = STAGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staged = p.with_extension(format!("json.{}-{n}.tmp", std::process::id()));
    let written = async {
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)
            .await?;
        tokio::io::AsyncWriteExt::write_all(&mut f, &body).await?;
        tokio::io::AsyncWriteExt::flush(&mut f).await?;
        f.sync_all().await?;
        Ok::<_, std::io::Error>(())
    }
    .await;
    let linked = match written {
        Ok(()) => tokio::fs::hard_link(&staged, &p).await,
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&staged).await;
    match linked {
        Ok(()) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::conflict(format!(
            "template {:?} exists already",
            t.name
        ))),
        Err(e) => Err(e.into()),
    }
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
