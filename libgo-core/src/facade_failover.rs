//! Failover (a compute pool's `failover: true`, Nano's): while a VM engine of another host
//! answers, the definitions of its VMs are kept; once it has not answered for a while, each
//! of its VMs is defined again on the host [`crate::hosts::place`] picks in its pool, and
//! started if it ran. Its disks must be on storage every host of the pool reaches (the same
//! storage pool path on each, e.g. NFS); a VM whose disks the new host cannot open is not
//! failed over and its item says why. QEMU's image locks are the fence: a VM whose QEMU
//! still runs on a host that only looks dead is not started a second time.
//!
//! When the old host answers again, the copies left there are undefined (their volumes,
//! which the moved VM uses, are kept); until then they are hidden from lists.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::LibGo;
use crate::error::{ErrorKind, Result};
use crate::hosts::LOCAL_HOST;
use crate::types::*;

/// How often a kept definition is read again (a VM's memory or disks may change).
const DEFINITION_REFRESH: Duration = Duration::from_secs(30);

/// A VM's definition, kept while its host answers.
#[derive(Debug, Clone)]
pub(crate) struct KeptVm {
    backend: String,
    name: String,
    memory_bytes: Option<u64>,
    running: bool,
    definition: String,
    read_at: Instant,
}

/// What failover knows: the kept definitions, which engines do not answer, and the copies
/// left on a host the VMs failed over from.
#[derive(Debug, Default)]
pub(crate) struct FailoverState {
    /// Kept definitions by instance id.
    kept: HashMap<String, KeptVm>,
    /// Since when each backend of another host does not answer, as the host watch saw.
    down_since: HashMap<String, Instant>,
    /// Backends whose death was handled (failover begun), until they answer again.
    handled: HashSet<String>,
    /// Instances that failed over: (id, name) → the backend they left, whose copy is hidden
    /// until it is undefined.
    pub left: HashMap<(String, String), String>,
}

impl LibGo {
    fn failover_mut(&self) -> std::sync::MutexGuard<'_, FailoverState> {
        self.failover.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The names of the compute pools with failover.
    fn failover_pools(&self) -> HashSet<String> {
        self.compute_pools()
            .into_iter()
            .filter(|p| p.failover)
            .map(|p| p.name)
            .collect()
    }

    /// Notes whether backend `backend` (of another host) answered just now; the server's
    /// host watch calls this for each.
    pub fn note_backend_up(&self, backend: &str, up: bool) {
        let mut f = self.failover_mut();
        if up {
            f.down_since.remove(backend);
            f.handled.remove(backend);
        } else {
            f.down_since
                .entry(backend.to_string())
                .or_insert_with(Instant::now);
        }
    }

    /// Whether the copy of instance `id` (an id or a name) on backend `backend` is one left
    /// behind by failover.
    pub(crate) fn left_by_failover(&self, backend: &str, id: &str) -> bool {
        self.failover_mut()
            .left
            .iter()
            .any(|((i, n), b)| b == backend && (i == id || n == id))
    }

    /// Keeps the definitions of the VMs of answering hosts in failover pools (`instances` is
    /// a complete list, as [`LibGo::list_all`] answers), and undefines the copies left on a
    /// host that answers again. The server's host watch calls this after each check.
    pub async fn failover_keep(&self, instances: &[Instance]) {
        let pools = self.failover_pools();
        let mut watched = Vec::new();
        for m in self.host_memberships() {
            if m.name == LOCAL_HOST || !pools.contains(&m.pool) {
                continue;
            }
            for b in self.host_backends(&m.name) {
                if b.capabilities().kinds.contains(&InstanceKind::Vm) {
                    watched.push(b);
                }
            }
        }
        let names: HashSet<&str> = watched.iter().map(|b| b.name()).collect();
        self.failover_mut()
            .kept
            .retain(|_, k| names.contains(k.backend.as_str()));
        for b in &watched {
            let mine: Vec<&Instance> = instances
                .iter()
                .filter(|i| i.backend == b.name() && i.kind == InstanceKind::Vm)
                .collect();
            // A backend that does not answer (its VMs read `lost`) keeps what was read.
            if self.failover_mut().down_since.contains_key(b.name())
                || mine.iter().any(|i| i.state == InstanceState::Lost)
            {
                continue;
            }
            let ids: HashSet<&str> = mine.iter().map(|i| i.id.as_str()).collect();
            self.failover_mut()
                .kept
                .retain(|id, k| k.backend != b.name() || ids.contains(id.as_str()));
            for i in mine {
                let stale = self
                    .failover_mut()
                    .kept
                    .get(&i.id)
                    .is_none_or(|k| k.read_at.elapsed() >= DEFINITION_REFRESH);
                let definition = if stale {
                    match b.definition(&i.id).await {
                        Ok(d) => Some(d),
                        Err(e) => {
                            tracing::warn!(instance = %i.name, error = %e, "cannot read the VM's definition for failover");
                            continue;
                        }
                    }
                } else {
                    None
                };
                let mut f = self.failover_mut();
                match (f.kept.get_mut(&i.id), definition) {
                    (Some(k), None) => {
                        k.running = i.state.holds_memory();
                        k.memory_bytes = i.memory_bytes;
                    }
                    (_, Some(definition)) => {
                        f.kept.insert(
                            i.id.clone(),
                            KeptVm {
                                backend: b.name().to_string(),
                                name: i.name.clone(),
                                memory_bytes: i.memory_bytes,
                                running: i.state.holds_memory(),
                                definition,
                                read_at: Instant::now(),
                            },
                        );
                    }
                    (None, None) => {}
                }
            }
        }
        self.remove_left_copies().await;
    }

    /// Undefines the copies failover left on backends that answer again.
    async fn remove_left_copies(&self) {
        let left: Vec<((String, String), String)> = {
            let f = self.failover_mut();
            f.left
                .iter()
                .filter(|(_, b)| !f.down_since.contains_key(b.as_str()))
                .map(|(k, b)| (k.clone(), b.clone()))
                .collect()
        };
        for ((id, name), backend) in left {
            let Ok(b) = self.backend(&backend) else {
                self.failover_mut().left.remove(&(id, name));
                continue;
            };
            match b.remove_definition(&id).await {
                Ok(()) => {
                    tracing::info!(instance = %name, %backend, "removed the copy left by failover");
                    self.forget_seen(&backend, &id);
                    self.failover_mut().left.remove(&(id, name));
                }
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    tracing::error!(instance = %name, %backend, error = %e, "a failed-over VM runs on its old host too");
                }
                Err(e) => {
                    tracing::warn!(instance = %name, %backend, error = %e, "cannot remove the copy left by failover yet");
                }
            }
        }
    }

    /// The hosts whose VM engine has not answered for `after`, in a pool with failover, with
    /// VMs kept: each is answered once per death (until its engine answers again).
    pub fn failover_due(&self, after: Duration) -> Vec<String> {
        let pools = self.failover_pools();
        let mut hosts = Vec::new();
        let mut f = self.failover_mut();
        let dead: Vec<String> = f
            .down_since
            .iter()
            .filter(|(b, since)| since.elapsed() >= after && !f.handled.contains(*b))
            .filter(|(b, _)| f.kept.values().any(|k| &k.backend == *b))
            .map(|(b, _)| b.clone())
            .collect();
        for b in dead {
            let host = self.host_of(&b);
            let in_pool = self
                .host_membership(&host)
                .is_ok_and(|m| pools.contains(&m.pool));
            if in_pool {
                f.handled.insert(b);
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
        }
        hosts
    }

    /// Defines each kept VM of host `host`'s dead VM engines again on the host placement
    /// picks in `host`'s pool (started when it ran): one item per VM.
    pub async fn fail_over(&self, host: &str, progress: ProgressSink) -> Result<BatchReport> {
        let pool = self.host_membership(host)?.pool;
        let backends: HashSet<String> = self
            .host_backends(host)
            .iter()
            .map(|b| b.name().to_string())
            .collect();
        let mine: Vec<(String, KeptVm)> = {
            let f = self.failover_mut();
            let mut v: Vec<_> = f
                .kept
                .iter()
                .filter(|(_, k)| {
                    backends.contains(&k.backend) && f.down_since.contains_key(&k.backend)
                })
                .map(|(id, k)| (id.clone(), k.clone()))
                .collect();
            v.sort_by(|a, b| a.1.name.cmp(&b.1.name));
            v
        };
        let mut outcomes = Vec::with_capacity(mine.len());
        for (id, k) in &mine {
            let outcome = self.fail_over_one(id, k, &pool).await;
            match &outcome {
                Ok(_) => tracing::warn!(instance = %k.name, from = host, "failed over"),
                Err(e) => {
                    tracing::error!(instance = %k.name, from = host, error = %e, "failover failed")
                }
            }
            outcomes.push((k.name.clone(), outcome));
            crate::facade::batch_progress(&progress, outcomes.len(), mine.len());
        }
        Ok(crate::facade::batch_report(outcomes, BatchStatus::Moved))
    }

    async fn fail_over_one(&self, id: &str, k: &KeptVm, pool: &str) -> Result<Option<String>> {
        let spec = InstanceSpec {
            name: k.name.clone(),
            kind: Some(InstanceKind::Vm),
            memory_bytes: k.memory_bytes,
            pool: Some(pool.to_string()),
            ..Default::default()
        };
        let (target, claim) = self.placed_backend(&spec).await?;
        let mut instance = target.restore(id, &k.definition, k.running).await?;
        self.failover_mut()
            .left
            .insert((id.to_string(), k.name.clone()), k.backend.clone());
        self.forget_seen(&k.backend, id);
        self.failover_mut().kept.remove(id);
        self.stamp(&mut instance);
        claim.settle_if_running(&instance);
        Ok(Some(instance.id))
    }
}
