//! The core conformance suite against the real libvirtd (`qemu:///system`, TCG), booting
//! the test guest. Needs `scripts/libvirt.sh`.

mod common;

use std::sync::Arc;

use libgo_core::Backend;
use libgo_core::conformance::Fixture;

async fn setup() -> (Arc<dyn Backend>, Fixture) {
    (common::arc(common::qemu().await), common::fixture(231))
}

libgo_core::conformance_tests!(setup);
