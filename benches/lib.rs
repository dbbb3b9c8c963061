//! Shared set-up of LibGo's benchmarks (`cargo bench -p libgo-benches`).

/// The busybox image `scripts/docker.sh` builds.
pub const IMAGE: &str = "libgo-test/busybox:latest";

/// A fresh lowercase name.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..10])
}
