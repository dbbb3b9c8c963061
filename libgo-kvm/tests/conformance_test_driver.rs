//! The core conformance suite against libvirt's in-process `test:///default` driver.
//!
//! The test driver runs no guest: it writes no serial log and has no disk files, so
//! `stats_and_logs` (which waits for the guest's log marker) cannot pass on it and is
//! left to `conformance_qemu`. Export is reported as unsupported here (no disk files),
//! which the suite's `export` test checks. Everything else is the suite's own test.

mod common;

use std::sync::Arc;

use libgo_core::Backend;
use libgo_core::conformance::Fixture;

async fn setup() -> (Arc<dyn Backend>, Fixture) {
    let b = common::test_driver().await;
    let mut fx = common::fixture(233);
    // No guest boots: the spec needs no kernel.
    fx.runnable.labels.clear();
    (common::arc(b), fx)
}

// `stats_and_logs` waits for the guest's log marker, which no test-driver domain writes.
// The test driver has no device hot-plug (virDomainAttachDeviceFlags answers UNSUPPORTED):
// disks are checked against real libvirt in conformance_qemu.
libgo_core::conformance_tests!(setup, except[stats_and_logs, disks]);

/// 1,000 domains listed in one engine call, each with its labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_a_thousand_domains() {
    use libgo_core::{Compute, InstanceFilter, InstanceSpec};
    let b = common::test_driver().await;
    let tag = common::name("k");
    let mut names = Vec::new();
    for i in 0..1000 {
        let mut spec = InstanceSpec::vm(format!("{tag}-{i}"));
        spec.memory_bytes = Some(64 << 20);
        spec.labels.insert("batch".into(), tag.clone());
        b.create(&spec).await.expect("create");
        names.push(spec.name);
    }
    let filter = InstanceFilter {
        labels: [("batch".to_string(), tag.clone())].into(),
        ..Default::default()
    };
    let listed = b.list(&filter).await.unwrap();
    assert_eq!(listed.len(), 1000);
    assert!(listed.iter().all(|i| i.memory_bytes == Some(64 << 20)));
    for n in names {
        b.delete(&n, true).await.unwrap();
    }
    assert!(b.list(&filter).await.unwrap().is_empty());
}
