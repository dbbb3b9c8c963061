//! The engines the server connects to, from its configuration.
//!
//! The server's `[docker]` and `[kvm]` sections are translated into the umbrella crate's
//! [`libgo::EngineConfig`], and the backends are built by its `docker_backend()` /
//! `kvm_backend()`, exactly as the Python, Node and C bindings build theirs: an engine is
//! configured one way everywhere. What the server adds is the retry loop of
//! [`crate::Server::attach_backends`]: a backend whose engine is down is connected when it
//! answers.

use crate::config::Config;
use crate::server::BackendSpec;

/// The [`libgo::EngineConfig`] that `config` describes. Engines the server enables are
/// `Auto` (the server retries them itself); disabled ones are `Off`. An accelerator that
/// does not parse is reported and replaced by `auto`, so that a typo does not keep the KVM
/// backend away for good.
#[cfg(any(feature = "docker", feature = "kvm"))]
pub fn engine_config(config: &Config) -> libgo::EngineConfig {
    use libgo::EngineMode;
    let mode = |on: bool| {
        if on {
            EngineMode::Auto
        } else {
            EngineMode::Off
        }
    };
    #[cfg(feature = "kvm")]
    let accelerator = match config.kvm.accelerator.parse::<libgo::Accelerator>() {
        Ok(_) => config.kvm.accelerator.clone(),
        Err(_) => {
            tracing::warn!(value = %config.kvm.accelerator, "unknown accelerator; using auto");
            "auto".to_string()
        }
    };
    #[cfg(not(feature = "kvm"))]
    let accelerator = config.kvm.accelerator.clone();
    let template_dir = config.data_dir.join("kvm-templates");
    libgo::EngineConfig {
        docker: mode(cfg!(feature = "docker") && config.docker.enabled),
        docker_name: config.docker.name.clone(),
        docker_host: config.docker.host.clone(),
        kvm: mode(cfg!(feature = "kvm") && config.kvm.enabled),
        kvm_name: config.kvm.name.clone(),
        libvirt_uri: config.kvm.uri.clone(),
        accelerator,
        template_dir: Some(template_dir.to_string_lossy().into_owned()),
    }
}

/// The backends `config` enables, each connected through [`engine_config`].
pub fn from_config(config: &Config) -> Vec<BackendSpec> {
    #[allow(unused_mut)]
    let mut specs: Vec<BackendSpec> = Vec::new();
    #[cfg(any(feature = "docker", feature = "kvm"))]
    {
        use std::sync::Arc;

        use libgo::EngineMode;
        use libgo_core::Backend;

        let engines = Arc::new(engine_config(config));
        #[cfg(feature = "docker")]
        if engines.docker != EngineMode::Off {
            let e = engines.clone();
            specs.push(BackendSpec {
                name: engines.docker_name.clone(),
                connect: Arc::new(move || {
                    let e = e.clone();
                    Box::pin(async move {
                        let b = e.docker_backend()?;
                        // The client connects lazily: ask the engine now, so that a down
                        // engine is retried here rather than registered dead.
                        let h = b.health().await;
                        if !h.up {
                            return Err(libgo_core::Error::unavailable(h.message));
                        }
                        Ok(Arc::new(b) as Arc<dyn Backend>)
                    })
                }),
            });
        }
        #[cfg(feature = "kvm")]
        if engines.kvm != EngineMode::Off {
            let e = engines.clone();
            specs.push(BackendSpec {
                name: engines.kvm_name.clone(),
                connect: Arc::new(move || {
                    let e = e.clone();
                    Box::pin(async move {
                        let b = e.kvm_backend().await?;
                        Ok(Arc::new(b) as Arc<dyn Backend>)
                    })
                }),
            });
        }
    }
    let _ = config;
    specs
}

#[cfg(all(test, feature = "docker", feature = "kvm"))]
mod tests {
    use super::*;

    #[test]
    fn engine_config_follows_the_server_config() {
        let mut c = Config {
            data_dir: "/srv/libgo".into(),
            ..Config::default()
        };
        c.docker.name = "d1".into();
        c.docker.host = Some("unix:///tmp/d.sock".into());
        c.kvm.enabled = false;
        c.kvm.uri = "test:///default".into();
        c.kvm.accelerator = "nonsense".into();
        let e = engine_config(&c);
        assert_eq!(e.docker, libgo::EngineMode::Auto);
        assert_eq!(e.docker_name, "d1");
        assert_eq!(e.docker_host.as_deref(), Some("unix:///tmp/d.sock"));
        assert_eq!(e.kvm, libgo::EngineMode::Off);
        assert_eq!(e.libvirt_uri, "test:///default");
        assert_eq!(e.accelerator, "auto");
        assert_eq!(e.template_dir.as_deref(), Some("/srv/libgo/kvm-templates"));
        assert_eq!(from_config(&c).len(), 1);
        c.kvm.enabled = true;
        c.kvm.accelerator = "tcg".into();
        assert_eq!(engine_config(&c).accelerator, "tcg");
        assert_eq!(from_config(&c).len(), 2);
    }
}
