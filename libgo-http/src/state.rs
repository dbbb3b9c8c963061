//! Shared state of the server.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use libgo_core::{Health, LibGo};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::auth::{LoginLimiter, Tokens};
use crate::config::Config;
use crate::db::Db;
use crate::events::ServerEvent;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::tasks::TaskManager;

/// A configured backend that is not (yet) registered, because its engine did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBackend {
    /// Name it will be registered under.
    pub name: String,
    /// Why it is not connected.
    pub error: String,
}

/// Everything a handler needs; shared as `Arc<AppState>`.
pub struct AppState {
    /// The facade: the only way to engines.
    pub libgo: Arc<LibGo>,
    /// Configuration.
    pub config: Config,
    /// Users, keys, tasks, audit.
    pub db: Db,
    /// Token signing.
    pub tokens: Tokens,
    /// Long-running work.
    pub tasks: TaskManager,
    /// Instance and task events for WebSocket clients.
    pub events: broadcast::Sender<ServerEvent>,
    /// Prometheus collectors.
    pub metrics: Metrics,
    /// Failed-login limiter.
    pub login_limiter: LoginLimiter,
    /// Per-client request limiter.
    pub rate_limiter: RateLimiter,
    /// Configured backends whose engines have not answered yet.
    pub pending: Mutex<Vec<PendingBackend>>,
    /// Start time.
    pub started: Instant,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("libgo", &self.libgo)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Backends not connected yet.
    pub fn pending(&self) -> Vec<PendingBackend> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets or clears the pending entry of a backend.
    pub fn set_pending(&self, name: &str, error: Option<String>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|b| b.name != name);
        if let Some(error) = error {
            p.push(PendingBackend {
                name: name.to_string(),
                error,
            });
        }
    }

    /// Health of registered backends plus configured ones that are not connected.
    pub async fn health(&self) -> Vec<Health> {
        let mut all = self.libgo.health().await;
        for p in self.pending() {
            all.push(Health {
                backend: p.name,
                up: false,
                message: p.error,
                latency_ms: 0,
            });
        }
        all
    }
}
