//! Events for WebSocket clients: instance lifecycle events pumped from every backend
//! through the facade, and task progress.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libgo_core::{EventFilter, InstanceKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::state::AppState;
use crate::tasks::Task;

/// One message on `/api/v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerEvent {
    /// An instance lifecycle event.
    Instance {
        /// The event.
        event: libgo_core::Event,
    },
    /// A task changed.
    Task {
        /// The task now.
        task: Task,
    },
    /// A host stopped or started answering: while it does not, its instances read `lost`.
    Host {
        /// Host name.
        host: String,
        /// Whether every engine of it answers now.
        alive: bool,
        /// What its engines said.
        message: String,
    },
    /// An alert rule started or stopped firing for an instance.
    Alert {
        /// The transition.
        alert: crate::alerts::AlertTransition,
    },
}

impl ServerEvent {
    /// Whether `caller` may see this message: instance events go to every reader, a task's
    /// changes only to its owner and administrators (they carry results and paths).
    pub fn visible_to(&self, caller: &crate::auth::Caller) -> bool {
        match self {
            ServerEvent::Instance { .. } | ServerEvent::Host { .. } | ServerEvent::Alert { .. } => {
                true
            }
            ServerEvent::Task { task } => task.visible_to(caller),
        }
    }
}

/// What a scoped caller's event stream lets through: instance and alert events of the
/// instances of its groups. Each instance is looked up once and the answer remembered, so
/// that the deletion of one it saw still reaches it.
#[derive(Debug, Default)]
pub struct GroupScope {
    seen: std::collections::HashMap<String, bool>,
}

impl GroupScope {
    /// Whether `caller` may see `event` under its group scope.
    pub async fn admits(
        &mut self,
        state: &crate::state::AppState,
        caller: &crate::auth::Caller,
        event: &ServerEvent,
    ) -> bool {
        let id = match event {
            ServerEvent::Instance { event } => &event.instance_id,
            ServerEvent::Alert { alert } => &alert.instance_id,
            ServerEvent::Task { .. } | ServerEvent::Host { .. } => return true,
        };
        self.sees_instance(state, caller, id).await
    }

    /// Whether `caller` may see instance `id` under its group scope.
    pub async fn sees_instance(
        &mut self,
        state: &crate::state::AppState,
        caller: &crate::auth::Caller,
        id: &str,
    ) -> bool {
        if caller.groups.is_none() {
            return true;
        }
        if let Some(seen) = self.seen.get(id) {
            return *seen;
        }
        let visible = crate::auth::require_in_scope(state, caller, id)
            .await
            .is_ok();
        // Bounded: a long stream over many short-lived instances starts afresh.
        if self.seen.len() >= 10_000 {
            self.seen.clear();
        }
        self.seen.insert(id.to_string(), visible);
        visible
    }
}

/// Filters of the events socket (query parameters).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events of this instance kind.
    #[param(value_type = Option<String>)]
    pub kind: Option<InstanceKind>,
    /// Only this backend.
    pub backend: Option<String>,
    /// Only this instance (id or name).
    pub instance: Option<String>,
    /// Comma-separated actions (`started,stopped,…`).
    pub actions: Option<String>,
    /// Comma-separated message types: `instance`, `task` (both when absent).
    pub types: Option<String>,
}

impl EventQuery {
    /// The core filter for instance events.
    pub fn filter(&self) -> Result<EventFilter, crate::error::ApiError> {
        let actions = match &self.actions {
            None => Vec::new(),
            Some(s) => s
                .split(',')
                .filter(|a| !a.is_empty())
                .map(|a| {
                    serde_json::from_value(serde_json::Value::String(a.trim().to_string())).map_err(
                        |_| crate::error::ApiError::invalid(format!("unknown event action {a:?}")),
                    )
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(EventFilter {
            kind: self.kind,
            backend: self.backend.clone(),
            instance: self.instance.clone(),
            actions,
        })
    }

    /// Whether a message passes the filters.
    pub fn admits(&self, filter: &EventFilter, e: &ServerEvent) -> bool {
        let wants = |t: &str| {
            self.types
                .as_deref()
                .is_none_or(|ts| ts.split(',').any(|x| x.trim() == t))
        };
        match e {
            ServerEvent::Instance { event } => wants("instance") && filter.matches(event),
            ServerEvent::Task { .. } => wants("task"),
            ServerEvent::Host { .. } => wants("host"),
            ServerEvent::Alert { .. } => wants("alert"),
        }
    }
}

/// How often the hosts besides `local` are asked whether they answer.
pub const HOST_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Watches the hosts besides `local` until the server stops: every [`HOST_CHECK_EVERY`]
/// each one's engines are asked (3 s at most); a host that stops or starts answering is
/// announced on `/api/v1/events`, and an answering one's instances are listed so that they
/// can read `lost` the moment it stops.
pub fn spawn_host_watch(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut alive: std::collections::HashMap<String, bool> = Default::default();
        loop {
            let hosts: Vec<_> = state
                .libgo
                .host_memberships()
                .into_iter()
                .filter(|h| h.name != libgo_core::LOCAL_HOST)
                .collect();
            if !hosts.is_empty() {
                let checks = futures::future::join_all(hosts.iter().map(|h| {
                    let backends = state.libgo.host_backends(&h.name);
                    async move {
                        let answers = futures::future::join_all(
                            backends
                                .iter()
                                .map(|b| tokio::time::timeout(Duration::from_secs(3), b.health())),
                        )
                        .await;
                        let mut up = !answers.is_empty();
                        let mut message = Vec::new();
                        let mut engines = Vec::new();
                        for (b, a) in backends.iter().zip(answers) {
                            let answered = matches!(&a, Ok(h) if h.up);
                            engines.push((b.name().to_string(), answered));
                            match a {
                                Ok(h) if h.up => {}
                                Ok(h) => {
                                    up = false;
                                    message.push(format!("{}: {}", b.name(), h.message));
                                }
                                Err(_) => {
                                    up = false;
                                    message.push(format!("{}: no answer within 3 s", b.name()));
                                }
                            }
                        }
                        (up, message.join("; "), engines)
                    }
                }))
                .await;
                for (h, (up, message, engines)) in hosts.iter().zip(checks) {
                    for (backend, engine_up) in engines {
                        state.libgo.note_backend_up(&backend, engine_up);
                    }
                    if alive.insert(h.name.clone(), up) != Some(up) {
                        if up {
                            tracing::info!(host = %h.name, "host answers");
                        } else {
                            tracing::warn!(host = %h.name, %message, "host does not answer");
                        }
                        let _ = state.events.send(ServerEvent::Host {
                            host: h.name.clone(),
                            alive: up,
                            message,
                        });
                    }
                }
                // Keeps what each answering host has fresh (for `lost`, and the definitions
                // failover needs).
                if let Ok(instances) = state
                    .libgo
                    .list_all(&libgo_core::InstanceFilter::default())
                    .await
                {
                    state.libgo.failover_keep(&instances).await;
                }
                fail_over_dead_hosts(&state).await;
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(HOST_CHECK_EVERY) => {}
            }
        }
    });
}

/// Replicas agree through this lease on which one fails hosts over.
const FAILOVER_LEASE: &str = "failover";

/// Starts a `host.failover` task for each host whose VM engine has not answered for
/// `failover_after_secs` in a pool with failover (on the replica holding the lease).
async fn fail_over_dead_hosts(state: &Arc<AppState>) {
    if !state.libgo.compute_pools().iter().any(|p| p.failover) {
        return;
    }
    let after = Duration::from_secs(state.config.failover_after_secs);
    let ttl = 3 * HOST_CHECK_EVERY.as_millis() as i64;
    match crate::webhooks::lease(state, FAILOVER_LEASE, ttl).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(error = %e, "cannot take the failover lease");
            return;
        }
    }
    for host in state.libgo.failover_due(after) {
        tracing::warn!(%host, "failing the host's VMs over");
        let libgo = state.libgo.clone();
        let target = host.clone();
        let spawned = state
            .tasks
            .spawn(
                "host.failover",
                Some(host),
                FAILOVER_BY,
                move |ctx| async move {
                    let r = libgo.fail_over(&target, ctx.sink()).await?;
                    Ok(serde_json::to_value(r).unwrap_or_default())
                },
            )
            .await;
        if let Err(e) = spawned {
            tracing::error!(error = ?e, "cannot start the failover task");
        }
    }
}

/// Who a failover task reads as started by: the server itself.
pub const FAILOVER_BY: &str = "libgo";

/// Forwards the events of backend `name` until the server stops, resubscribing when the
/// stream ends or fails (an engine restart), while the backend stays registered.
pub fn spawn_pump(state: Arc<AppState>, name: String) {
    tokio::spawn(async move {
        let filter = EventFilter {
            backend: Some(name.clone()),
            ..Default::default()
        };
        loop {
            if state.shutdown.is_cancelled() || state.libgo.backend(&name).is_err() {
                return;
            }
            match state.libgo.events(filter.clone()).await {
                Ok(mut stream) => loop {
                    tokio::select! {
                        _ = state.shutdown.cancelled() => return,
                        item = stream.next() => match item {
                            Some(Ok(event)) => {
                                let _ = state.events.send(ServerEvent::Instance { event });
                            }
                            Some(Err(e)) => {
                                tracing::warn!(backend = %name, error = %e, "event stream failed");
                                break;
                            }
                            None => break,
                        }
                    }
                },
                Err(e) => tracing::debug!(backend = %name, error = %e, "no event stream"),
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    });
}
