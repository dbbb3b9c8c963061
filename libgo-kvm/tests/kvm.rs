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

/// A backend opened without libvirt's events (what `libgo list` opens) lists what virsh
/// defines and changes, never a stale copy, and says it has no events to give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_without_events_lists_what_virsh_just_changed() {
    let b = KvmBackend::connect(libgo_kvm::KvmConfig {
        events: false,
        ..common::config(URI)
    })
    .await
    .expect("libvirtd answers");
    let vm = name("noev");
    let _g = common::Guard::new(URI).vm(&vm);
    let xml = format!(
        "<domain type='qemu'><name>{vm}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64'>hvm</type></os></domain>"
    );
    let file = common::scratch().join(format!("{vm}.xml"));
    std::fs::write(&file, xml).unwrap();
    let (ok, out) = virsh(URI, &["define", file.to_str().unwrap()]);
    assert!(ok, "{out}");
    let listed = |all: Vec<Instance>| all.into_iter().find(|i| i.name == vm);
    let first = listed(b.list(&InstanceFilter::default()).await.expect("list"))
        .expect("the virsh domain is listed");
    assert_eq!(first.state, InstanceState::Stopped);
    assert_eq!(first.cpus, Some(1.0));
    assert_eq!(first.memory_bytes, Some(64 << 20));
    // Changed behind LibGo's back: the next list says so at once.
    let (ok, out) = virsh(URI, &["setmaxmem", &vm, "96M", "--config"]);
    assert!(ok, "{out}");
    let (ok, out) = virsh(URI, &["setmem", &vm, "96M", "--config"]);
    assert!(ok, "{out}");
    let (ok, out) = virsh(URI, &["setvcpus", &vm, "2", "--config", "--maximum"]);
    assert!(ok, "{out}");
    let (ok, out) = virsh(URI, &["setvcpus", &vm, "2", "--config"]);
    assert!(ok, "{out}");
    let second =
        listed(b.list(&InstanceFilter::default()).await.expect("list")).expect("still listed");
    assert_eq!(second.cpus, Some(2.0));
    assert_eq!(second.memory_bytes, Some(96 << 20));
    assert_eq!(b.get(&vm).await.expect("get").memory_bytes, Some(96 << 20));
    let (ok, out) = virsh(URI, &["undefine", &vm]);
    assert!(ok, "{out}");
    assert!(
        listed(b.list(&InstanceFilter::default()).await.expect("list")).is_none(),
        "an undefined domain is not listed"
    );
    let e = b.events().await.err().expect("no events without libvirt's");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
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
    // Within LibGo's bounds but more than this host has: QEMU could never start it.
    let mut spec = common::guest_spec(&vm);
    spec.memory_bytes = Some(4 << 40);
    let e = b.create(&spec).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("host's memory"), "{e}");
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
    let e = b
        .update(
            &vm,
            ResourceUpdate {
                memory_bytes: Some(4 << 40),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(
        b.get(&vm).await.unwrap().memory_bytes,
        common::guest_spec(&vm).memory_bytes,
        "a refused update changes nothing"
    );
    assert_eq!(
        b.create(&common::guest_spec(&vm)).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    cleanup(&b, &vm).await;
    assert!(volumes_named(&b, &vm).await.is_empty());
}

/// A directory pool on a 4 MiB file system (tmpfs), gone with the guard.
struct SmallPool {
    name: String,
    dir: std::path::PathBuf,
}

impl SmallPool {
    fn new() -> Self {
        let name = name("full");
        let dir = common::scratch().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(mounted.success(), "mount a tmpfs on {}", dir.display());
        SmallPool { name, dir }
    }
}

impl Drop for SmallPool {
    fn drop(&mut self) {
        let _ = virsh(URI, &["pool-destroy", &self.name]);
        let _ = virsh(URI, &["pool-undefine", &self.name]);
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// A raw volume of 1 MiB.
async fn raw_mib(b: &KvmBackend, name: &str) {
    b.volume_create(&VolumeSpec {
        name: name.to_string(),
        size_bytes: Some(1 << 20),
        format: Some(DiskFormat::Raw),
        ..Default::default()
    })
    .await
    .expect("raw volume");
}

/// The peak resident memory of this process so far, in bytes (Linux's VmHWM).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

/// An upload into a full pool is a conflict that says so (not a 500), and the pool still
/// answers after it; a large upload is sent a chunk at a time, not read into memory whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stream_and_a_full_pool_says_it_is_full() {
    let b = common::qemu().await;
    let small = SmallPool::new();
    b.pool_create(&StoragePoolSpec {
        name: small.name.clone(),
        path: small.dir.display().to_string(),
        ..Default::default()
    })
    .await
    .expect("pool on the tmpfs");
    let vol = format!("{}/blob.raw", small.name);
    raw_mib(&b, &vol).await;
    let file = common::scratch().join(format!("{}-8m", small.name));
    let content: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8 | 1).collect();
    std::fs::write(&file, &content).unwrap();
    let e = b
        .volume_upload(&vol, &file)
        .await
        .expect_err("8 MiB do not fit in 4");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.message().contains("full"), "{e}");
    b.volume_delete(&vol, false)
        .await
        .expect("the pool answers after");
    let _ = std::fs::remove_file(&file);

    // 256 MiB into a volume of the default pool: the process does not grow by its size.
    let big = name("big.raw");
    raw_mib(&b, &big).await;
    let file = common::scratch().join(&big);
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        let chunk: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8 | 1).collect();
        for _ in 0..256 {
            f.write_all(&chunk).unwrap();
        }
    }
    let before = peak_rss();
    let up = b.volume_upload(&big, &file).await.expect("upload");
    let grown = peak_rss().saturating_sub(before);
    assert_eq!(up.capacity_bytes, Some(256 << 20));
    assert!(
        grown < 128 << 20,
        "the upload of 256 MiB grew the process by {} MiB",
        grown >> 20
    );
    let path = up.path.expect("path");
    let same = std::process::Command::new("cmp")
        .arg(&path)
        .arg(&file)
        .status()
        .expect("cmp");
    assert!(same.success(), "the volume holds the file's bytes");
    let _ = std::fs::remove_file(&file);
    b.volume_delete(&big, false).await.expect("delete");
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
    // A format qemu-img cannot resize is UNSUPPORTED, not an engine failure.
    let vmdk = format!("{pool}/data.vmdk");
    b.volume_create(&VolumeSpec {
        name: vmdk.clone(),
        size_bytes: Some(8 << 20),
        format: Some(DiskFormat::Vmdk),
        ..Default::default()
    })
    .await
    .expect("vmdk volume");
    let e = b.volume_resize(&vmdk, 16 << 20).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    b.volume_delete(&vmdk, false).await.expect("delete vmdk");
    // A raw file larger than the pool's file system allows (ext4 stops at 16 TiB) is the
    // request's fault, naming sizeBytes, and leaves no volume (found by schemathesis as a 500).
    let huge = format!("{pool}/huge.raw");
    let e = b
        .volume_create(&VolumeSpec {
            name: huge.clone(),
            size_bytes: Some(28_369_780_110_288),
            format: Some(DiskFormat::Raw),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.field()),
        (ErrorKind::InvalidInput, Some("sizeBytes")),
        "{e}"
    );
    assert_eq!(
        b.volume_inspect(&huge)
            .await
            .map(|_| ())
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let raw = format!("{pool}/small.raw");
    b.volume_create(&VolumeSpec {
        name: raw.clone(),
        size_bytes: Some(1 << 20),
        format: Some(DiskFormat::Raw),
        ..Default::default()
    })
    .await
    .expect("raw volume");
    let e = b.volume_resize(&raw, 28_369_780_110_288).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    b.volume_delete(&raw, false).await.expect("delete raw");
    // A qcow2 volume holding internal snapshots (a VM's snapshots live in its disks) that
    // qemu-img will not resize is a conflict with its state, not an engine failure (found by
    // schemathesis as a 500).
    let snapped = format!("{pool}/snapped.qcow2");
    let made = b
        .volume_create(&VolumeSpec {
            name: snapped.clone(),
            size_bytes: Some(8 << 20),
            ..Default::default()
        })
        .await
        .expect("volume to snapshot");
    let path = made.path.clone().expect("a path");
    let snapshot = std::process::Command::new("qemu-img")
        .args(["snapshot", "-c", "held", &path])
        .status()
        .expect("qemu-img runs");
    assert!(snapshot.success());
    match b.volume_resize(&snapped, 16 << 20).await {
        // A qcow2 v3 image with snapshots grows; a v2 one (libvirt's default) does not.
        Ok(grown) => assert_eq!(grown.capacity_bytes, Some(16 << 20)),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
            assert!(e.message().contains("snapshots"), "{e}");
            assert_eq!(
                qemu_img_info(std::path::Path::new(&path))["virtual-size"],
                8u64 << 20,
                "left as it was"
            );
        }
    }
    b.volume_delete(&snapped, false)
        .await
        .expect("delete snapped");
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
    let other = name("con2");
    let _g = common::Guard::new(URI).vm(&vm).vm(&other).net(&net);
    // A second network on a subnet the host has already: a conflict, and nothing left.
    let twin = name("twin");
    let e = b
        .network_create(&NetworkSpec {
            name: twin.clone(),
            driver: Some("nat".into()),
            subnet: Some(format!("10.232.{octet}.0/24")),
            ..Default::default()
        })
        .await
        .expect_err("the subnet is taken");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("in use"), "{e}");
    assert_eq!(
        b.network_inspect(&twin).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let mut spec = common::guest_spec(&vm);
    spec.start = true;
    b.create(&spec).await.unwrap();
    let id = b.get(&vm).await.unwrap().id;
    assert!(b.network_inspect(&net).await.unwrap().instances.is_empty());
    b.network_connect(&net, &vm).await.unwrap();
    assert_eq!(b.get(&vm).await.unwrap().networks, vec![net.clone()]);
    // Inspect lists the attached VMs, running or stopped, by id.
    let mut other_spec = common::guest_spec(&other);
    other_spec.networks = vec![net.clone()];
    let other_id = b.create(&other_spec).await.unwrap().id;
    let mut want = vec![id.clone(), other_id.clone()];
    want.sort();
    assert_eq!(b.network_inspect(&net).await.unwrap().instances, want);
    cleanup(&b, &other).await;
    assert_eq!(
        b.network_inspect(&net).await.unwrap().instances,
        vec![id.clone()]
    );
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
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(u.memory_bytes, Some(192 << 20));
    b.network_disconnect(&net, &vm).await.unwrap();
    assert!(b.network_inspect(&net).await.unwrap().instances.is_empty());
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

async fn run(b: &KvmBackend, vm: &str, command: &[&str]) -> ExecResult {
    b.exec(
        vm,
        &ExecSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    )
    .await
    .expect("exec")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_through_the_guest_agent() {
    let b = common::qemu().await;
    assert!(b.capabilities().exec, "real libvirt offers exec");
    let vm = name("exec");
    let _g = common::Guard::new(URI).vm(&vm);
    let mut spec = common::guest_spec(&vm);
    spec.start = true;
    b.create(&spec).await.expect("create");
    // Right after the start the agent is not up yet: exec waits for it.
    let r = b
        .exec(
            &vm,
            &ExecSpec {
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo \"$GREETING, $WHO\"; echo oops >&2; exit 42".into(),
                ],
                env: [
                    ("GREETING".to_string(), "hello".to_string()),
                    ("WHO".to_string(), "a 'quoted' $(world)".to_string()),
                ]
                .into(),
                ..Default::default()
            },
        )
        .await
        .expect("exec");
    assert_eq!(r.exit_code, 42);
    assert_eq!(r.stdout, "hello, a 'quoted' $(world)\n");
    assert_eq!(r.stderr, "oops\n");
    // Programs found on the agent's PATH even when env is given; exit code 0.
    let r = run(&b, &vm, &["cat", "/proc/cmdline"]).await;
    assert_eq!(r.exit_code, 0);
    assert!(r.stdout.contains("console=ttyS0"), "{r:?}");
    // Arguments are argv, never parsed by a shell: a workdir with metacharacters works and
    // runs nothing.
    let dir = "/tmp/a b'$(touch \"/pwned\")";
    assert_eq!(run(&b, &vm, &["mkdir", "-p", dir]).await.exit_code, 0);
    let r = b
        .exec(
            &vm,
            &ExecSpec {
                command: vec!["pwd".into()],
                workdir: Some(dir.into()),
                ..Default::default()
            },
        )
        .await
        .expect("exec in workdir");
    assert_eq!((r.exit_code, r.stdout.trim_end()), (0, dir));
    assert_ne!(run(&b, &vm, &["ls", "/pwned"]).await.exit_code, 0);
    // A missing program and a missing directory.
    let e = b
        .exec(
            &vm,
            &ExecSpec {
                command: vec!["/no/such/program".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let r = b
        .exec(
            &vm,
            &ExecSpec {
                command: vec!["pwd".into()],
                workdir: Some("/no/such/dir".into()),
                ..Default::default()
            },
        )
        .await
        .expect("exec");
    assert_ne!(r.exit_code, 0);
    // Other users and TTYs are not what the agent offers.
    let e = b
        .exec(
            &vm,
            &ExecSpec {
                command: vec!["id".into()],
                user: Some("nobody".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    // A stopped VM: a conflict, not a missing feature.
    b.stop(
        &vm,
        StopOptions {
            force: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let e = b
        .exec(
            &vm,
            &ExecSpec {
                command: vec!["true".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    cleanup(&b, &vm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_without_an_agent_is_unsupported() {
    let b = KvmBackend::connect(libgo_kvm::KvmConfig {
        agent_wait_secs: 3,
        ..common::config(URI)
    })
    .await
    .expect("connect");
    common::ensure_base(&b).await;
    let true_cmd = ExecSpec {
        command: vec!["true".into()],
        ..Default::default()
    };
    // The guest does not start its agent (libgo.noagent on the kernel command line).
    let vm = name("noagent");
    let novm = name("nochan");
    let _g = common::Guard::new(URI).vm(&vm).vm(&novm);
    let mut spec = common::guest_spec(&vm);
    if let Some(k) = spec.kernel_boot.as_mut() {
        k.cmdline = Some("console=ttyS0 panic=-1 quiet libgo.noagent".into());
    }
    spec.start = true;
    b.create(&spec).await.expect("create");
    wait_log(&b, &vm, "LIBGO-AGENT=none", 60).await;
    let e = b.exec(&vm, &true_cmd).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.message().contains("guest agent"), "{e}");
    let secret = "never-in-an-error-1";
    let e = b
        .guest_password(
            &vm,
            &GuestPassword {
                user: "root".into(),
                password: secret.into(),
                crypted: false,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(!format!("{e} {e:?}").contains(secret), "{e:?}");
    // A VM defined without the agent's channel (by virsh).
    let g = common::guest_dir();
    let xml = format!(
        "<domain type='qemu'><name>{novm}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{}</kernel><initrd>{}</initrd>\
         <cmdline>console=ttyS0 quiet</cmdline></os></domain>",
        g.join("vmlinuz").display(),
        g.join("initrd.img").display()
    );
    let file = common::scratch().join(format!("{novm}.xml"));
    std::fs::write(&file, xml).unwrap();
    let (ok, out) = virsh(URI, &["create", file.to_str().unwrap()]);
    assert!(ok, "{out}");
    let started = std::time::Instant::now();
    let e = b.exec(&novm, &true_cmd).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no channel: answered at once"
    );
    let (ok, out) = virsh(URI, &["destroy", &novm]);
    assert!(ok, "{out}");
    cleanup(&b, &vm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_on_the_test_driver_is_unsupported() {
    let b = common::test_driver().await;
    assert!(!b.capabilities().exec);
    let vm = name("texec");
    let mut spec = InstanceSpec::vm(&vm);
    spec.start = true;
    b.create(&spec).await.unwrap();
    let e = b
        .exec(
            &vm,
            &ExecSpec {
                command: vec!["true".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    b.delete(&vm, true).await.unwrap();
}

async fn log_text(b: &KvmBackend, vm: &str, options: LogOptions) -> (String, Vec<LogEntry>) {
    let mut s = b.logs(vm, options).await.expect("logs");
    let mut entries = Vec::new();
    while let Some(e) = s.next().await {
        entries.push(e.expect("log entry"));
    }
    (
        entries.iter().map(|e| e.message.as_str()).collect(),
        entries,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_log_since_and_until_split_at_a_point_in_time() {
    let b = common::qemu().await;
    let vm = name("since");
    let _g = common::Guard::new(URI).vm(&vm);
    let mut spec = common::guest_spec(&vm);
    spec.start = true;
    b.create(&spec).await.expect("create");
    let say = |text: &'static str| ExecSpec {
        command: vec![
            "sh".into(),
            "-c".into(),
            format!("echo {text} > /dev/ttyS0"),
        ],
        ..Default::default()
    };
    let t0 = chrono::Utc::now();
    assert_eq!(
        b.exec(&vm, &say("LIBGO-BEFORE")).await.unwrap().exit_code,
        0
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let point = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(b.exec(&vm, &say("LIBGO-AFTER")).await.unwrap().exit_code, 0);
    let t1 = chrono::Utc::now();
    wait_log(&b, &vm, "LIBGO-AFTER", 10).await;

    let (since, entries) = log_text(
        &b,
        &vm,
        LogOptions {
            since: Some(point),
            ..Default::default()
        },
    )
    .await;
    assert!(
        since.contains("LIBGO-AFTER") && !since.contains("LIBGO-BEFORE"),
        "{since}"
    );
    assert!(
        !since.contains(common::MARKER),
        "the boot is before: {since}"
    );
    let after = entries
        .iter()
        .find(|e| e.message.contains("LIBGO-AFTER"))
        .unwrap();
    let t = after.timestamp.expect("a line LibGo saw arrive has a time");
    assert!(
        t > point && t <= t1 + chrono::Duration::milliseconds(600),
        "{t} vs {point}..{t1}"
    );

    let (until, entries) = log_text(
        &b,
        &vm,
        LogOptions {
            until: Some(point),
            ..Default::default()
        },
    )
    .await;
    assert!(
        until.contains("LIBGO-BEFORE") && !until.contains("LIBGO-AFTER"),
        "{until}"
    );
    assert!(until.contains(common::MARKER), "{until}");
    let before = entries
        .iter()
        .find(|e| e.message.contains("LIBGO-BEFORE"))
        .unwrap();
    let t = before.timestamp.expect("timed");
    assert!(t >= t0 && t < point, "{t} vs {t0}..{point}");

    // A window around the first line, with times as prefixes; tail applies after the filter.
    let (window, _) = log_text(
        &b,
        &vm,
        LogOptions {
            since: Some(t0),
            until: Some(point),
            timestamps: true,
            ..Default::default()
        },
    )
    .await;
    assert!(!window.contains("LIBGO-AFTER"), "{window}");
    let day = t0.format("%Y-%m-%dT").to_string();
    assert!(
        window
            .lines()
            .any(|l| l.starts_with(&day) && l.ends_with("Z LIBGO-BEFORE")),
        "{window}"
    );
    let (last, _) = log_text(
        &b,
        &vm,
        LogOptions {
            until: Some(point),
            tail: Some(1),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(last.lines().count(), 1, "{last}");
    assert!(
        until.ends_with(&last),
        "{last} is the last line before the point"
    );
    // `until` before `since` is a mistake.
    let e = b
        .logs(
            &vm,
            LogOptions {
                since: Some(point),
                until: Some(t0),
                ..Default::default()
            },
        )
        .await
        .err()
        .expect("until before since");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    // Follow with `until` in the past ends after what is there.
    let (followed, _) = tokio::time::timeout(
        Duration::from_secs(10),
        log_text(
            &b,
            &vm,
            LogOptions {
                follow: true,
                until: Some(point),
                ..Default::default()
            },
        ),
    )
    .await
    .expect("a follow until a past time ends");
    assert!(followed.contains("LIBGO-BEFORE") && !followed.contains("LIBGO-AFTER"));
    cleanup(&b, &vm).await;
    let log = format!("/var/log/libvirt/qemu/{vm}-serial.log");
    assert!(!std::path::Path::new(&log).exists());
    assert!(!std::path::Path::new(&format!("{log}.libgo-idx")).exists());
}

/// A remote URI: libvirt's remote protocol over TCP on loopback (scripts/test.sh has
/// scripts/libvirt.sh serve it). The same VM verbs work; what reads files on the libvirt
/// host (serial logs, export) says it needs a local URI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_uri_drives_the_same_vms() {
    let remote = KvmBackend::connect(common::config("qemu+tcp://127.0.0.1/system"))
        .await
        .expect(
            "libvirt's remote protocol on 127.0.0.1:16509 (LIBGO_LIBVIRT_TCP=1 scripts/libvirt.sh)",
        );
    let local = common::qemu().await;
    common::ensure_base(&local).await;
    let vm = common::name("remote");
    let created = remote
        .create(&common::guest_spec(&vm))
        .await
        .expect("create over tcp");
    // The local connection sees what the remote one made: one libvirtd behind both.
    assert_eq!(local.get(&vm).await.expect("seen locally").id, created.id);
    remote.start(&vm).await.expect("start");
    assert_eq!(
        remote.get(&vm).await.expect("get").state,
        InstanceState::Running
    );
    assert!(
        remote
            .list(&InstanceFilter::default())
            .await
            .expect("list")
            .iter()
            .any(|i| i.name == vm)
    );
    let logs = remote.logs(&vm, LogOptions::default()).await;
    assert_eq!(logs.err().map(|e| e.kind()), Some(ErrorKind::Unsupported));
    remote
        .stop(
            &vm,
            StopOptions {
                timeout_secs: None,
                force: true,
            },
        )
        .await
        .expect("stop");
    let dest = common::scratch().join(format!("{vm}.qcow2"));
    let export = remote
        .export(
            &vm,
            &ExportSpec {
                format: ExportFormat::Qcow2,
                destination: dest.clone(),
            },
            ProgressSink::none(),
        )
        .await;
    assert_eq!(export.err().map(|e| e.kind()), Some(ErrorKind::Unsupported));
    assert!(!dest.exists());
    remote.delete(&vm, false).await.expect("delete");
    assert_eq!(
        local.get(&vm).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(
        volumes_named(&local, &vm).await.is_empty(),
        "its volumes went with it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_lists_survive_concurrent_deletes() {
    let b = std::sync::Arc::new(common::qemu().await);
    let names: Vec<String> = (0..30).map(|i| name(&format!("race{i}.qcow2"))).collect();
    for n in &names {
        b.volume_create(&VolumeSpec {
            name: n.clone(),
            size_bytes: Some(1 << 20),
            ..Default::default()
        })
        .await
        .expect("volume create");
    }
    // Another client deletes them one by one while this one lists; each delete waits for
    // one more finished list, so the two always overlap however slow a list is.
    let (lists_done, mut lists_seen) = tokio::sync::watch::channel(0usize);
    let deleter = tokio::spawn({
        let b = b.clone();
        let names = names.clone();
        async move {
            for (i, n) in names.iter().enumerate() {
                lists_seen
                    .wait_for(|done| *done > i)
                    .await
                    .expect("the lister is alive");
                b.volume_delete(n, false).await.expect("volume delete");
            }
        }
    });
    let mut lists = 0;
    while !deleter.is_finished() {
        let listed = b.volume_list().await;
        assert!(listed.is_ok(), "a list during deletes failed: {listed:?}");
        lists += 1;
        lists_done.send_replace(lists);
    }
    deleter.await.expect("deleter");
    let left: Vec<String> = b
        .volume_list()
        .await
        .expect("volume list")
        .into_iter()
        .map(|v| v.name)
        .filter(|n| names.contains(n))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(lists >= names.len(), "the lists ran alongside the deletes");
}

/// A raw volume whose guest wrote a qcow2 header naming a host file as its backing file:
/// libvirt then reports it as qcow2, and a VM given that volume would read the host file.
/// LibGo follows the chain first and refuses, creating nothing; an export checks likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_written_backing_file_outside_the_pools_is_refused() {
    let b = common::qemu().await;
    let vol = format!("{}.img", name("chain"));
    let created = b
        .volume_create(&VolumeSpec {
            name: vol.clone(),
            size_bytes: Some(16 << 20),
            format: Some(DiskFormat::Raw),
            ..Default::default()
        })
        .await
        .expect("raw volume");
    let path = created.path.clone().expect("path");
    // What a guest can write into its raw disk: a qcow2 header with a host backing file.
    let out = std::process::Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "/etc/hostname",
            "-F",
            "raw",
            &path,
        ])
        .output()
        .expect("qemu-img");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another client may be refreshing the pool at the same moment: try again then.
    let mut refreshed = (false, String::new());
    for _ in 0..10 {
        refreshed = virsh(URI, &["pool-refresh", "default"]);
        if refreshed.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(refreshed.0, "{}", refreshed.1);
    let reported = b.volume_inspect(&vol).await.expect("inspect");
    assert_eq!(
        reported.format,
        Some(DiskFormat::Qcow2),
        "libvirt probed the header"
    );

    let vm = name("chain-vm");
    let mut spec = InstanceSpec::vm(&vm);
    spec.memory_bytes = Some(64 << 20);
    spec.disks = vec![DiskSpec {
        volume: Some(vol.clone()),
        ..Default::default()
    }];
    let e = b.create(&spec).await.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("/etc/hostname"), "{e}");
    assert_eq!(b.get(&vm).await.unwrap_err().kind(), ErrorKind::NotFound);
    // The same volume as a base image is refused too.
    let mut spec = InstanceSpec::vm(&vm);
    spec.memory_bytes = Some(64 << 20);
    spec.image = Some(vol.clone());
    let e = b.create(&spec).await.expect_err("refused as a base");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(b.get(&vm).await.unwrap_err().kind(), ErrorKind::NotFound);
    // Over a remote URI qemu-img here cannot read the host's files: libvirt's own reading
    // of the header is followed instead, with the same answer, as a disk and as a base.
    let remote = KvmBackend::connect(common::config("qemu+tcp://127.0.0.1/system"))
        .await
        .expect("libvirt's remote protocol (LIBGO_LIBVIRT_TCP=1 scripts/libvirt.sh)");
    let mut spec = InstanceSpec::vm(&vm);
    spec.memory_bytes = Some(64 << 20);
    spec.disks = vec![DiskSpec {
        volume: Some(vol.clone()),
        ..Default::default()
    }];
    let e = remote.create(&spec).await.expect_err("refused remotely");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("/etc/hostname"), "{e}");
    let mut spec = InstanceSpec::vm(&vm);
    spec.memory_bytes = Some(64 << 20);
    spec.image = Some(vol.clone());
    let e = remote
        .create(&spec)
        .await
        .expect_err("refused remotely as a base");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(b.get(&vm).await.unwrap_err().kind(), ErrorKind::NotFound);
    b.volume_delete(&vol, true).await.expect("delete");
}

/// A rename and autostart change what libvirt holds: the domain answers by its new name
/// with the same UUID, and `virsh dominfo` shows autostart; a running VM is not renamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_autostart_reach_libvirt() {
    let b = common::qemu().await;
    let vm = name("ren");
    let renamed = name("ren2");
    let _g = common::Guard::new(URI).vm(&vm).vm(&renamed);
    let made = b.create(&common::guest_spec(&vm)).await.expect("create");
    let after = b
        .update(
            &vm,
            ResourceUpdate {
                name: Some(renamed.clone()),
                autostart: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(after.name, renamed);
    let (ok, uuid) = virsh(URI, &["domuuid", &renamed]);
    assert!(ok, "{uuid}");
    assert_eq!(uuid.trim(), made.id);
    let (_, info) = virsh(URI, &["dominfo", &renamed]);
    assert!(
        info.lines()
            .any(|l| l.starts_with("Autostart:") && l.contains("enable")),
        "{info}"
    );
    let (gone, _) = virsh(URI, &["domstate", &vm]);
    assert!(!gone, "the old name still answers");
    b.start(&renamed).await.expect("start");
    let e = b
        .update(
            &renamed,
            ResourceUpdate {
                name: Some(vm.clone()),
                ..Default::default()
            },
        )
        .await
        .expect_err("a running VM keeps its name");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    cleanup(&b, &renamed).await;
}

/// Runs `command` in the guest until its output is `expected` (hot-plug reaches the guest
/// a moment after libvirt answers).
async fn guest_says(b: &KvmBackend, vm: &str, command: &[&str], expected: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let r = run(b, vm, command).await;
        if r.stdout.trim() == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{command:?} in the guest: {r:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An ISO with one file, made by genisoimage (scripts/test-tools.sh installs it), uploaded
/// into the default pool as `name`.
async fn iso_volume(b: &KvmBackend, name: &str, text: &str) {
    let dir = common::scratch().join(name);
    std::fs::create_dir_all(dir.join("content")).expect("dir");
    std::fs::write(dir.join("content/hello.txt"), text).expect("file");
    let iso = dir.join("media.iso");
    let ok = std::process::Command::new("genisoimage")
        .args(["-quiet", "-r", "-V", "LIBGO", "-o"])
        .arg(&iso)
        .arg(dir.join("content"))
        .status()
        .expect("genisoimage runs (scripts/test-tools.sh installs it)")
        .success();
    assert!(ok, "genisoimage");
    let len = std::fs::metadata(&iso).expect("iso").len();
    b.volume_create(&VolumeSpec {
        name: name.into(),
        // Volumes are at least 1 MiB; the ISO's file system ignores the zeros past it.
        size_bytes: Some(len.max(1 << 20)),
        format: Some(DiskFormat::Raw),
        ..Default::default()
    })
    .await
    .expect("iso volume");
    b.volume_upload(name, &iso).await.expect("upload iso");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disks_and_media_change_a_running_guest() {
    let b = common::qemu().await;
    let vm = name("disks");
    let iso = format!("{}.iso", name("media"));
    let disk_volume = format!("{vm}-vdb.qcow2");
    let _g = common::Guard::new(URI).vm(&vm);
    let mut spec = common::guest_spec(&vm);
    spec.start = true;
    b.create(&spec).await.expect("create");
    assert_eq!(
        run(&b, &vm, &["true"]).await.exit_code,
        0,
        "the agent answers"
    );
    let size_of_vdb = ["cat", "/sys/block/vdb/size"];
    let vdb_state = [
        "sh",
        "-c",
        "test -e /sys/block/vdb && echo present || echo gone",
    ];

    // A new 32 MiB disk, hot-plugged: the guest sees vdb with 65536 sectors of 512 bytes.
    let d = b
        .disk_attach(
            &vm,
            &DiskAttach {
                size_bytes: Some(32 << 20),
                ..Default::default()
            },
        )
        .await
        .expect("attach a new disk");
    assert_eq!(
        (d.target.as_str(), d.device.as_str(), d.bus.as_str()),
        ("vdb", "disk", "virtio")
    );
    assert_eq!(d.size_bytes, Some(32 << 20));
    assert_eq!(d.volume.as_deref(), Some(disk_volume.as_str()));
    guest_says(&b, &vm, &size_of_vdb, "65536").await;
    let (_, config) = virsh(URI, &["domblklist", &vm, "--inactive"]);
    assert!(
        config.contains("vdb"),
        "kept in the configuration: {config}"
    );
    let listed = b.disk_list(&vm).await.expect("disk list");
    assert_eq!(
        listed.iter().map(|d| d.target.as_str()).collect::<Vec<_>>(),
        ["vda", "vdb"]
    );

    // Grown online: the guest sees the new size at once.
    let d = b
        .disk_resize(
            &vm,
            "vdb",
            &DiskResize {
                size_bytes: 64 << 20,
                allow_shrink: false,
            },
        )
        .await
        .expect("grow online");
    assert_eq!(d.size_bytes, Some(64 << 20));
    guest_says(&b, &vm, &size_of_vdb, "131072").await;
    // Shrinking a running VM's disk is refused, even when allowed, and changes nothing.
    let e = b
        .disk_resize(
            &vm,
            "vdb",
            &DiskResize {
                size_bytes: 16 << 20,
                allow_shrink: true,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    guest_says(&b, &vm, &size_of_vdb, "131072").await;
    // The volume is in use: attaching it again is refused.
    let e = b
        .disk_attach(
            &vm,
            &DiskAttach {
                volume: Some(disk_volume.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.message().contains(&vm), "names its user: {e}");
    // A SATA disk cannot be hot-plugged.
    let e = b
        .disk_attach(
            &vm,
            &DiskAttach {
                size_bytes: Some(1 << 20),
                bus: Some(DiskBus::Sata),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(volumes_named(&b, &format!("{vm}-sd")).await.is_empty());

    // Detached: gone from the guest and the configuration; its volume stays, and attaches
    // again by name with its data's size.
    b.disk_detach(&vm, "vdb").await.expect("detach");
    guest_says(&b, &vm, &vdb_state, "gone").await;
    let (_, config) = virsh(URI, &["domblklist", &vm, "--inactive"]);
    assert!(!config.contains("vdb"), "{config}");
    assert_eq!(
        b.disk_detach(&vm, "vdb").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let d = b
        .disk_attach(
            &vm,
            &DiskAttach {
                volume: Some(disk_volume.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("attach by name");
    assert_eq!(d.target, "vdb");
    guest_says(&b, &vm, &size_of_vdb, "131072").await;
    b.disk_detach(&vm, "vdb").await.expect("detach again");
    guest_says(&b, &vm, &vdb_state, "gone").await;

    // Media: a running VM without a CD-ROM drive gets none; shut off, the drive is added.
    iso_volume(&b, &iso, "libgo-media-ok").await;
    let insert = MediaInsert { image: iso.clone() };
    let e = b.media_insert(&vm, &insert).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    b.stop(&vm, StopOptions::default()).await.expect("stop");
    let cd = b
        .media_insert(&vm, &insert)
        .await
        .expect("insert, adding a drive");
    assert_eq!(cd.device, "cdrom");
    assert_eq!(cd.volume.as_deref(), Some(iso.as_str()));
    b.start(&vm).await.expect("start");
    let read_cd = [
        "sh",
        "-c",
        "mkdir -p /cd; mount -t iso9660 -o ro /dev/sr0 /cd 2>/dev/null && cat /cd/hello.txt; umount /cd 2>/dev/null; true",
    ];
    guest_says(&b, &vm, &read_cd, "libgo-media-ok").await;
    // Ejected from the running guest: the drive reads as empty; inserted again, it reads.
    b.media_eject(&vm).await.expect("eject");
    guest_says(&b, &vm, &read_cd, "").await;
    let listed = b.disk_list(&vm).await.expect("disk list");
    let drive = listed.iter().find(|d| d.device == "cdrom").expect("drive");
    assert_eq!(drive.path, None, "empty drive: {drive:?}");
    b.media_insert(&vm, &insert).await.expect("insert live");
    guest_says(&b, &vm, &read_cd, "libgo-media-ok").await;
    // A CD-ROM is not resized, and a running VM's drive is not removed.
    let e = b
        .disk_resize(
            &vm,
            &cd.target,
            &DiskResize {
                size_bytes: 64 << 20,
                allow_shrink: false,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(
        b.disk_detach(&vm, &cd.target).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );

    cleanup(&b, &vm).await;
    for v in [&disk_volume, &iso] {
        b.volume_delete(v, false).await.expect("delete volume");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_password_is_set_through_the_agent() {
    let b = common::qemu().await;
    let vm = name("passwd");
    let _g = common::Guard::new(URI).vm(&vm);
    let mut spec = common::guest_spec(&vm);
    spec.start = true;
    b.create(&spec).await.expect("create");
    let root_entry = ["sh", "-c", "grep ^root: /etc/shadow | cut -d: -f2"];
    guest_says(&b, &vm, &root_entry, "*").await;
    let set = |user: &str, password: &str, crypted: bool| GuestPassword {
        user: user.into(),
        password: password.into(),
        crypted,
    };
    b.guest_password(&vm, &set("root", "Correct-Horse-7", false))
        .await
        .expect("set the password");
    let hash = run(&b, &vm, &root_entry).await.stdout.trim().to_string();
    assert!(
        hash.starts_with("$6$"),
        "a SHA-512 crypt in /etc/shadow: {hash:?}"
    );
    // Checked in the guest: the hash is of that password.
    let salt = hash.split('$').nth(2).expect("salt").to_string();
    let again = run(
        &b,
        &vm,
        &["mkpasswd", "-m", "sha512", "-S", &salt, "Correct-Horse-7"],
    )
    .await;
    assert_eq!(again.stdout.trim(), hash);
    // A hash is set as it is.
    let given = "$6$libgotest$Qf2XyHk6Yf3b1Q8bZ8b2yQ0V9y5j8Yw3n1H2m4K5L6M7N8O9P0Q1R2S3T4U5V6W7X8Y9Z0a1b2c3d4e5f6g7h8";
    b.guest_password(&vm, &set("root", given, true))
        .await
        .expect("set a hash");
    guest_says(&b, &vm, &root_entry, given).await;
    // A user the guest lacks: refused, and the password is in no error.
    let e = b
        .guest_password(&vm, &set("nobody", "Not-In-Errors-9", false))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(!format!("{e} {e:?}").contains("Not-In-Errors-9"), "{e:?}");
    guest_says(&b, &vm, &root_entry, given).await;
    cleanup(&b, &vm).await;
}

/// The `<boot dev=…>` entries of a domain's persistent definition, in order.
fn boot_devs(vm: &str) -> Vec<String> {
    let (ok, xml) = virsh(URI, &["dumpxml", "--inactive", vm]);
    assert!(ok, "{xml}");
    xml.split("<boot dev='")
        .skip(1)
        .filter_map(|s| s.split('\'').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_order_in_the_spec_and_by_update() {
    let b = common::qemu().await;
    let vm = name("boot");
    let _g = common::Guard::new(URI).vm(&vm);
    let mut spec = InstanceSpec::vm(&vm);
    spec.memory_bytes = Some(128 << 20);
    spec.disks = vec![DiskSpec {
        size_bytes: Some(16 << 20),
        ..Default::default()
    }];
    spec.boot = vec![BootDevice::Cdrom, BootDevice::Disk];
    b.create(&spec).await.expect("create");
    assert_eq!(boot_devs(&vm), ["cdrom", "hd"]);
    let order = |devs: Vec<BootDevice>| ResourceUpdate {
        boot: Some(devs),
        ..Default::default()
    };
    b.update(&vm, order(vec![BootDevice::Network, BootDevice::Disk]))
        .await
        .expect("new order");
    assert_eq!(boot_devs(&vm), ["network", "hd"]);
    // A device twice is refused, and nothing changes.
    let e = b
        .update(&vm, order(vec![BootDevice::Disk, BootDevice::Disk]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(boot_devs(&vm), ["network", "hd"]);
    cleanup(&b, &vm).await;
    // A direct kernel boot has no firmware boot order.
    let guest = name("boot-k");
    let mut spec = common::guest_spec(&guest);
    spec.boot = vec![BootDevice::Cdrom];
    let e = b.create(&spec).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(e.field(), Some("boot"));
    let _g2 = common::Guard::new(URI).vm(&guest);
    b.create(&common::guest_spec(&guest)).await.expect("create");
    let e = b
        .update(&guest, order(vec![BootDevice::Disk]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    cleanup(&b, &guest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinstall_resets_the_root_disk_and_keeps_the_others() {
    let b = common::qemu().await;
    let vm = name("reinst");
    let data = format!("{vm}-vdb.qcow2");
    let _g = common::Guard::new(URI).vm(&vm);
    let mut spec = common::guest_spec(&vm);
    spec.start = true;
    b.create(&spec).await.expect("create");
    b.disk_attach(
        &vm,
        &DiskAttach {
            size_bytes: Some(16 << 20),
            ..Default::default()
        },
    )
    .await
    .expect("a data disk");
    let write = |dev: &str| {
        format!(
            "printf libgo-mark-{dev} | dd of=/dev/{dev} bs=512 count=1 conv=sync 2>/dev/null; sync"
        )
    };
    let read = |dev: &str| format!("head -c 16 /dev/{dev} | tr -d '\\000'");
    for dev in ["vda", "vdb"] {
        assert_eq!(run(&b, &vm, &["sh", "-c", &write(dev)]).await.exit_code, 0);
        guest_says(
            &b,
            &vm,
            &["sh", "-c", &read(dev)],
            &format!("libgo-mark-{dev}"),
        )
        .await;
    }
    let after = b
        .reinstall(&vm, &ReinstallSpec::default())
        .await
        .expect("reinstall");
    assert_eq!(after.state, InstanceState::Running);
    // The root disk is the image again (blank); the data disk kept its bytes.
    guest_says(&b, &vm, &["sh", "-c", &read("vda")], "").await;
    guest_says(&b, &vm, &["sh", "-c", &read("vdb")], "libgo-mark-vdb").await;
    // With snapshots (kept in the root disk) it is refused, and nothing changes.
    b.stop(&vm, StopOptions::default()).await.expect("stop");
    b.snapshot_create(
        &vm,
        &SnapshotSpec {
            name: "keep".into(),
            description: None,
        },
    )
    .await
    .expect("snapshot");
    let e = b
        .reinstall(&vm, &ReinstallSpec::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    b.snapshot_delete(&vm, "keep")
        .await
        .expect("delete snapshot");
    b.disk_detach(&vm, "vdb").await.expect("detach");
    cleanup(&b, &vm).await;
    b.volume_delete(&data, false)
        .await
        .expect("delete the data disk");
}
