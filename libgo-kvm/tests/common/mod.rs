//! Shared setup of the libgo-kvm tests. They need what `scripts/libvirt.sh` installs and
//! starts (libvirtd, QEMU, qemu-img, the test guest) and, for OVS, `scripts/ovs.sh`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libgo_core::conformance::Fixture;
use libgo_core::*;
use libgo_kvm::{Accelerator, KvmBackend, KvmConfig};

/// The cached base image every test VM's disk is an overlay on (like Docker's test image,
/// it is kept between runs).
pub const BASE_IMAGE: &str = "libgo-test-base.qcow2";
/// What the test guest prints first on its serial console.
pub const MARKER: &str = "LIBGO-GUEST-READY";

/// Unique per test process: every name a test creates starts with it.
pub fn prefix() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    P.get_or_init(|| {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("lgk{}", &id[..6])
    })
}

pub fn name(suffix: &str) -> String {
    format!("{}-{suffix}", prefix())
}

pub fn guest_dir() -> PathBuf {
    let cache = std::env::var("LIBGO_CACHE").unwrap_or_else(|_| "/var/cache/libgo".into());
    let dir = PathBuf::from(cache).join("guest");
    assert!(
        dir.join("vmlinuz").exists() && dir.join("initrd.img").exists(),
        "the test guest is missing: run scripts/libvirt.sh first"
    );
    dir
}

pub fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("libgo-kvm-{}", prefix()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

pub fn config(uri: &str) -> KvmConfig {
    KvmConfig {
        uri: uri.into(),
        accelerator: Accelerator::Tcg,
        template_dir: scratch().join("templates"),
        default_stop_timeout_secs: 3,
        ..KvmConfig::default()
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber_init();
}

fn tracing_subscriber_init() -> Option<()> {
    None
}

/// A backend on the real libvirtd with TCG, and the cached base image in place.
pub async fn qemu() -> KvmBackend {
    let b = KvmBackend::connect(config("qemu:///system"))
        .await
        .expect("libvirtd answers on qemu:///system (run scripts/libvirt.sh)");
    ensure_base(&b).await;
    b
}

/// A backend on libvirt's in-process test driver.
pub async fn test_driver() -> KvmBackend {
    let b = KvmBackend::connect(config("test:///default"))
        .await
        .expect("test:///default opens");
    ensure_base(&b).await;
    b
}

/// One test of this process makes the base image; the others wait for it to be whole.
/// (Without this, a test that lost the race to create it got `Conflict` while libvirt was
/// still building the volume, and its VM then failed to find the base by path: seen on
/// every machine that had never run the suite.)
static BASE_READY: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

pub async fn ensure_base(b: &KvmBackend) {
    use libgo_core::Volumes;
    let mut ready = BASE_READY.lock().await;
    if *ready && b.volume_inspect(BASE_IMAGE).await.is_ok() {
        return;
    }
    match b.volume_inspect(BASE_IMAGE).await {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let spec = VolumeSpec {
                name: BASE_IMAGE.into(),
                size_bytes: Some(64 << 20),
                format: Some(DiskFormat::Qcow2),
                ..Default::default()
            };
            match b.volume_create(&spec).await {
                Ok(_) => {}
                // Another test of this process made it at the same time.
                Err(e) if e.kind() == ErrorKind::Conflict => {}
                Err(e) => panic!("creating the base image: {e}"),
            }
        }
        Err(e) => panic!("inspecting the base image: {e}"),
    }
    *ready = true;
}

/// A VM spec that boots the test guest directly, with a disk on the base image.
pub fn guest_spec(name: &str) -> InstanceSpec {
    let g = guest_dir();
    let mut spec = InstanceSpec::vm(name);
    spec.image = Some(BASE_IMAGE.into());
    spec.cpus = Some(1);
    spec.memory_bytes = Some(256 << 20);
    spec.kernel_boot = Some(KernelBoot {
        kernel: g.join("vmlinuz").display().to_string(),
        initrd: Some(g.join("initrd.img").display().to_string()),
        cmdline: Some("console=ttyS0 panic=-1 quiet".into()),
    });
    spec
}

pub fn fixture(net_octet: u8) -> Fixture {
    Fixture {
        runnable: guest_spec("replaced"),
        log_marker: MARKER.into(),
        image: BASE_IMAGE.into(),
        volume: VolumeSpec {
            name: "replaced".into(),
            size_bytes: Some(16 << 20),
            format: Some(DiskFormat::Qcow2),
            ..Default::default()
        },
        network: NetworkSpec {
            name: "replaced".into(),
            driver: Some("isolated".into()),
            subnet: Some(format!("10.{net_octet}.{}.0/24", rand_octet())),
            ..Default::default()
        },
        prefix: prefix().to_string(),
        scratch_dir: scratch(),
        boot_timeout: Duration::from_secs(60),
    }
}

fn rand_octet() -> u8 {
    let id = uuid::Uuid::new_v4();
    id.as_bytes()[0]
}

/// Runs `virsh -c URI ARGS...` and returns stdout (no shell involved).
pub fn virsh(uri: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .expect("virsh runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

pub fn arc(b: KvmBackend) -> Arc<dyn Backend> {
    Arc::new(b)
}

/// Removes what a test made even when it panics: VMs (with their storage) and networks,
/// through virsh.
pub struct Guard {
    pub uri: &'static str,
    pub vms: Vec<String>,
    pub networks: Vec<String>,
}

impl Guard {
    pub fn new(uri: &'static str) -> Self {
        Guard {
            uri,
            vms: Vec::new(),
            networks: Vec::new(),
        }
    }
    pub fn vm(mut self, name: &str) -> Self {
        self.vms.push(name.to_string());
        self
    }
    pub fn net(mut self, name: &str) -> Self {
        self.networks.push(name.to_string());
        self
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for vm in &self.vms {
            let (exists, _) = virsh(self.uri, &["dominfo", vm]);
            if exists {
                let _ = virsh(self.uri, &["destroy", vm]);
                let _ = virsh(
                    self.uri,
                    &[
                        "undefine",
                        vm,
                        "--remove-all-storage",
                        "--snapshots-metadata",
                    ],
                );
            }
            // The serial log and its LibGo index (LibGo's delete removes them; virsh not).
            let log = format!("/var/log/libvirt/qemu/{vm}-serial.log");
            let _ = std::fs::remove_file(format!("{log}.libgo-idx"));
            if exists {
                let _ = std::fs::remove_file(&log);
            }
        }
        for n in &self.networks {
            let (exists, _) = virsh(self.uri, &["net-info", n]);
            if exists {
                let _ = virsh(self.uri, &["net-destroy", n]);
                let _ = virsh(self.uri, &["net-undefine", n]);
                let _ = std::process::Command::new("ovs-vsctl")
                    .args(["--if-exists", "del-br", n])
                    .status();
            }
        }
    }
}
