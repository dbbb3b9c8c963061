//! What a user of the KVM backend checks, against the real libvirtd (`qemu:///system`,
//! TCG) booting the test guest. Needs `scripts/libvirt.sh` (and `scripts/ovs.sh` for OVS).

mod common;

use std::time::Duration;

use futures::StreamExt;
use libgo_core::*;
use libgo_kvm::KvmBackend;

use common::{name, virsh};

const URI: &str = "qemu:///system";

async fn wait_log(b: &KvmBackend, id: &str, text: &str, secs: u64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let mut s = b.logs(id, LogOptions::default()).await.expect("logs");
        let mut all = String::new();
        while let Some(e) = s.next().await {
            all.push_str(&e.expect("log entry").message);
        }
        if all.contains(text) {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{text:?} not in the serial log: {all}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Volumes of the default pool whose name starts with `prefix`.
async fn volumes_named(b: &KvmBackend, prefix: &str) -> Vec<String> {
    b.volume_list()
        .await
        .expect("volume list")
        .into_iter()
        .map(|v| v.name)
        .filter(|n| n.starts_with(prefix))
        .collect()
}

async fn cleanup(b: &KvmBackend, vm: &str) {
    match b.delete(vm, true).await {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => panic!("cleanup of {vm}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_boots_and_prints_its_cloud_init_hostname() {
    let b = common::qemu().await;
    let vm = name("ci");
    let _g = common::Guard::new(URI).vm(&vm);
    let mut spec = common::guest_spec(&vm);
    spec.cloud_init = Some(CloudInit {
        hostname: Some(format!("{vm}-host")),
        password: Some("never-logged".into()),
        runcmd: vec!["echo hi".into()],
        ..Default::default()
    });
    spec.start = true;
    let created = b.create(&spec).await.expect("create");
    let log = wait_log(&b, &created.id, common::MARKER, 60).await;
    assert!(log.contains(common::MARKER));
    let log = wait_log(&b, &vm, &format!("LIBGO-HOSTNAME={vm}-host"), 60).await;
    assert!(!log.contains("never-logged"));
    // virsh sees LibGo's VM running.
    let (ok, out) = virsh(URI, &["list", "--name"]);
    assert!(
        ok && out.lines().any(|l| l.trim() == vm),
        "virsh list: {out}"
    );
    assert_eq!(b.get(&vm).await.unwrap().state, InstanceState::Running);
    // Tail gives the last line only.
    let mut t = b
        .logs(
            &vm,
            LogOptions {
                tail: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut n = 0;
    while t.next().await.is_some() {
        n += 1;
    }
    assert_eq!(n, 1);
    b.delete(&vm, true).await.expect("delete");
    assert!(
        volumes_named(&b, &vm).await.is_empty(),
        "the VM's volumes and seed are gone"
    );
    assert!(
        b.volume_inspect(common::BASE_IMAGE).await.is_ok(),
        "the shared base image stays"
    );
    let (_, out) = virsh(URI, &["list", "--all", "--name"]);
    assert!(!out.lines().any(|l| l.trim() == vm));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virsh_domains_appear_in_libgo_with_events() {
    let b = common::qemu().await;
    let vm = name("virsh");
    let _g = common::Guard::new(URI).vm(&vm);
    let mut events = b.events().await.expect("events");
    let g = common::guest_dir();
    let xml = format!(
        "<domain type='qemu'><name>{vm}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{}</kernel><initrd>{}</initrd>\
         <cmdline>console=ttyS0 quiet</cmdline></os></domain>",
        g.join("vmlinuz").display(),
        g.join("initrd.img").display()
    );
    let file = common::scratch().join(format!("{vm}.xml"));
    std::fs::write(&file, xml).unwrap();
    let (ok, out) = virsh(URI, &["define", file.to_str().unwrap()]);
    assert!(ok, "{out}");
    let got = b.get(&vm).await.expect("LibGo sees the virsh domain");
    assert_eq!(got.state, InstanceState::Stopped);
    assert!(
        b.list(&InstanceFilter::default())
            .await
            .unwrap()
            .iter()
            .any(|i| i.name == vm)
    );
    let (ok, out) = virsh(URI, &["start", &vm]);
    assert!(ok, "{out}");
    let (ok, out) = virsh(URI, &["destroy", &vm]);
    assert!(ok, "{out}");
    let (ok, out) = virsh(URI, &["undefine", &vm]);
    assert!(ok, "{out}");
    let mut seen = Vec::new();
    while !seen.contains(&EventAction::Deleted) {
        let e = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("events arrive")
            .expect("stream open")
            .expect("event");
        if e.instance_name.as_deref() == Some(vm.as_str()) {
            assert_eq!(e.instance_id, got.id);
            seen.push(e.action);
        }
    }
    assert_eq!(
        seen,
        vec![
            EventAction::Created,
            EventAction::Started,
            EventAction::Stopped,
            EventAction::Deleted
        ]
    );
    assert_eq!(b.get(&vm).await.unwrap_err().kind(), ErrorKind::NotFound);
}

fn qemu_img_info(path: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_are_real_disk_images() {
    let b = common::qemu().await;
    let vm = name("exp");
    let _g = common::Guard::new(URI).vm(&vm);
    let spec = common::guest_spec(&vm);
    b.create(&spec).await.expect("create");
    let dir = common::scratch();
    for (format, want) in [
        (ExportFormat::Qcow2, "qcow2"),
        (ExportFormat::Vmdk, "vmdk"),
        (ExportFormat::Vdi, "vdi"),
        (ExportFormat::Raw, "raw"),
    ] {
        let dest = dir.join(format!("{vm}.{want}"));
        let r = b
            .export(
                &vm,
                &ExportSpec {
                    format,
                    destination: dest.clone(),
                },
                ProgressSink::none(),
            )
            .await
            .expect("export");
        let info = qemu_img_info(&dest);
        assert_eq!(info["format"], want);
        assert_eq!(info["virtual-size"], 64u64 << 20);
        assert_eq!(r.size_bytes, std::fs::metadata(&dest).unwrap().len());
        std::fs::remove_file(&dest).unwrap();
    }
    // OVA: a tar with the OVF first, naming its stream-optimised disk, and a manifest.
    let dest = dir.join(format!("{vm}.ova"));
    b.export(
        &vm,
        &ExportSpec {
            format: ExportFormat::Ova,
            destination: dest.clone(),
        },
        ProgressSink::none(),
    )
    .await
    .expect("ova");
    let mut ar = tar::Archive::new(std::fs::File::open(&dest).unwrap());
    let unpack = dir.join(format!("{vm}-ova"));
    ar.unpack(&unpack).unwrap();
    let ovf = std::fs::read_to_string(unpack.join(format!("{vm}.ovf"))).unwrap();
    let doc = roxmltree::Document::parse(&ovf).expect("OVF parses");
    let href = doc
        .descendants()
        .find(|n| n.has_tag_name("File"))
        .and_then(|n| {
            n.attributes()
                .find(|a| a.name() == "href")
                .map(|a| a.value().to_string())
        })
        .expect("OVF names its disk");
    let vmdk = unpack.join(&href);
    let info = qemu_img_info(&vmdk);
    assert_eq!(info["format"], "vmdk");
    assert_eq!(
        info["format-specific"]["data"]["create-type"],
        "streamOptimized"
    );
    assert!(
        std::fs::read_to_string(unpack.join(format!("{vm}.mf")))
            .unwrap()
            .contains(&href)
    );
    std::fs::remove_dir_all(&unpack).unwrap();
    std::fs::remove_file(&dest).unwrap();
    // A running VM is refused, with advice.
    b.start(&vm).await.unwrap();
    let e = b
        .export(
            &vm,
            &ExportSpec {
                format: ExportFormat::Raw,
                destination: dir.join("x.raw"),
            },
            ProgressSink::none(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(e.message().contains("Stop it"), "{e}");
    cleanup(&b, &vm).await;
}

fn qemu_io(path: &str, cmd: &str) -> bool {
    std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", cmd, path])
        .output()
        .map(|o| {
            o.status.success()
                && !String::from_utf8_lossy(&o.stdout).contains("Pattern verification failed")
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_revert_restores_the_disk() {
    let b = common::qemu().await;
    let vm = name("snap");
    let _g = common::Guard::new(URI).vm(&vm);
    b.create(&common::guest_spec(&vm)).await.expect("create");
    let disk = b
        .volume_inspect(&format!("{vm}-disk0.qcow2"))
        .await
        .expect("the VM's disk");
    let path = disk.path.expect("disk path");
    assert!(qemu_io(&path, "write -P 0xab 0 64k"));
    let s = b
        .snapshot_create(
            &vm,
            &SnapshotSpec {
                name: "before".into(),
                description: None,
            },
        )
        .await
        .unwrap();
    assert!(!s.includes_memory, "a stopped VM's snapshot is disk only");
    assert!(qemu_io(&path, "write -P 0xcd 0 64k"));
    assert!(qemu_io(&path, "read -P 0xcd 0 64k"));
    b.snapshot_revert(&vm, "before").await.unwrap();
    assert!(
        qemu_io(&path, "read -P 0xab 0 64k"),
        "content written after the snapshot is gone"
    );
    // A running VM's snapshot includes memory and reverts to a running VM.
    b.start(&vm).await.unwrap();
    wait_log(&b, &vm, common::MARKER, 60).await;
    let live = b
        .snapshot_create(
            &vm,
            &SnapshotSpec {
                name: "live".into(),
                description: Some("x<y>".into()),
            },
        )
        .await
        .unwrap();
    assert!(live.includes_memory);
    assert_eq!(live.description.as_deref(), Some("x<y>"));
    b.stop(
        &vm,
        StopOptions {
            force: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    b.snapshot_revert(&vm, "live").await.unwrap();
    assert_eq!(b.get(&vm).await.unwrap().state, InstanceState::Running);
    let names: Vec<_> = b
        .snapshot_list(&vm)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["before".to_string(), "live".to_string()]);
    b.snapshot_delete(&vm, "before").await.unwrap();
    cleanup(&b, &vm).await;
    assert!(volumes_named(&b, &vm).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_leaves_nothing_behind() {
    let b = common::qemu().await;
    let p = common::prefix();
    for bad in ["a<b>", "x'y\"z", "a&b", "UPPER", ""] {
        let e = b.create(&common::guest_spec(bad)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    let vm = name("bad");
    let _g = common::Guard::new(URI).vm(&vm);
    let mut spec = common::guest_spec(&vm);
    spec.memory_bytes = Some(1 << 50);
    assert_eq!(
        b.create(&spec).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let mut spec = common::guest_spec(&vm);
    spec.disks.push(DiskSpec {
        size_bytes: Some(1 << 62),
        ..Default::default()
    });
    assert_eq!(
        b.create(&spec).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    // A missing base image after a blank disk was already made: the blank disk goes too.
    let mut spec = common::guest_spec(&vm);
    spec.image = None;
    spec.disks = vec![
        DiskSpec {
            size_bytes: Some(1 << 20),
            ..Default::default()
        },
        DiskSpec {
            base_image: Some(format!("{p}-missing.qcow2")),
            ..Default::default()
        },
    ];
    assert_eq!(
        b.create(&spec).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let mut spec = common::guest_spec(&vm);
    spec.networks = vec![format!("{p}-nonet")];
    assert_eq!(
        b.create(&spec).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // A kernel that is not an absolute path.
    let mut spec = common::guest_spec(&vm);
    if let Some(k) = spec.kernel_boot.as_mut() {
        k.kernel = "../vmlinuz".into();
    }
    assert_eq!(
        b.create(&spec).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert!(volumes_named(&b, &vm).await.is_empty(), "no volume left");
    assert_eq!(b.get(&vm).await.unwrap_err().kind(), ErrorKind::NotFound);
    // Duplicates.
    b.create(&common::guest_spec(&vm)).await.unwrap();
    assert_eq!(
        b.create(&common::guest_spec(&vm)).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    cleanup(&b, &vm).await;
    assert!(volumes_named(&b, &vm).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_pools_and_volumes() {
    let b = common::qemu().await;
    let pool = name("pool");
    let dir = common::scratch().join("pool");
    let created = b
        .pool_create(&StoragePoolSpec {
            name: pool.clone(),
            path: dir.display().to_string(),
            ..Default::default()
        })
        .await
        .expect("pool create");
    assert!(created.active && created.capacity_bytes > 0 && created.available_bytes > 0);
    let vol = format!("{pool}/data.qcow2");
    let v = b
        .volume_create(&VolumeSpec {
            name: vol.clone(),
            size_bytes: Some(8 << 20),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(v.format, Some(DiskFormat::Qcow2));
    assert_eq!(
        b.volume_create(&VolumeSpec {
            name: vol.clone(),
            size_bytes: Some(8 << 20),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .kind(),
        ErrorKind::Conflict
    );
    let grown = b.volume_resize(&vol, 16 << 20).await.unwrap();
    assert_eq!(grown.capacity_bytes, Some(16 << 20));
    assert_eq!(
        qemu_img_info(std::path::Path::new(grown.path.as_ref().unwrap()))["virtual-size"],
        16u64 << 20
    );
    let clone = b
        .volume_clone(&vol, &format!("{pool}/copy.qcow2"))
        .await
        .unwrap();
    assert_eq!(clone.capacity_bytes, Some(16 << 20));
    // Upload a file into a raw volume and read it back from the host.
    let raw = format!("{pool}/blob.raw");
    b.volume_create(&VolumeSpec {
        name: raw.clone(),
        size_bytes: Some(1 << 20),
        format: Some(DiskFormat::Raw),
        ..Default::default()
    })
    .await
    .unwrap();
    let file = common::scratch().join("blob");
    let content: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let up = b.volume_upload(&raw, &file).await.unwrap();
    assert_eq!(std::fs::read(up.path.as_ref().unwrap()).unwrap(), content);
    b.volume_wipe(&raw).await.unwrap();
    assert!(
        std::fs::read(up.path.as_ref().unwrap())
            .unwrap()
            .iter()
            .all(|b| *b == 0),
        "wiped"
    );
    assert_eq!(
        b.pool_delete(&pool).await.unwrap_err().kind(),
        ErrorKind::Conflict,
        "pool not empty"
    );
    for v in [&vol, &format!("{pool}/copy.qcow2"), &raw] {
        b.volume_delete(v, false).await.unwrap();
    }
    b.pool_deactivate(&pool).await.unwrap();
    assert!(!b.pool_inspect(&pool).await.unwrap().active);
    b.pool_activate(&pool).await.unwrap();
    b.pool_delete(&pool).await.unwrap();
    assert_eq!(
        b.pool_inspect(&pool).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Images list base images.
    assert!(
        b.image_list()
            .await
            .unwrap()
            .iter()
            .any(|i| i.tags.contains(&common::BASE_IMAGE.to_string()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovs_bridge_gets_the_vm_as_a_port() {
    let b = common::qemu().await;
    let net = format!("{}o", common::prefix());
    let n = b
        .network_create(&NetworkSpec {
            name: net.clone(),
            driver: Some("ovs".into()),
            ..Default::default()
        })
        .await
        .expect("ovs network (run scripts/ovs.sh)");
    assert_eq!(n.driver, "ovs");
    let vm = name("ovs");
    let _g = common::Guard::new(URI).vm(&vm).net(&net);
    let mut spec = common::guest_spec(&vm);
    spec.networks = vec![net.clone()];
    spec.start = true;
    b.create(&spec).await.expect("create on ovs");
    let ports = std::process::Command::new("ovs-vsctl")
        .args(["list-ports", &net])
        .output()
        .unwrap();
    let ports = String::from_utf8_lossy(&ports.stdout).to_string();
    assert!(
        ports.lines().any(|l| l.starts_with("vnet")),
        "OVS ports: {ports:?}"
    );
    assert_eq!(b.get(&vm).await.unwrap().networks, vec![net.clone()]);
    b.network_disconnect(&net, &vm).await.expect("disconnect");
    assert!(b.get(&vm).await.unwrap().networks.is_empty());
    cleanup(&b, &vm).await;
    b.network_delete(&net).await.unwrap();
    let exists = std::process::Command::new("ovs-vsctl")
        .args(["br-exists", &net])
        .status()
        .unwrap();
    assert!(!exists.success(), "the OVS bridge is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_connect_and_vm_consoles() {
    let b = common::qemu().await;
    let net = name("nat");
    let octet = uuid::Uuid::new_v4().as_bytes()[0];
    let n = b
        .network_create(&NetworkSpec {
            name: net.clone(),
            driver: Some("nat".into()),
            subnet: Some(format!("10.232.{}.0/24", octet)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(n.subnet, Some(format!("10.232.{octet}.0/24")));
    assert_eq!(n.gateway, Some(format!("10.232.{octet}.1")));
    let vm = name("con");
    let _g = common::Guard::new(URI).vm(&vm).net(&net);
    let mut spec = common::guest_spec(&vm);
    spec.start = true;
    b.create(&spec).await.unwrap();
    b.network_connect(&net, &vm).await.unwrap();
    assert_eq!(b.get(&vm).await.unwrap().networks, vec![net.clone()]);
    // VNC on loopback, a PNG screenshot, and the serial console stream.
    let vnc = b.vnc_display(&vm).await.unwrap();
    assert_eq!(vnc.host, "127.0.0.1");
    assert!(vnc.port >= 5900);
    let png = b.screenshot(&vm).await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let mut console = b.console(&vm).await.unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains("LIBGO-GUEST-ALIVE") {
        let chunk = tokio::time::timeout_at(deadline, console.output.next())
            .await
            .expect("console output")
            .expect("open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(console);
    // Live update of memory within the maximum, CPUs in the config.
    let u = b
        .update(
            &vm,
            ResourceUpdate {
                cpus: Some(2),
                memory_bytes: Some(192 << 20),
            },
        )
        .await
        .unwrap();
    assert_eq!(u.memory_bytes, Some(192 << 20));
    cleanup(&b, &vm).await;
    b.network_delete(&net).await.unwrap();
    assert_eq!(
        b.network_inspect(&net).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_fill_the_spec() {
    let b = common::qemu().await;
    let t = Template {
        name: name("tpl"),
        os: Some("libgo-test-guest".into()),
        image: Some(common::BASE_IMAGE.into()),
        cpus: Some(2),
        memory_bytes: Some(160 << 20),
        ..Default::default()
    };
    b.template_create(&t).await.unwrap();
    assert_eq!(
        b.template_create(&t).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert!(
        b.template_list()
            .await
            .unwrap()
            .iter()
            .any(|x| x.name == t.name)
    );
    let vm = name("fromtpl");
    let _g = common::Guard::new(URI).vm(&vm);
    let mut spec = common::guest_spec(&vm);
    spec.image = None;
    spec.cpus = None;
    spec.memory_bytes = None;
    spec.template = Some(t.name.clone());
    let i = b.create(&spec).await.unwrap();
    assert_eq!(i.cpus, Some(2.0));
    assert_eq!(i.memory_bytes, Some(160 << 20));
    assert_eq!(i.image.as_deref(), Some(common::BASE_IMAGE));
    cleanup(&b, &vm).await;
    b.template_delete(&t.name).await.unwrap();
    assert_eq!(
        b.template_get(&t.name).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}
