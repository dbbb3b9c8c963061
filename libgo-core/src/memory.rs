//! An in-memory backend (feature `memory`), in the spirit of object_store's `InMemory`:
//! instances, images, volumes, networks, templates, snapshots and disks held in a map,
//! with the rules a real engine enforces (unique names, images that must exist, a running
//! instance that cannot be deleted without force) and an exact change feed.
//!
//! It runs the conformance suite in milliseconds and reaches the facade's branches no real
//! engine reaches cheaply: the same name on two backends, a backend that stops answering in
//! the middle of a merged list, a burst of changes larger than the inventory patches. It
//! runs no workload: `exec`, consoles, export and registries answer `Unsupported`, as its
//! [`Capabilities`] say. Real engines stay the gate for every backend feature.
//!
//! ```
//! # async fn demo() -> libgo_core::Result<()> {
//! use std::sync::Arc;
//! use libgo_core::memory::MemoryBackend;
//! use libgo_core::{ImageKind, InstanceSpec, LibGo};
//!
//! let memory = MemoryBackend::new("memory");
//! memory.add_image("busybox:latest", ImageKind::Container);
//! let libgo = LibGo::new();
//! libgo.register(Arc::new(memory.clone()))?;
//! let web = libgo.create(&InstanceSpec::container("web", "busybox:latest")).await?;
//! libgo.start(&web.id).await?;
//! memory.set_unreachable(true); // the engine goes away
//! assert!(libgo.get("web").await.is_err());
//! # Ok(()) }
//! ```

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::broadcast;

use crate::backend::{
    Backend, BoxStream, ChangeCursor, Changes, Compute, Images, Networks, Volumes,
};
use crate::error::{Error, Result};
use crate::types::*;
use crate::validate;

/// How many changes the feed remembers; a cursor older than that gets [`Changes::Unknown`].
const CHANGE_LOG: usize = 4096;

/// What the instances of a memory backend log when they start.
pub const START_MARKER: &str = "libgo-memory: running";

/// A backend whose engine is a map in this process. Cloning gives another handle on the
/// same engine, so a test can register one handle and keep the other to break it.
#[derive(Clone)]
pub struct MemoryBackend(Arc<Shared>);

struct Shared {
    name: String,
    engine_id: String,
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
    /// New log lines by instance id; `None` ends a followed log (the instance stopped).
    log_lines: broadcast::Sender<(String, Option<LogEntry>)>,
    unreachable: AtomicBool,
    change_feed: AtomicBool,
    full_lists: AtomicUsize,
    lists_by_id: AtomicUsize,
    /// The memory its host reports having; 0 reports none.
    memory_capacity: AtomicU64,
}

#[derive(Default)]
struct State {
    /// By id.
    instances: BTreeMap<String, Held>,
    /// By id.
    images: BTreeMap<String, Image>,
    /// By name.
    volumes: BTreeMap<String, Volume>,
    /// By id.
    networks: BTreeMap<String, Network>,
    /// By name.
    templates: BTreeMap<String, Template>,
    /// The change feed: (sequence number, instance id), oldest first.
    changes: VecDeque<(u64, String)>,
    sequence: u64,
}

struct Held {
    instance: Instance,
    autostart: bool,
    restart_policy: Option<RestartPolicy>,
    log: Vec<LogEntry>,
    disks: Vec<AttachedDisk>,
    snapshots: Vec<Saved>,
    current_snapshot: Option<String>,
}

/// A snapshot and what reverting to it restores.
struct Saved {
    snapshot: Snapshot,
    cpus: Option<f64>,
    memory_bytes: Option<u64>,
    state: InstanceState,
    disks: Vec<AttachedDisk>,
}

/// Where a memory backend's change feed stands.
struct FeedPosition {
    engine_id: String,
    sequence: u64,
}

/// How often a memory backend was listed in full and by ids (what the facade's inventory
/// asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCalls {
    /// Calls of [`Compute::list`].
    pub full: usize,
    /// Calls of [`Compute::list_ids`].
    pub by_id: usize,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl MemoryBackend {
    /// An empty engine named `name`, managing containers and VMs, with a change feed.
    pub fn new(name: impl Into<String>) -> Self {
        MemoryBackend(Arc::new(Shared {
            name: name.into(),
            engine_id: new_id(),
            state: Mutex::new(State::default()),
            events: broadcast::channel(1024).0,
            log_lines: broadcast::channel(1024).0,
            unreachable: AtomicBool::new(false),
            change_feed: AtomicBool::new(true),
            full_lists: AtomicUsize::new(0),
            lists_by_id: AtomicUsize::new(0),
            memory_capacity: AtomicU64::new(0),
        }))
    }

    /// Puts an image in the engine, as a pull or an upload would.
    pub fn add_image(&self, reference: &str, kind: ImageKind) -> Image {
        let image = Image {
            id: format!("sha256:{}", new_id()),
            tags: vec![reference.to_string()],
            kind,
            backend: self.0.name.clone(),
            size_bytes: 1 << 20,
            created_at: Some(Utc::now()),
            labels: BTreeMap::new(),
            format: (kind == ImageKind::Disk).then_some(DiskFormat::Qcow2),
        };
        let mut state = self.lock();
        for other in state.images.values_mut() {
            other.tags.retain(|t| t != reference);
        }
        state.images.insert(image.id.clone(), image.clone());
        image
    }

    /// While `true`, every call answers `Unavailable`, as an engine that went away does.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.0.unreachable.store(unreachable, Ordering::SeqCst);
    }

    /// Whether [`Compute::changes`] answers (`true`, the default) or is `Unsupported`.
    pub fn set_change_feed(&self, enabled: bool) {
        self.0.change_feed.store(enabled, Ordering::SeqCst);
    }

    /// Makes its host report `bytes` of memory ([`Backend::host_resources`]), which the
    /// facade admits VMs and places instances on; 0 (the default) reports nothing.
    pub fn set_memory_capacity(&self, bytes: u64) {
        self.0.memory_capacity.store(bytes, Ordering::SeqCst);
    }

    /// How often this engine was listed so far.
    pub fn list_calls(&self) -> ListCalls {
        ListCalls {
            full: self.0.full_lists.load(Ordering::SeqCst),
            by_id: self.0.lists_by_id.load(Ordering::SeqCst),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave a half-made change: every change is
        // checked before the first write.
        self.0
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `held`, a new stopped instance, and starts it when `start`; answers it.
    fn add(&self, state: &mut State, mut held: Held, start: bool) -> Instance {
        self.emit(&held.instance, EventAction::Created);
        if start {
            self.transition(&mut held, InstanceState::Running, EventAction::Started);
        }
        let answer = held.instance.clone();
        let id = answer.id.clone();
        state.instances.insert(id.clone(), held);
        state.record(&id);
        answer
    }

    /// The engine's state, or `Unavailable` while the engine is "down".
    fn engine(&self) -> Result<MutexGuard<'_, State>> {
        if self.0.unreachable.load(Ordering::SeqCst) {
            return Err(Error::unavailable(format!(
                "backend {} is unreachable",
                self.0.name
            )));
        }
        Ok(self.lock())
    }

    fn emit(&self, instance: &Instance, action: EventAction) {
        // Nobody listening is not an error.
        let _ = self.0.events.send(Event {
            time: Utc::now(),
            backend: self.0.name.clone(),
            kind: instance.kind,
            instance_id: instance.id.clone(),
            instance_name: Some(instance.name.clone()),
            action,
            attributes: BTreeMap::new(),
        });
    }

    fn log_line(&self, held: &mut Held, message: String) {
        let entry = LogEntry {
            stream: LogStream::Stdout,
            timestamp: Some(Utc::now()),
            message,
        };
        let _ = self
            .0
            .log_lines
            .send((held.instance.id.clone(), Some(entry.clone())));
        held.log.push(entry);
    }

    /// Moves an instance to `to`, with its event and log line.
    fn transition(&self, held: &mut Held, to: InstanceState, action: EventAction) {
        held.instance.state = to;
        match to {
            InstanceState::Running if action == EventAction::Started => {
                held.instance.exit_code = None;
                self.log_line(held, format!("{START_MARKER}\n"));
            }
            InstanceState::Stopped => {
                let _ = self.0.log_lines.send((held.instance.id.clone(), None));
            }
            _ => {}
        }
        self.emit(&held.instance, action);
    }
}

impl State {
    /// Refuses a name another instance has.
    fn name_free(&self, name: &str) -> Result<()> {
        if self.instances.values().any(|h| h.instance.name == name) {
            return Err(Error::conflict(format!(
                "an instance named {name:?} exists"
            )));
        }
        Ok(())
    }

    fn record(&mut self, id: &str) {
        self.sequence += 1;
        self.changes.push_back((self.sequence, id.to_string()));
        if self.changes.len() > CHANGE_LOG {
            self.changes.pop_front();
        }
    }

    /// The id of the instance named or numbered `key`.
    fn instance_id(&self, key: &str) -> Result<String> {
        validate::object_id("instance", key)?;
        if self.instances.contains_key(key) {
            return Ok(key.to_string());
        }
        self.instances
            .values()
            .find(|h| h.instance.name == key)
            .map(|h| h.instance.id.clone())
            .ok_or_else(|| Error::not_found(format!("no instance {key:?}")).with_context("id", key))
    }

    fn held(&mut self, key: &str) -> Result<&mut Held> {
        let id = self.instance_id(key)?;
        self.instances
            .get_mut(&id)
            .ok_or_else(|| Error::internal("instance vanished under the lock"))
    }

    /// Changes the instance `key`, then records the change in the feed.
    fn change<T>(&mut self, key: &str, f: impl FnOnce(&mut Held) -> Result<T>) -> Result<T> {
        let held = self.held(key)?;
        let id = held.instance.id.clone();
        let answer = f(held)?;
        self.record(&id);
        Ok(answer)
    }

    fn image_id(&self, reference: &str) -> Result<String> {
        validate::object_id("image", reference)?;
        self.images
            .values()
            .find(|i| i.id == reference || i.tags.iter().any(|t| t == reference))
            .map(|i| i.id.clone())
            .ok_or_else(|| {
                Error::not_found(format!("no image {reference:?}")).with_context("image", reference)
            })
    }

    fn images_in_use(&self) -> BTreeSet<String> {
        self.instances
            .values()
            .filter_map(|h| h.instance.image.as_deref())
            .filter_map(|r| self.image_id(r).ok())
            .collect()
    }

    fn volume_users(&self, volume: &str) -> Vec<String> {
        self.instances
            .values()
            .filter(|h| h.disks.iter().any(|d| d.volume.as_deref() == Some(volume)))
            .map(|h| h.instance.name.clone())
            .collect()
    }

    fn volume(&self, name: &str) -> Result<Volume> {
        validate::object_id("volume", name)?;
        let mut volume = self
            .volumes
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no volume {name:?}")))?;
        volume.used_by = self.volume_users(name);
        Ok(volume)
    }

    fn network_id(&self, key: &str) -> Result<String> {
        validate::object_id("network", key)?;
        self.networks
            .values()
            .find(|n| n.id == key || n.name == key)
            .map(|n| n.id.clone())
            .ok_or_else(|| Error::not_found(format!("no network {key:?}")))
    }

    fn network(&self, key: &str) -> Result<Network> {
        let id = self.network_id(key)?;
        let mut network = self.networks[&id].clone();
        network.instances = self
            .instances
            .values()
            .filter(|h| h.instance.networks.contains(&network.name))
            .map(|h| h.instance.name.clone())
            .collect();
        Ok(network)
    }
}

fn disk_target(index: usize) -> String {
    // vda … vdz, then vdaa: enough for any test.
    let letter = |i: usize| char::from(b'a' + (i % 26) as u8);
    if index < 26 {
        format!("vd{}", letter(index))
    } else {
        format!("vd{}{}", letter(index / 26 - 1), letter(index))
    }
}

impl Held {
    fn snapshot_view(&self) -> Vec<Snapshot> {
        self.snapshots
            .iter()
            .map(|s| Snapshot {
                current: self.current_snapshot.as_deref() == Some(s.snapshot.name.as_str()),
                ..s.snapshot.clone()
            })
            .collect()
    }
}

#[async_trait]
impl Compute for MemoryBackend {
    async fn create(&self, spec: &InstanceSpec) -> Result<Instance> {
        // An engine answers a moment later: concurrent calls interleave as on a real one.
        tokio::task::yield_now().await;
        let kind = spec
            .kind
            .unwrap_or(if spec.image.is_some() && spec.disks.is_empty() {
                InstanceKind::Container
            } else {
                InstanceKind::Vm
            });
        validate::instance_spec(spec, kind)?;
        if spec.cloud_init.is_some() {
            return Err(
                Error::unsupported("the memory backend has no cloud-init").with_field("cloudInit")
            );
        }
        let mut state = self.engine()?;
        state.name_free(&spec.name)?;
        // Everything the spec names must exist before anything is made.
        let images = spec
            .image
            .iter()
            .chain(spec.disks.iter().filter_map(|d| d.base_image.as_ref()))
            .chain(spec.cdrom.iter());
        for reference in images {
            state.image_id(reference)?;
        }
        for volume in spec.disks.iter().filter_map(|d| d.volume.as_deref()) {
            state.volume(volume)?;
        }
        for network in &spec.networks {
            state.network_id(network)?;
        }
        if let Some(t) = &spec.template {
            if !state.templates.contains_key(t) {
                return Err(Error::not_found(format!("no template {t:?}")));
            }
        }
        let disks = spec
            .disks
            .iter()
            .enumerate()
            .map(|(i, d)| AttachedDisk {
                target: disk_target(i),
                device: "disk".into(),
                bus: "virtio".into(),
                volume: d.volume.clone(),
                path: None,
                format: Some("qcow2".into()),
                size_bytes: d.size_bytes,
                read_only: false,
            })
            .collect();
        let instance = Instance {
            id: new_id(),
            name: spec.name.clone(),
            kind,
            backend: self.0.name.clone(),
            host: String::new(),
            state: InstanceState::Stopped,
            image: spec.image.clone(),
            cpus: spec.cpus.map(f64::from),
            memory_bytes: spec.memory_bytes,
            created_at: Some(Utc::now()),
            labels: spec.labels.clone(),
            ports: spec.ports.clone(),
            networks: spec.networks.clone(),
            ip_addresses: Vec::new(),
            exit_code: None,
        };
        let held = Held {
            instance,
            autostart: spec.autostart,
            restart_policy: spec.restart_policy,
            log: Vec::new(),
            disks,
            snapshots: Vec::new(),
            current_snapshot: None,
        };
        Ok(self.add(&mut state, held, spec.start))
    }

    async fn get(&self, id: &str) -> Result<Instance> {
        let mut state = self.engine()?;
        Ok(state.held(id)?.instance.clone())
    }

    async fn list(&self, filter: &InstanceFilter) -> Result<Vec<Instance>> {
        let state = self.engine()?;
        self.0.full_lists.fetch_add(1, Ordering::SeqCst);
        Ok(state
            .instances
            .values()
            .map(|h| &h.instance)
            .filter(|i| filter.matches(i))
            .cloned()
            .collect())
    }

    async fn changes(&self, cursor: Option<&ChangeCursor>) -> Result<Changes> {
        if !self.0.change_feed.load(Ordering::SeqCst) {
            return Err(Error::unsupported(
                "this memory backend's change feed is off",
            ));
        }
        let state = self.engine()?;
        let now = ChangeCursor::new(FeedPosition {
            engine_id: self.0.engine_id.clone(),
            sequence: state.sequence,
        });
        let oldest = state.changes.front().map_or(state.sequence, |(s, _)| s - 1);
        let known = cursor
            .and_then(|c| c.get::<FeedPosition>())
            .filter(|p| p.engine_id == self.0.engine_id && p.sequence >= oldest);
        Ok(match known {
            Some(position) => Changes::Instances {
                cursor: now,
                ids: state
                    .changes
                    .iter()
                    .filter(|(s, _)| *s > position.sequence)
                    .map(|(_, id)| id.clone())
                    .collect(),
            },
            None => Changes::Unknown { cursor: now },
        })
    }

    async fn list_ids(&self, ids: &BTreeSet<String>) -> Result<Vec<Instance>> {
        let state = self.engine()?;
        self.0.lists_by_id.fetch_add(1, Ordering::SeqCst);
        Ok(ids
            .iter()
            .filter_map(|id| state.instances.get(id))
            .map(|h| h.instance.clone())
            .collect())
    }

    async fn start(&self, id: &str) -> Result<()> {
        tokio::task::yield_now().await;
        self.engine()?.change(id, |held| match held.instance.state {
            InstanceState::Running => Ok(()),
            InstanceState::Paused => Err(Error::conflict(format!(
                "instance {} is paused: resume it",
                held.instance.name
            ))),
            _ => {
                self.transition(held, InstanceState::Running, EventAction::Started);
                Ok(())
            }
        })
    }

    async fn stop(&self, id: &str, _options: StopOptions) -> Result<()> {
        self.engine()?.change(id, |held| {
            if matches!(
                held.instance.state,
                InstanceState::Running | InstanceState::Paused
            ) {
                held.instance.exit_code = Some(0);
                self.transition(held, InstanceState::Stopped, EventAction::Stopped);
            }
            Ok(())
        })
    }

    async fn restart(&self, id: &str, _options: StopOptions) -> Result<()> {
        self.engine()?.change(id, |held| {
            if held.instance.state != InstanceState::Stopped {
                self.transition(held, InstanceState::Stopped, EventAction::Stopped);
            }
            self.transition(held, InstanceState::Running, EventAction::Started);
            Ok(())
        })
    }

    async fn kill(&self, id: &str, signal: Option<&str>) -> Result<()> {
        let signal = signal.unwrap_or("SIGKILL");
        let number = match signal.trim_start_matches("SIG") {
            "KILL" | "9" => 9,
            "TERM" | "15" => 15,
            "INT" | "2" => 2,
            "HUP" | "1" => 1,
            _ => {
                return Err(
                    Error::invalid(format!("unknown signal {signal:?}")).with_field("signal")
                );
            }
        };
        self.engine()?.change(id, |held| {
            if held.instance.state != InstanceState::Running {
                return Err(Error::conflict(format!(
                    "instance {} is not running",
                    held.instance.name
                )));
            }
            held.instance.exit_code = Some(128 + number);
            self.transition(held, InstanceState::Stopped, EventAction::Died);
            Ok(())
        })
    }

    async fn pause(&self, id: &str) -> Result<()> {
        self.engine()?.change(id, |held| match held.instance.state {
            InstanceState::Paused => Ok(()),
            InstanceState::Running => {
                self.transition(held, InstanceState::Paused, EventAction::Paused);
                Ok(())
            }
            _ => Err(Error::conflict(format!(
                "instance {} is not running",
                held.instance.name
            ))),
        })
    }

    async fn resume(&self, id: &str) -> Result<()> {
        self.engine()?.change(id, |held| match held.instance.state {
            InstanceState::Running => Ok(()),
            InstanceState::Paused => {
                self.transition(held, InstanceState::Running, EventAction::Resumed);
                Ok(())
            }
            _ => Err(Error::conflict(format!(
                "instance {} is not paused",
                held.instance.name
            ))),
        })
    }

    async fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut state = self.engine()?;
        let key = state.instance_id(id)?;
        let held = state.held(&key)?;
        if held.instance.state != InstanceState::Stopped && !force {
            return Err(Error::conflict(format!(
                "instance {} is {}: stop it or delete with force",
                held.instance.name,
                held.instance.state.as_str()
            )));
        }
        if held.instance.state != InstanceState::Stopped {
            self.transition(held, InstanceState::Stopped, EventAction::Died);
        }
        if let Some(held) = state.instances.remove(&key) {
            self.emit(&held.instance, EventAction::Deleted);
        }
        state.record(&key);
        Ok(())
    }

    async fn update(&self, id: &str, update: ResourceUpdate) -> Result<Instance> {
        if let Some(c) = update.cpus {
            validate::cpus(c).map_err(|e| e.with_field("cpus"))?;
        }
        if let Some(m) = update.memory_bytes {
            validate::memory(m).map_err(|e| e.with_field("memoryBytes"))?;
        }
        if let Some(n) = &update.name {
            validate::name("name", n).map_err(|e| e.with_field("name"))?;
        }
        if let Some(order) = &update.boot {
            validate::boot_order(order)?;
        }
        let mut state = self.engine()?;
        let key = state.instance_id(id)?;
        if let Some(n) = &update.name {
            if state
                .instances
                .values()
                .any(|h| h.instance.name == *n && h.instance.id != key)
            {
                return Err(Error::conflict(format!("an instance named {n:?} exists")));
            }
        }
        state.change(&key, |held| {
            let vm = held.instance.kind == InstanceKind::Vm;
            let refused = if vm {
                update.restart_policy.is_some().then_some("restartPolicy")
            } else if update.autostart.is_some() {
                Some("autostart")
            } else {
                update.boot.is_some().then_some("boot")
            };
            if let Some(field) = refused {
                let kind = if vm { "a VM" } else { "a container" };
                return Err(
                    Error::unsupported(format!("{field} does not apply to {kind}"))
                        .with_field(field),
                );
            }
            let i = &mut held.instance;
            if let Some(n) = &update.name {
                i.name.clone_from(n);
            }
            if let Some(c) = update.cpus {
                i.cpus = Some(f64::from(c));
            }
            if update.memory_bytes.is_some() {
                i.memory_bytes = update.memory_bytes;
            }
            if let Some(a) = update.autostart {
                held.autostart = a;
            }
            if update.restart_policy.is_some() {
                held.restart_policy = update.restart_policy;
            }
            Ok(held.instance.clone())
        })
    }

    async fn stats(&self, id: &str) -> Result<Stats> {
        let mut state = self.engine()?;
        let i = &state.held(id)?.instance;
        Ok(sample(i))
    }

    async fn stats_stream(&self, id: &str) -> Result<BoxStream<Stats>> {
        let id = self.engine()?.instance_id(id)?;
        let engine = self.clone();
        let ticks = tokio::time::interval(Duration::from_secs(1));
        Ok(
            futures::stream::unfold((engine, id, ticks), |(engine, id, mut ticks)| async move {
                ticks.tick().await;
                // The stream ends with the instance.
                let stats = engine.stats(&id).await.ok()?;
                Some((Ok(stats), (engine, id, ticks)))
            })
            .boxed(),
        )
    }

    async fn logs(&self, id: &str, options: LogOptions) -> Result<BoxStream<LogEntry>> {
        let mut state = self.engine()?;
        // Subscribed under the lock, so no line falls between the copy and the follow.
        let lines = self.0.log_lines.subscribe();
        let held = state.held(id)?;
        let id = held.instance.id.clone();
        let mut past: Vec<LogEntry> = held
            .log
            .iter()
            .filter(|e| {
                options
                    .since
                    .is_none_or(|s| e.timestamp.is_some_and(|t| t >= s))
            })
            .filter(|e| {
                options
                    .until
                    .is_none_or(|u| e.timestamp.is_some_and(|t| t <= u))
            })
            .cloned()
            .collect();
        if let Some(tail) = options.tail {
            past.drain(..past.len().saturating_sub(tail));
        }
        let follow = options.follow && held.instance.state != InstanceState::Stopped;
        drop(state);
        let timestamps = options.timestamps;
        let shown = move |mut e: LogEntry| {
            if !timestamps {
                e.timestamp = None;
            }
            Ok(e)
        };
        let past = futures::stream::iter(past);
        if !follow {
            return Ok(past.map(shown).boxed());
        }
        let until = options.until;
        let new = followed_lines(id, lines).take_while(move |e| {
            futures::future::ready(until.is_none_or(|u| e.timestamp.is_some_and(|t| t <= u)))
        });
        Ok(past.chain(new).map(shown).boxed())
    }

    /// An instance and its disks as JSON: this engine's "definition".
    async fn definition(&self, id: &str) -> Result<String> {
        let mut state = self.engine()?;
        let key = state.instance_id(id)?;
        let held = state.held(&key)?;
        serde_json::to_string(&(&held.instance, &held.disks))
            .map_err(|e| Error::internal(format!("definition of {key}: {e}")))
    }

    async fn restore(&self, id: &str, definition: &str, start: bool) -> Result<Instance> {
        // An engine answers a moment later: concurrent calls interleave as on a real one.
        tokio::task::yield_now().await;
        let (mut instance, disks): (Instance, Vec<AttachedDisk>) = serde_json::from_str(definition)
            .map_err(|e| {
                Error::invalid(format!(
                    "not a definition of a memory engine's instance: {e}"
                ))
            })?;
        if instance.id != id {
            return Err(Error::invalid(format!(
                "the definition is of instance {:?}, not {id:?}",
                instance.id
            )));
        }
        let mut state = self.engine()?;
        if state.instances.contains_key(id) {
            return Err(Error::conflict(format!(
                "instance {id:?} is defined on this engine already"
            )));
        }
        state.name_free(&instance.name)?;
        instance.backend.clone_from(&self.0.name);
        instance.state = InstanceState::Stopped;
        instance.ip_addresses.clear();
        let held = Held {
            instance,
            autostart: false,
            restart_policy: None,
            log: Vec::new(),
            disks,
            snapshots: Vec::new(),
            current_snapshot: None,
        };
        Ok(self.add(&mut state, held, start))
    }

    async fn remove_definition(&self, id: &str) -> Result<()> {
        let mut state = self.engine()?;
        let Some(held) = state.instances.get(id) else {
            return Ok(());
        };
        if held.instance.state.holds_memory() {
            return Err(Error::conflict(format!(
                "instance {id:?} runs on this engine: its definition is left"
            )));
        }
        if let Some(held) = state.instances.remove(id) {
            self.emit(&held.instance, EventAction::Deleted);
        }
        state.record(id);
        Ok(())
    }

    async fn events(&self) -> Result<BoxStream<Event>> {
        drop(self.engine()?);
        let rx = self.0.events.subscribe();
        Ok(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((Ok(event), rx)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "memory backend: event reader fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed())
    }

    async fn reinstall(&self, id: &str, spec: &ReinstallSpec) -> Result<Instance> {
        let mut state = self.engine()?;
        if let Some(image) = &spec.image {
            state.image_id(image)?;
        }
        state.change(id, |held| {
            if let Some(image) = &spec.image {
                held.instance.image = Some(image.clone());
            }
            held.log.clear();
            held.snapshots.clear();
            held.current_snapshot = None;
            if held.instance.state == InstanceState::Running {
                self.transition(held, InstanceState::Stopped, EventAction::Stopped);
                self.transition(held, InstanceState::Running, EventAction::Started);
            }
            Ok(held.instance.clone())
        })
    }

    async fn disk_list(&self, id: &str) -> Result<Vec<AttachedDisk>> {
        let mut state = self.engine()?;
        let held = state.held(id)?;
        vm_only(held)?;
        Ok(held.disks.clone())
    }

    async fn disk_attach(&self, id: &str, disk: &DiskAttach) -> Result<AttachedDisk> {
        validate::disk_attach(disk)?;
        let mut state = self.engine()?;
        let held = state.held(id)?;
        vm_only(held)?;
        let instance = held.instance.name.clone();
        let target = (0..)
            .map(disk_target)
            .find(|t| !held.disks.iter().any(|d| d.target == *t))
            .ok_or_else(|| Error::internal("no free disk target"))?;
        let volume = match &disk.volume {
            Some(v) => state.volume(v)?,
            None => {
                let size = disk.size_bytes.ok_or_else(|| {
                    Error::invalid("a new disk needs sizeBytes").with_field("sizeBytes")
                })?;
                let name = format!("{instance}-{target}.qcow2");
                if state.volumes.contains_key(&name) {
                    return Err(Error::conflict(format!("volume {name:?} exists")));
                }
                let volume = Volume {
                    name: name.clone(),
                    backend: self.0.name.clone(),
                    driver: "memory".into(),
                    pool: None,
                    path: None,
                    format: disk.format.or(Some(DiskFormat::Qcow2)),
                    capacity_bytes: Some(size),
                    allocation_bytes: Some(0),
                    created_at: Some(Utc::now()),
                    labels: BTreeMap::new(),
                    used_by: Vec::new(),
                };
                state.volumes.insert(name, volume.clone());
                volume
            }
        };
        let attached = AttachedDisk {
            target,
            device: "disk".into(),
            bus: "virtio".into(),
            volume: Some(volume.name.clone()),
            path: None,
            format: Some("qcow2".into()),
            size_bytes: volume.capacity_bytes,
            read_only: disk.read_only,
        };
        state.change(id, |held| {
            held.disks.push(attached.clone());
            Ok(attached)
        })
    }

    async fn disk_detach(&self, id: &str, target: &str) -> Result<()> {
        validate::disk_target(target)?;
        self.engine()?.change(id, |held| {
            vm_only(held)?;
            let before = held.disks.len();
            held.disks.retain(|d| d.target != target);
            if held.disks.len() == before {
                return Err(Error::not_found(format!("no disk {target:?}")));
            }
            Ok(())
        })
    }

    async fn disk_resize(
        &self,
        id: &str,
        target: &str,
        resize: &DiskResize,
    ) -> Result<AttachedDisk> {
        validate::disk_target(target)?;
        validate::disk_resize(resize)?;
        let mut state = self.engine()?;
        let resized = state.change(id, |held| {
            vm_only(held)?;
            let disk = held
                .disks
                .iter_mut()
                .find(|d| d.target == target)
                .ok_or_else(|| Error::not_found(format!("no disk {target:?}")))?;
            if disk.size_bytes.is_some_and(|s| s > resize.size_bytes) && !resize.allow_shrink {
                return Err(
                    Error::invalid("shrinking a disk loses data: set allowShrink")
                        .with_field("sizeBytes"),
                );
            }
            disk.size_bytes = Some(resize.size_bytes);
            Ok(disk.clone())
        })?;
        if let Some(v) = resized
            .volume
            .as_ref()
            .and_then(|v| state.volumes.get_mut(v))
        {
            v.capacity_bytes = Some(resize.size_bytes);
        }
        Ok(resized)
    }

    async fn snapshot_create(&self, id: &str, spec: &SnapshotSpec) -> Result<Snapshot> {
        validate::snapshot_spec(spec)?;
        self.engine()?.change(id, |held| {
            if held.snapshots.iter().any(|s| s.snapshot.name == spec.name) {
                return Err(Error::conflict(format!("snapshot {:?} exists", spec.name)));
            }
            let running = held.instance.state == InstanceState::Running;
            let snapshot = Snapshot {
                name: spec.name.clone(),
                instance_id: held.instance.id.clone(),
                created_at: Some(Utc::now()),
                description: spec.description.clone(),
                includes_memory: running,
                reference: None,
                parent: held.current_snapshot.clone(),
                current: true,
            };
            held.snapshots.push(Saved {
                snapshot: snapshot.clone(),
                cpus: held.instance.cpus,
                memory_bytes: held.instance.memory_bytes,
                state: held.instance.state,
                disks: held.disks.clone(),
            });
            held.current_snapshot = Some(spec.name.clone());
            Ok(snapshot)
        })
    }

    async fn snapshot_get(&self, id: &str, snapshot: &str) -> Result<Snapshot> {
        let mut state = self.engine()?;
        state
            .held(id)?
            .snapshot_view()
            .into_iter()
            .find(|s| s.name == snapshot)
            .ok_or_else(|| Error::not_found(format!("no snapshot {snapshot:?}")))
    }

    async fn snapshot_list(&self, id: &str) -> Result<Vec<Snapshot>> {
        Ok(self.engine()?.held(id)?.snapshot_view())
    }

    async fn snapshot_revert(&self, id: &str, snapshot: &str) -> Result<()> {
        self.engine()?.change(id, |held| {
            let saved = held
                .snapshots
                .iter()
                .find(|s| s.snapshot.name == snapshot)
                .ok_or_else(|| Error::not_found(format!("no snapshot {snapshot:?}")))?;
            let (cpus, memory, to, disks) = (
                saved.cpus,
                saved.memory_bytes,
                saved.state,
                saved.disks.clone(),
            );
            held.instance.cpus = cpus;
            held.instance.memory_bytes = memory;
            held.disks = disks;
            if held.instance.state != to {
                let action = match to {
                    InstanceState::Running => EventAction::Started,
                    InstanceState::Paused => EventAction::Paused,
                    _ => EventAction::Stopped,
                };
                self.transition(held, to, action);
            }
            held.current_snapshot = Some(snapshot.to_string());
            Ok(())
        })
    }

    async fn snapshot_delete(&self, id: &str, snapshot: &str) -> Result<()> {
        self.engine()?.change(id, |held| {
            let at = held
                .snapshots
                .iter()
                .position(|s| s.snapshot.name == snapshot)
                .ok_or_else(|| Error::not_found(format!("no snapshot {snapshot:?}")))?;
            let gone = held.snapshots.remove(at);
            // Its children hang from its parent, as libvirt does.
            for s in &mut held.snapshots {
                if s.snapshot.parent.as_deref() == Some(snapshot) {
                    s.snapshot.parent.clone_from(&gone.snapshot.parent);
                }
            }
            if held.current_snapshot.as_deref() == Some(snapshot) {
                held.current_snapshot = gone.snapshot.parent;
            }
            Ok(())
        })
    }

    async fn template_list(&self) -> Result<Vec<Template>> {
        Ok(self.engine()?.templates.values().cloned().collect())
    }

    async fn template_create(&self, template: &Template) -> Result<Template> {
        validate::template(template)?;
        let mut state = self.engine()?;
        if state.templates.contains_key(&template.name) {
            return Err(Error::conflict(format!(
                "template {:?} exists",
                template.name
            )));
        }
        let mut made = template.clone();
        made.backend.clone_from(&self.0.name);
        state.templates.insert(made.name.clone(), made.clone());
        Ok(made)
    }

    async fn template_get(&self, name: &str) -> Result<Template> {
        validate::object_id("template", name)?;
        self.engine()?
            .templates
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no template {name:?}")))
    }

    async fn template_delete(&self, name: &str) -> Result<()> {
        validate::object_id("template", name)?;
        self.engine()?
            .templates
            .remove(name)
            .map(drop)
            .ok_or_else(|| Error::not_found(format!("no template {name:?}")))
    }
}

/// The new log lines of instance `id`, ending when it stops.
fn followed_lines(
    id: String,
    rx: broadcast::Receiver<(String, Option<LogEntry>)>,
) -> impl futures::Stream<Item = LogEntry> {
    futures::stream::unfold((id, rx), |(id, mut rx)| async move {
        loop {
            match rx.recv().await {
                Ok((of, Some(entry))) if of == id => return Some((entry, (id, rx))),
                Ok((of, None)) if of == id => return None,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

fn vm_only(held: &Held) -> Result<()> {
    if held.instance.kind == InstanceKind::Vm {
        Ok(())
    } else {
        Err(Error::unsupported(
            "a container has no disks to attach: use mounts",
        ))
    }
}

/// What a memory instance "uses": a running one a quarter of its limit.
fn sample(i: &Instance) -> Stats {
    let limit = i.memory_bytes.unwrap_or(256 << 20);
    let running = i.state.holds_memory();
    Stats {
        timestamp: Utc::now(),
        cpu_percent: 0.0,
        memory_bytes: if running { limit / 4 } else { 0 },
        memory_limit_bytes: limit,
        block_read_bytes: 0,
        block_write_bytes: 0,
        net_rx_bytes: 0,
        net_tx_bytes: 0,
        pids: running.then_some(1),
    }
}

#[async_trait]
impl Images for MemoryBackend {
    async fn image_list(&self) -> Result<Vec<Image>> {
        Ok(self.engine()?.images.values().cloned().collect())
    }

    async fn image_inspect(&self, id: &str) -> Result<Image> {
        let state = self.engine()?;
        let id = state.image_id(id)?;
        Ok(state.images[&id].clone())
    }

    async fn image_tag(&self, source: &str, target: &str) -> Result<()> {
        validate::image_reference(target).map_err(|e| e.with_field("target"))?;
        let mut state = self.engine()?;
        let id = state.image_id(source)?;
        for image in state.images.values_mut() {
            image.tags.retain(|t| t != target);
        }
        if let Some(image) = state.images.get_mut(&id) {
            image.tags.push(target.to_string());
        }
        Ok(())
    }

    async fn image_remove(&self, id: &str, force: bool) -> Result<()> {
        let mut state = self.engine()?;
        let image_id = state.image_id(id)?;
        let image = &state.images[&image_id];
        // A tag of an image with several tags is only untagged, as Docker does.
        if image.tags.len() > 1 && image.tags.iter().any(|t| t == id) {
            if let Some(image) = state.images.get_mut(&image_id) {
                image.tags.retain(|t| t != id);
            }
            return Ok(());
        }
        if !force && state.images_in_use().contains(&image_id) {
            return Err(Error::conflict(format!(
                "image {id:?} is used by an instance"
            )));
        }
        state.images.remove(&image_id);
        Ok(())
    }

    async fn image_prune(&self) -> Result<PruneReport> {
        let mut state = self.engine()?;
        let used = state.images_in_use();
        let mut report = PruneReport::default();
        state.images.retain(|id, image| {
            let keep = used.contains(id);
            if !keep {
                report.deleted.push(id.clone());
                report.space_reclaimed_bytes += image.size_bytes;
            }
            keep
        });
        Ok(report)
    }
}

#[async_trait]
impl Networks for MemoryBackend {
    async fn network_list(&self) -> Result<Vec<Network>> {
        let state = self.engine()?;
        state.networks.keys().map(|id| state.network(id)).collect()
    }

    async fn network_create(&self, spec: &NetworkSpec) -> Result<Network> {
        validate::network_spec(spec)?;
        if let Some(driver) = spec.driver.as_deref().filter(|d| *d != "bridge") {
            return Err(Error::invalid(format!(
                "network driver {driver:?} is not supported: use bridge"
            ))
            .with_field("driver"));
        }
        let mut state = self.engine()?;
        if state.networks.values().any(|n| n.name == spec.name) {
            return Err(Error::conflict(format!("network {:?} exists", spec.name)));
        }
        let network = Network {
            id: new_id(),
            name: spec.name.clone(),
            backend: self.0.name.clone(),
            driver: "bridge".into(),
            subnet: spec.subnet.clone(),
            gateway: spec.gateway.clone(),
            internal: spec.internal,
            active: true,
            labels: spec.labels.clone(),
            instances: Vec::new(),
            host_attached: false,
        };
        state.networks.insert(network.id.clone(), network.clone());
        Ok(network)
    }

    async fn network_inspect(&self, id: &str) -> Result<Network> {
        self.engine()?.network(id)
    }

    async fn network_delete(&self, id: &str) -> Result<()> {
        let mut state = self.engine()?;
        let network = state.network(id)?;
        if !network.instances.is_empty() {
            return Err(Error::conflict(format!(
                "network {} is used by {}",
                network.name,
                network.instances.join(", ")
            )));
        }
        state.networks.remove(&network.id);
        Ok(())
    }

    async fn network_connect(&self, network: &str, instance: &str) -> Result<()> {
        let mut state = self.engine()?;
        let name = state.network(network)?.name;
        state.change(instance, |held| {
            if held.instance.networks.contains(&name) {
                return Err(Error::conflict(format!(
                    "{} is already on network {name}",
                    held.instance.name
                )));
            }
            held.instance.networks.push(name);
            Ok(())
        })
    }

    async fn network_disconnect(&self, network: &str, instance: &str) -> Result<()> {
        let mut state = self.engine()?;
        let name = state.network(network)?.name;
        state.change(instance, |held| {
            let before = held.instance.networks.len();
            held.instance.networks.retain(|n| *n != name);
            if before == held.instance.networks.len() {
                return Err(Error::not_found(format!(
                    "{} is not on network {name}",
                    held.instance.name
                )));
            }
            Ok(())
        })
    }
}

#[async_trait]
impl Volumes for MemoryBackend {
    async fn volume_list(&self) -> Result<Vec<Volume>> {
        let state = self.engine()?;
        state.volumes.keys().map(|n| state.volume(n)).collect()
    }

    async fn volume_create(&self, spec: &VolumeSpec) -> Result<Volume> {
        validate::volume_spec(spec)?;
        let mut state = self.engine()?;
        if state.volumes.contains_key(&spec.name) {
            return Err(Error::conflict(format!("volume {:?} exists", spec.name)));
        }
        let volume = Volume {
            name: spec.name.clone(),
            backend: self.0.name.clone(),
            driver: "memory".into(),
            pool: spec.pool.clone(),
            path: None,
            format: spec.format,
            capacity_bytes: spec.size_bytes,
            allocation_bytes: Some(0),
            created_at: Some(Utc::now()),
            labels: spec.labels.clone(),
            used_by: Vec::new(),
        };
        state.volumes.insert(volume.name.clone(), volume.clone());
        Ok(volume)
    }

    async fn volume_inspect(&self, name: &str) -> Result<Volume> {
        self.engine()?.volume(name)
    }

    async fn volume_delete(&self, name: &str, force: bool) -> Result<()> {
        let mut state = self.engine()?;
        let volume = state.volume(name)?;
        if !volume.used_by.is_empty() && !force {
            return Err(Error::conflict(format!(
                "volume {name} is used by {}",
                volume.used_by.join(", ")
            )));
        }
        state.volumes.remove(name);
        Ok(())
    }

    async fn volume_prune(&self) -> Result<PruneReport> {
        let mut state = self.engine()?;
        let unused: Vec<String> = state
            .volumes
            .keys()
            .filter(|n| state.volume_users(n).is_empty())
            .cloned()
            .collect();
        let mut report = PruneReport::default();
        for name in unused {
            if let Some(v) = state.volumes.remove(&name) {
                report.space_reclaimed_bytes += v.allocation_bytes.unwrap_or(0);
                report.deleted.push(name);
            }
        }
        Ok(report)
    }

    async fn volume_resize(&self, name: &str, size_bytes: u64) -> Result<Volume> {
        validate::disk_size(size_bytes).map_err(|e| e.with_field("sizeBytes"))?;
        let mut state = self.engine()?;
        let current = state.volume(name)?;
        if current.capacity_bytes.is_some_and(|c| c > size_bytes) {
            return Err(Error::invalid("a volume only grows").with_field("sizeBytes"));
        }
        if let Some(v) = state.volumes.get_mut(name) {
            v.capacity_bytes = Some(size_bytes);
        }
        state.volume(name)
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kinds: vec![InstanceKind::Container, InstanceKind::Vm],
            pause: true,
            exec: false,
            console: false,
            console_vnc: false,
            snapshots: true,
            live_snapshot: true,
            cloud_init: false,
            export_formats: Vec::new(),
            live_update: true,
            image_registry: false,
            image_build: false,
            networks: true,
            volumes: true,
            storage_pools: false,
            templates: true,
            disks: true,
            guest_password: false,
        }
    }

    async fn info(&self) -> Result<BackendInfo> {
        drop(self.engine()?);
        Ok(BackendInfo {
            name: self.0.name.clone(),
            engine: "memory".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: None,
            endpoint: format!("memory://{}", self.0.name),
            kinds: self.capabilities().kinds,
            engine_id: Some(self.0.engine_id.clone()),
        })
    }

    async fn health(&self) -> Health {
        let up = !self.0.unreachable.load(Ordering::SeqCst);
        Health {
            backend: self.0.name.clone(),
            up,
            message: if up { "ok" } else { "unreachable" }.into(),
            latency_ms: 0,
        }
    }

    async fn host_resources(&self) -> Result<crate::hosts::HostResources> {
        drop(self.engine()?);
        let memory_bytes = self.0.memory_capacity.load(Ordering::SeqCst);
        if memory_bytes == 0 {
            return Err(Error::unsupported(
                "this memory engine reports no host resources",
            ));
        }
        Ok(crate::hosts::HostResources {
            capacity: crate::hosts::HostCapacity {
                cpus: 1,
                memory_bytes,
                disk_bytes: None,
            },
            usage: Default::default(),
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
