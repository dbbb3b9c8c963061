//! The engines the server connects to, from its configuration.
//!
//! The server's `[docker]` and `[kvm]` sections and its `[[backends]]` list are translated
//! into the umbrella crate's [`libgo::EngineConfig`], and every backend is connected by its
//! `connect_backend`, exactly as the Python, Node and C bindings connect theirs: an engine
//! is configured one way everywhere. What the server adds is the retry loop of
//! [`crate::Server::attach_backends`]: a backend whose engine is down is connected when it
//! answers.

use std::sync::Arc;

use libgo::EngineMode;

use crate::config::Config;
use crate::server::BackendSpec;

/// The [`libgo::EngineConfig`] that `config` describes. Engines the server enables are
/// `Auto` (the server retries them itself); disabled ones are `Off`. An accelerator of the
/// `[kvm]` section that does not parse is reported and replaced by `auto`, so that a typo
/// does not keep the local KVM backend away for good.
pub fn engine_config(config: &Config) -> libgo::EngineConfig {
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
        backends: config.backends.clone(),
        reconnect_secs: config.reconnect_secs,
        // The server's change feed and caches live on them.
        events: true,
    }
}

/// The backends `config` enables, each connected through [`engine_config`]. An error when
/// the list itself is wrong (two backends of one name, a name that is not valid).
pub fn from_config(config: &Config) -> libgo::Result<Vec<BackendSpec>> {
    let engines = Arc::new(engine_config(config));
    Ok(engines
        .all_backends()?
        .into_iter()
        .map(|b| {
            let engines = engines.clone();
            let b = Arc::new(b);
            BackendSpec {
                name: b.name.clone(),
                connect: Arc::new(move || {
                    let (engines, b) = (engines.clone(), b.clone());
                    Box::pin(async move { engines.connect_backend(&b).await })
                }),
            }
        })
        .collect())
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
        assert_eq!(from_config(&c).expect("valid").len(), 1);
        c.kvm.enabled = true;
        c.kvm.accelerator = "tcg".into();
        assert_eq!(engine_config(&c).accelerator, "tcg");
        assert_eq!(from_config(&c).expect("valid").len(), 2);
    }

    /// `[[backends]]` adds named engines; a name used twice is refused before anything
    /// is connected.
    #[test]
    fn named_backends_come_from_the_config_file() {
        let c: Config = toml::from_str(
            "[[backends]]\nname = \"kvm-b\"\nengine = \"kvm\"\nurl = \"qemu+tcp://10.0.0.2/system\"\n\
             [[backends]]\nname = \"docker-b\"\nengine = \"docker\"\nurl = \"tcp://10.0.0.2:2375\"\n",
        )
        .expect("config");
        let names: Vec<String> = from_config(&c)
            .expect("valid")
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["docker", "kvm", "kvm-b", "docker-b"]);
        let twice: Config =
            toml::from_str("[[backends]]\nname = \"kvm\"\nengine = \"kvm\"\n").expect("config");
        let e = from_config(&twice).expect_err("two backends named kvm");
        assert_eq!(e.kind(), libgo::ErrorKind::InvalidInput);
        assert!(
            toml::from_str::<Config>("[[backends]]\nname = \"x\"\nengine = \"kvm\"\nuri = \"a\"\n")
                .is_err(),
            "an unknown key is an error"
        );
    }
}
