//! # libgo-docker
//!
//! LibGo's Docker backend: containers, images, networks and volumes behind
//! [`libgo_core::Backend`], through [bollard](https://docs.rs/bollard).
//!
//! ```no_run
//! use std::sync::Arc;
//! use libgo_core::{DeleteOptions, InstanceSpec, LibGo, StopOptions};
//! use libgo_docker::{DockerBackend, DockerConfig};
//!
//! # async fn demo() -> libgo_core::Result<()> {
//! let libgo = LibGo::new();
//! libgo.register(Arc::new(DockerBackend::connect("docker", DockerConfig::default())?))?;
//! let mut spec = InstanceSpec::container("hello", "busybox:latest");
//! spec.command = vec!["sleep".into(), "60".into()];
//! spec.start = true;
//! libgo.create(&spec).await?;
//! libgo.delete("hello", DeleteOptions { force: true }).await?;
//! # Ok(()) }
//! ```
//!
//! The connection is made lazily and the API version negotiated on first use, so a backend
//! can be built while dockerd is down; calls then answer `Unavailable` until it is up.
#![deny(missing_docs)]

mod compute;
mod convert;
mod feed;
mod images;
mod migrate;
mod ping;
mod resources;

use std::collections::HashMap;
use std::time::Instant;

use chrono::{DateTime, Utc};

use async_trait::async_trait;
use bollard::Docker;
use libgo_core::{
    Backend, BackendInfo, Capabilities, Error, ErrorKind, ExportFormat, Health, InstanceKind,
    Result,
};
use tokio::sync::OnceCell;

/// Label LibGo puts on containers to remember the image they were created from, which a
/// snapshot revert replaces.
pub(crate) const LABEL_IMAGE: &str = "io.libgo.image";
/// Label on snapshot images naming the container they belong to.
pub(crate) const LABEL_SNAPSHOT_OF: &str = "io.libgo.snapshot.of";
/// Label on snapshot images with the snapshot's name.
pub(crate) const LABEL_SNAPSHOT_NAME: &str = "io.libgo.snapshot.name";
/// Label on snapshot images naming the snapshot that was current when it was taken.
pub(crate) const LABEL_SNAPSHOT_PARENT: &str = "io.libgo.snapshot.parent";
/// Label on a container made by a snapshot revert, naming that snapshot.
pub(crate) const LABEL_SNAPSHOT_CURRENT: &str = "io.libgo.snapshot.current";
/// Repository of snapshot images.
pub(crate) const SNAPSHOT_REPO: &str = "libgo-snapshots";

/// Whether a Docker network driver puts containers on the host's own interfaces.
pub(crate) fn host_attached_driver(driver: Option<&str>) -> bool {
    matches!(driver, Some("host" | "macvlan" | "ipvlan"))
}

/// A container's CPU nanoseconds, the host's, and when they were read.
pub(crate) type CpuSample = (u64, u64, DateTime<Utc>);

/// How to reach dockerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    /// `unix:///path`, `tcp://host:port` or `http://host:port`. `DOCKER_HOST`, else the local
    /// socket, when `None`.
    pub host: Option<String>,
    /// Seconds to wait for an answer to one request.
    pub timeout_secs: u64,
    /// Client certificate, key and CA for a `tcp://` daemon that wants TLS (`--tlsverify`).
    pub tls: Option<DockerTls>,
}

/// The files of a TLS connection to dockerd, PEM encoded (Docker's `ca.pem`, `cert.pem`,
/// `key.pem`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerTls {
    /// The CA that signed the daemon's certificate.
    pub ca: std::path::PathBuf,
    /// LibGo's client certificate.
    pub cert: std::path::PathBuf,
    /// Its private key.
    pub key: std::path::PathBuf,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            host: std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()),
            timeout_secs: 120,
            tls: None,
        }
    }
}

/// The Docker backend.
pub struct DockerBackend {
    name: String,
    endpoint: String,
    timeout_secs: u64,
    tls: Option<DockerTls>,
    client: OnceCell<Docker>,
    /// Last one-shot CPU sample per container: (container ns, host ns, time), so that the
    /// next one-shot call can report the CPU use in between.
    cpu_samples: std::sync::Mutex<HashMap<String, CpuSample>>,
    /// Tells the change feed when dockerd restarted.
    restart_watch: feed::RestartWatch,
}

impl std::fmt::Debug for DockerBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerBackend")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl DockerBackend {
    /// A backend named `name` for the dockerd that `config` points at. Nothing is sent yet.
    pub fn connect(name: &str, config: DockerConfig) -> Result<Self> {
        libgo_core::validate::name("backend name", name)?;
        let endpoint = config
            .host
            .clone()
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        if !["unix://", "tcp://", "http://"]
            .iter()
            .any(|scheme| endpoint.starts_with(scheme))
        {
            return Err(Error::invalid(format!(
                "unsupported Docker host {endpoint:?}: use unix://, tcp:// or http://"
            )));
        }
        if config.tls.is_some() && !endpoint.starts_with("tcp://") {
            return Err(Error::invalid(format!(
                "TLS needs a tcp:// Docker host, not {endpoint:?}"
            )));
        }
        Ok(DockerBackend {
            name: name.to_string(),
            endpoint,
            timeout_secs: config.timeout_secs,
            tls: config.tls,
            client: OnceCell::new(),
            cpu_samples: Default::default(),
            restart_watch: Default::default(),
        })
    }

    /// The client, with the API version negotiated with dockerd (once it answers).
    pub(crate) async fn docker(&self) -> Result<&Docker> {
        self.client
            .get_or_try_init(|| async {
                let h = self.endpoint.as_str();
                if let Some(path) = h.strip_prefix("unix://")
                    && let Some(version) = ping::unix_api_version(path).await
                {
                    tracing::debug!(backend = %self.name, api = %version, "Docker API version from /_ping");
                    return Docker::connect_with_unix(h, self.timeout_secs, &version)
                        .map_err(|e| self.error(e));
                }
                let client = if h.starts_with("unix://") {
                    Docker::connect_with_unix(h, self.timeout_secs, bollard::API_DEFAULT_VERSION)
                } else if let Some(tls) = &self.tls {
                    Docker::connect_with_ssl(
                        h,
                        &tls.key,
                        &tls.cert,
                        &tls.ca,
                        self.timeout_secs,
                        bollard::API_DEFAULT_VERSION,
                    )
                } else {
                    Docker::connect_with_http(h, self.timeout_secs, bollard::API_DEFAULT_VERSION)
                }
                .map_err(|e| self.error(e))?;
                let negotiated = client
                    .negotiate_version()
                    .await
                    .map_err(|e| self.error(e))?;
                tracing::debug!(
                    backend = %self.name,
                    api = %negotiated.client_version(),
                    "negotiated Docker API version"
                );
                Ok::<_, Error>(negotiated)
            })
            .await
    }

    /// Asks dockerd whether it answers: the API version negotiation (one `GET /_ping` on a
    /// unix socket, else one `GET /version`), which every later call needs anyway.
    pub async fn check(&self) -> Result<()> {
        self.docker().await.map(|_| ())
    }

    /// Maps a bollard error to a LibGo error naming this backend.
    pub(crate) fn error(&self, e: bollard::errors::Error) -> Error {
        map_error(e).with_context("backend", self.name.clone())
    }
}

/// Maps a bollard error to a LibGo error kind.
pub(crate) fn map_error(e: bollard::errors::Error) -> Error {
    use bollard::errors::Error as B;
    let (kind, message) = match &e {
        B::DockerResponseServerError {
            status_code,
            message,
        } => {
            let kind = match status_code {
                400 => ErrorKind::InvalidInput,
                401 => ErrorKind::Unauthorized,
                403 => ErrorKind::Forbidden,
                404 => ErrorKind::NotFound,
                304 | 409 => ErrorKind::Conflict,
                503 => ErrorKind::Unavailable,
                // dockerd reports a registry's refusals as 500; its message tells which.
                _ => stream_error_kind(message),
            };
            (kind, message.clone())
        }
        B::DockerStreamError { error } => (stream_error_kind(error), error.clone()),
        B::RequestTimeoutError => (ErrorKind::Timeout, "dockerd did not answer in time".into()),
        B::SocketNotFoundError(path) => (
            ErrorKind::Unavailable,
            format!("Docker socket {path} not found: is dockerd running?"),
        ),
        B::HyperLegacyError { .. } | B::IOError { .. } | B::HyperResponseError { .. } => {
            (ErrorKind::Unavailable, format!("cannot reach dockerd: {e}"))
        }
        _ => (ErrorKind::Internal, e.to_string()),
    };
    Error::new(kind, message).with_source(e)
}

/// The kind of an error dockerd reports inside a progress stream (pull, push, build).
pub(crate) fn stream_error_kind(message: &str) -> ErrorKind {
    let m = message.to_ascii_lowercase();
    if m.contains("not found") || m.contains("manifest unknown") || m.contains("does not exist") {
        ErrorKind::NotFound
    } else if m.contains("unauthorized")
        || m.contains("authentication required")
        || m.contains("no basic auth credentials")
    {
        ErrorKind::Unauthorized
    } else if m.contains("denied") {
        ErrorKind::Forbidden
    } else if m.contains("connection refused") || m.contains("no such host") {
        ErrorKind::Unavailable
    } else if m.contains("invalid reference format")
        || m.contains("64-byte hex")
        || m.contains("invalid tag format")
        || m.contains("refusing to create")
        || m.contains("is not a valid")
        || m.contains("invalid argument")
        // An id prefix that matches several containers (or images): the caller must give
        // more of it (newer dockerd answers 400 here).
        || m.contains("multiple ids found with provided prefix")
    {
        // dockerd 20.10 answers 500 to requests it finds malformed; the request was bad.
        ErrorKind::InvalidInput
    } else if m.contains("is already in use")
        || m.contains("conflict")
        || m.contains("is not paused")
        || m.contains("is already paused")
        || m.contains("is not running")
    {
        ErrorKind::Conflict
    } else {
        ErrorKind::Internal
    }
}

#[async_trait]
impl Backend for DockerBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kinds: vec![InstanceKind::Container],
            pause: true,
            exec: true,
            console: true,
            console_vnc: false,
            snapshots: true,
            live_snapshot: false,
            cloud_init: false,
            export_formats: vec![ExportFormat::Tar, ExportFormat::ImageTar],
            live_update: true,
            image_registry: true,
            image_build: true,
            networks: true,
            volumes: true,
            storage_pools: false,
            templates: false,
            disks: false,
            guest_password: false,
        }
    }

    async fn info(&self) -> Result<BackendInfo> {
        let docker = self.docker().await?;
        let version = docker.version().await.map_err(|e| self.error(e))?;
        let engine_id = docker.info().await.ok().and_then(|i| i.id);
        Ok(BackendInfo {
            name: self.name.clone(),
            engine: "docker".into(),
            version: version.version.unwrap_or_default(),
            api_version: Some(docker.client_version().to_string()),
            endpoint: self.endpoint.clone(),
            kinds: vec![InstanceKind::Container],
            engine_id,
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    /// CPUs and memory from dockerd's `/info`; Docker reports no host use.
    async fn host_resources(&self) -> Result<libgo_core::HostResources> {
        let info = self
            .docker()
            .await?
            .info()
            .await
            .map_err(|e| self.error(e))?;
        Ok(libgo_core::HostResources {
            capacity: libgo_core::hosts::HostCapacity {
                cpus: info.ncpu.unwrap_or(0).max(0) as u32,
                memory_bytes: info.mem_total.unwrap_or(0).max(0) as u64,
                disk_bytes: None,
            },
            usage: Default::default(),
        })
    }

    async fn health(&self) -> Health {
        let started = Instant::now();
        let answer = match self.docker().await {
            Ok(d) => d.version().await.map_err(|e| self.error(e)),
            Err(e) => Err(e),
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        match answer {
            Ok(v) => Health {
                backend: self.name.clone(),
                up: true,
                message: format!("docker {}", v.version.unwrap_or_default()),
                latency_ms,
            },
            Err(e) => Health {
                backend: self.name.clone(),
                up: false,
                message: e.message().to_string(),
                latency_ms,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ambiguous_id_prefix_is_the_callers_error() {
        // dockerd 20.10's answer to `POST /containers/a/pause` with several ids starting
        // with "a" (found by the API fuzzer as a 500).
        let e = map_error(bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "Multiple IDs found with provided prefix: a".into(),
        });
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }

    /// A dockerd that speaks API 1.41 and records the request lines it gets.
    async fn fake_dockerd(path: &std::path::Path) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::UnixListener::bind(path).expect("bind the fake socket");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                if let (Some(line), Ok(mut seen)) = (text.lines().next(), record.lock()) {
                    seen.push(line.to_string());
                }
                let answer = "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK";
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        seen
    }

    #[tokio::test]
    async fn the_api_version_comes_from_ping_not_from_version() {
        let path =
            std::env::temp_dir().join(format!("libgo-fake-dockerd-{}.sock", uuid::Uuid::new_v4()));
        let seen = fake_dockerd(&path).await;
        let backend = DockerBackend::connect(
            "docker",
            DockerConfig {
                host: Some(format!("unix://{}", path.display())),
                timeout_secs: 5,
                tls: None,
            },
        )
        .expect("a unix:// host is valid");
        let checked = backend.check().await;
        let _ = std::fs::remove_file(&path);
        checked.expect("the fake dockerd answers /_ping");
        let version = backend.docker().await.expect("negotiated").client_version();
        assert_eq!((version.major_version, version.minor_version), (1, 41));
        // One `GET /_ping` and no `GET /version` (which makes dockerd ask containerd and runc).
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen, vec!["GET /_ping HTTP/1.1".to_string()]);
    }
}
