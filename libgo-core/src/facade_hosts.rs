//! The facade's hosts: which backend is on which host, what each host has, where a new
//! instance goes, and moving instances between hosts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::future::join_all;

use crate::backend::Backend;
use crate::error::{Error, ErrorKind, Result};
use crate::hosts::{
    Candidate, ComputePool, ComputePoolSpec, DEFAULT_POOL, EvacuateAction, EvacuateRequest, Host,
    HostAllocation, HostEngine, HostInstanceCounts, HostMembership, HostResources, LOCAL_HOST,
    MigrateRequest, MigrationReport, MigrationSpec, OffOn, Placement, PoolStatus, memory_refusal,
    place, reservation,
};
use crate::types::*;
use crate::{LibGo, validate};

/// The hosts the facade knows besides `local`, and the host of each backend.
#[derive(Debug, Default)]
pub(crate) struct HostRegistry {
    /// Hosts by name; `local` is here once it was set, else implied.
    pub hosts: BTreeMap<String, HostMembership>,
    /// Host name by backend name.
    pub of_backend: HashMap<String, String>,
    /// Compute pools besides `default` (which always exists): name → (enabled, failover).
    pub pools: BTreeMap<String, ComputePoolSpec>,
    /// Instances being moved off a host: id → the host they leave.
    pub migrating: HashMap<String, String>,
    /// Each backend's host resources as last read (capacity changes seldom: placement
    /// reads it from here).
    pub resources: HashMap<String, HostResources>,
    /// The instances of each backend of another host as last listed: what reads `lost`
    /// while its engine does not answer.
    pub last_seen: HashMap<String, Vec<Instance>>,
    /// Received and sent bytes of each host's running instances at the last sample.
    pub traffic: HashMap<String, (u64, u64)>,
    /// Memory promised to instances being created or started, until lists show them.
    pub claims: Vec<MemoryClaim>,
    /// The token of the next claim.
    pub next_claim: u64,
}

/// How long a claim outlives the call that made it, for an engine whose lists show a new
/// instance a moment after the call returned (events that arrive later).
const CLAIM_SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Memory an admission or placement promised to an instance on a host.
#[derive(Debug)]
pub(crate) struct MemoryClaim {
    token: u64,
    host: String,
    bytes: u64,
    /// Set once the instance runs: the claim ends when a list shows it running, when
    /// LibGo stops or deletes it, or at the deadline.
    settled: Option<(String, std::time::Instant)>,
}

impl MemoryClaim {
    fn holds(&self, id: &str) -> bool {
        self.settled.as_ref().is_some_and(|(held, _)| held == id)
    }
}

/// A claim made by [`LibGo::admit_vm`] or placement: dropped unsettled (the call failed,
/// or the instance does not run), it ends at once.
#[must_use]
pub(crate) struct ClaimGuard<'a> {
    libgo: &'a LibGo,
    token: u64,
}

impl ClaimGuard<'_> {
    /// The instance runs now as `instance`: the claim lasts until lists show it.
    pub fn settle(self, instance: &str) {
        let mut hosts = self.libgo.hosts_mut();
        if let Some(c) = hosts.claims.iter_mut().find(|c| c.token == self.token) {
            c.settled = Some((instance.to_string(), std::time::Instant::now()));
        }
    }
}

impl ClaimGuard<'_> {
    /// [`ClaimGuard::settle`] when `instance` came out running; else the claim ends.
    pub fn settle_if_running(self, instance: &Instance) {
        if instance.state.holds_memory() {
            self.settle(&instance.id);
        }
    }
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        let mut hosts = self.libgo.hosts_mut();
        hosts
            .claims
            .retain(|c| c.token != self.token || c.settled.is_some());
    }
}

impl LibGo {
    pub(crate) fn hosts_mut(&self) -> std::sync::RwLockWriteGuard<'_, HostRegistry> {
        self.hosts.write().unwrap_or_else(|e| e.into_inner())
    }

    fn hosts_read(&self) -> std::sync::RwLockReadGuard<'_, HostRegistry> {
        self.hosts.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a sample of every instance's statistics (`instances` is the whole list, `stats`
    /// what [`LibGo::stats_of_running`] answered for it) as each host's network traffic:
    /// neither engine reports a host's own interface counters, so a host's `usage.rxBytes`
    /// and `txBytes` are the sums of its running instances' counters at the last sample
    /// (`None` before the first).
    pub fn note_traffic(&self, instances: &[Instance], stats: &HashMap<String, Stats>) {
        let mut traffic: HashMap<String, (u64, u64)> = HashMap::new();
        for host in self.host_memberships() {
            traffic.insert(host.name, (0, 0));
        }
        for i in instances {
            if let Some(s) = stats.get(&i.id) {
                let t = traffic.entry(i.host.clone()).or_default();
                t.0 += s.net_rx_bytes;
                t.1 += s.net_tx_bytes;
            }
        }
        self.hosts_mut().traffic = traffic;
    }

    pub(crate) fn require_host(&self, host: &str) -> Result<()> {
        if host == LOCAL_HOST || self.hosts_read().hosts.contains_key(host) {
            Ok(())
        } else {
            Err(Error::not_found(format!("no host named {host:?}")).with_context("host", host))
        }
    }

    /// The host of backend `backend` (`local` unless it was registered on another).
    pub fn host_of(&self, backend: &str) -> String {
        self.hosts_read()
            .of_backend
            .get(backend)
            .cloned()
            .unwrap_or_else(|| LOCAL_HOST.to_string())
    }

    /// Sets the instance's host; one of another host is also noted as seen (so that an
    /// instance made a moment before its host stops answering reads `lost`, not nothing).
    pub(crate) fn stamp(&self, i: &mut Instance) {
        i.host = self.host_of(&i.backend);
        if i.host != LOCAL_HOST {
            let mut reg = self.hosts_mut();
            let seen = reg.last_seen.entry(i.backend.clone()).or_default();
            seen.retain(|s| s.id != i.id);
            seen.push(i.clone());
        }
    }

    /// Forgets a deleted instance of another host.
    pub(crate) fn forget(&self, backend: &str, id: &str) {
        self.forget_seen(backend, id);
        self.end_claims(id);
    }

    /// Forgets what backend `backend` last listed of instance `id` (so that it does not
    /// read `lost` there).
    pub(crate) fn forget_seen(&self, backend: &str, id: &str) {
        if let Some(seen) = self.hosts_mut().last_seen.get_mut(backend) {
            seen.retain(|s| s.id != id && s.name != id);
        }
    }

    /// Ends the claims of instance `id` (stopped, powered off or deleted through LibGo):
    /// its memory is free at once, not when the claim's time is up.
    pub(crate) fn end_claims(&self, id: &str) {
        self.hosts_mut().claims.retain(|c| !c.holds(id));
    }

    /// Notes the instances a backend of another host listed (unfiltered), or answers them
    /// as `lost` (with their host) when it failed.
    pub(crate) fn seen_or_lost(
        &self,
        backend: &str,
        listed: std::result::Result<&[Instance], ()>,
    ) -> Vec<Instance> {
        let host = self.host_of(backend);
        if host == LOCAL_HOST {
            return Vec::new();
        }
        let mut reg = self.hosts_mut();
        match listed {
            Ok(list) => {
                reg.last_seen.insert(backend.to_string(), list.to_vec());
                Vec::new()
            }
            Err(()) => reg
                .last_seen
                .get(backend)
                .map(|l| {
                    l.iter()
                        .cloned()
                        .map(|mut i| {
                            i.state = InstanceState::Lost;
                            i.ip_addresses.clear();
                            i.host.clone_from(&host);
                            i
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub(crate) fn has_remote_hosts(&self) -> bool {
        self.hosts_read().hosts.keys().any(|h| h != LOCAL_HOST)
    }

    /// Adds host `m`, or changes it (pool, enabled, labels, migration address); its
    /// backends are registered with [`LibGo::register_on`].
    pub fn host_set(&self, m: HostMembership) -> Result<()> {
        validate::name("host name", &m.name)?;
        validate::name("compute pool", &m.pool)?;
        if m.pool != DEFAULT_POOL && !self.hosts_read().pools.contains_key(&m.pool) {
            return Err(
                Error::not_found(format!("no compute pool {:?}: create it first", m.pool))
                    .with_context("field", "pool"),
            );
        }
        validate::labels(&m.labels)?;
        self.hosts_mut().hosts.insert(m.name.clone(), m);
        Ok(())
    }

    /// Forgets host `name` and unregisters its backends (their instances are left as they
    /// are on the engines), answering them.
    pub fn host_remove(&self, name: &str) -> Result<Vec<Arc<dyn Backend>>> {
        if name == LOCAL_HOST {
            return Err(Error::invalid("the local host cannot be removed"));
        }
        self.require_host(name)?;
        let mut gone = Vec::new();
        for b in self.host_backends(name) {
            self.hosts_mut().last_seen.remove(b.name());
            self.hosts_mut().resources.remove(b.name());
            gone.push(self.unregister(b.name())?);
        }
        self.hosts_mut().hosts.remove(name);
        Ok(gone)
    }

    /// Adds compute pool `spec`, or changes it.
    pub fn pool_set(&self, spec: &ComputePoolSpec) -> Result<()> {
        validate::name("compute pool", &spec.name)?;
        if let Some(n) = &spec.network {
            validate::name("address pool", n).map_err(|e| e.with_field("network"))?;
        }
        self.hosts_mut()
            .pools
            .insert(spec.name.clone(), spec.clone());
        Ok(())
    }

    /// Removes compute pool `name`; it must have no host.
    pub fn pool_remove(&self, name: &str) -> Result<()> {
        let pool = self.compute_pool(name)?;
        if name == DEFAULT_POOL {
            return Err(Error::invalid("the default pool cannot be removed"));
        }
        if !pool.hosts.is_empty() {
            return Err(Error::conflict(format!(
                "compute pool {name:?} has hosts ({}): move them first",
                pool.hosts.join(", ")
            )));
        }
        self.hosts_mut().pools.remove(name);
        Ok(())
    }

    /// Forgets host `name` ([`LibGo::host_remove`]) unless it has instances; with `force`
    /// it is forgotten anyway and they are left on its engines.
    pub async fn host_forget(&self, name: &str, force: bool) -> Result<()> {
        let host = self.host(name).await?;
        let count = host.instances.running + host.instances.stopped + host.instances.lost;
        if count > 0 && !force {
            return Err(Error::conflict(format!(
                "host {name:?} has {count} instances: move them, or force to forget the host \
                 and leave them on its engines"
            )));
        }
        self.host_remove(name)?;
        Ok(())
    }

    /// The address pool of the compute pool host `host` is in, if it names one.
    pub(crate) fn address_pool_of_host(&self, host: &str) -> Option<String> {
        let pool = self.host_membership(host).ok()?.pool;
        self.hosts_read().pools.get(&pool)?.network.clone()
    }

    /// Every compute pool, `default` first, with its hosts.
    pub fn compute_pools(&self) -> Vec<ComputePool> {
        let memberships = self.host_memberships();
        let reg = self.hosts_read();
        let mut specs: Vec<ComputePoolSpec> =
            vec![
                reg.pools
                    .get(DEFAULT_POOL)
                    .cloned()
                    .unwrap_or(ComputePoolSpec {
                        name: DEFAULT_POOL.to_string(),
                        enabled: true,
                        failover: false,
                        network: None,
                    }),
            ];
        specs.extend(
            reg.pools
                .values()
                .filter(|p| p.name != DEFAULT_POOL)
                .cloned(),
        );
        specs
            .into_iter()
            .map(|p| ComputePool {
                hosts: memberships
                    .iter()
                    .filter(|m| m.pool == p.name)
                    .map(|m| m.name.clone())
                    .collect(),
                name: p.name,
                enabled: p.enabled,
                failover: p.failover,
                network: p.network,
            })
            .collect()
    }

    /// One compute pool.
    pub fn compute_pool(&self, name: &str) -> Result<ComputePool> {
        self.compute_pools()
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::not_found(format!("no compute pool {name:?}")))
    }

    /// The aggregated status of compute pool `name`.
    pub async fn pool_status(&self, name: &str) -> Result<PoolStatus> {
        let pool = self.compute_pool(name)?;
        let hosts = self.host_list().await?;
        let mine: Vec<&Host> = hosts.iter().filter(|h| h.pool == name).collect();
        Ok(PoolStatus::of(name, pool.enabled, &mine))
    }

    /// The aggregated status of every host.
    pub async fn zone_status(&self) -> Result<PoolStatus> {
        let hosts = self.host_list().await?;
        let all: Vec<&Host> = hosts.iter().collect();
        let mut s = PoolStatus::of("zone", true, &all);
        let pools = self.compute_pools();
        s.pools = Some(OffOn {
            off: pools.iter().filter(|p| !p.enabled).count() as u64,
            on: pools.iter().filter(|p| p.enabled).count() as u64,
        });
        Ok(s)
    }

    /// Every host's membership, `local` first.
    pub fn host_memberships(&self) -> Vec<HostMembership> {
        let reg = self.hosts_read();
        let mut all = vec![
            reg.hosts
                .get(LOCAL_HOST)
                .cloned()
                .unwrap_or_else(HostMembership::local),
        ];
        all.extend(reg.hosts.values().filter(|h| h.name != LOCAL_HOST).cloned());
        all
    }

    /// One host's membership.
    pub fn host_membership(&self, name: &str) -> Result<HostMembership> {
        self.host_memberships()
            .into_iter()
            .find(|h| h.name == name)
            .ok_or_else(|| {
                Error::not_found(format!("no host named {name:?}")).with_context("host", name)
            })
    }

    /// The backends of host `name`, in registration order.
    pub fn host_backends(&self, name: &str) -> Vec<Arc<dyn Backend>> {
        self.backends()
            .into_iter()
            .filter(|b| self.host_of(b.name()) == name)
            .collect()
    }

    /// Every host as the API shows it: its engines asked now, its instances counted from
    /// the facade's lists.
    pub async fn host_list(&self) -> Result<Vec<Host>> {
        let memberships = self.host_memberships();
        let (instances, _) = self
            .list_all_reporting(&InstanceFilter::default())
            .await
            .unwrap_or_default();
        let hosts = join_all(
            memberships
                .iter()
                .map(|m| self.host_view(m.clone(), &instances, true)),
        )
        .await;
        Ok(hosts)
    }

    /// One host as the API shows it.
    pub async fn host(&self, name: &str) -> Result<Host> {
        let m = self.host_membership(name)?;
        let (instances, _) = self
            .list_all_reporting(&InstanceFilter::default())
            .await
            .unwrap_or_default();
        Ok(self.host_view(m, &instances, true).await)
    }

    /// A host as the API shows it; without `detail` (for placement), its engines are only
    /// asked whether they answer, and its capacity is the one last read.
    async fn host_view(&self, m: HostMembership, instances: &[Instance], detail: bool) -> Host {
        let backends = self.host_backends(&m.name);
        let answers = join_all(backends.iter().map(|b| async {
            let health = b.health().await;
            let cached = self.hosts_read().resources.get(b.name()).copied();
            let info = if detail { b.info().await.ok() } else { None };
            let resources = match (health.up, detail, cached) {
                (false, _, _) => None,
                (true, false, Some(r)) => Some(r),
                (true, _, _) => {
                    let r = b.host_resources().await.ok();
                    if let Some(r) = r {
                        self.hosts_mut().resources.insert(b.name().to_string(), r);
                    }
                    r
                }
            };
            (health, info, resources)
        }))
        .await;
        let mut engines = Vec::new();
        let mut resources: Option<HostResources> = None;
        for (b, (health, info, res)) in backends.iter().zip(answers) {
            let kind = if b.capabilities().kinds.contains(&InstanceKind::Vm) {
                "kvm"
            } else {
                "docker"
            };
            // libvirt knows the host's storage and use; Docker only its CPUs and memory.
            if let Some(r) = res {
                resources = Some(match resources {
                    None => r,
                    // libvirt's view wins; the memory from whichever engine knows it (the
                    // test driver's made-up machine reports none).
                    Some(was) => {
                        let (mut base, other) = if kind == "kvm" { (r, was) } else { (was, r) };
                        if base.capacity.memory_bytes == 0 {
                            base.capacity.memory_bytes = other.capacity.memory_bytes;
                        }
                        base
                    }
                });
            }
            engines.push(HostEngine {
                kind: kind.into(),
                backend: b.name().to_string(),
                url: info.map(|i| i.endpoint).unwrap_or_default(),
                up: health.up,
                message: health.message,
            });
        }
        let mut counts = HostInstanceCounts {
            migrating: self
                .hosts_read()
                .migrating
                .values()
                .filter(|h| **h == m.name)
                .count() as u64,
            ..Default::default()
        };
        let mut allocated = HostAllocation::default();
        for i in instances.iter().filter(|i| i.host == m.name) {
            match i.state {
                InstanceState::Lost => counts.lost += 1,
                InstanceState::Running | InstanceState::Paused => {
                    counts.running += 1;
                    allocated.cpus += i.cpus.unwrap_or(0.0);
                    allocated.memory_bytes += i.memory_bytes.unwrap_or(0);
                }
                _ => counts.stopped += 1,
            }
        }
        let mut resources = resources.unwrap_or_default();
        if let Some((rx, tx)) = self.hosts_read().traffic.get(&m.name) {
            resources.usage.rx_bytes = resources.usage.rx_bytes.or(Some(*rx));
            resources.usage.tx_bytes = resources.usage.tx_bytes.or(Some(*tx));
        }
        Host {
            // A host is alive when every engine it has answers (placement still uses the
            // ones that do, by kind).
            alive: !engines.is_empty() && engines.iter().all(|e| e.up),
            name: m.name,
            pool: m.pool,
            enabled: m.enabled,
            engines,
            capacity: resources.capacity,
            allocated,
            usage: resources.usage,
            instances: counts,
            labels: m.labels,
        }
    }

    /// Refuses (`RESOURCE_CONFLICT`) to run a VM of `memory_bytes` through backend
    /// `backend` when its host's memory cannot hold it beside what the host's running
    /// instances reserve ([`reservation`]): a host is not run out of memory by VMs it cannot
    /// hold, also when it is the only one and nothing is placed. An unknown capacity (an
    /// engine that reports none) refuses nothing.
    ///
    /// The memory it admits is claimed until the VM shows in lists (settle the guard once
    /// it runs), so that concurrent admissions do not both count on it.
    pub(crate) async fn admit_vm(
        &self,
        backend: &str,
        memory_bytes: Option<u64>,
    ) -> Result<ClaimGuard<'_>> {
        let host = self.host_of(backend);
        let want = reservation(InstanceKind::Vm, memory_bytes);
        let _turn = self.admission.lock().await;
        let Ok(m) = self.host_membership(&host) else {
            return Ok(self.claim(&host, want));
        };
        let (instances, _) = self
            .list_all_reporting(&InstanceFilter::default())
            .await
            .unwrap_or_default();
        let view = self.host_view(m, &instances, false).await;
        match memory_refusal(
            view.capacity.memory_bytes,
            self.reserved_and_claimed(&host, &instances),
            want,
        ) {
            None => Ok(self.claim(&host, want)),
            Some(why) => Err(Error::conflict(format!(
                "host {host:?} cannot run this VM: {why} (its running instances, and those \
                 being started, reserve the rest)"
            ))
            .with_context("host", &host)),
        }
    }

    /// Claims `bytes` of `host`'s memory for an instance being created or started.
    fn claim(&self, host: &str, bytes: u64) -> ClaimGuard<'_> {
        let mut hosts = self.hosts_mut();
        hosts.next_claim += 1;
        let token = hosts.next_claim;
        hosts.claims.push(MemoryClaim {
            token,
            host: host.to_string(),
            bytes,
            settled: None,
        });
        ClaimGuard { libgo: self, token }
    }

    /// What `host`'s running instances reserve ([`reserved_on`]) and what is claimed on it
    /// for instances `instances` does not show running yet. Settled claims that lists show,
    /// or that are older than [`CLAIM_SETTLE`], end here.
    fn reserved_and_claimed(&self, host: &str, instances: &[Instance]) -> u64 {
        let shown = |id: &str| {
            instances
                .iter()
                .any(|i| i.id == id && i.state.holds_memory())
        };
        let mut hosts = self.hosts_mut();
        hosts.claims.retain(|c| match &c.settled {
            Some((id, at)) => !shown(id) && at.elapsed() < CLAIM_SETTLE,
            None => true,
        });
        let claimed = hosts
            .claims
            .iter()
            .filter(|c| c.host == host)
            .map(|c| c.bytes)
            .fold(0, u64::saturating_add);
        reserved_on(host, instances).saturating_add(claimed)
    }

    /// The backend a new instance goes to when its spec names no backend: one of its kind
    /// on the host [`place`] picks.
    ///
    /// The memory it places the instance by is claimed on that host, as [`LibGo::admit_vm`]
    /// claims it.
    pub(crate) async fn placed_backend(
        &self,
        spec: &InstanceSpec,
    ) -> Result<(Arc<dyn Backend>, ClaimGuard<'_>)> {
        let kind = spec.kind.ok_or_else(|| {
            Error::invalid("the spec needs a kind (\"vm\" or \"container\") to be placed")
        })?;
        if let Some(h) = &spec.host {
            self.require_host(h)?;
        }
        let _turn = self.admission.lock().await;
        let memberships: Vec<_> = self
            .host_memberships()
            .into_iter()
            .filter(|m| spec.host.as_ref().is_none_or(|h| *h == m.name))
            .filter(|m| spec.pool.as_ref().is_none_or(|p| *p == m.pool))
            .collect();
        if let (Some(h), Some(p)) = (&spec.host, &spec.pool)
            && memberships.is_empty()
        {
            return Err(Error::invalid(format!(
                "host {h:?} is not in compute pool {p:?}"
            )));
        }
        let (instances, _) = self
            .list_all_reporting(&InstanceFilter::default())
            .await
            .unwrap_or_default();
        let hosts = join_all(
            memberships
                .iter()
                .map(|m| self.host_view(m.clone(), &instances, false)),
        )
        .await;
        let candidates: Vec<Candidate> = hosts
            .iter()
            .map(|h| {
                let backends = self.host_backends(&h.name);
                let kinds = backends
                    .iter()
                    .filter(|b| h.engines.iter().any(|e| e.backend == b.name() && e.up))
                    .flat_map(|b| b.capabilities().kinds)
                    .collect();
                let pool_enabled = self
                    .hosts_read()
                    .pools
                    .get(&h.pool)
                    .is_none_or(|p| p.enabled);
                Candidate {
                    name: h.name.clone(),
                    pool: h.pool.clone(),
                    enabled: h.enabled && pool_enabled,
                    alive: h.alive,
                    kinds,
                    // A host whose engines report no memory is not refused for it.
                    memory_bytes: if h.capacity.memory_bytes > 0 {
                        h.capacity.memory_bytes
                    } else {
                        u64::MAX / 2
                    },
                    allocated_memory_bytes: self.reserved_and_claimed(&h.name, &instances),
                    instances: h.instances.running + h.instances.stopped,
                }
            })
            .collect();
        let want = Placement {
            kind: Some(kind),
            memory_bytes: reservation(kind, spec.memory_bytes),
            host: spec.host.as_deref(),
            pool: spec.pool.as_deref(),
        };
        let host = place(&candidates, &want)?;
        let backend = self
            .host_backends(&host)
            .into_iter()
            .find(|b| b.capabilities().kinds.contains(&kind))
            .ok_or_else(|| {
                Error::unavailable(format!(
                    "host {host:?} has no backend for {}s",
                    kind.as_str()
                ))
            })?;
        Ok((backend, self.claim(&host, want.memory_bytes)))
    }

    /// Empties host `name`: disables it (so nothing is placed on it meanwhile), then stops
    /// each of its instances, or moves each to the host [`place`] picks for it (in the
    /// host's pool when one fits there, else in any pool). One item per instance.
    pub async fn evacuate(
        &self,
        name: &str,
        request: &EvacuateRequest,
        progress: ProgressSink,
    ) -> Result<BatchReport> {
        let mut m = self.host_membership(name)?;
        m.enabled = false;
        self.host_set(m.clone())?;
        let filter = InstanceFilter::default();
        let mine: Vec<Instance> = self
            .list_all(&filter)
            .await?
            .into_iter()
            .filter(|i| i.host == name)
            .collect();
        let mut outcomes = Vec::with_capacity(mine.len());
        for i in &mine {
            let outcome = match request.action {
                EvacuateAction::Stop => self
                    .stop(&i.id, StopOptions::default())
                    .await
                    .map(|()| Some(i.id.clone())),
                EvacuateAction::Migrate | EvacuateAction::LiveMigrate => {
                    self.evacuate_one(i, &m.pool, request.action, &progress)
                        .await
                }
            };
            outcomes.push((i.name.clone(), outcome));
            crate::facade::batch_progress(&progress, outcomes.len(), mine.len());
        }
        let done = match request.action {
            EvacuateAction::Stop => BatchStatus::Stopped,
            _ => BatchStatus::Moved,
        };
        Ok(crate::facade::batch_report(outcomes, done))
    }

    async fn evacuate_one(
        &self,
        i: &Instance,
        pool: &str,
        action: EvacuateAction,
        progress: &ProgressSink,
    ) -> Result<Option<String>> {
        let spec = |pool: Option<&str>| InstanceSpec {
            name: i.name.clone(),
            kind: Some(i.kind),
            memory_bytes: i.memory_bytes,
            pool: pool.map(str::to_string),
            ..Default::default()
        };
        let (target, claim) = match self.placed_backend(&spec(Some(pool))).await {
            Ok(placed) => placed,
            Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::NotFound) => {
                self.placed_backend(&spec(None)).await?
            }
            Err(e) => return Err(e),
        };
        let request = MigrateRequest {
            host: self.host_of(target.name()),
            live: action == EvacuateAction::LiveMigrate,
        };
        let report = self.migrate(&i.id, &request, progress.clone()).await?;
        claim.settle_if_running(&report.instance);
        Ok(Some(report.instance.id))
    }

    /// Checks that instance `id` can move to `request.host` now (for a caller that answers
    /// before doing the move in the background), and answers the instance.
    pub async fn check_migration(&self, id: &str, request: &MigrateRequest) -> Result<Instance> {
        Ok(self.migration_plan(id, request).await?.1)
    }

    /// The source backend, the instance, the target host and its backend of the
    /// instance's kind, once every condition of a move holds.
    async fn migration_plan(
        &self,
        id: &str,
        request: &MigrateRequest,
    ) -> Result<(Arc<dyn Backend>, Instance, HostMembership, Arc<dyn Backend>)> {
        validate::name("host name", &request.host)?;
        let (source, instance) = self.locate(id).await?;
        let target_host = self.host_membership(&request.host)?;
        if instance.host == target_host.name {
            return Err(Error::conflict(format!(
                "{} is on host {:?} already",
                instance.name, target_host.name
            )));
        }
        if !target_host.enabled {
            return Err(Error::conflict(format!(
                "host {:?} is disabled: nothing is placed on it",
                target_host.name
            )));
        }
        // A pool address lives on one host's bridge; moving it is not built yet.
        let pool_network = crate::addresses::network_name("");
        if let Some(n) = instance
            .networks
            .iter()
            .find(|n| n.starts_with(&pool_network))
        {
            return Err(Error::unsupported(format!(
                "{} holds an address of address pool {:?}: moving it to another host is not \
                 supported yet (delete it and create it there)",
                instance.name,
                &n[pool_network.len()..]
            )));
        }
        let target = self
            .host_backends(&target_host.name)
            .into_iter()
            .find(|b| b.capabilities().kinds.contains(&instance.kind))
            .ok_or_else(|| {
                Error::conflict(format!(
                    "host {:?} has no engine for {}s",
                    target_host.name,
                    instance.kind.as_str()
                ))
            })?;
        let health = target.health().await;
        if !health.up {
            return Err(Error::unavailable(format!(
                "host {:?} does not answer: {}",
                target_host.name, health.message
            )));
        }
        Ok((source, instance, target_host, target))
    }

    /// Moves instance `id` to the host `request.host` names: a VM by libvirt's migration
    /// (live unless `request.live` is false), a container by a cold move.
    pub async fn migrate(
        &self,
        id: &str,
        request: &MigrateRequest,
        progress: ProgressSink,
    ) -> Result<MigrationReport> {
        let (source, instance, target_host, target) = self.migration_plan(id, request).await?;
        let spec = MigrationSpec {
            live: request.live,
            address: target_host.migration_address.clone(),
        };
        {
            let mut reg = self.hosts_mut();
            if reg.migrating.contains_key(&instance.id) {
                return Err(Error::conflict(format!(
                    "{} is being moved already",
                    instance.name
                )));
            }
            reg.migrating
                .insert(instance.id.clone(), instance.host.clone());
        }
        let answer = source
            .migrate(&instance.id, target, &spec, progress)
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::Unsupported => e,
                _ => e.with_context("host", target_host.name.clone()),
            });
        self.hosts_mut().migrating.remove(&instance.id);
        let mut report = answer?;
        self.stamp(&mut report.instance);
        Ok(report)
    }
}

/// What the running (and paused) instances of host `host` reserve ([`reservation`]).
fn reserved_on(host: &str, instances: &[Instance]) -> u64 {
    instances
        .iter()
        .filter(|i| i.host == host)
        .filter(|i| i.state.holds_memory())
        .map(|i| reservation(i.kind, i.memory_bytes))
        .fold(0, u64::saturating_add)
}
