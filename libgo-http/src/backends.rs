//! The engines the server connects to, from its configuration.

use crate::config::Config;
use crate::server::BackendSpec;

/// The backends `config` enables.
pub fn from_config(config: &Config) -> Vec<BackendSpec> {
    #[allow(unused_mut)]
    let mut specs: Vec<BackendSpec> = Vec::new();
    #[cfg(feature = "docker")]
    if config.docker.enabled {
        let name = config.docker.name.clone();
        let mut docker = libgo_docker::DockerConfig::default();
        if let Some(h) = &config.docker.host {
            docker.host = Some(h.clone());
        }
        let n = name.clone();
        specs.push(BackendSpec {
            name,
            connect: std::sync::Arc::new(move || {
                let n = n.clone();
                let docker = docker.clone();
                Box::pin(async move {
                    let b = libgo_docker::DockerBackend::connect(&n, docker)?;
                    // The client connects lazily: ask the engine now, so that a down engine
                    // is retried here rather than registered dead.
                    use libgo_core::Backend;
                    let h = b.health().await;
                    if !h.up {
                        return Err(libgo_core::Error::unavailable(h.message));
                    }
                    Ok(std::sync::Arc::new(b) as std::sync::Arc<dyn libgo_core::Backend>)
                })
            }),
        });
    }
    #[cfg(feature = "kvm")]
    if config.kvm.enabled {
        let accelerator = config.kvm.accelerator.parse().unwrap_or_else(|_| {
            tracing::warn!(value = %config.kvm.accelerator, "unknown accelerator; using auto");
            libgo_kvm::Accelerator::Auto
        });
        let kvm = libgo_kvm::KvmConfig {
            accelerator,
            name: config.kvm.name.clone(),
            uri: config.kvm.uri.clone(),
            template_dir: config.data_dir.join("kvm-templates"),
            ..Default::default()
        };
        specs.push(BackendSpec {
            name: config.kvm.name.clone(),
            connect: std::sync::Arc::new(move || {
                let kvm = kvm.clone();
                Box::pin(async move {
                    let b = libgo_kvm::KvmBackend::connect(kvm).await?;
                    Ok(std::sync::Arc::new(b) as std::sync::Arc<dyn libgo_core::Backend>)
                })
            }),
        });
    }
    let _ = config;
    specs
}
