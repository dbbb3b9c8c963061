//! Hosts and compute pools follow the database: every replica reads them every
//! [`SYNC_EVERY`] and connects, changes or forgets hosts to match, so that a host added
//! through one replica is used by all of them within seconds (and by the next start).

use std::sync::Arc;
use std::time::Duration;

use libgo_core::{ComputePoolSpec, LOCAL_HOST, hosts::DEFAULT_POOL};

use crate::db::ConfigTable;
use crate::events;
use crate::state::AppState;

/// How often a replica reads the hosts and pools from the database.
pub const SYNC_EVERY: Duration = Duration::from_secs(2);

/// Brings the facade's pools and hosts to what the database holds, once.
pub async fn sync_once(state: &Arc<AppState>) -> Result<(), sqlx::Error> {
    let pools = state.db.config_list(ConfigTable::ComputePools).await?;
    for (name, json) in &pools {
        if state.host_busy(&format!("pool:{name}")) {
            continue;
        }
        match serde_json::from_str::<ComputePoolSpec>(json) {
            Ok(spec) => {
                let same = state
                    .libgo
                    .compute_pool(&spec.name)
                    .is_ok_and(|p| p.enabled == spec.enabled && p.failover == spec.failover);
                if !same && let Err(e) = state.libgo.pool_set(&spec) {
                    tracing::error!(pool = %name, error = %e, "stored compute pool refused");
                }
            }
            Err(e) => tracing::error!(pool = %name, error = %e, "stored compute pool unreadable"),
        }
    }
    let hosts = state.db.config_list(ConfigTable::Hosts).await?;
    let engines = crate::backends::engine_config(&state.config);
    for (name, json) in &hosts {
        if state.host_busy(name) {
            continue;
        }
        let config: libgo::HostConfig = match serde_json::from_str(json) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(host = %name, error = %e, "stored host unreadable; left out");
                continue;
            }
        };
        match state.libgo.host_membership(name) {
            // Known as stored; its engines join as they answer (see `connect`).
            Ok(m) if m == config.membership => continue,
            Ok(_) => {
                if let Err(e) = state.libgo.host_set(config.membership.clone()) {
                    tracing::error!(host = %name, error = %e, "stored host refused");
                }
                continue;
            }
            Err(_) => {}
        }
        if let Err(e) = state.libgo.host_set(config.membership.clone()) {
            tracing::error!(host = %name, error = %e, "stored host refused; left out");
            continue;
        }
        if name != LOCAL_HOST {
            connect(state.clone(), engines.clone(), config);
        }
    }
    // Hosts and pools another replica removed.
    for m in state.libgo.host_memberships() {
        if m.name != LOCAL_HOST
            && !state.host_busy(&m.name)
            && !hosts.iter().any(|(n, _)| *n == m.name)
        {
            tracing::info!(host = %m.name, "host removed through another replica");
            let _ = state.libgo.host_remove(&m.name);
        }
    }
    for p in state.libgo.compute_pools() {
        if p.name != DEFAULT_POOL
            && !state.host_busy(&format!("pool:{}", p.name))
            && !pools.iter().any(|(n, _)| *n == p.name)
        {
            let _ = state.libgo.pool_remove(&p.name);
        }
    }
    Ok(())
}

/// Connects each engine of `config` in the background, retrying every `reconnect_secs`
/// while the host is known; the host counts as busy until every engine joined or it went.
fn connect(state: Arc<AppState>, engines: libgo::EngineConfig, config: libgo::HostConfig) {
    let host = config.membership.name.clone();
    let backends = match config.backends() {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(host = %host, error = %e, "stored host refused; left out");
            return;
        }
    };
    state.set_host_busy(&host, true);
    tokio::spawn(async move {
        let every = Duration::from_secs(state.config.reconnect_secs.max(1));
        let mut left = backends;
        while !left.is_empty() {
            let mut still = Vec::new();
            for b in left {
                if state.libgo.backend(&b.name).is_ok() {
                    continue;
                }
                match engines.connect_backend(&b).await {
                    Ok(backend) => match state.libgo.register_on(&host, backend) {
                        Ok(()) => {
                            tracing::info!(host = %host, backend = %b.name, "host engine connected");
                            events::spawn_pump(state.clone(), b.name.clone());
                        }
                        Err(e) => {
                            tracing::error!(backend = %b.name, error = %e, "cannot register backend")
                        }
                    },
                    Err(e) => {
                        tracing::warn!(host = %host, backend = %b.name, error = %e, "host engine down; will retry");
                        still.push(b);
                    }
                }
            }
            left = still;
            if left.is_empty() {
                break;
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
            if state.libgo.host_membership(&host).is_err() {
                break;
            }
        }
        state.set_host_busy(&host, false);
    });
}

/// Syncs now, then every [`SYNC_EVERY`] until the server stops.
pub fn spawn(state: Arc<AppState>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(SYNC_EVERY) => {}
            }
            if let Err(e) = sync_once(&state).await {
                tracing::warn!(error = %e, "cannot read hosts from the database");
            }
        }
    });
}
