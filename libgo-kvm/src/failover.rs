//! Failover: a VM's definition read while its host answers, defined again on another host
//! when that host dies, and removed from the old host when it comes back. The disks stay
//! where the definition names them: storage every host of the pool reaches.
//!
//! Fencing is QEMU's: it locks the images it opens, so a VM whose QEMU still runs on a host
//! that only looks dead (its libvirtd died, its network is cut from LibGo but not from the
//! storage) does not start a second time; the restore fails and leaves nothing defined.

use libgo_core::{Error, ErrorKind, Instance, Result};
use virt::connect::Connect;
use virt::sys;

use crate::compute::{instance_blocking, is_active_domain, lookup, start_domain, undefine};
use crate::conn::{Inner, LvExt};

/// The inactive definition of VM `id`, with its secrets (a VNC password) so that the copy
/// keeps them.
pub(crate) fn definition(c: &Connect, id: &str) -> Result<String> {
    lookup(c, id)?
        .xml_desc(sys::VIR_DOMAIN_XML_INACTIVE | sys::VIR_DOMAIN_XML_SECURE)
        .lv()
}

/// Defines VM `id` from `xml` here and starts it when `start`; undefines it again when that
/// fails.
pub(crate) fn restore(
    inner: &Inner,
    c: &Connect,
    id: &str,
    xml: &str,
    start: bool,
) -> Result<Instance> {
    match lookup(c, id) {
        Ok(_) => {
            return Err(Error::conflict(format!(
                "VM {id:?} is defined on this host already"
            )));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // A pool the hosts share lists what another host made in it only after a refresh.
    refresh_pools(c);
    let d = c.define_domain_xml(xml).lv()?;
    let made = (|| {
        if start {
            start_domain(inner, &d).map_err(fenced)?;
        }
        instance_blocking(inner, &d)
    })();
    if made.is_err() {
        if let Err(e) = d.undefine() {
            tracing::warn!(id, error = %e, "rollback: undefine failed");
        }
        if let Ok(uuid) = d.uuid_string() {
            inner.shared.invalidate(&uuid);
        }
    }
    made
}

/// Refreshes every active storage pool's list of volumes.
fn refresh_pools(c: &Connect) {
    let pools = c
        .list_all_storage_pools(sys::VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
        .unwrap_or_default();
    for p in pools {
        if let Err(e) = p.refresh(0) {
            tracing::debug!(error = %e, "storage pool refresh failed");
        }
    }
}

/// QEMU refusing an image another QEMU holds is the fence: said as such.
fn fenced(e: Error) -> Error {
    if crate::conn::is_image_lock_conflict(&e) {
        Error::conflict(
            "its disks are in use by another QEMU (does it still run on its old host?): not \
             started a second time",
        )
        .with_source(e)
    } else {
        e
    }
}

/// Undefines VM `id` (a copy left on a host it failed over from), leaving its volumes.
pub(crate) fn remove_definition(inner: &Inner, c: &Connect, id: &str) -> Result<()> {
    let d = match lookup(c, id) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if is_active_domain(&d)? {
        return Err(Error::conflict(format!(
            "VM {id:?} runs on this host: its definition is left"
        )));
    }
    undefine(inner, &d)?;
    if let Ok(uuid) = d.uuid_string() {
        inner.shared.invalidate(&uuid);
    }
    Ok(())
}
