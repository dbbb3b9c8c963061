//! Domain events from libvirt's event loop, whoever caused them (LibGo or virsh).
//!
//! The `virt` crate has no wrapper for domain event callbacks, so this module registers
//! them through `virt::sys`. Callbacks run on the event loop thread: they only read the
//! domain's name and UUID (local calls), publish an [`Event`] and invalidate the cache.

use std::collections::BTreeMap;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use libgo_core::{Event, EventAction, InstanceKind};
use virt::connect::Connect;
use virt::sys;

use crate::conn::Shared;

/// Callbacks registered on one connection; deregistered on drop.
pub(crate) struct Registration {
    conn: Arc<Connect>,
    ids: Vec<c_int>,
    close_registered: bool,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: the connection is alive (we hold a reference) and the ids came from it.
        unsafe {
            let ptr = self.conn.as_ptr();
            for id in &self.ids {
                sys::virConnectDomainEventDeregisterAny(ptr, *id);
            }
            if self.close_registered {
                sys::virConnectUnregisterCloseCallback(ptr, Some(on_close));
            }
        }
    }
}

fn opaque(shared: &Arc<Shared>) -> *mut c_void {
    Box::into_raw(Box::new(shared.clone())) as *mut c_void
}

unsafe extern "C" fn free_opaque(opaque: *mut c_void) {
    if !opaque.is_null() {
        // SAFETY: every opaque pointer handed to libvirt was made by `opaque` above.
        drop(unsafe { Box::from_raw(opaque as *mut Arc<Shared>) });
    }
}

/// Registers lifecycle, metadata and device callbacks and the close callback. `None` when
/// the connection offers no events (then the caller bypasses the cache).
pub(crate) fn register(conn: &Arc<Connect>, shared: Arc<Shared>) -> Option<Registration> {
    let mut reg = Registration {
        conn: conn.clone(),
        ids: Vec::new(),
        close_registered: false,
    };
    // SAFETY: the callbacks have the signatures libvirt documents for each event id; the
    // generic pointer type is what virConnectDomainEventRegisterAny takes. Each opaque is
    // freed by libvirt through `free_opaque` when the callback is deregistered.
    unsafe {
        let ptr = conn.as_ptr();
        let lifecycle: sys::virConnectDomainEventGenericCallback = Some(std::mem::transmute::<
            unsafe extern "C" fn(
                sys::virConnectPtr,
                sys::virDomainPtr,
                c_int,
                c_int,
                *mut c_void,
            ) -> c_int,
            unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void),
        >(on_lifecycle));
        let id = sys::virConnectDomainEventRegisterAny(
            ptr,
            std::ptr::null_mut(),
            sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as c_int,
            lifecycle,
            opaque(&shared),
            Some(free_opaque),
        );
        if id < 0 {
            tracing::warn!(
                "libvirt refused domain lifecycle events: {}",
                virt::error::Error::last_error()
            );
            return None;
        }
        reg.ids.push(id);
        let metadata: sys::virConnectDomainEventGenericCallback = Some(std::mem::transmute::<
            unsafe extern "C" fn(
                sys::virConnectPtr,
                sys::virDomainPtr,
                c_int,
                *const c_char,
                *mut c_void,
            ),
            unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void),
        >(on_metadata));
        let device: sys::virConnectDomainEventGenericCallback = Some(std::mem::transmute::<
            unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *const c_char, *mut c_void),
            unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void),
        >(on_device));
        for (event, cb) in [
            (sys::VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, metadata),
            (sys::VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, device),
            (sys::VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, device),
        ] {
            let id = sys::virConnectDomainEventRegisterAny(
                ptr,
                std::ptr::null_mut(),
                event as c_int,
                cb,
                opaque(&shared),
                Some(free_opaque),
            );
            if id >= 0 {
                reg.ids.push(id);
            } else {
                // Without these the cache could go stale: bypass it.
                tracing::debug!(event, "domain event not offered by this driver");
                let _ = virt::error::Error::last_error();
                return None;
            }
        }
        if sys::virConnectRegisterCloseCallback(
            ptr,
            Some(on_close),
            opaque(&shared),
            Some(free_opaque),
        ) == 0
        {
            reg.close_registered = true;
        } else {
            let _ = virt::error::Error::last_error();
        }
    }
    Some(reg)
}

/// Name and UUID of a domain handed to a callback.
unsafe fn identity(dom: sys::virDomainPtr) -> (String, Option<String>) {
    let mut buf = [0 as c_char; sys::VIR_UUID_STRING_BUFLEN as usize];
    // SAFETY: `dom` is valid for the duration of the callback; the buffer has the size
    // libvirt requires.
    let uuid = unsafe {
        if sys::virDomainGetUUIDString(dom, buf.as_mut_ptr()) == 0 {
            CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
        } else {
            String::new()
        }
    };
    // SAFETY: as above; the name belongs to the domain object.
    let name = unsafe {
        let p = sys::virDomainGetName(dom);
        (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
    };
    (uuid, name)
}

/// Maps a lifecycle event to a LibGo action and a reason.
pub(crate) fn action(event: c_int, detail: c_int) -> Option<(EventAction, &'static str)> {
    let event = event as u32;
    let detail = detail as u32;
    Some(match event {
        sys::VIR_DOMAIN_EVENT_DEFINED => match detail {
            sys::VIR_DOMAIN_EVENT_DEFINED_ADDED => (EventAction::Created, "defined"),
            _ => return None,
        },
        sys::VIR_DOMAIN_EVENT_UNDEFINED => (EventAction::Deleted, "undefined"),
        sys::VIR_DOMAIN_EVENT_STARTED => (EventAction::Started, "started"),
        sys::VIR_DOMAIN_EVENT_SUSPENDED => (EventAction::Paused, "suspended"),
        sys::VIR_DOMAIN_EVENT_RESUMED => (EventAction::Resumed, "resumed"),
        sys::VIR_DOMAIN_EVENT_STOPPED => match detail {
            sys::VIR_DOMAIN_EVENT_STOPPED_CRASHED => (EventAction::Died, "crashed"),
            sys::VIR_DOMAIN_EVENT_STOPPED_FAILED => (EventAction::Died, "failed"),
            sys::VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN => (EventAction::Stopped, "shutdown"),
            sys::VIR_DOMAIN_EVENT_STOPPED_DESTROYED => (EventAction::Stopped, "destroyed"),
            _ => (EventAction::Stopped, "stopped"),
        },
        sys::VIR_DOMAIN_EVENT_CRASHED => (EventAction::Died, "crashed"),
        sys::VIR_DOMAIN_EVENT_PMSUSPENDED => (EventAction::Paused, "pm-suspended"),
        _ => return None,
    })
}

unsafe extern "C" fn on_lifecycle(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    event: c_int,
    detail: c_int,
    opaque: *mut c_void,
) -> c_int {
    if opaque.is_null() || dom.is_null() {
        return 0;
    }
    // SAFETY: opaque was made by `opaque()` and lives until `free_opaque`.
    let shared = unsafe { &*(opaque as *const Arc<Shared>) };
    // SAFETY: `dom` is valid during the callback.
    let (uuid, name) = unsafe { identity(dom) };
    if matches!(
        event as u32,
        sys::VIR_DOMAIN_EVENT_DEFINED | sys::VIR_DOMAIN_EVENT_UNDEFINED
    ) {
        shared.invalidate(&uuid);
    }
    let mapped = action(event, detail).filter(|(a, _)| {
        let Ok(mut last) = shared.last_action.lock() else {
            return true;
        };
        let previous = last.insert(uuid.clone(), *a);
        if *a == EventAction::Deleted {
            last.remove(&uuid);
        }
        // QEMU starts paused and is then unpaused: that is part of the start, not a resume.
        *a != EventAction::Resumed || previous == Some(EventAction::Paused)
    });
    match event as u32 {
        sys::VIR_DOMAIN_EVENT_STARTED => {
            shared.mark_started(&uuid);
            if shared.index_logs.load(Ordering::Relaxed)
                && let Some(inner) = shared.inner.get()
            {
                crate::serial::started(inner.clone(), &uuid);
            }
        }
        sys::VIR_DOMAIN_EVENT_STOPPED | sys::VIR_DOMAIN_EVENT_UNDEFINED => {
            shared.mark_stopped(&uuid);
            if shared.index_logs.load(Ordering::Relaxed) {
                crate::serial::stopped(&uuid);
            }
        }
        _ => {}
    }
    if let Some((action, reason)) = mapped {
        tracing::debug!(instance = ?name, ?action, reason, "libvirt domain event");
        let mut attributes = BTreeMap::new();
        attributes.insert("reason".to_string(), reason.to_string());
        let _ = shared.events.send(Event {
            time: chrono::Utc::now(),
            backend: shared.backend.clone(),
            kind: InstanceKind::Vm,
            instance_id: uuid,
            instance_name: name,
            action,
            attributes,
        });
    }
    0
}

unsafe extern "C" fn on_metadata(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    _kind: c_int,
    _nsuri: *const c_char,
    opaque: *mut c_void,
) {
    if opaque.is_null() || dom.is_null() {
        return;
    }
    // SAFETY: as in `on_lifecycle`.
    let shared = unsafe { &*(opaque as *const Arc<Shared>) };
    let (uuid, _) = unsafe { identity(dom) };
    shared.invalidate(&uuid);
}

unsafe extern "C" fn on_device(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    _alias: *const c_char,
    opaque: *mut c_void,
) {
    if opaque.is_null() || dom.is_null() {
        return;
    }
    // SAFETY: as in `on_lifecycle`.
    let shared = unsafe { &*(opaque as *const Arc<Shared>) };
    let (uuid, _) = unsafe { identity(dom) };
    shared.invalidate(&uuid);
}

unsafe extern "C" fn on_close(_conn: sys::virConnectPtr, reason: c_int, opaque: *mut c_void) {
    if opaque.is_null() {
        return;
    }
    // SAFETY: as in `on_lifecycle`.
    let shared = unsafe { &*(opaque as *const Arc<Shared>) };
    tracing::warn!(reason, "libvirt closed the connection");
    shared.events_live.store(false, Ordering::SeqCst);
    shared.closed.store(true, Ordering::SeqCst);
    shared.invalidate_all();
}
