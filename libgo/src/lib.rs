//! # libgo
//!
//! LibGo with its engines: [`libgo_core`] re-exported, plus [`connect`], which builds a
//! [`LibGo`] facade over the local (or remote) Docker and libvirt from one
//! [`EngineConfig`]. The server and the Python, Node and C bindings all start here, so an
//! engine is configured the same way everywhere.
//!
//! Each engine is a Cargo feature, both on by default: `docker` (bollard) and `kvm`
//! (libvirt's C library). `default-features = false, features = ["docker"]` builds a
//! Docker-only LibGo that links no libvirt; asking such a build for a `required` engine it
//! lacks is an `UNSUPPORTED` error, and an `auto` one is left out.
//!
//! ```no_run
//! # async fn demo() -> libgo::Result<()> {
//! let libgo = libgo::connect(&libgo::EngineConfig::default()).await?;
//! for backend in libgo.backend_names() {
//!     println!("connected: {backend}");
//! }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

use std::sync::Arc;

pub use libgo_core::*;
#[cfg(feature = "docker")]
pub use libgo_docker::{DockerBackend, DockerConfig, DockerTls};
#[cfg(feature = "kvm")]
pub use libgo_kvm::{Accelerator, KvmBackend, KvmConfig};

use serde::{Deserialize, Serialize};

/// Whether to use an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineMode {
    /// Use it when it answers; leave it out (with a warning) when it does not.
    #[default]
    Auto,
    /// Use it; failing to reach it is an error.
    Required,
    /// Leave it out.
    Off,
}

/// Which engines to connect and where they are. The JSON form is what the bindings take.
///
/// The flat fields describe the local pair (one Docker, one libvirt); `backends` adds more,
/// each under its own name: Docker on host A and libvirt on hosts A and B is
///
/// ```
/// # use libgo::{BackendConfig, Engine, EngineConfig, EngineMode};
/// let config = EngineConfig {
///     backends: vec![BackendConfig {
///         name: "kvm-b".into(),
///         engine: Engine::Kvm,
///         url: Some("qemu+tcp://10.0.0.2/system".into()),
///         mode: EngineMode::Required,
///         accelerator: None,
///         tls: None,
///     }],
///     ..Default::default()
/// };
/// assert_eq!(config.all_backends().unwrap().len(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Docker.
    pub docker: EngineMode,
    /// Backend name of Docker.
    pub docker_name: String,
    /// `unix://…`, `tcp://…`; `DOCKER_HOST` or the local socket when `None`.
    pub docker_host: Option<String>,
    /// libvirt.
    pub kvm: EngineMode,
    /// Backend name of libvirt.
    pub kvm_name: String,
    /// libvirt URI.
    pub libvirt_uri: String,
    /// `kvm`, `tcg` or `auto`.
    pub accelerator: String,
    /// Directory of VM templates; the KVM backend's default when `None`.
    pub template_dir: Option<String>,
    /// More engines besides the local pair, each by its own name.
    pub backends: Vec<BackendConfig>,
    /// Seconds between attempts to connect an `auto` backend whose engine was down, in
    /// [`connect_shared`]; 0 never tries again.
    pub reconnect_secs: u64,
    /// Whether libvirt's domain events are taken (the change feed, `events()`); off for a
    /// short-lived reader, whose cold lists of VMs are then faster (see `KvmConfig::events`).
    pub events: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            docker: EngineMode::Auto,
            docker_name: "docker".into(),
            docker_host: None,
            kvm: EngineMode::Auto,
            kvm_name: "kvm".into(),
            libvirt_uri: "qemu:///system".into(),
            accelerator: "auto".into(),
            template_dir: None,
            backends: Vec::new(),
            reconnect_secs: 5,
            events: true,
        }
    }
}

/// The kind of engine behind a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// A Docker daemon.
    Docker,
    /// A libvirt (QEMU/KVM) host.
    Kvm,
}

/// One engine under one backend name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendConfig {
    /// The backend's name: what `backend` selects in every call.
    pub name: String,
    /// Docker or libvirt.
    pub engine: Engine,
    /// Whether it must answer at start; `auto` (leave it out when down) by default.
    #[serde(default)]
    pub mode: EngineMode,
    /// Docker: `unix://…` or `tcp://…` (`DOCKER_HOST` or the local socket when `None`);
    /// libvirt: its URI (`qemu:///system` when `None`).
    #[serde(default)]
    pub url: Option<String>,
    /// libvirt only: `kvm`, `tcg` or `auto` (the default).
    #[serde(default)]
    pub accelerator: Option<String>,
    /// Docker only: the client certificate, key and CA of a `tcp://` daemon with TLS.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

/// PEM files of a TLS client: Docker's `ca.pem`, `cert.pem`, `key.pem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsFiles {
    /// The CA that signed the daemon's certificate.
    pub ca: String,
    /// The client certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

/// Another machine's engines, under one host name: its backends are named `NAME-docker`
/// and `NAME-kvm`. See [`add_host`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostConfig {
    /// Where the host is: its pool, labels, whether it takes new instances.
    pub membership: HostMembership,
    /// Its Docker (`tcp://ADDR:2376`), if it has one.
    #[serde(default)]
    pub docker: Option<String>,
    /// TLS files for its Docker.
    #[serde(default)]
    pub docker_tls: Option<TlsFiles>,
    /// Its libvirt (`qemu+tcp://ADDR/system`, `qemu+tls://…`, `qemu+ssh://…`), if it has one.
    #[serde(default)]
    pub libvirt: Option<String>,
}

impl HostConfig {
    /// The backends of this host: `NAME-docker` and `NAME-kvm`, each `required`.
    pub fn backends(&self) -> Result<Vec<BackendConfig>> {
        let name = &self.membership.name;
        validate::name("host name", name)?;
        if self.docker.is_none() && self.libvirt.is_none() {
            return Err(Error::invalid(
                "a host needs a Docker or a libvirt address (or both)",
            ));
        }
        if self.docker_tls.is_some() && self.docker.is_none() {
            return Err(Error::invalid("dockerTls is for a Docker address")
                .with_context("field", "dockerTls"));
        }
        let mut all = Vec::new();
        if let Some(url) = &self.docker {
            validate::host_docker_url(url)?;
            all.push(BackendConfig {
                name: format!("{name}-docker"),
                engine: Engine::Docker,
                mode: EngineMode::Required,
                url: Some(url.clone()),
                accelerator: None,
                tls: self.docker_tls.clone(),
            });
        }
        if let Some(url) = &self.libvirt {
            validate::host_libvirt_uri(url)?;
            all.push(BackendConfig {
                name: format!("{name}-kvm"),
                engine: Engine::Kvm,
                mode: EngineMode::Required,
                url: Some(url.clone()),
                accelerator: None,
                tls: None,
            });
        }
        Ok(all)
    }
}

/// Connects host `host`'s engines and adds them to `libgo` under the host's name. Every
/// engine must answer (else `UNAVAILABLE` and nothing is added); `base` gives what the
/// engines share with the local ones (accelerator, template directory).
pub async fn add_host(libgo: &LibGo, base: &EngineConfig, host: &HostConfig) -> Result<()> {
    let configs = host.backends()?;
    if libgo.host_membership(&host.membership.name).is_ok() {
        return Err(Error::conflict(format!(
            "a host named {:?} exists already",
            host.membership.name
        )));
    }
    let base = base.clone();
    let answers = futures::future::join_all(configs.iter().map(|b| {
        let mut b = b.clone();
        if b.engine == Engine::Kvm {
            b.accelerator = Some(base.accelerator.clone());
        }
        let base = base.clone();
        async move { base.connect_backend(&b).await }
    }))
    .await;
    let mut backends = Vec::new();
    for (b, answer) in configs.iter().zip(answers) {
        match answer {
            Ok(backend) => backends.push(backend),
            Err(e) => {
                return Err(Error::unavailable(format!(
                    "host {:?}: {} does not answer: {}",
                    host.membership.name,
                    b.url.as_deref().unwrap_or_default(),
                    e.message()
                ))
                .with_context("host", host.membership.name.clone()));
            }
        }
    }
    // One engine under two names would show every instance twice.
    let known = futures::future::join_all(libgo.backends().iter().map(|b| {
        let b = b.clone();
        async move {
            (
                b.name().to_string(),
                b.info().await.ok().and_then(|i| i.engine_id),
            )
        }
    }))
    .await;
    for b in &backends {
        let id = b.info().await.ok().and_then(|i| i.engine_id);
        if let Some(id) = id
            && let Some((name, _)) = known.iter().find(|(_, k)| k.as_ref() == Some(&id))
        {
            return Err(Error::conflict(format!(
                "host {:?}: that engine is backend {name:?} already",
                host.membership.name
            )));
        }
    }
    libgo.host_set(host.membership.clone())?;
    for backend in backends {
        if let Err(e) = libgo.register_on(&host.membership.name, backend) {
            let _ = libgo.host_remove(&host.membership.name);
            return Err(e);
        }
    }
    Ok(())
}

impl EngineConfig {
    /// Every backend this config names, the local pair first: checked (valid, distinct
    /// names; an accelerator only for libvirt) before anything is connected.
    pub fn all_backends(&self) -> Result<Vec<BackendConfig>> {
        let mut all = Vec::with_capacity(self.backends.len() + 2);
        if self.docker != EngineMode::Off {
            all.push(BackendConfig {
                name: self.docker_name.clone(),
                engine: Engine::Docker,
                mode: self.docker,
                url: self.docker_host.clone(),
                accelerator: None,
                tls: None,
            });
        }
        if self.kvm != EngineMode::Off {
            all.push(BackendConfig {
                name: self.kvm_name.clone(),
                engine: Engine::Kvm,
                mode: self.kvm,
                url: Some(self.libvirt_uri.clone()),
                accelerator: Some(self.accelerator.clone()),
                tls: None,
            });
        }
        all.extend(
            self.backends
                .iter()
                .filter(|b| b.mode != EngineMode::Off)
                .cloned(),
        );
        for (i, b) in all.iter().enumerate() {
            validate::name("backend name", &b.name)?;
            if all[..i].iter().any(|o| o.name == b.name) {
                return Err(Error::invalid(format!(
                    "two backends are named {:?}; each needs its own name",
                    b.name
                )));
            }
            if b.engine == Engine::Kvm && b.tls.is_some() {
                return Err(Error::invalid(format!(
                    "backend {:?}: libvirt's TLS is set in libvirt's own pki paths",
                    b.name
                )));
            }
            if b.engine == Engine::Docker && b.accelerator.is_some() {
                return Err(Error::invalid(format!(
                    "backend {:?}: an accelerator is a libvirt setting",
                    b.name
                )));
            }
        }
        Ok(all)
    }

    /// Connects one backend of this config (see [`EngineConfig::all_backends`]) and checks
    /// that its engine answers.
    pub async fn connect_backend(&self, b: &BackendConfig) -> Result<Arc<dyn Backend>> {
        match b.engine {
            Engine::Docker => self.connect_docker(b).await,
            Engine::Kvm => self.connect_kvm(b).await,
        }
    }

    #[cfg(feature = "docker")]
    async fn connect_docker(&self, b: &BackendConfig) -> Result<Arc<dyn Backend>> {
        let config = DockerConfig {
            host: b.url.clone(),
            tls: b.tls.as_ref().map(|t| DockerTls {
                ca: t.ca.clone().into(),
                cert: t.cert.clone().into(),
                key: t.key.clone().into(),
            }),
            ..Default::default()
        };
        let docker = DockerBackend::connect(&b.name, config)?;
        // The client connects lazily: ask the engine now, so that a down engine is
        // reported here rather than registered dead.
        if let Err(e) = docker.check().await {
            return Err(Error::unavailable(format!(
                "Docker ({}): {}",
                b.name,
                e.message()
            )));
        }
        Ok(Arc::new(docker))
    }

    #[cfg(feature = "kvm")]
    async fn connect_kvm(&self, b: &BackendConfig) -> Result<Arc<dyn Backend>> {
        let mut config = KvmConfig {
            name: b.name.clone(),
            accelerator: b.accelerator.as_deref().unwrap_or("auto").parse()?,
            events: self.events,
            ..Default::default()
        };
        if let Some(uri) = &b.url {
            config.uri = uri.clone();
        }
        if let Some(dir) = &self.template_dir {
            config.template_dir = dir.into();
        }
        Ok(Arc::new(KvmBackend::connect(config).await?))
    }

    #[cfg(not(feature = "docker"))]
    async fn connect_docker(&self, _: &BackendConfig) -> Result<Arc<dyn Backend>> {
        Err(built_without("Docker", "docker"))
    }

    #[cfg(not(feature = "kvm"))]
    async fn connect_kvm(&self, _: &BackendConfig) -> Result<Arc<dyn Backend>> {
        Err(built_without("libvirt", "kvm"))
    }
}

/// A facade over the engines `config` asks for. An `auto` engine that is down (or that this
/// build lacks) is left out with a warning; a `required` one is an error. See
/// [`connect_shared`] for a facade that takes such an engine in once it answers.
pub async fn connect(config: &EngineConfig) -> Result<LibGo> {
    Ok(connect_now(config).await?.0)
}

/// [`connect`], shared, and with the engines that were down at start kept being tried in
/// the background (every `reconnect_secs`): each joins the facade as soon as it answers, so
/// a client started before its engine gets it without starting again. The attempts end
/// with the last handle. Needs a Tokio runtime that outlives the facade (the bindings have
/// one).
pub async fn connect_shared(config: &EngineConfig) -> Result<Arc<LibGo>> {
    let (libgo, down) = connect_now(config).await?;
    let libgo = Arc::new(libgo);
    if config.reconnect_secs > 0 {
        for backend in down {
            tokio::spawn(reconnect(Arc::downgrade(&libgo), config.clone(), backend));
        }
    }
    Ok(libgo)
}

/// The facade of the engines that answer now, and the `auto` ones that were down.
async fn connect_now(config: &EngineConfig) -> Result<(LibGo, Vec<BackendConfig>)> {
    let libgo = LibGo::new();
    let mut down = Vec::new();
    let backends = config.all_backends()?;
    // Side by side: a start costs the slowest engine's handshake, not their sum.
    let answers =
        futures::future::join_all(backends.iter().map(|b| config.connect_backend(b))).await;
    for (b, answer) in backends.into_iter().zip(answers) {
        match (answer, b.mode) {
            (Ok(backend), _) => libgo.register(backend)?,
            (Err(e), EngineMode::Required) => return Err(e),
            (Err(e), _) if e.kind() == ErrorKind::Unavailable => {
                tracing::warn!(backend = %b.name, error = %e, "backend down; left out for now");
                down.push(b);
            }
            (Err(e), _) if e.kind() == ErrorKind::Unsupported => {
                tracing::warn!(backend = %b.name, error = %e, "backend left out")
            }
            (Err(e), _) => return Err(e),
        }
    }
    Ok((libgo, down))
}

/// Tries `backend` every `reconnect_secs` until it answers (then registers it) or the
/// facade is gone.
async fn reconnect(libgo: std::sync::Weak<LibGo>, config: EngineConfig, backend: BackendConfig) {
    let every = std::time::Duration::from_secs(config.reconnect_secs.max(1));
    loop {
        tokio::time::sleep(every).await;
        if libgo.strong_count() == 0 {
            return;
        }
        match config.connect_backend(&backend).await {
            Ok(b) => {
                if let Some(libgo) = libgo.upgrade() {
                    match libgo.register(b) {
                        Ok(()) => tracing::info!(backend = %backend.name, "backend connected"),
                        Err(e) => {
                            tracing::warn!(backend = %backend.name, error = %e, "cannot register backend")
                        }
                    }
                }
                return;
            }
            Err(e) if e.kind() == ErrorKind::Unavailable => {}
            Err(e) => {
                tracing::warn!(backend = %backend.name, error = %e, "backend left out");
                return;
            }
        }
    }
}

/// An engine this build lacks.
#[cfg(not(all(feature = "docker", feature = "kvm")))]
fn built_without(engine: &str, feature: &str) -> Error {
    Error::unsupported(format!(
        "this build of LibGo has no {engine} support (Cargo feature `{feature}`)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build without an engine refuses to require it and leaves it out when asked `auto`.
    #[tokio::test]
    async fn an_engine_left_out_of_the_build_is_unsupported_when_required() {
        let off = EngineConfig {
            docker: EngineMode::Off,
            kvm: EngineMode::Off,
            ..Default::default()
        };
        assert!(
            connect(&off)
                .await
                .expect("nothing to connect")
                .backend_names()
                .is_empty()
        );
        if !cfg!(feature = "kvm") {
            let required = EngineConfig {
                kvm: EngineMode::Required,
                ..off.clone()
            };
            let e = connect(&required)
                .await
                .expect_err("no libvirt in this build");
            assert_eq!(e.kind(), ErrorKind::Unsupported);
        }
        if !cfg!(feature = "docker") {
            let required = EngineConfig {
                docker: EngineMode::Required,
                ..off
            };
            let e = connect(&required)
                .await
                .expect_err("no Docker in this build");
            assert_eq!(e.kind(), ErrorKind::Unsupported);
        }
    }

    fn libvirt_host(url: &str) -> Result<Vec<BackendConfig>> {
        HostConfig {
            membership: HostMembership {
                name: "h2".into(),
                pool: "default".into(),
                enabled: true,
                labels: Default::default(),
                migration_address: None,
            },
            docker: None,
            docker_tls: None,
            libvirt: Some(url.into()),
        }
        .backends()
    }

    /// A host's backends are held to the core's rules for host addresses.
    #[test]
    fn a_host_libvirt_uri_is_checked() {
        let backends = libvirt_host("qemu+tls://h2/system?pkipath=/p").expect("a good URI");
        assert_eq!(backends[0].name, "h2-kvm");
        let e = libvirt_host("qemu+ext://h2/system?command=/tmp/x").expect_err("ext");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
