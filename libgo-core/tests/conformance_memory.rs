//! The core conformance suite against the in-memory backend: the suite's own check, in
//! milliseconds, and the reference for what every rule means when no engine is in the way.

use std::sync::Arc;
use std::time::Duration;

use libgo_core::conformance::Fixture;
use libgo_core::memory::{MemoryBackend, START_MARKER};
use libgo_core::{Backend, DiskSpec, ImageKind, InstanceSpec, NetworkSpec, VolumeSpec};

async fn setup() -> (Arc<dyn Backend>, Fixture) {
    let memory = MemoryBackend::new("memory");
    memory.add_image("base.qcow2", ImageKind::Disk);
    let mut runnable = InstanceSpec::vm("placeholder");
    runnable.memory_bytes = Some(128 << 20);
    runnable.disks = vec![DiskSpec {
        base_image: Some("base.qcow2".into()),
        ..Default::default()
    }];
    let fixture = Fixture {
        runnable,
        log_marker: START_MARKER.into(),
        image: "base.qcow2".into(),
        volume: VolumeSpec {
            size_bytes: Some(16 << 20),
            ..Default::default()
        },
        network: NetworkSpec::default(),
        prefix: "mem".into(),
        scratch_dir: std::env::temp_dir(),
        boot_timeout: Duration::from_secs(1),
    };
    (Arc::new(memory), fixture)
}

// Every test of the suite: the memory engine follows each rule without an exception.
libgo_core::conformance_tests!(setup);
