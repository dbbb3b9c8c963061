//! Shared set-up of the Docker tests: they run against the real dockerd that
//! `scripts/docker.sh` starts, with the locally built busybox image.
#![allow(dead_code)]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use libgo_core::conformance::Fixture;
use libgo_core::{Backend, InstanceSpec, NetworkSpec, VolumeSpec};
use libgo_docker::{DockerBackend, DockerConfig};

/// The test image `scripts/docker.sh` builds from Debian's busybox.
pub const IMAGE: &str = "libgo-test/busybox:latest";
/// The local registry `scripts/docker.sh` starts.
pub const REGISTRY: &str = "127.0.0.1:5000";

/// Runs the docker CLI against the same dockerd; its trimmed stdout, or a panic with its
/// stderr.
pub fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A fresh lowercase prefix so that reruns never collide with leftovers.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..10])
}

pub fn backend() -> Arc<DockerBackend> {
    Arc::new(DockerBackend::connect("docker", DockerConfig::default()).expect("docker backend"))
}

/// A container that traps TERM (so a graceful stop is quick), prints a marker and idles.
pub fn runnable(name: &str) -> InstanceSpec {
    let mut spec = InstanceSpec::container(name, IMAGE);
    spec.command = vec![
        "sh".into(),
        "-c".into(),
        "trap 'exit 0' TERM; echo libgo-ready; while true; do sleep 1; done".into(),
    ];
    spec
}

pub async fn conformance_setup() -> (Arc<dyn Backend>, Fixture) {
    let scratch = std::env::temp_dir().join(unique("libgo-scratch"));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let fixture = Fixture {
        runnable: runnable("unused"),
        log_marker: "libgo-ready".into(),
        image: IMAGE.into(),
        volume: VolumeSpec::default(),
        network: NetworkSpec::default(),
        prefix: unique("cf"),
        scratch_dir: scratch,
        boot_timeout: Duration::from_secs(30),
    };
    (backend(), fixture)
}
