//! define+start+destroy+undefine of one VM through LibGo, through raw `virt` calls and
//! through `virsh`; and listing 1,000 domains. All on libvirt's `test:///default` driver
//! (in-process, no daemon) so that the numbers measure the layers, not QEMU. The virsh
//! figure runs the same four steps in one `virsh` process against `test:///default`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;

use libgo_core::{Compute, InstanceFilter, InstanceSpec, LibGo, StopOptions};
use libgo_kvm::{Accelerator, KvmBackend, KvmConfig};

const XML: &str = "<domain type='test'><name>bench-raw</name><memory unit='MiB'>64</memory>\
<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>";

/// One define+start+destroy+undefine through the facade, through raw `virt`, and through
/// one `virsh` process, on libvirt at `uri` with domain type `domain_type`.
fn cycle(c: &mut Criterion, group: &str, uri: &str, domain_type: &str, samples: usize) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let libgo = LibGo::new();
    let backend = rt
        .block_on(KvmBackend::connect(KvmConfig {
            uri: uri.into(),
            accelerator: if domain_type == "qemu" {
                Accelerator::Tcg
            } else {
                Accelerator::Auto
            },
            ..Default::default()
        }))
        .expect("libvirt");
    libgo.register(Arc::new(backend)).expect("register");
    let xml = XML.replace("type='test'", &format!("type='{domain_type}'"));
    let mut g = c.benchmark_group(group);
    g.sample_size(samples);
    g.measurement_time(Duration::from_secs(if domain_type == "test" {
        5
    } else {
        30
    }));
    g.bench_function("libgo", |bench| {
        bench.to_async(&rt).iter(|| async {
            let mut spec = InstanceSpec::vm("bench-libgo");
            spec.memory_bytes = Some(64 << 20);
            libgo.create(&spec).await.expect("create");
            libgo.start("bench-libgo").await.expect("start");
            libgo
                .stop(
                    "bench-libgo",
                    StopOptions {
                        force: true,
                        timeout_secs: None,
                    },
                )
                .await
                .expect("stop");
            libgo
                .delete("bench-libgo", Default::default())
                .await
                .expect("delete");
        })
    });
    let conn = virt::connect::Connect::open(Some(uri)).expect("raw connect");
    g.bench_function("raw_virt", |bench| {
        bench.iter(|| {
            let d = conn.define_domain_xml(&xml).expect("define");
            d.create().expect("start");
            d.destroy().expect("destroy");
            d.undefine().expect("undefine");
        })
    });
    let file = std::env::temp_dir().join(format!("libgo-bench-virsh-{domain_type}.xml"));
    std::fs::write(&file, xml.replace("bench-raw", "bench-virsh")).expect("xml file");
    let script = format!(
        "define {}; start bench-virsh; destroy bench-virsh; undefine bench-virsh",
        file.display()
    );
    g.bench_function("virsh", |bench| {
        bench.iter(|| {
            let ok = std::process::Command::new("virsh")
                .args(["-q", "-c", uri, &script])
                .output()
                .expect("virsh")
                .status
                .success();
            assert!(ok);
        })
    });
    g.finish();
}

fn lifecycle(c: &mut Criterion) {
    cycle(
        c,
        "vm_lifecycle_test_driver",
        "test:///default",
        "test",
        100,
    );
    // Real QEMU processes (TCG, no disk): the cost a user of qemu:///system sees.
    cycle(c, "vm_lifecycle_qemu", "qemu:///system", "qemu", 20);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let b = rt
        .block_on(KvmBackend::connect(KvmConfig {
            uri: "test:///default".into(),
            ..Default::default()
        }))
        .expect("test driver");
    let conn = virt::connect::Connect::open(Some("test:///default")).expect("raw connect");
    let mut g = c.benchmark_group("list_1000");
    for i in 0..1000 {
        let x = XML.replace("bench-raw", &format!("bench-list-{i}"));
        conn.define_domain_xml(&x).expect("define");
    }
    g.bench_function("libgo_list", |bench| {
        bench.to_async(&rt).iter(|| async {
            let l = b.list(&InstanceFilter::default()).await.expect("list");
            assert!(l.len() >= 1000);
        })
    });
    g.bench_function("raw_list_all_domains", |bench| {
        bench.iter(|| {
            let l = conn.list_all_domains(0).expect("list");
            assert!(l.len() >= 1000);
        })
    });
    g.finish();
    for i in 0..1000 {
        if let Ok(d) = conn.lookup_domain_by_name(&format!("bench-list-{i}")) {
            let _ = d.undefine();
        }
    }
}

criterion_group!(benches, lifecycle);
criterion_main!(benches);
