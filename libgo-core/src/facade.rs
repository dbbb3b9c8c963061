//! [`LibGo`]: one handle over every registered backend.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use futures::future::{BoxFuture, join_all};
use futures::{FutureExt, StreamExt};

use crate::backend::{Backend, BoxStream, ConsoleSession, ExecSession};
use crate::error::{Error, ErrorKind, Result};
use crate::inventory::Inventory;
use crate::types::*;
use crate::validate;

/// The facade every front end uses: it holds named backends and routes each call.
///
/// - `create` goes to the backend named in the spec, else the first one of the spec's kind.
/// - Calls on an instance find it by id or unique name on whichever backend holds it.
/// - `list` asks every backend at once, merges, filters and paginates. A backend with a
///   change feed ([`crate::Compute::changes`]) is answered from an inventory held here and
///   checked against the engine on every call, so it is as fresh as the engine's own list.
/// - Instance names are unique across backends.
///
/// ```no_run
/// # async fn demo(docker: std::sync::Arc<dyn libgo_core::Backend>) -> libgo_core::Result<()> {
/// use libgo_core::{InstanceFilter, InstanceSpec, LibGo, Pagination};
/// let libgo = LibGo::new();
/// libgo.register(docker)?;
/// let web = libgo.create(&InstanceSpec::container("web", "busybox:latest")).await?;
/// libgo.start(&web.id).await?;
/// let page = libgo.list(&InstanceFilter::default(), Pagination::default()).await?;
/// assert!(page.items.iter().any(|i| i.name == "web"));
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct LibGo {
    backends: RwLock<Vec<Arc<dyn Backend>>>,
    /// Each backend's instances, by backend name, for lists (see [`Inventory`]).
    inventories: Mutex<HashMap<String, Arc<Inventory>>>,
    /// The hosts besides `local`, and each backend's host.
    pub(crate) hosts: RwLock<crate::facade_hosts::HostRegistry>,
    /// Who hands out address pools' addresses, when someone keeps pools.
    address_allocator: RwLock<Option<Arc<dyn crate::addresses::AddressAllocator>>>,
    /// Taken while one admission or placement decides and claims memory, so that two
    /// decisions never both count on the same free memory.
    pub(crate) admission: tokio::sync::Mutex<()>,
    /// Kept definitions and dead engines, for failover.
    pub(crate) failover: Mutex<crate::facade_failover::FailoverState>,
}

impl std::fmt::Debug for LibGo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibGo")
            .field("backends", &self.backend_names())
            .finish()
    }
}

/// Asks one backend for a named object (an instance, image, network…).
type Probe<'a, T> = &'a (dyn Fn(Arc<dyn Backend>) -> BoxFuture<'static, Result<T>> + Sync);

impl LibGo {
    /// A facade with no backends.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a backend of the local host under its own [`Backend::name`]. A second backend
    /// of the same name is a conflict.
    pub fn register(&self, backend: Arc<dyn Backend>) -> Result<()> {
        self.register_on(crate::hosts::LOCAL_HOST, backend)
    }

    /// Adds a backend of host `host` (`local`, or one added with [`LibGo::host_set`]).
    pub fn register_on(&self, host: &str, backend: Arc<dyn Backend>) -> Result<()> {
        validate::name("backend name", backend.name())?;
        self.require_host(host)?;
        let mut backends = self.write();
        if backends.iter().any(|b| b.name() == backend.name()) {
            return Err(Error::conflict(format!(
                "a backend named {:?} is registered already",
                backend.name()
            )));
        }
        self.inventories()
            .insert(backend.name().to_string(), Default::default());
        self.hosts_mut()
            .of_backend
            .insert(backend.name().to_string(), host.to_string());
        backends.push(backend);
        Ok(())
    }

    /// Removes a backend.
    pub fn unregister(&self, name: &str) -> Result<Arc<dyn Backend>> {
        let mut backends = self.write();
        let pos = backends
            .iter()
            .position(|b| b.name() == name)
            .ok_or_else(|| Error::not_found(format!("no backend named {name:?}")))?;
        self.inventories().remove(name);
        self.hosts_mut().of_backend.remove(name);
        Ok(backends.remove(pos))
    }

    /// The backends, in registration order.
    pub fn backends(&self) -> Vec<Arc<dyn Backend>> {
        self.read().clone()
    }

    /// Names of the backends, in registration order.
    pub fn backend_names(&self) -> Vec<String> {
        self.read().iter().map(|b| b.name().to_string()).collect()
    }

    /// One backend by name.
    pub fn backend(&self, name: &str) -> Result<Arc<dyn Backend>> {
        self.read()
            .iter()
            .find(|b| b.name() == name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no backend named {name:?}")))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<dyn Backend>>> {
        // A poisoned lock only means a panic elsewhere while holding it; the Vec is intact.
        self.backends.read().unwrap_or_else(|e| e.into_inner())
    }

    fn inventories(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Inventory>>> {
        self.inventories.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn inventory(&self, backend: &str) -> Arc<Inventory> {
        self.inventories()
            .entry(backend.to_string())
            .or_default()
            .clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<dyn Backend>>> {
        self.backends.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The backend named `name`, or else the first whose capabilities pass `wanted`.
    fn pick(
        &self,
        name: Option<&str>,
        wanted: impl Fn(&Capabilities) -> bool,
        what: &str,
    ) -> Result<Arc<dyn Backend>> {
        match name {
            Some(n) => {
                let b = self.backend(n)?;
                if !wanted(&b.capabilities()) {
                    return Err(Error::unsupported(format!(
                        "backend {n:?} does not support {what}"
                    )));
                }
                Ok(b)
            }
            None => self
                .read()
                .iter()
                .find(|b| wanted(&b.capabilities()))
                .cloned()
                .ok_or_else(|| {
                    Error::unavailable(format!("no registered backend supports {what}"))
                }),
        }
    }

    /// Asks each candidate backend with `probe` at once; exactly one must find the object.
    async fn find<T: Send + 'static>(
        &self,
        backend: Option<&str>,
        wanted: impl Fn(&Capabilities) -> bool,
        what: &str,
        id: &str,
        probe: Probe<'_, T>,
    ) -> Result<(Arc<dyn Backend>, T)> {
        validate::object_id(what, id)?;
        let candidates: Vec<_> = match backend {
            Some(n) => vec![self.backend(n)?],
            None => self
                .read()
                .iter()
                .filter(|b| wanted(&b.capabilities()))
                .cloned()
                .collect(),
        };
        if candidates.is_empty() {
            return Err(Error::unavailable(format!(
                "no registered backend supports {what}"
            )));
        }
        let answers = join_all(candidates.iter().map(|b| probe(b.clone()))).await;
        let mut found = Vec::new();
        let mut failure = None;
        for (b, answer) in candidates.into_iter().zip(answers) {
            match answer {
                Ok(v) => found.push((b, v)),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(backend = b.name(), error = %e, "lookup of {what} {id:?} failed");
                    failure.get_or_insert(e);
                }
            }
        }
        // A copy failover left on a host that answers again is not the instance.
        if found.len() > 1 && what == "instance" {
            found.retain(|(b, _)| !self.left_by_failover(b.name(), id));
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(failure.unwrap_or_else(|| {
                Error::not_found(format!("no {what} {id:?}")).with_context("id", id)
            })),
            _ => {
                let names: Vec<_> = found.iter().map(|(b, _)| b.name().to_string()).collect();
                Err(Error::conflict(format!(
                    "{what} {id:?} exists on several backends ({}); name the backend",
                    names.join(", ")
                )))
            }
        }
    }

    /// The backend holding instance `id` (an id or a name), and the instance.
    pub async fn locate(&self, id: &str) -> Result<(Arc<dyn Backend>, Instance)> {
        let key = id.to_string();
        let probe = move |b: Arc<dyn Backend>| {
            let key = key.clone();
            async move { b.get(&key).await }.boxed()
        };
        let (b, mut i) = self
            .find(None, manages_instances, "instance", id, &probe)
            .await?;
        self.stamp(&mut i);
        Ok((b, i))
    }

    /// The backend holding instance `id` and the id to call it with. With a single backend
    /// that manages instances this asks no engine: the backend's own call answers NotFound.
    async fn route(&self, id: &str) -> Result<(Arc<dyn Backend>, String)> {
        validate::object_id("instance", id)?;
        let candidates: Vec<_> = self
            .read()
            .iter()
            .filter(|b| manages_instances(&b.capabilities()))
            .cloned()
            .collect();
        if let [only] = candidates.as_slice() {
            return Ok((only.clone(), id.to_string()));
        }
        let key = id.to_string();
        let probe = move |b: Arc<dyn Backend>| {
            let key = key.clone();
            async move { b.resolve(&key).await }.boxed()
        };
        self.find(None, manages_instances, "instance", id, &probe)
            .await
    }

    // ---- instances ----

    /// Creates an instance on the spec's backend; else on a backend of its kind on the
    /// spec's host, or on the host [`crate::hosts::place`] picks (in the spec's pool).
    pub async fn create(&self, spec: &InstanceSpec) -> Result<Instance> {
        self.create_as(spec, None).await
    }

    /// [`LibGo::create`], recording who the instance is made for in its labels.
    pub async fn create_owned(&self, spec: &InstanceSpec, owner: &Ownership) -> Result<Instance> {
        self.create_as(spec, Some(owner)).await
    }

    async fn create_as(&self, spec: &InstanceSpec, owner: Option<&Ownership>) -> Result<Instance> {
        let placed = match (spec.backend.as_deref(), &spec.host, &spec.pool) {
            (Some(_), None, None) => None,
            (Some(_), _, _) => {
                return Err(Error::invalid(
                    "give a backend, or a host or pool to place the instance in, not both",
                ));
            }
            (None, None, None) if !self.has_remote_hosts() => None,
            (None, _, _) => Some(self.placed_backend(spec).await?),
        };
        // Placement has already checked that the host can hold it, and claimed the memory.
        let (placed, mut claim) = match placed {
            Some((b, claim)) => (Some(b), Some(claim)),
            None => (None, None),
        };
        let placed_here = placed.is_some();
        let backend = match (placed, spec.backend.as_deref(), spec.kind) {
            (Some(b), _, _) => b,
            (None, None, None) => {
                return Err(Error::invalid(
                    "the spec needs a kind (\"vm\" or \"container\") or a backend",
                ));
            }
            (None, name, kind) => self.pick(
                name,
                |c| kind.is_none_or(|k| c.kinds.contains(&k)),
                &format!("{} instances", kind.map_or("these", InstanceKind::as_str)),
            )?,
        };
        let kind = match spec.kind {
            Some(k) => k,
            None => *backend.capabilities().kinds.first().ok_or_else(|| {
                Error::unsupported(format!("backend {:?} manages no instances", backend.name()))
            })?,
        };
        validate::instance_spec(spec, kind)?;
        if let Some(image) = &spec.image {
            validate::user_image_reference(image)?;
        }
        crate::addresses::check_requests(&spec.addresses)?;
        self.name_free_elsewhere(backend.name(), &spec.name).await?;
        if kind == InstanceKind::Vm && spec.start && !placed_here {
            claim = Some(self.admit_vm(backend.name(), spec.memory_bytes).await?);
        }
        let mut spec = spec.clone();
        spec.kind = Some(kind);
        spec.host = None;
        spec.pool = None;
        // After validation: the labels' prefix is refused in the caller's spec.
        if let Some(o) = owner {
            o.stamp(&mut spec.labels);
        }
        if spec.addresses.is_empty()
            && spec.assigned.is_empty()
            && let Some(pool) = self.address_pool_of_host(&self.host_of(backend.name()))
        {
            spec.addresses.push(crate::AddressRequest {
                pool,
                address: None,
            });
        }
        let allocator = if spec.assigned.is_empty() && !spec.addresses.is_empty() {
            let a = self.address_allocator().ok_or_else(|| {
                Error::unsupported(
                    "addresses from address pools are handed out by libgo-server, which \
                     keeps the pools",
                )
                .with_field("addresses")
            })?;
            // A claim of this create only: a concurrent create of the same name that fails
            // must not free this one's addresses.
            let claim = format!(
                "{}#{}",
                spec.name,
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            );
            spec.assigned = a.allocate(&claim, &spec.addresses).await?;
            Some((a, claim))
        } else {
            None
        };
        let made = self.create_addressed(&backend, &mut spec).await;
        match (&made, allocator) {
            (Ok(i), Some((a, claim))) => {
                if let Err(e) = a.bind(&claim, &i.id).await {
                    tracing::warn!(instance = %i.id, error = %e, "could not record who holds its addresses");
                }
            }
            (Err(_), Some((a, claim))) => {
                if let Err(e) = a.release(&claim, &claim).await {
                    tracing::warn!(instance = %spec.name, error = %e, "could not free the addresses of a failed create");
                }
            }
            _ => {}
        }
        let mut i = made?;
        if let Some(claim) = claim {
            claim.settle_if_running(&i);
        }
        self.stamp(&mut i);
        Ok(i)
    }

    /// Creates a validated spec on `backend`, on the networks of its pool addresses first.
    async fn create_addressed(
        &self,
        backend: &Arc<dyn Backend>,
        spec: &mut InstanceSpec,
    ) -> Result<Instance> {
        if spec.addresses.len() != spec.assigned.len()
            || spec
                .addresses
                .iter()
                .zip(&spec.assigned)
                .any(|(r, a)| r.pool != a.pool)
        {
            return Err(Error::internal(
                "the addresses allocated do not match the addresses asked for",
            ));
        }
        if !spec.assigned.is_empty() {
            let host = self.host_of(backend.name());
            for a in &spec.assigned {
                self.ensure_address_network(&host, &a.network, backend.name())
                    .await?;
            }
            // Each pool's network first, where the backend gives the instance its address.
            let mut networks: Vec<String> = spec
                .assigned
                .iter()
                .map(|a| a.network.name.clone())
                .collect();
            for n in &spec.networks {
                if !networks.contains(n) {
                    networks.push(n.clone());
                }
            }
            spec.networks = networks;
        }
        backend.create(spec).await
    }

    /// Makes every engine of `host` carry an address pool's network, the VM engines first:
    /// libvirt only makes its own bridge (and refuses a subnet the host routes elsewhere),
    /// while Docker takes one that exists. An engine that is down or cannot carry pools is
    /// passed over unless the instance goes to it; any other refusal stops the creation, so
    /// the engines never disagree about the bridge.
    async fn ensure_address_network(
        &self,
        host: &str,
        network: &crate::AddressNetwork,
        chosen: &str,
    ) -> Result<()> {
        let mut backends = self.host_backends(host);
        backends.sort_by_key(|b| !b.capabilities().kinds.contains(&InstanceKind::Vm));
        for b in backends {
            match b.address_network(network).await {
                Ok(()) => {}
                Err(e) if b.name() == chosen => return Err(e),
                Err(e) if e.kind() == ErrorKind::Unsupported => {}
                Err(e) if e.kind() != ErrorKind::Unavailable => return Err(e),
                Err(e) => tracing::warn!(
                    backend = b.name(),
                    network = %network.name,
                    error = %e,
                    "could not make an address pool's network"
                ),
            }
        }
        Ok(())
    }

    /// Names are unique across backends: backend `on` refuses its own duplicate, the others
    /// are asked here. An unreachable other backend does not block a reachable one.
    async fn name_free_elsewhere(&self, on: &str, name: &str) -> Result<()> {
        let others: Vec<_> = self
            .read()
            .iter()
            .filter(|b| b.name() != on && manages_instances(&b.capabilities()))
            .cloned()
            .collect();
        let answers = join_all(others.iter().map(|b| b.resolve(name))).await;
        for (other, answer) in others.iter().zip(answers) {
            match answer {
                Ok(_) => {
                    return Err(Error::conflict(format!(
                        "an instance named {name:?} exists already on backend {:?}",
                        other.name()
                    )));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(backend = other.name(), error = %e, "name check incomplete")
                }
            }
        }
        Ok(())
    }

    /// One instance by id or name.
    pub async fn get(&self, id: &str) -> Result<Instance> {
        let (b, id) = self.route(id).await?;
        let mut i = b.get(&id).await?;
        self.stamp(&mut i);
        Ok(i)
    }

    /// Every instance of every backend that passes `filter`, sorted by name.
    ///
    /// Backends are asked concurrently: one full engine list each, or, for a backend with a
    /// change feed, one change check plus a read of what changed. A backend that fails is
    /// left out with a warning, unless every backend fails.
    pub async fn list_all(&self, filter: &InstanceFilter) -> Result<Vec<Instance>> {
        Ok(self.list_all_reporting(filter).await?.0)
    }

    /// [`LibGo::list_all`], with the backends that could not be listed (their instances
    /// are missing from the answer). Fails only when no backend answered.
    pub async fn list_all_reporting(
        &self,
        filter: &InstanceFilter,
    ) -> Result<(Vec<Instance>, Vec<Unavailable>)> {
        let backends: Vec<_> = self
            .backends()
            .into_iter()
            .filter(|b| filter.backend.as_deref().is_none_or(|n| n == b.name()))
            .filter(|b| {
                filter
                    .kind
                    .is_none_or(|k| b.capabilities().kinds.contains(&k))
            })
            .collect();
        let answers = join_all(
            backends
                .iter()
                .map(|b| async { self.inventory(b.name()).list(b.as_ref(), filter).await }),
        )
        .await;
        let mut items = Vec::new();
        let mut failures = Vec::new();
        let mut unavailable = Vec::new();
        for (b, answer) in backends.iter().zip(answers) {
            // Only a complete list is remembered; a failed one answers what was.
            let listed = match (&answer, *filter == InstanceFilter::default()) {
                (Ok(list), true) => Some(Ok(list.as_slice())),
                (Err(_), _) => Some(Err(())),
                (Ok(_), false) => None,
            };
            if let Some(listed) = listed {
                let lost = self.seen_or_lost(b.name(), listed);
                items.extend(lost.into_iter().filter(|i| filter.matches(i)));
            }
            match answer {
                Ok(list) => {
                    let host = self.host_of(b.name());
                    let list = list
                        .into_iter()
                        .filter(|i| !self.left_by_failover(b.name(), &i.id));
                    items.extend(list.filter(|i| filter.matches(i)).map(|mut i| {
                        i.host.clone_from(&host);
                        i
                    }))
                }
                Err(e) => {
                    tracing::warn!(backend = b.name(), error = %e, "listing failed");
                    unavailable.push(Unavailable {
                        backend: b.name().to_string(),
                        message: e.detail(),
                    });
                    failures.push(e);
                }
            }
        }
        if !failures.is_empty() && failures.len() == backends.len() {
            return Err(failures.remove(0));
        }
        items.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.backend.cmp(&b.backend)));
        Ok((items, unavailable))
    }

    /// One page of [`LibGo::list_all`].
    pub async fn list(&self, filter: &InstanceFilter, page: Pagination) -> Result<Page<Instance>> {
        validate::pagination(page)?;
        let (items, unavailable) = self.list_all_reporting(filter).await?;
        Ok(Page {
            unavailable,
            ..paginate(items, page)
        })
    }

    /// A state verb's answer under LibGo's idempotency rule: a verb whose target state the
    /// instance is already in succeeds (start when running, stop when stopped, pause when
    /// paused, resume when running), whatever the engine says; other conflicts stay.
    async fn idempotent(
        b: &Arc<dyn Backend>,
        id: &str,
        target: InstanceState,
        answer: Result<()>,
    ) -> Result<()> {
        match answer {
            Err(e) if e.kind() == ErrorKind::Conflict => match b.get(id).await {
                Ok(i) if i.state == target => Ok(()),
                _ => Err(e),
            },
            other => other,
        }
    }

    /// Starts an instance (already running is success).
    pub async fn start(&self, id: &str) -> Result<()> {
        let (b, i) = self.route(id).await?;
        let claim = self.admit_if_stopped_vm(&b, &i).await?;
        let answer = b.start(&i).await;
        Self::idempotent(&b, &i, InstanceState::Running, answer).await?;
        if let Some(claim) = claim {
            claim.settle(&i);
        }
        Ok(())
    }

    /// Stops an instance (already stopped is success).
    pub async fn stop(&self, id: &str, options: StopOptions) -> Result<()> {
        let (b, i) = self.route(id).await?;
        let answer = b.stop(&i, options).await;
        self.end_claims(&i);
        Self::idempotent(&b, &i, InstanceState::Stopped, answer).await
    }

    /// Restarts an instance.
    pub async fn restart(&self, id: &str, options: StopOptions) -> Result<()> {
        let (b, i) = self.route(id).await?;
        let claim = self.admit_if_stopped_vm(&b, &i).await?;
        b.restart(&i, options).await?;
        if let Some(claim) = claim {
            claim.settle(&i);
        }
        Ok(())
    }

    /// [`LibGo::admit_vm`] for a VM that is about to run (a running or paused one already
    /// holds its memory).
    async fn admit_if_stopped_vm(
        &self,
        b: &Arc<dyn Backend>,
        id: &str,
    ) -> Result<Option<crate::facade_hosts::ClaimGuard<'_>>> {
        if !b.capabilities().kinds.contains(&InstanceKind::Vm) {
            return Ok(None);
        }
        let i = b.get(id).await?;
        if i.kind == InstanceKind::Vm && !i.state.holds_memory() {
            return Ok(Some(self.admit_vm(b.name(), i.memory_bytes).await?));
        }
        Ok(None)
    }

    /// Sends a signal to, or powers off, an instance.
    pub async fn kill(&self, id: &str, signal: Option<&str>) -> Result<()> {
        let (b, i) = self.route(id).await?;
        let answer = b.kill(&i, signal).await;
        self.end_claims(&i);
        answer
    }

    /// Pauses an instance (already paused is success; a stopped one is a conflict).
    pub async fn pause(&self, id: &str) -> Result<()> {
        let (b, i) = self.route(id).await?;
        let answer = b.pause(&i).await;
        Self::idempotent(&b, &i, InstanceState::Paused, answer).await
    }

    /// Resumes a paused instance (already running is success; a stopped one is a
    /// conflict).
    pub async fn resume(&self, id: &str) -> Result<()> {
        let (b, i) = self.route(id).await?;
        let answer = b.resume(&i).await;
        Self::idempotent(&b, &i, InstanceState::Running, answer).await
    }

    /// Creates the instances of a batch one after the other, reporting progress after each;
    /// a failed item is recorded and the batch goes on. An error only when the batch itself
    /// is wrong (count, name rule, a name), before anything is made.
    pub async fn create_batch(
        &self,
        batch: &BatchSpec,
        progress: ProgressSink,
    ) -> Result<BatchReport> {
        self.create_batch_as(batch, progress, None).await
    }

    /// [`LibGo::create_batch`], recording who the instances are made for
    /// ([`LibGo::create_owned`]).
    pub async fn create_batch_owned(
        &self,
        batch: &BatchSpec,
        progress: ProgressSink,
        owner: &Ownership,
    ) -> Result<BatchReport> {
        self.create_batch_as(batch, progress, Some(owner)).await
    }

    async fn create_batch_as(
        &self,
        batch: &BatchSpec,
        progress: ProgressSink,
        owner: Option<&Ownership>,
    ) -> Result<BatchReport> {
        let names = batch.names()?;
        let mut outcomes = Vec::with_capacity(names.len());
        for name in names {
            let mut spec = batch.spec.clone();
            spec.name = name.clone();
            let outcome = self.create_as(&spec, owner).await.map(|i| Some(i.id));
            outcomes.push((name, outcome));
            batch_progress(&progress, outcomes.len(), batch.count as usize);
        }
        Ok(batch_report(outcomes, BatchStatus::Created))
    }

    /// Deletes many instances (1 to [`BatchSpec::MAX_COUNT`]) one after the other, like
    /// [`LibGo::create_batch`].
    pub async fn delete_batch(
        &self,
        ids: &[String],
        options: DeleteOptions,
        progress: ProgressSink,
    ) -> Result<BatchReport> {
        validate::batch_ids(ids)?;
        let mut outcomes = Vec::with_capacity(ids.len());
        for id in ids {
            let outcome = self.delete(id, options).await.map(|()| None);
            outcomes.push((id.clone(), outcome));
            batch_progress(&progress, outcomes.len(), ids.len());
        }
        Ok(batch_report(outcomes, BatchStatus::Deleted))
    }

    /// Deletes an instance; with `force` a running one is stopped first. Its pool addresses
    /// are freed.
    pub async fn delete(&self, id: &str, options: DeleteOptions) -> Result<()> {
        let Some(allocator) = self.address_allocator() else {
            let (b, i) = self.route(id).await?;
            b.delete(&i, options.force).await?;
            self.forget(b.name(), &i);
            return Ok(());
        };
        validate::object_id("instance", id)?;
        let (b, i) = self.locate(id).await?;
        b.delete(&i.id, options.force).await?;
        self.forget(b.name(), &i.id);
        if let Err(e) = allocator.release(&i.id, &i.name).await {
            tracing::warn!(instance = %i.id, error = %e, "could not free the instance's addresses");
        }
        Ok(())
    }

    /// Hands address pools' allocations to `allocator` (libgo-server keeps them in its
    /// database); without one, specs that ask for pool addresses are refused.
    pub fn set_address_allocator(&self, allocator: Arc<dyn crate::addresses::AddressAllocator>) {
        if let Ok(mut a) = self.address_allocator.write() {
            *a = Some(allocator);
        }
    }

    fn address_allocator(&self) -> Option<Arc<dyn crate::addresses::AddressAllocator>> {
        self.address_allocator.read().ok().and_then(|a| a.clone())
    }

    /// Changes CPU and memory, the name, autostart (VMs) or restart policy (containers).
    pub async fn update(&self, id: &str, update: ResourceUpdate) -> Result<Instance> {
        if let Some(c) = update.cpus {
            validate::cpus(c)?;
        }
        if let Some(m) = update.memory_bytes {
            validate::memory(m)?;
        }
        if let Some(order) = &update.boot {
            validate::boot_order(order)?;
        }
        let (b, i) = self.route(id).await?;
        if let Some(name) = &update.name {
            validate::name("name", name)?;
            self.name_free_elsewhere(b.name(), name).await?;
        }
        let mut i = b.update(&i, update).await?;
        self.stamp(&mut i);
        Ok(i)
    }

    /// One stats sample.
    pub async fn stats(&self, id: &str) -> Result<Stats> {
        let (b, i) = self.route(id).await?;
        b.stats(&i).await
    }

    /// One sample of each running instance of `instances` (as listed), by id: one engine
    /// call per backend where the engine has one, otherwise one per instance (at most four
    /// at once, 10 s each). Instances whose sample failed are left out.
    pub async fn stats_of_running(&self, instances: &[Instance]) -> HashMap<String, Stats> {
        let mut out = HashMap::new();
        for b in self.backends() {
            let running: Vec<String> = instances
                .iter()
                .filter(|i| i.backend == b.name() && i.state == InstanceState::Running)
                .map(|i| i.id.clone())
                .collect();
            if running.is_empty() {
                continue;
            }
            match b.stats_all().await {
                Ok(mut all) => {
                    for id in running {
                        if let Some(s) = all.remove(&id) {
                            out.insert(id, s);
                        }
                    }
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::Unsupported => {}
                Err(e) => {
                    tracing::debug!(backend = b.name(), error = %e, "bulk stats failed");
                    continue;
                }
            }
            let samples: Vec<_> = futures::stream::iter(running)
                .map(|id| {
                    let b = b.clone();
                    async move {
                        let s =
                            tokio::time::timeout(std::time::Duration::from_secs(10), b.stats(&id))
                                .await;
                        (id, s)
                    }
                })
                .buffer_unordered(4)
                .collect()
                .await;
            for (id, s) in samples {
                if let Ok(Ok(s)) = s {
                    out.insert(id, s);
                }
            }
        }
        out
    }

    /// A stream of stats samples.
    pub async fn stats_stream(&self, id: &str) -> Result<BoxStream<Stats>> {
        let (b, i) = self.route(id).await?;
        b.stats_stream(&i).await
    }

    /// Log lines.
    pub async fn logs(&self, id: &str, options: LogOptions) -> Result<BoxStream<LogEntry>> {
        if let (Some(s), Some(u)) = (options.since, options.until)
            && s > u
        {
            return Err(Error::invalid("logs: since is after until"));
        }
        let (b, i) = self.route(id).await?;
        b.logs(&i, options).await
    }

    /// Runs a command inside an instance.
    pub async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecResult> {
        validate::exec_spec(spec)?;
        let (b, i) = self.route(id).await?;
        b.exec(&i, spec).await
    }

    /// Runs a command inside an instance attached: input and output streamed, a TTY when
    /// `spec.tty` (see [`Compute::exec_interactive`]).
    pub async fn exec_interactive(&self, id: &str, spec: &ExecSpec) -> Result<ExecSession> {
        validate::exec_spec(spec)?;
        let (b, i) = self.route(id).await?;
        b.exec_interactive(&i, spec).await
    }

    /// An interactive console.
    pub async fn console(&self, id: &str) -> Result<ConsoleSession> {
        let (b, i) = self.route(id).await?;
        b.console(&i).await
    }

    /// What an instance holds of its host, as its engine reports it (see
    /// [`Compute::host_access`]).
    pub async fn host_access(&self, id: &str) -> Result<Vec<HostAccess>> {
        let (b, i) = self.route(id).await?;
        b.host_access(&i).await
    }

    /// The VNC display of a VM.
    pub async fn vnc_display(&self, id: &str) -> Result<VncDisplay> {
        let (b, i) = self.route(id).await?;
        b.vnc_display(&i).await
    }

    /// A PNG screenshot of a VM.
    pub async fn screenshot(&self, id: &str) -> Result<Vec<u8>> {
        let (b, i) = self.route(id).await?;
        b.screenshot(&i).await
    }

    /// Takes a snapshot.
    pub async fn snapshot_create(&self, id: &str, spec: &SnapshotSpec) -> Result<Snapshot> {
        validate::snapshot_spec(spec)?;
        let (b, i) = self.route(id).await?;
        b.snapshot_create(&i, spec).await
    }

    /// Snapshots of an instance.
    pub async fn snapshot_list(&self, id: &str) -> Result<Vec<Snapshot>> {
        let (b, i) = self.route(id).await?;
        b.snapshot_list(&i).await
    }

    /// One snapshot of an instance, with its place in the tree.
    pub async fn snapshot_get(&self, id: &str, snapshot: &str) -> Result<Snapshot> {
        validate::name("snapshot name", snapshot)?;
        let (b, i) = self.route(id).await?;
        b.snapshot_get(&i, snapshot).await
    }

    /// Reverts an instance to a snapshot.
    pub async fn snapshot_revert(&self, id: &str, snapshot: &str) -> Result<()> {
        validate::name("snapshot name", snapshot)?;
        let (b, i) = self.route(id).await?;
        let Some(_) = self.address_allocator() else {
            return b.snapshot_revert(&i, snapshot).await;
        };
        let before = b.get(&i).await?;
        b.snapshot_revert(&before.id, snapshot).await?;
        if let Ok(after) = b.resolve(&before.name).await {
            self.follow_addresses(&before.id, &after).await;
        }
        Ok(())
    }

    /// Deletes a snapshot.
    pub async fn snapshot_delete(&self, id: &str, snapshot: &str) -> Result<()> {
        validate::name("snapshot name", snapshot)?;
        let (b, i) = self.route(id).await?;
        b.snapshot_delete(&i, snapshot).await
    }

    /// Rebuilds an instance from an image, keeping its configuration.
    pub async fn reinstall(&self, id: &str, spec: &ReinstallSpec) -> Result<Instance> {
        if let Some(image) = &spec.image {
            validate::image_reference(image).map_err(|e| e.with_field("image"))?;
        }
        let (b, before) = self.route(id).await?;
        let before = b.resolve(&before).await.unwrap_or(before);
        let mut i = b.reinstall(&before, spec).await?;
        self.stamp(&mut i);
        self.follow_addresses(&before, &i.id).await;
        Ok(i)
    }

    /// An engine that replaces an instance to reinstall or revert it (Docker) gives it a new
    /// id: the addresses it holds follow.
    async fn follow_addresses(&self, old_id: &str, new_id: &str) {
        if old_id == new_id {
            return;
        }
        if let Some(a) = self.address_allocator()
            && let Err(e) = a.bind(old_id, new_id).await
        {
            tracing::warn!(instance = %new_id, error = %e, "could not move the instance's addresses to its new id");
        }
    }

    /// Sets a user's password inside a VM's guest, through its agent.
    pub async fn guest_password(&self, id: &str, password: &GuestPassword) -> Result<()> {
        validate::guest_password(password)?;
        let (b, i) = self.route(id).await?;
        b.guest_password(&i, password).await
    }

    /// The disks and CD-ROM drives of a VM.
    pub async fn disk_list(&self, id: &str) -> Result<Vec<AttachedDisk>> {
        let (b, i) = self.route(id).await?;
        b.disk_list(&i).await
    }

    /// Attaches a disk to a VM (hot-plugged when it runs).
    pub async fn disk_attach(&self, id: &str, disk: &DiskAttach) -> Result<AttachedDisk> {
        validate::disk_attach(disk)?;
        let (b, i) = self.route(id).await?;
        b.disk_attach(&i, disk).await
    }

    /// Detaches a disk from a VM; its volume stays.
    pub async fn disk_detach(&self, id: &str, target: &str) -> Result<()> {
        validate::disk_target(target)?;
        let (b, i) = self.route(id).await?;
        b.disk_detach(&i, target).await
    }

    /// Resizes a disk of a VM.
    pub async fn disk_resize(
        &self,
        id: &str,
        target: &str,
        resize: &DiskResize,
    ) -> Result<AttachedDisk> {
        validate::disk_target(target)?;
        validate::disk_resize(resize)?;
        let (b, i) = self.route(id).await?;
        b.disk_resize(&i, target, resize).await
    }

    /// Inserts an ISO into a VM's CD-ROM drive.
    pub async fn media_insert(&self, id: &str, media: &MediaInsert) -> Result<AttachedDisk> {
        validate::volume_name(&media.image).map_err(|e| e.with_field("image"))?;
        let (b, i) = self.route(id).await?;
        b.media_insert(&i, media).await
    }

    /// Ejects the media of a VM's CD-ROM drive.
    pub async fn media_eject(&self, id: &str) -> Result<()> {
        let (b, i) = self.route(id).await?;
        b.media_eject(&i).await
    }

    /// Exports an instance to a file.
    pub async fn export(
        &self,
        id: &str,
        spec: &ExportSpec,
        progress: ProgressSink,
    ) -> Result<ExportResult> {
        validate::export_spec(spec)?;
        let (b, i) = self.route(id).await?;
        if !b.capabilities().export_formats.contains(&spec.format) {
            return Err(Error::unsupported(format!(
                "backend {:?} cannot export to {:?}",
                b.name(),
                spec.format
            )));
        }
        b.export(&i, spec, progress).await
    }

    /// Lifecycle events from every backend, merged, that pass `filter`.
    pub async fn events(&self, filter: EventFilter) -> Result<BoxStream<Event>> {
        let backends: Vec<_> = self
            .backends()
            .into_iter()
            .filter(|b| filter.backend.as_deref().is_none_or(|n| n == b.name()))
            .collect();
        let answers = join_all(backends.iter().map(|b| b.events())).await;
        let mut streams = Vec::new();
        let mut failure = None;
        let mut subscribed = 0;
        for (b, answer) in backends.iter().zip(answers) {
            let first = match answer {
                Ok(s) => {
                    subscribed += 1;
                    Some(s)
                }
                Err(e) => {
                    tracing::warn!(backend = b.name(), error = %e, "event stream unavailable");
                    failure.get_or_insert(e);
                    None
                }
            };
            streams.push(resubscribing(b.clone(), first));
        }
        if subscribed == 0
            && let Some(e) = failure
        {
            return Err(e);
        }
        let merged = futures::stream::select_all(streams).filter(move |e| {
            let keep = e.as_ref().map_or(true, |e| filter.matches(e));
            async move { keep }
        });
        Ok(Box::pin(merged))
    }

    // ---- templates ----

    /// Templates of every backend that has them.
    pub async fn template_list(&self) -> Result<Vec<Template>> {
        Ok(self.template_listing().await?.0)
    }

    /// One page of [`LibGo::template_list`], naming the backends that could not be listed.
    pub async fn template_page(&self, page: Pagination) -> Result<Page<Template>> {
        validate::pagination(page)?;
        Ok(page_of(self.template_listing().await?, page))
    }

    async fn template_listing(&self) -> Result<(Vec<Template>, Vec<Unavailable>)> {
        self.merge(
            |c| c.templates,
            |b| async move { b.template_list().await }.boxed(),
            |a, b| a.name.cmp(&b.name).then_with(|| a.backend.cmp(&b.backend)),
        )
        .await
    }

    /// Saves a template on the named backend or the first with templates.
    pub async fn template_create(&self, t: &Template, on: On) -> Result<Template> {
        validate::template(t)?;
        self.pick(on.backend.as_deref(), |c| c.templates, "templates")?
            .template_create(t)
            .await
    }

    /// One template.
    pub async fn template_get(&self, name: &str, on: On) -> Result<Template> {
        Ok(self.find_template(on.backend.as_deref(), name).await?.1)
    }

    /// Deletes a template.
    pub async fn template_delete(&self, name: &str, on: On) -> Result<()> {
        let (b, t) = self.find_template(on.backend.as_deref(), name).await?;
        b.template_delete(&t.name).await
    }

    async fn find_template(
        &self,
        backend: Option<&str>,
        name: &str,
    ) -> Result<(Arc<dyn Backend>, Template)> {
        let key = name.to_string();
        let probe = move |b: Arc<dyn Backend>| {
            let key = key.clone();
            async move { b.template_get(&key).await }.boxed()
        };
        self.find(backend, |c| c.templates, "template", name, &probe)
            .await
    }

    /// Lists one resource from every backend with `wanted`, concurrently; fails only when
    /// every backend fails.
    /// Every backend's list, merged and ordered, with the backends that could not be
    /// listed (their items are missing). Fails only when no backend answered.
    async fn merge<T: Send + 'static>(
        &self,
        wanted: impl Fn(&Capabilities) -> bool,
        list: impl Fn(Arc<dyn Backend>) -> BoxFuture<'static, Result<Vec<T>>>,
        mut order: impl FnMut(&T, &T) -> std::cmp::Ordering,
    ) -> Result<(Vec<T>, Vec<Unavailable>)> {
        let backends: Vec<_> = self
            .backends()
            .into_iter()
            .filter(|b| wanted(&b.capabilities()))
            .collect();
        let answers = join_all(backends.iter().map(|b| list(b.clone()))).await;
        let mut items = Vec::new();
        let mut failures = Vec::new();
        let mut unavailable = Vec::new();
        for (b, answer) in backends.iter().zip(answers) {
            match answer {
                Ok(v) => items.extend(v),
                Err(e) => {
                    tracing::warn!(backend = b.name(), error = %e, "listing failed");
                    unavailable.push(Unavailable {
                        backend: b.name().to_string(),
                        message: e.detail(),
                    });
                    failures.push(e);
                }
            }
        }
        if !failures.is_empty() && failures.len() == backends.len() {
            return Err(failures.remove(0));
        }
        items.sort_by(&mut order);
        Ok((items, unavailable))
    }

    // ---- images ----

    /// Images of every backend.
    pub async fn image_list(&self) -> Result<Vec<Image>> {
        Ok(self.image_listing().await?.0)
    }

    /// One page of [`LibGo::image_list`], naming the backends that could not be listed.
    pub async fn image_page(&self, page: Pagination) -> Result<Page<Image>> {
        validate::pagination(page)?;
        Ok(page_of(self.image_listing().await?, page))
    }

    async fn image_listing(&self) -> Result<(Vec<Image>, Vec<Unavailable>)> {
        self.merge(
            |_| true,
            |b| async move { b.image_list().await }.boxed(),
            |a, b| {
                a.tags
                    .first()
                    .cmp(&b.tags.first())
                    .then_with(|| a.id.cmp(&b.id))
            },
        )
        .await
    }

    /// Finds an image by id or reference on the named backend, or on the one backend that has it.
    pub async fn image_inspect(&self, id: &str, on: On) -> Result<Image> {
        Ok(self.find_image(on.backend.as_deref(), id).await?.1)
    }

    async fn find_image(
        &self,
        backend: Option<&str>,
        id: &str,
    ) -> Result<(Arc<dyn Backend>, Image)> {
        validate::image_reference(id)?;
        let key = id.to_string();
        let probe = move |b: Arc<dyn Backend>| {
            let key = key.clone();
            async move { b.image_inspect(&key).await }.boxed()
        };
        self.find(backend, |_| true, "image", id, &probe).await
    }

    /// Pulls an image on the named backend or the first that pulls images.
    pub async fn image_pull(
        &self,
        reference: &str,
        options: &RegistryOptions,
        progress: ProgressSink,
    ) -> Result<Image> {
        validate::user_image_reference(reference)?;
        self.pick(
            options.backend.as_deref(),
            |c| c.image_registry,
            "image pull",
        )?
        .image_pull(reference, options.auth.as_ref(), progress)
        .await
    }

    /// Pushes an image.
    pub async fn image_push(
        &self,
        reference: &str,
        options: &RegistryOptions,
        progress: ProgressSink,
    ) -> Result<()> {
        validate::image_reference(reference)?;
        self.pick(
            options.backend.as_deref(),
            |c| c.image_registry,
            "image push",
        )?
        .image_push(reference, options.auth.as_ref(), progress)
        .await
    }

    /// Builds an image.
    pub async fn image_build(
        &self,
        spec: &BuildSpec,
        on: On,
        progress: ProgressSink,
    ) -> Result<Image> {
        self.image_build_as(spec, on, progress, None).await
    }

    /// [`LibGo::image_build`], recording who the image is made for in its labels.
    pub async fn image_build_owned(
        &self,
        spec: &BuildSpec,
        on: On,
        progress: ProgressSink,
        owner: &Ownership,
    ) -> Result<Image> {
        self.image_build_as(spec, on, progress, Some(owner)).await
    }

    async fn image_build_as(
        &self,
        spec: &BuildSpec,
        on: On,
        progress: ProgressSink,
        owner: Option<&Ownership>,
    ) -> Result<Image> {
        if spec.context_tar.is_empty() && spec.context_file.is_none() {
            return Err(Error::invalid("an image build needs a context tar"));
        }
        for t in &spec.tags {
            validate::user_image_reference(t)?;
        }
        validate::labels(&spec.labels).map_err(|e| e.with_field("labels"))?;
        let b = self.pick(on.backend.as_deref(), |c| c.image_build, "image build")?;
        match owner {
            None => b.image_build(spec, progress).await,
            Some(o) => {
                // After validation: the labels' prefix is refused in the caller's spec.
                let mut spec = spec.clone();
                o.stamp(&mut spec.labels);
                b.image_build(&spec, progress).await
            }
        }
    }

    /// Tags an image.
    pub async fn image_tag(&self, source: &str, target: &str, on: On) -> Result<()> {
        validate::user_image_reference(target)?;
        let (b, _) = self.find_image(on.backend.as_deref(), source).await?;
        b.image_tag(source, target).await
    }

    /// Removes an image.
    pub async fn image_remove(&self, id: &str, options: ImageRemoveOptions) -> Result<()> {
        let (b, _) = self.find_image(options.backend.as_deref(), id).await?;
        b.image_remove(id, options.force).await
    }

    /// Removes unused images on the named backend or every backend that can.
    pub async fn image_prune(&self, on: On) -> Result<PruneReport> {
        self.prune(on.backend.as_deref(), |b| {
            async move { b.image_prune().await }.boxed()
        })
        .await
    }

    /// Prunes on the named backend, or on every backend that can (one that answers
    /// `Unsupported` is skipped), and adds the reports up.
    async fn prune(
        &self,
        backend: Option<&str>,
        op: impl Fn(Arc<dyn Backend>) -> BoxFuture<'static, Result<PruneReport>>,
    ) -> Result<PruneReport> {
        let reports = match backend {
            Some(n) => vec![op(self.backend(n)?).await?],
            None => {
                let answers = join_all(self.backends().into_iter().map(&op)).await;
                let mut reports = Vec::new();
                for a in answers {
                    match a {
                        Ok(r) => reports.push(r),
                        Err(e) if e.kind() == ErrorKind::Unsupported => {}
                        Err(e) => return Err(e),
                    }
                }
                reports
            }
        };
        Ok(reports
            .into_iter()
            .fold(PruneReport::default(), |mut acc, r| {
                acc.deleted.extend(r.deleted);
                acc.space_reclaimed_bytes += r.space_reclaimed_bytes;
                acc
            }))
    }

    /// Saves an image to a tar file.
    pub async fn image_save(&self, id: &str, destination: &Path, on: On) -> Result<ExportResult> {
        validate::export_spec(&ExportSpec {
            format: ExportFormat::ImageTar,
            destination: destination.to_path_buf(),
        })?;
        let (b, _) = self.find_image(on.backend.as_deref(), id).await?;
        b.image_save(id, destination).await
    }

    // ---- networks ----

    /// Networks of every backend.
    pub async fn network_list(&self) -> Result<Vec<Network>> {
        Ok(self.network_listing().await?.0)
    }

    /// One page of [`LibGo::network_list`], naming the backends that could not be listed.
    pub async fn network_page(&self, page: Pagination) -> Result<Page<Network>> {
        validate::pagination(page)?;
        Ok(page_of(self.network_listing().await?, page))
    }

    async fn network_listing(&self) -> Result<(Vec<Network>, Vec<Unavailable>)> {
        self.merge(
            |c| c.networks,
            |b| async move { b.network_list().await }.boxed(),
            |a, b| a.name.cmp(&b.name).then_with(|| a.backend.cmp(&b.backend)),
        )
        .await
    }

    /// Whether creating `spec` would make a host-attached network (see
    /// [`crate::Networks::network_attaches_host`]) on the backend that would create it.
    pub fn network_attaches_host(&self, spec: &NetworkSpec) -> Result<bool> {
        Ok(self
            .pick(spec.backend.as_deref(), |c| c.networks, "networks")?
            .network_attaches_host(spec))
    }

    /// Creates a network on the spec's backend or the first with networks.
    pub async fn network_create(&self, spec: &NetworkSpec) -> Result<Network> {
        self.network_create_as(spec, None).await
    }

    /// [`LibGo::network_create`], recording who the network is made for in its labels.
    pub async fn network_create_owned(
        &self,
        spec: &NetworkSpec,
        owner: &Ownership,
    ) -> Result<Network> {
        self.network_create_as(spec, Some(owner)).await
    }

    async fn network_create_as(
        &self,
        spec: &NetworkSpec,
        owner: Option<&Ownership>,
    ) -> Result<Network> {
        validate::network_spec(spec)?;
        let backend = self.pick(spec.backend.as_deref(), |c| c.networks, "networks")?;
        match owner {
            None => backend.network_create(spec).await,
            Some(o) => {
                let mut spec = spec.clone();
                o.stamp(&mut spec.labels);
                backend.network_create(&spec).await
            }
        }
    }

    async fn find_network(
        &self,
        backend: Option<&str>,
        id: &str,
    ) -> Result<(Arc<dyn Backend>, Network)> {
        let key = id.to_string();
        let probe = move |b: Arc<dyn Backend>| {
            let key = key.clone();
            async move { b.network_inspect(&key).await }.boxed()
        };
        self.find(backend, |c| c.networks, "network", id, &probe)
            .await
    }

    /// One network by id or name.
    pub async fn network_inspect(&self, id: &str, on: On) -> Result<Network> {
        Ok(self.find_network(on.backend.as_deref(), id).await?.1)
    }

    /// Deletes a network.
    pub async fn network_delete(&self, id: &str, on: On) -> Result<()> {
        let (b, n) = self.find_network(on.backend.as_deref(), id).await?;
        b.network_delete(&n.id).await
    }

    /// Activates a network (libvirt).
    pub async fn network_start(&self, id: &str, on: On) -> Result<()> {
        let (b, n) = self.find_network(on.backend.as_deref(), id).await?;
        b.network_start(&n.id).await
    }

    /// Deactivates a network (libvirt).
    pub async fn network_stop(&self, id: &str, on: On) -> Result<()> {
        let (b, n) = self.find_network(on.backend.as_deref(), id).await?;
        b.network_stop(&n.id).await
    }

    /// Attaches an instance to a network of its own backend.
    pub async fn network_connect(&self, network: &str, instance: &str) -> Result<()> {
        let (b, i) = self.route(instance).await?;
        let n = b.network_inspect(network).await?;
        b.network_connect(&n.id, &i).await
    }

    /// Detaches an instance from a network.
    pub async fn network_disconnect(&self, network: &str, instance: &str) -> Result<()> {
        let (b, i) = self.route(instance).await?;
        let n = b.network_inspect(network).await?;
        b.network_disconnect(&n.id, &i).await
    }

    // ---- volumes and pools ----

    /// Volumes of every backend.
    pub async fn volume_list(&self) -> Result<Vec<Volume>> {
        Ok(self.volume_listing().await?.0)
    }

    /// One page of [`LibGo::volume_list`], naming the backends that could not be listed.
    pub async fn volume_page(&self, page: Pagination) -> Result<Page<Volume>> {
        validate::pagination(page)?;
        Ok(page_of(self.volume_listing().await?, page))
    }

    async fn volume_listing(&self) -> Result<(Vec<Volume>, Vec<Unavailable>)> {
        self.merge(
            |c| c.volumes,
            |b| async move { b.volume_list().await }.boxed(),
            |a, b| a.name.cmp(&b.name).then_with(|| a.backend.cmp(&b.backend)),
        )
        .await
    }

    /// Creates a volume on the spec's backend or the first with volumes.
    pub async fn volume_create(&self, spec: &VolumeSpec) -> Result<Volume> {
        self.volume_create_as(spec, None).await
    }

    /// [`LibGo::volume_create`], recording who the volume is made for in its labels (where
    /// the engine keeps labels: libvirt's volumes have none).
    pub async fn volume_create_owned(
        &self,
        spec: &VolumeSpec,
        owner: &Ownership,
    ) -> Result<Volume> {
        self.volume_create_as(spec, Some(owner)).await
    }

    async fn volume_create_as(
        &self,
        spec: &VolumeSpec,
        owner: Option<&Ownership>,
    ) -> Result<Volume> {
        validate::volume_spec(spec)?;
        let backend = self.pick(spec.backend.as_deref(), |c| c.volumes, "volumes")?;
        match owner {
            None => backend.volume_create(spec).await,
            Some(o) => {
                let mut spec = spec.clone();
                o.stamp(&mut spec.labels);
                backend.volume_create(&spec).await
            }
        }
    }

    async fn find_volume(
        &self,
        backend: Option<&str>,
        name: &str,
    ) -> Result<(Arc<dyn Backend>, Volume)> {
        validate::volume_name(name)?;
        let key = name.to_string();
        let probe = move |b: Arc<dyn Backend>| {
            let key = key.clone();
            async move { b.volume_inspect(&key).await }.boxed()
        };
        self.find(backend, |c| c.volumes, "volume", name, &probe)
            .await
    }

    /// One volume.
    pub async fn volume_inspect(&self, name: &str, on: On) -> Result<Volume> {
        Ok(self.find_volume(on.backend.as_deref(), name).await?.1)
    }

    /// Deletes a volume.
    pub async fn volume_delete(&self, name: &str, options: VolumeDeleteOptions) -> Result<()> {
        let (b, _) = self.find_volume(options.backend.as_deref(), name).await?;
        b.volume_delete(name, options.force).await
    }

    /// Removes unused volumes on the named backend or every backend that can.
    pub async fn volume_prune(&self, on: On) -> Result<PruneReport> {
        self.prune(on.backend.as_deref(), |b| {
            async move { b.volume_prune().await }.boxed()
        })
        .await
    }

    /// Grows a VM volume.
    pub async fn volume_resize(&self, name: &str, size_bytes: u64, on: On) -> Result<Volume> {
        validate::disk_size(size_bytes)?;
        let (b, _) = self.find_volume(on.backend.as_deref(), name).await?;
        b.volume_resize(name, size_bytes).await
    }

    /// Zeroes a VM volume.
    pub async fn volume_wipe(&self, name: &str, on: On) -> Result<()> {
        let (b, _) = self.find_volume(on.backend.as_deref(), name).await?;
        b.volume_wipe(name).await
    }

    /// Copies a VM volume.
    pub async fn volume_clone(&self, source: &str, target: &str, on: On) -> Result<Volume> {
        validate::volume_name(target)?;
        let (b, _) = self.find_volume(on.backend.as_deref(), source).await?;
        b.volume_clone(source, target).await
    }

    /// Fills a VM volume from a host file.
    pub async fn volume_upload(&self, name: &str, file: &Path, on: On) -> Result<Volume> {
        let path = file
            .to_str()
            .ok_or_else(|| Error::invalid("upload file path must be valid UTF-8"))?;
        validate::absolute_path("upload file", path)?;
        let (b, _) = self.find_volume(on.backend.as_deref(), name).await?;
        b.volume_upload(name, file).await
    }

    /// Storage pools of every backend.
    pub async fn pool_list(&self) -> Result<Vec<StoragePool>> {
        Ok(self.pool_listing().await?.0)
    }

    /// One page of [`LibGo::pool_list`], naming the backends that could not be listed.
    pub async fn pool_page(&self, page: Pagination) -> Result<Page<StoragePool>> {
        validate::pagination(page)?;
        Ok(page_of(self.pool_listing().await?, page))
    }

    async fn pool_listing(&self) -> Result<(Vec<StoragePool>, Vec<Unavailable>)> {
        self.merge(
            |c| c.storage_pools,
            |b| async move { b.pool_list().await }.boxed(),
            |a, b| a.name.cmp(&b.name).then_with(|| a.backend.cmp(&b.backend)),
        )
        .await
    }

    /// Creates a storage pool.
    pub async fn pool_create(&self, spec: &StoragePoolSpec) -> Result<StoragePool> {
        validate::pool_spec(spec)?;
        self.pick(
            spec.backend.as_deref(),
            |c| c.storage_pools,
            "storage pools",
        )?
        .pool_create(spec)
        .await
    }

    async fn find_pool(
        &self,
        backend: Option<&str>,
        name: &str,
    ) -> Result<(Arc<dyn Backend>, StoragePool)> {
        validate::name("pool name", name)?;
        let key = name.to_string();
        let probe = move |b: Arc<dyn Backend>| {
            let key = key.clone();
            async move { b.pool_inspect(&key).await }.boxed()
        };
        self.find(backend, |c| c.storage_pools, "storage pool", name, &probe)
            .await
    }

    /// One storage pool.
    pub async fn pool_inspect(&self, name: &str, on: On) -> Result<StoragePool> {
        Ok(self.find_pool(on.backend.as_deref(), name).await?.1)
    }

    /// Starts a storage pool.
    pub async fn pool_activate(&self, name: &str, on: On) -> Result<()> {
        let (b, _) = self.find_pool(on.backend.as_deref(), name).await?;
        b.pool_activate(name).await
    }

    /// Stops a storage pool.
    pub async fn pool_deactivate(&self, name: &str, on: On) -> Result<()> {
        let (b, _) = self.find_pool(on.backend.as_deref(), name).await?;
        b.pool_deactivate(name).await
    }

    /// Deletes a storage pool.
    pub async fn pool_delete(&self, name: &str, on: On) -> Result<()> {
        let (b, _) = self.find_pool(on.backend.as_deref(), name).await?;
        b.pool_delete(name).await
    }

    // ---- backends ----

    /// Health of every backend, asked concurrently.
    pub async fn health(&self) -> Vec<Health> {
        let backends = self.backends();
        join_all(backends.iter().map(|b| b.health())).await
    }

    /// Info of every backend that answers.
    pub async fn info(&self) -> Vec<Result<BackendInfo>> {
        let backends = self.backends();
        join_all(backends.iter().map(|b| b.info())).await
    }
}

fn manages_instances(c: &Capabilities) -> bool {
    !c.kinds.is_empty()
}

/// Cuts one page out of `items`, counted from the end: page 1 holds the last `page_size`
/// items (in their order), page 2 the ones before — for logs, whose newest lines matter.
pub fn paginate_from_end<T>(mut items: Vec<T>, page: Pagination) -> Page<T> {
    let count = items.len();
    let size = page.page_size as usize;
    let end = count.saturating_sub((page.page.saturating_sub(1) as usize).saturating_mul(size));
    items.truncate(end);
    let start = end.saturating_sub(size);
    Page {
        items: items.split_off(start),
        count,
        page: page.page,
        page_size: page.page_size,
        unavailable: Vec::new(),
    }
}

/// Cuts one page out of `items`.
pub fn paginate<T>(items: Vec<T>, page: Pagination) -> Page<T> {
    let count = items.len();
    let start = (page.page.saturating_sub(1) as usize).saturating_mul(page.page_size as usize);
    let items = items
        .into_iter()
        .skip(start)
        .take(page.page_size as usize)
        .collect();
    Page {
        items,
        count,
        page: page.page,
        page_size: page.page_size,
        unavailable: Vec::new(),
    }
}

/// Longest wait between attempts to subscribe again to a backend's events.
const RESUBSCRIBE_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// A backend's events that outlive its engine's restarts: when the engine's stream ends or
/// fails, LibGo subscribes again (after 0.5 s, doubling to [`RESUBSCRIBE_MAX`] while the
/// engine is away) and goes on. Events of the gap are missed; the stream itself never ends.
fn resubscribing(backend: Arc<dyn Backend>, first: Option<BoxStream<Event>>) -> BoxStream<Event> {
    const FIRST_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
    let state = (backend, first, FIRST_WAIT);
    Box::pin(futures::stream::unfold(
        state,
        |(backend, mut current, mut wait)| async move {
            loop {
                if let Some(stream) = current.as_mut() {
                    match stream.next().await {
                        Some(Ok(event)) => {
                            return Some((Ok(event), (backend, current, FIRST_WAIT)));
                        }
                        Some(Err(e)) => {
                            tracing::warn!(backend = backend.name(), error = %e, "event stream failed; subscribing again")
                        }
                        None => {
                            tracing::info!(
                                backend = backend.name(),
                                "event stream ended; subscribing again"
                            )
                        }
                    }
                    current = None;
                }
                tokio::time::sleep(wait).await;
                match backend.events().await {
                    Ok(stream) => {
                        current = Some(stream);
                        wait = FIRST_WAIT;
                    }
                    Err(e) => {
                        tracing::debug!(backend = backend.name(), error = %e, "no event stream yet");
                        wait = (wait * 2).min(RESUBSCRIBE_MAX);
                    }
                }
            }
        },
    ))
}

/// A page of a merged list and the backends missing from it.
fn page_of<T>((items, unavailable): (Vec<T>, Vec<Unavailable>), page: Pagination) -> Page<T> {
    Page {
        unavailable,
        ..paginate(items, page)
    }
}

pub(crate) fn batch_progress(progress: &ProgressSink, done: usize, total: usize) {
    progress.report(Progress {
        percent: Some(100.0 * done as f64 / total.max(1) as f64),
        message: format!("{done}/{total}"),
        id: None,
    });
}

pub(crate) fn batch_report(
    outcomes: Vec<(String, Result<Option<String>>)>,
    done: BatchStatus,
) -> BatchReport {
    let items: Vec<BatchItem> = outcomes
        .into_iter()
        .map(|(name, outcome)| match outcome {
            Ok(id) => BatchItem {
                name,
                status: done,
                id,
                error: None,
            },
            Err(e) => BatchItem {
                name,
                status: BatchStatus::Failed,
                id: None,
                error: Some(BatchError {
                    code: e.kind().code().to_string(),
                    message: e.to_string(),
                }),
            },
        })
        .collect();
    let failed = items
        .iter()
        .filter(|i| i.status == BatchStatus::Failed)
        .count();
    BatchReport {
        succeeded: items.len() - failed,
        failed,
        items,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_from_the_end_hold_the_newest_items() {
        let p = |page, page_size| Pagination { page, page_size };
        let items: Vec<u32> = (1..=7).collect();
        let first = paginate_from_end(items.clone(), p(1, 3));
        assert_eq!((first.items, first.count), (vec![5, 6, 7], 7));
        assert_eq!(paginate_from_end(items.clone(), p(3, 3)).items, vec![1]);
        assert!(paginate_from_end(items, p(4, 3)).items.is_empty());
    }

    #[test]
    fn paginate_cuts_pages() {
        let p = paginate(
            (1..=7).collect(),
            Pagination {
                page: 2,
                page_size: 3,
            },
        );
        assert_eq!(p.items, vec![4, 5, 6]);
        assert_eq!(p.count, 7);
        let p = paginate(
            (1..=7).collect::<Vec<i32>>(),
            Pagination {
                page: 4,
                page_size: 3,
            },
        );
        assert!(p.items.is_empty());
        assert_eq!(p.count, 7);
    }
}
