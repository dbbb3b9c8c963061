//! The backing chain of an existing disk image must stay inside the storage pools.
//!
//! A volume's format as libvirt reports it may be probed from the file's first bytes, which
//! a guest writes: a raw disk whose guest wrote a qcow2 header naming `/etc/shadow` (or
//! another VM's disk) as its backing file would, attached as qcow2, hand that file to the
//! next VM. So before LibGo attaches an existing volume, uses a base image, or exports a
//! disk, it asks `qemu-img info --backing-chain` what the image would open and refuses any
//! backing file that is not a volume of a pool, and any protocol or `json:` name.
//!
//! On a remote host `qemu-img` here cannot read the files, so the chain is followed through
//! libvirt's own reading of each volume's header (`<backingStore>` in the volume's XML, the
//! same XML the format LibGo attaches with comes from).

use std::process::Command;

use libgo_core::{Error, Result};
use serde::Deserialize;
use virt::connect::Connect;
use virt::storage_vol::StorageVol;

use crate::conn::LvExt;

#[derive(Debug, Deserialize)]
struct ImageInfo {
    filename: String,
    #[serde(rename = "backing-filename")]
    backing_filename: Option<String>,
}

/// Whether images of this connection are files `qemu-img` here can read: not libvirt's
/// test driver (its volumes have no content) and not a remote host (its files are there;
/// [`check_by_libvirt`] follows those).
pub(crate) fn checkable(inner: &crate::conn::Inner) -> bool {
    !inner.is_test && crate::compute::is_local(inner)
}

/// The longest chain followed on a remote host; a longer one (or a loop) is refused.
const MAX_CHAIN: usize = 16;

/// Checks the chain of pool volume `vol` as libvirt on its host read it: each backing file
/// must itself be a volume of a pool, to the end of the chain. For hosts `qemu-img` here
/// cannot reach.
pub(crate) fn check_by_libvirt(c: &Connect, vol: &StorageVol) -> Result<()> {
    let top = vol.path().lv()?;
    let mut facts = crate::xml::parse_volume(&vol.xml_desc(0).lv()?)?;
    for _ in 0..MAX_CHAIN {
        let Some(backing) = facts.backing else {
            return Ok(());
        };
        if backing.starts_with("json:") || backing.contains("://") || !backing.starts_with('/') {
            return Err(refused(&top, &backing));
        }
        let next = c
            .lookup_storage_vol_by_path(&backing)
            .map_err(|_| refused(&top, &backing))?;
        facts = crate::xml::parse_volume(&next.xml_desc(0).lv()?)?;
    }
    Err(Error::invalid(format!(
        "disk image {top} has a backing chain longer than {MAX_CHAIN} images; LibGo will not open it"
    )))
}

/// Checks the chain `path` opens as `format` (probed when `None`, as an attacker's file
/// would be). `Ok` when every backing file is a pool volume.
pub(crate) fn check(c: &Connect, path: &str, format: Option<&str>) -> Result<()> {
    let mut cmd = Command::new("qemu-img");
    cmd.args(["info", "--backing-chain", "--output=json", "-U"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    let out = cmd.arg(path).output().map_err(|e| {
        Error::unavailable(format!(
            "cannot run qemu-img (is qemu-utils installed?): {e}"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::invalid(format!(
            "disk image {path} cannot be opened safely: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let chain: Vec<ImageInfo> = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::internal(format!("qemu-img info gave JSON LibGo cannot read: {e}")))?;
    for image in &chain {
        if let Some(b) = &image.backing_filename
            && (b.starts_with("json:") || b.contains("://"))
        {
            return Err(refused(path, b));
        }
    }
    // The first entry is the image itself; each one after it is a backing file.
    for image in chain.iter().skip(1) {
        let f = &image.filename;
        if f.starts_with("json:") || f.contains("://") || !f.starts_with('/') {
            return Err(refused(path, f));
        }
        if c.lookup_storage_vol_by_path(f).is_err() {
            return Err(refused(path, f));
        }
    }
    Ok(())
}

fn refused(path: &str, backing: &str) -> Error {
    Error::invalid(format!(
        "disk image {path} refers to {backing:?}, which is not a volume of a storage pool; \
         LibGo will not open it"
    ))
}
