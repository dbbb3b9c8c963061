//! Server configuration: a TOML file, then `LIBGO_*` environment variables, then flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A secret string: never printed by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The Docker backend's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerSection {
    /// Register a Docker backend.
    pub enabled: bool,
    /// Name it is registered under.
    pub name: String,
    /// Engine address; `DOCKER_HOST` or the local socket when absent.
    pub host: Option<String>,
}

impl Default for DockerSection {
    fn default() -> Self {
        DockerSection {
            enabled: true,
            name: "docker".into(),
            host: None,
        }
    }
}

/// The KVM (libvirt) backend's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KvmSection {
    /// Register a KVM backend.
    pub enabled: bool,
    /// Name it is registered under.
    pub name: String,
    /// libvirt connection URI.
    pub uri: String,
    /// Accelerator of new VMs: `auto`, `kvm` or `tcg`.
    pub accelerator: String,
}

impl Default for KvmSection {
    fn default() -> Self {
        KvmSection {
            enabled: true,
            name: "kvm".into(),
            uri: "qemu:///system".into(),
            accelerator: "auto".into(),
        }
    }
}

/// Everything the server can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (`LIBGO_LISTEN`).
    pub listen: SocketAddr,
    /// Directory for the database, exports and other state (`LIBGO_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Database URL (`LIBGO_DATABASE_URL`): `sqlite://…` or `postgres://…`; a SQLite file
    /// in the data dir when absent.
    pub database_url: Option<Secret>,
    /// Name of the first administrator (`LIBGO_ADMIN_USER`).
    pub admin_user: String,
    /// Password of the first administrator (`LIBGO_ADMIN_PASSWORD`); generated and printed
    /// once when absent.
    pub admin_password: Option<Secret>,
    /// HS256 secret for tokens (`LIBGO_JWT_SECRET`); generated and stored in the database
    /// when absent.
    pub jwt_secret: Option<Secret>,
    /// Token lifetime in seconds (`LIBGO_TOKEN_TTL_SECS`).
    pub token_ttl_secs: u64,
    /// Requests per client and minute; 0 turns the limit off (`LIBGO_RATE_LIMIT_PER_MINUTE`).
    pub rate_limit_per_minute: u32,
    /// Failed logins per client and user name within `login_window_secs` before logins are
    /// refused (`LIBGO_LOGIN_MAX_FAILURES`).
    pub login_max_failures: u32,
    /// Window of the login limit in seconds.
    pub login_window_secs: u64,
    /// Largest JSON request body in bytes (`LIBGO_BODY_LIMIT_BYTES`).
    pub body_limit_bytes: usize,
    /// Largest image build context in bytes.
    pub build_body_limit_bytes: usize,
    /// Serve `/metrics` without credentials (`LIBGO_METRICS_PUBLIC`).
    pub metrics_public: bool,
    /// Seconds between per-instance stats samples (for `/metrics`, the stats history and
    /// alert rules); 0 turns sampling off.
    pub stats_interval_secs: u64,
    /// Seconds between rounds that free the pool addresses of instances deleted behind
    /// LibGo's back (`docker rm`, `virsh undefine`); 0 turns them off.
    pub address_reclaim_secs: u64,
    /// Seconds between attempts to connect a backend whose engine is down.
    pub reconnect_secs: u64,
    /// Failed logins of one client address, whatever the user names, within
    /// `login_window_secs` before that client's logins are refused.
    pub login_client_max_failures: u32,
    /// Password checks running at once; further logins answer 429 (0: the number of cores).
    pub login_concurrency: usize,
    /// Seconds between re-checks of the session behind an open WebSocket or log stream.
    pub stream_recheck_secs: u64,
    /// Largest output an exec returns, per stream, in bytes; more is cut and flagged.
    pub exec_output_limit_bytes: u64,
    /// Lines a log read returns when the caller names no `tail`.
    pub logs_default_tail: usize,
    /// Audit records older than this many days are deleted.
    pub audit_retention_days: u64,
    /// At most this many audit records are kept (the oldest go first).
    pub audit_max_rows: u64,
    /// Ended tasks older than this many days are deleted.
    pub task_retention_days: u64,
    /// At most this many ended tasks are kept.
    pub task_max_rows: u64,
    /// Tasks (builds, exports, pulls, batches) one user may have running at once.
    pub tasks_per_user: usize,
    /// WebSockets (events, stats, consoles, VNC) one user may have open at once.
    pub websockets_per_user: usize,
    /// Seconds a request may take before the server answers 504 `TIMEOUT` (streams count
    /// until their first byte; uploads, builds and task waits have their own bounds).
    pub request_timeout_secs: u64,
    /// Requests handled at once; more are answered 503 at once rather than queued.
    pub max_concurrent_requests: usize,
    /// Seconds a client has to send a request's headers before its connection is closed.
    pub header_read_timeout_secs: u64,
    /// Seconds between pings on a WebSocket; a client that answers nothing for three of
    /// them is dropped.
    pub websocket_ping_secs: u64,
    /// Webhooks may target loopback, link-local and metadata addresses
    /// (`LIBGO_WEBHOOK_ALLOW_INTERNAL`); off by default, since a webhook URL is a request
    /// the server makes on an administrator's word.
    pub webhook_allow_internal: bool,
    /// Milliseconds before a failed delivery's first retry; each later wait doubles (up
    /// to 5 minutes), with ±50 % jitter.
    pub webhook_retry_base_ms: u64,
    /// Seconds after which an undelivered event is given up (marked `failed`).
    pub webhook_retry_secs: u64,
    /// Seconds of stats history kept per instance and host.
    pub stats_history_secs: u64,
    /// Seconds of history kept at every sample; older samples are averaged into
    /// 5-minute buckets.
    pub stats_history_full_secs: u64,
    /// How long a host's VM engine may not answer before the VMs of a compute pool with
    /// `failover` are started on another of its hosts (`LIBGO_FAILOVER_AFTER_SECS`, 30).
    pub failover_after_secs: u64,
    /// Docker backend.
    pub docker: DockerSection,
    /// KVM backend.
    pub kvm: KvmSection,
    /// More engines, each under its own name (`[[backends]]` with `name`, `engine` =
    /// `docker` | `kvm`, `url`, and for libvirt `accelerator`): Docker daemons and libvirt
    /// hosts besides the local pair.
    pub backends: Vec<libgo::BackendConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("/var/lib/libgo"),
            database_url: None,
            admin_user: "admin".into(),
            admin_password: None,
            jwt_secret: None,
            token_ttl_secs: 3600,
            rate_limit_per_minute: 1200,
            login_max_failures: 5,
            login_window_secs: 300,
            body_limit_bytes: 1 << 20,
            build_body_limit_bytes: 512 << 20,
            metrics_public: false,
            stats_interval_secs: 15,
            address_reclaim_secs: 60,
            reconnect_secs: 5,
            login_client_max_failures: 20,
            login_concurrency: 0,
            stream_recheck_secs: 30,
            exec_output_limit_bytes: 16 << 20,
            logs_default_tail: 1000,
            audit_retention_days: 90,
            audit_max_rows: 100_000,
            task_retention_days: 30,
            task_max_rows: 10_000,
            tasks_per_user: 8,
            websockets_per_user: 64,
            request_timeout_secs: 120,
            max_concurrent_requests: 1024,
            header_read_timeout_secs: 30,
            websocket_ping_secs: 20,
            webhook_allow_internal: false,
            webhook_retry_base_ms: 1000,
            webhook_retry_secs: 3600,
            stats_history_secs: 86_400,
            stats_history_full_secs: 3600,
            failover_after_secs: 30,
            docker: DockerSection::default(),
            kvm: KvmSection::default(),
            backends: Vec::new(),
        }
    }
}

/// A configuration that could not be read.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn parse<T: std::str::FromStr>(var: &str, value: &str) -> Result<T, ConfigError> {
    value
        .parse()
        .map_err(|_| ConfigError(format!("{var}={value:?} is not a valid value")))
}

fn parse_bool(var: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError(format!("{var}={value:?} is not a boolean"))),
    }
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
    }

    /// Overrides fields from `LIBGO_*` variables in `vars`.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (k, v) in vars {
            let v = v.as_str();
            match k.as_str() {
                "LIBGO_LISTEN" => self.listen = parse(&k, v)?,
                "LIBGO_DATA_DIR" => self.data_dir = PathBuf::from(v),
                "LIBGO_DATABASE_URL" => self.database_url = Some(Secret(v.into())),
                "LIBGO_ADMIN_USER" => self.admin_user = v.into(),
                "LIBGO_ADMIN_PASSWORD" => self.admin_password = Some(Secret(v.into())),
                "LIBGO_JWT_SECRET" => self.jwt_secret = Some(Secret(v.into())),
                "LIBGO_TOKEN_TTL_SECS" => self.token_ttl_secs = parse(&k, v)?,
                "LIBGO_RATE_LIMIT_PER_MINUTE" => self.rate_limit_per_minute = parse(&k, v)?,
                "LIBGO_LOGIN_MAX_FAILURES" => self.login_max_failures = parse(&k, v)?,
                "LIBGO_EXEC_OUTPUT_LIMIT_BYTES" => self.exec_output_limit_bytes = parse(&k, v)?,
                "LIBGO_AUDIT_RETENTION_DAYS" => self.audit_retention_days = parse(&k, v)?,
                "LIBGO_TASKS_PER_USER" => self.tasks_per_user = parse(&k, v)?,
                "LIBGO_REQUEST_TIMEOUT_SECS" => self.request_timeout_secs = parse(&k, v)?,
                "LIBGO_BODY_LIMIT_BYTES" => self.body_limit_bytes = parse(&k, v)?,
                "LIBGO_METRICS_PUBLIC" => self.metrics_public = parse_bool(&k, v)?,
                "LIBGO_STATS_INTERVAL_SECS" => self.stats_interval_secs = parse(&k, v)?,
                "LIBGO_ADDRESS_RECLAIM_SECS" => self.address_reclaim_secs = parse(&k, v)?,
                "LIBGO_FAILOVER_AFTER_SECS" => self.failover_after_secs = parse(&k, v)?,
                "LIBGO_WEBHOOK_ALLOW_INTERNAL" => self.webhook_allow_internal = parse_bool(&k, v)?,
                "LIBGO_DOCKER" => self.docker.enabled = parse_bool(&k, v)?,
                "LIBGO_DOCKER_HOST" => self.docker.host = Some(v.into()),
                "LIBGO_KVM" => self.kvm.enabled = parse_bool(&k, v)?,
                "LIBGO_KVM_URI" => self.kvm.uri = v.into(),
                "LIBGO_KVM_ACCELERATOR" => self.kvm.accelerator = v.into(),
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks values that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.token_ttl_secs == 0 {
            return Err(ConfigError("token_ttl_secs must be positive".into()));
        }
        if self.request_timeout_secs < 10 {
            return Err(ConfigError(
                "request_timeout_secs must be at least 10".into(),
            ));
        }
        if self.max_concurrent_requests == 0 {
            return Err(ConfigError(
                "max_concurrent_requests must be positive".into(),
            ));
        }
        if self.stream_recheck_secs == 0 {
            return Err(ConfigError("stream_recheck_secs must be positive".into()));
        }
        if self.header_read_timeout_secs == 0 || self.websocket_ping_secs == 0 {
            return Err(ConfigError(
                "header_read_timeout_secs and websocket_ping_secs must be positive".into(),
            ));
        }
        if self.body_limit_bytes == 0 {
            return Err(ConfigError("body_limit_bytes must be positive".into()));
        }
        if let Some(p) = &self.admin_password
            && p.0.len() < 8
        {
            return Err(ConfigError(
                "the admin password must have at least 8 characters".into(),
            ));
        }
        Ok(())
    }

    /// The database URL in use.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.0.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("libgo.db").display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_values() {
        let mut c: Config = toml::from_str(
            "listen = \"0.0.0.0:9000\"\ndata_dir = \"/tmp/x\"\n[docker]\nenabled = false\n",
        )
        .expect("valid toml");
        assert_eq!(c.listen.port(), 9000);
        assert!(!c.docker.enabled);
        c.apply_env([
            ("LIBGO_LISTEN".to_string(), "127.0.0.1:9100".to_string()),
            (
                "LIBGO_ADMIN_PASSWORD".to_string(),
                "s3cret-pass".to_string(),
            ),
            ("OTHER".to_string(), "x".to_string()),
        ])
        .expect("valid env");
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert!(!format!("{c:?}").contains("s3cret-pass"));
        assert!(
            c.apply_env([("LIBGO_LISTEN".into(), "nope".into())])
                .is_err()
        );
        assert!(toml::from_str::<Config>("unknown = 1").is_err());
    }
}
