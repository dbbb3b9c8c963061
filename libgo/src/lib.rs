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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
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
        }
    }
}

impl EngineConfig {
    /// The Docker backend this config describes (nothing is sent yet).
    #[cfg(feature = "docker")]
    pub fn docker_backend(&self) -> Result<DockerBackend> {
        let mut config = DockerConfig::default();
        if let Some(h) = &self.docker_host {
            config.host = Some(h.clone());
        }
        DockerBackend::connect(&self.docker_name, config)
    }

    /// Connects the KVM backend this config describes.
    #[cfg(feature = "kvm")]
    pub async fn kvm_backend(&self) -> Result<KvmBackend> {
        let mut config = KvmConfig {
            name: self.kvm_name.clone(),
            uri: self.libvirt_uri.clone(),
            accelerator: self.accelerator.parse()?,
            ..Default::default()
        };
        if let Some(dir) = &self.template_dir {
            config.template_dir = dir.into();
        }
        KvmBackend::connect(config).await
    }
}

/// A facade over the engines `config` asks for.
pub async fn connect(config: &EngineConfig) -> Result<LibGo> {
    let libgo = LibGo::new();
    if config.docker != EngineMode::Off {
        connect_docker(&libgo, config).await?;
    }
    if config.kvm != EngineMode::Off {
        connect_kvm(&libgo, config).await?;
    }
    Ok(libgo)
}

#[cfg(feature = "docker")]
async fn connect_docker(libgo: &LibGo, config: &EngineConfig) -> Result<()> {
    let docker = config.docker_backend()?;
    let health = libgo_core::Backend::health(&docker).await;
    match (health.up, config.docker) {
        (true, _) => libgo.register(Arc::new(docker))?,
        (false, EngineMode::Required) => {
            return Err(Error::unavailable(format!("Docker: {}", health.message)));
        }
        (false, _) => tracing::warn!(reason = %health.message, "Docker left out"),
    }
    Ok(())
}

#[cfg(feature = "kvm")]
async fn connect_kvm(libgo: &LibGo, config: &EngineConfig) -> Result<()> {
    match (config.kvm_backend().await, config.kvm) {
        (Ok(kvm), _) => libgo.register(Arc::new(kvm))?,
        (Err(e), EngineMode::Required) => return Err(e),
        (Err(e), _) if e.kind() == ErrorKind::Unavailable => {
            tracing::warn!(error = %e, "libvirt left out")
        }
        (Err(e), _) => return Err(e),
    }
    Ok(())
}

#[cfg(not(feature = "docker"))]
async fn connect_docker(_: &LibGo, config: &EngineConfig) -> Result<()> {
    built_without("Docker", "docker", config.docker)
}

#[cfg(not(feature = "kvm"))]
async fn connect_kvm(_: &LibGo, config: &EngineConfig) -> Result<()> {
    built_without("libvirt", "kvm", config.kvm)
}

/// An engine this build lacks: an error when it is required, left out when it is `auto`.
#[cfg(not(all(feature = "docker", feature = "kvm")))]
fn built_without(engine: &str, feature: &str, mode: EngineMode) -> Result<()> {
    let message =
        format!("this build of LibGo has no {engine} support (Cargo feature `{feature}`)");
    if mode == EngineMode::Required {
        return Err(Error::unsupported(message));
    }
    tracing::info!("{message}: left out");
    Ok(())
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
