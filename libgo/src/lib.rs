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
pub use libgo_docker::{DockerBackend, DockerConfig};
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
            });
        }
        if self.kvm != EngineMode::Off {
            all.push(BackendConfig {
                name: self.kvm_name.clone(),
                engine: Engine::Kvm,
                mode: self.kvm,
                url: Some(self.libvirt_uri.clone()),
                accelerator: Some(self.accelerator.clone()),
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
            ..Default::default()
        };
        let docker = DockerBackend::connect(&b.name, config)?;
        // The client connects lazily: ask the engine now, so that a down engine is
        // reported here rather than registered dead.
        let health = Backend::health(&docker).await;
        if !health.up {
            return Err(Error::unavailable(format!(
                "Docker ({}): {}",
                b.name, health.message
            )));
        }
        Ok(Arc::new(docker))
    }

    #[cfg(feature = "kvm")]
    async fn connect_kvm(&self, b: &BackendConfig) -> Result<Arc<dyn Backend>> {
        let mut config = KvmConfig {
            name: b.name.clone(),
            accelerator: b.accelerator.as_deref().unwrap_or("auto").parse()?,
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
}
