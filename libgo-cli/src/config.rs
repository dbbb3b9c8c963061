//! Remotes and their credentials: `config.json` under the user's config dir
//! (`$LIBGO_CONFIG_DIR`, else `~/.config/libgo`), written 0600 because it holds tokens.

use std::collections::BTreeMap;
use std::path::PathBuf;

use libgo::{Error, Result};
use serde::{Deserialize, Serialize};

/// One server the CLI can talk to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Remote {
    /// Base URL, e.g. `http://10.0.0.2:8080`.
    pub url: String,
    /// A session token from `libgo login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// An API key given to `libgo remote add --api-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The remote used when no `--remote` is given; none means embedded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Remotes by name.
    #[serde(default)]
    pub remotes: BTreeMap<String, Remote>,
}

/// Where the file lives.
pub fn dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("LIBGO_CONFIG_DIR") {
        return Ok(PathBuf::from(d));
    }
    dirs::config_dir()
        .map(|d| d.join("libgo"))
        .ok_or_else(|| Error::invalid("no config directory: set LIBGO_CONFIG_DIR"))
}

fn path() -> Result<PathBuf> {
    Ok(dir()?.join("config.json"))
}

impl Config {
    /// Reads the file; a missing one is an empty config.
    pub fn load() -> Result<Config> {
        let path = path()?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the file readable by its owner only (it holds credentials).
    pub fn save(&self) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let dir = dir()?;
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("config.json");
        let tmp = dir.join("config.json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // An older file made with a wider mode keeps it on open: narrow it explicitly.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(&serde_json::to_vec_pretty(self)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// The remote named `name`.
    pub fn remote(&self, name: &str) -> Result<&Remote> {
        self.remotes
            .get(name)
            .ok_or_else(|| Error::not_found(format!("no remote {name:?} (libgo remote list)")))
    }
}
