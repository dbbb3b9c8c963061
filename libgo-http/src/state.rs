//! Shared state of the server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

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

/// How long a `/health` answer is reused: the engines are asked at most once per this
/// period, however many clients (load balancers, probes) poll.
pub const HEALTH_TTL: Duration = Duration::from_secs(1);

/// The health of every backend as last asked.
#[derive(Debug, Clone)]
pub struct HealthSnapshot {
    /// When the engines were asked.
    pub checked_at: DateTime<Utc>,
    /// Each backend, registered or pending.
    pub backends: Vec<Health>,
    at: Instant,
    generation: u64,
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
    /// Password hashes computed at once (argon2 takes ~19 MiB and a core each).
    pub password_slots: tokio::sync::Semaphore,
    /// Requests being handled (see [`crate::config::Config::max_concurrent_requests`]).
    pub request_slots: tokio::sync::Semaphore,
    /// Open WebSockets per user id.
    pub sockets: Mutex<std::collections::HashMap<String, usize>>,
    /// Unauthenticated failures not yet summarised in the audit log.
    pub unauthenticated: Mutex<UnauthenticatedFailures>,
    /// Per-client request limiter.
    pub rate_limiter: RateLimiter,
    /// Configured backends whose engines have not answered yet.
    pub pending: Mutex<Vec<PendingBackend>>,
    /// The cached health view (see [`AppState::cached_health`]).
    pub health_cache: tokio::sync::Mutex<Option<HealthSnapshot>>,
    /// Bumped when a backend connects or fails, so that the cached health is not reused.
    pub health_generation: AtomicU64,
    /// Start time.
    pub started: Instant,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Hosts this replica is adding, removing or connecting: the database sync leaves them
    /// alone meanwhile.
    pub hosts_busy: Mutex<std::collections::HashSet<String>>,
    /// Woken when a webhook delivery is queued.
    pub webhook_wake: tokio::sync::Notify,
    /// Sampled stats of instances and hosts.
    pub history: crate::history::StatsHistory,
    /// Alert conditions holding, not yet for long enough to fire.
    pub alert_pending: crate::alerts::Pending,
}

impl AppState {
    /// Whether host `name` is being added, removed or connected by this replica.
    pub fn host_busy(&self, name: &str) -> bool {
        self.hosts_busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    /// Marks host `name` as busy or not (see [`AppState::host_busy`]).
    pub fn set_host_busy(&self, name: &str, busy: bool) {
        let mut set = self.hosts_busy.lock().unwrap_or_else(|e| e.into_inner());
        if busy {
            set.insert(name.to_string());
        } else {
            set.remove(name);
        }
    }
}

/// Failed unauthenticated requests since the last audit summary: counted, never stored
/// one row each, so a flood of bad logins cannot grow the database.
#[derive(Debug)]
pub struct UnauthenticatedFailures {
    /// Failures since the last summary row.
    pub count: u64,
    /// When the last summary row was written.
    pub last_summary: Option<Instant>,
}

/// At most one summary row of unauthenticated failures per this period.
pub const UNAUTHENTICATED_SUMMARY_EVERY: Duration = Duration::from_secs(60);

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
        self.health_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// [`AppState::health`], asked of the engines at most once per [`HEALTH_TTL`]: answers
    /// are at most that stale, except that a backend connecting or failing to connect
    /// refreshes it at once. Concurrent callers share one refresh (the others wait for it
    /// rather than asking the engines again).
    pub async fn cached_health(&self) -> HealthSnapshot {
        let mut cache = self.health_cache.lock().await;
        let generation = self.health_generation.load(Ordering::SeqCst);
        if let Some(c) = cache.as_ref()
            && c.generation == generation
            && c.at.elapsed() < HEALTH_TTL
        {
            return c.clone();
        }
        let snapshot = HealthSnapshot {
            checked_at: Utc::now(),
            backends: self.health().await,
            at: Instant::now(),
            generation,
        };
        *cache = Some(snapshot.clone());
        snapshot
    }

    /// Counts an unauthenticated failure (a bad login, a request without valid
    /// credentials): a metric, and at most one audit row per
    /// [`UNAUTHENTICATED_SUMMARY_EVERY`] saying how many there were.
    pub async fn note_unauthenticated_failure(&self, status: u16, client: &str) {
        self.metrics.unauthenticated_failures.inc();
        let summary = {
            let mut u = self
                .unauthenticated
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            u.count += 1;
            let due = u
                .last_summary
                .is_none_or(|t| t.elapsed() >= UNAUTHENTICATED_SUMMARY_EVERY);
            if due {
                u.last_summary = Some(Instant::now());
                Some(std::mem::take(&mut u.count))
            } else {
                None
            }
        };
        let Some(count) = summary else { return };
        let record = crate::db::AuditRecord {
            id: uuid::Uuid::new_v4().to_string(),
            time: Utc::now(),
            username: None,
            role: None,
            method: "-".into(),
            path: "unauthenticated failures".into(),
            route: None,
            target: Some(format!("{count} failed unauthenticated requests")),
            status,
            outcome: "denied".into(),
            request_id: None,
            client: Some(client.to_string()),
        };
        if let Err(e) = self.db.audit_insert(&record).await {
            tracing::error!(error = %e, "cannot write the audit log");
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
