//! The traits a backend implements. All are object safe: `Arc<dyn Backend>` is the usual
//! handle.
//!
//! Optional operations have default bodies that return [`ErrorKind::Unsupported`]; a backend
//! overrides what it supports and says so in [`Backend::capabilities`].

use std::any::Any;
use std::collections::BTreeSet;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::error::{Error, ErrorKind, Result};
use crate::types::*;

/// A boxed stream of results, as returned by logs, stats, events and consoles.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send + 'static>>;

/// An interactive console: what the instance prints, and a writer to type into it.
pub struct ConsoleSession {
    /// Output of the instance.
    pub output: BoxStream<Bytes>,
    /// Input to the instance.
    pub input: Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

impl std::fmt::Debug for ConsoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsoleSession")
    }
}

/// A command running interactively (`docker exec -it`): its output as it comes, a writer
/// for its standard input, and a control to resize its TTY and read its exit code.
pub struct ExecSession {
    /// What the command writes, by stream (all of a TTY's output is `Stdout`).
    pub output: BoxStream<(LogStream, Bytes)>,
    /// The command's standard input; shutting it down closes it (the command reads EOF).
    pub input: Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    /// Resize and exit code.
    pub control: std::sync::Arc<dyn ExecControl>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecSession")
    }
}

/// What can be done to a running [`ExecSession`] besides typing into it.
#[async_trait]
pub trait ExecControl: Send + Sync {
    /// Sets the TTY's size (rows, columns); without a TTY it does nothing.
    async fn resize(&self, rows: u16, columns: u16) -> Result<()>;
    /// The exit code once the command has ended (its output ends first), `None` while it
    /// runs.
    async fn exit_code(&self) -> Result<Option<i64>>;

    /// The exit code, for a caller whose output stream has just ended: engines record it a
    /// moment after, so this asks for up to 2.5 s; `None` if it never came.
    async fn exit_code_after_output(&self) -> Result<Option<i64>> {
        for _ in 0..50 {
            if let Some(code) = self.exit_code().await? {
                return Ok(Some(code));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(None)
    }
}

/// Where a backend's change feed stands. Only the backend that made it reads what is inside.
pub struct ChangeCursor(Box<dyn Any + Send + Sync>);

impl ChangeCursor {
    /// Wraps a backend's own position.
    pub fn new<T: Any + Send + Sync>(position: T) -> Self {
        ChangeCursor(Box::new(position))
    }

    /// The backend's position, when this cursor holds a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl std::fmt::Debug for ChangeCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangeCursor")
    }
}

/// The answer of [`Compute::changes`].
#[derive(Debug)]
pub enum Changes {
    /// The engine cannot say what changed: list everything, then go on from `cursor`.
    Unknown {
        /// Where the feed stands: taken before the full list that must follow.
        cursor: ChangeCursor,
    },
    /// Only these instances (by engine id) may have been created, changed or deleted.
    Instances {
        /// Where the feed stands now.
        cursor: ChangeCursor,
        /// Engine ids of the instances to read again.
        ids: BTreeSet<String>,
    },
}

pub(crate) fn unsupported<T>(what: &str) -> Result<T> {
    Err(Error::new(
        ErrorKind::Unsupported,
        format!("{what} is not supported by this backend"),
    ))
}

/// Instances: life cycle, observation, snapshots and export.
///
/// `id` arguments take an instance id or its name. `create` validates its spec with
/// [`crate::validate::instance_spec`] before touching the engine, and leaves nothing behind
/// when any step fails.
#[async_trait]
pub trait Compute: Send + Sync {
    /// Creates an instance (and starts it when `spec.start`).
    async fn create(&self, spec: &InstanceSpec) -> Result<Instance>;
    /// One instance by id or name.
    async fn get(&self, id: &str) -> Result<Instance>;
    /// The engine id of an instance given by id or name: the cheapest existence check the
    /// engine has. The facade routes calls with it.
    async fn resolve(&self, id: &str) -> Result<String> {
        Ok(self.get(id).await?.id)
    }
    /// Every instance that passes `filter`, in one engine call.
    async fn list(&self, filter: &InstanceFilter) -> Result<Vec<Instance>>;
    /// What changed since `cursor`, for the facade's inventory: one cheap engine call that
    /// names every instance whose list entry may differ from the last answer. With no cursor,
    /// or whenever the engine cannot vouch for its record (log overrun, engine restarted),
    /// the answer is [`Changes::Unknown`] and the caller lists in full.
    ///
    /// Only an engine with an exact, ordered change record can offer this; the rest answer
    /// `Unsupported` and are listed in full every time.
    async fn changes(&self, cursor: Option<&ChangeCursor>) -> Result<Changes> {
        let _ = cursor;
        unsupported("a change feed")
    }
    /// The list entries of just these instances (those that still exist), exactly as
    /// [`Compute::list`] gives them.
    async fn list_ids(&self, ids: &BTreeSet<String>) -> Result<Vec<Instance>> {
        let mut all = self.list(&InstanceFilter::default()).await?;
        all.retain(|i| ids.contains(&i.id));
        Ok(all)
    }
    /// Starts a stopped instance.
    async fn start(&self, id: &str) -> Result<()>;
    /// Stops gracefully within the timeout, then forcibly; or forcibly at once.
    async fn stop(&self, id: &str, options: StopOptions) -> Result<()>;
    /// Restarts.
    async fn restart(&self, id: &str, options: StopOptions) -> Result<()>;
    /// Sends a signal (containers) or pulls the plug (VMs).
    async fn kill(&self, id: &str, signal: Option<&str>) -> Result<()>;
    /// Freezes a running instance.
    async fn pause(&self, id: &str) -> Result<()>;
    /// Thaws a paused instance.
    async fn resume(&self, id: &str) -> Result<()>;
    /// Deletes the instance and what it created for itself; `force` stops it first.
    async fn delete(&self, id: &str, force: bool) -> Result<()>;
    /// Changes CPU and memory limits.
    async fn update(&self, id: &str, update: ResourceUpdate) -> Result<Instance>;
    /// One normalised stats sample.
    async fn stats(&self, id: &str) -> Result<Stats>;
    /// A sample of every running instance in one engine call, by instance id. Engines
    /// without such a call (Docker) answer `Unsupported`, and
    /// [`crate::LibGo::stats_of_running`] asks them one instance at a time.
    async fn stats_all(&self) -> Result<std::collections::HashMap<String, Stats>> {
        unsupported("stats of every instance in one call")
    }
    /// A stream of stats samples, about one a second.
    async fn stats_stream(&self, id: &str) -> Result<BoxStream<Stats>>;
    /// Log lines (container output, VM serial log).
    async fn logs(&self, id: &str, options: LogOptions) -> Result<BoxStream<LogEntry>>;
    /// Runs a command inside and waits for it.
    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecResult> {
        let _ = (id, spec);
        unsupported("exec")
    }
    /// An interactive console (container tty, VM serial console).
    async fn console(&self, id: &str) -> Result<ConsoleSession> {
        let _ = id;
        unsupported("console")
    }
    /// Runs a command attached: its input and output streamed, with a TTY when
    /// `spec.tty` (a VM's guest agent cannot do this: use its console).
    async fn exec_interactive(&self, id: &str, spec: &ExecSpec) -> Result<ExecSession> {
        let _ = (id, spec);
        unsupported("interactive exec")
    }
    /// What the instance holds of its host (privileged mode, host paths, devices, host
    /// namespaces or networks, a host kernel), read from the engine; empty when nothing.
    /// Backends that cannot tell answer `Unsupported`, and callers then treat the instance
    /// as holding host access.
    async fn host_access(&self, id: &str) -> Result<Vec<HostAccess>> {
        let _ = id;
        unsupported("host access report")
    }
    /// The VNC display of a VM.
    async fn vnc_display(&self, id: &str) -> Result<VncDisplay> {
        let _ = id;
        unsupported("VNC display")
    }
    /// A PNG screenshot of a VM's display.
    async fn screenshot(&self, id: &str) -> Result<Vec<u8>> {
        let _ = id;
        unsupported("screenshot")
    }
    /// Rebuilds an instance from an image with the same configuration: a VM's root disk
    /// (other disks kept), or a container from its image; running again if it ran.
    async fn reinstall(&self, id: &str, spec: &ReinstallSpec) -> Result<Instance> {
        let _ = (id, spec);
        unsupported("reinstall")
    }

    /// Sets a user's password inside the guest (a VM's QEMU guest agent).
    async fn guest_password(&self, id: &str, password: &GuestPassword) -> Result<()> {
        let _ = (id, password);
        unsupported("setting a guest password")
    }

    /// The disks and CD-ROM drives of a VM.
    async fn disk_list(&self, id: &str) -> Result<Vec<AttachedDisk>> {
        let _ = id;
        unsupported("disks of an instance")
    }

    /// Attaches a disk: hot-plugged into a running VM and kept in its configuration.
    async fn disk_attach(&self, id: &str, disk: &DiskAttach) -> Result<AttachedDisk> {
        let _ = (id, disk);
        unsupported("attaching disks and media")
    }

    /// Detaches a disk (its volume stays).
    async fn disk_detach(&self, id: &str, target: &str) -> Result<()> {
        let _ = (id, target);
        unsupported("attaching disks and media")
    }

    /// Grows a disk (online), or shrinks it while the VM is shut off.
    async fn disk_resize(
        &self,
        id: &str,
        target: &str,
        resize: &DiskResize,
    ) -> Result<AttachedDisk> {
        let _ = (id, target, resize);
        unsupported("attaching disks and media")
    }

    /// Inserts an ISO into the VM's CD-ROM drive (adding a drive to a shut-off VM without one).
    async fn media_insert(&self, id: &str, media: &MediaInsert) -> Result<AttachedDisk> {
        let _ = (id, media);
        unsupported("attaching disks and media")
    }

    /// Ejects the media of the VM's CD-ROM drive.
    async fn media_eject(&self, id: &str) -> Result<()> {
        let _ = id;
        unsupported("attaching disks and media")
    }

    /// Takes a snapshot.
    async fn snapshot_create(&self, id: &str, spec: &SnapshotSpec) -> Result<Snapshot> {
        let _ = (id, spec);
        unsupported("snapshots")
    }
    /// One snapshot by name.
    async fn snapshot_get(&self, id: &str, snapshot: &str) -> Result<Snapshot> {
        self.snapshot_list(id)
            .await?
            .into_iter()
            .find(|s| s.name == snapshot)
            .ok_or_else(|| Error::not_found(format!("no snapshot {snapshot:?}")))
    }

    /// Snapshots of an instance, oldest first.
    async fn snapshot_list(&self, id: &str) -> Result<Vec<Snapshot>> {
        let _ = id;
        unsupported("snapshots")
    }
    /// Returns the instance to a snapshot.
    async fn snapshot_revert(&self, id: &str, snapshot: &str) -> Result<()> {
        let _ = (id, snapshot);
        unsupported("snapshots")
    }
    /// Deletes a snapshot.
    async fn snapshot_delete(&self, id: &str, snapshot: &str) -> Result<()> {
        let _ = (id, snapshot);
        unsupported("snapshots")
    }
    /// Writes the instance to a file.
    async fn export(
        &self,
        id: &str,
        spec: &ExportSpec,
        progress: ProgressSink,
    ) -> Result<ExportResult> {
        let _ = (id, spec, progress);
        unsupported("export")
    }
    /// Lifecycle events of every instance of the backend, whoever caused them.
    async fn events(&self) -> Result<BoxStream<Event>>;
    /// Moves instance `id` to `target`, a backend of the same engine on another host, and
    /// answers where it is now. The facade checks that the engines match.
    async fn migrate(
        &self,
        id: &str,
        target: std::sync::Arc<dyn Backend>,
        spec: &crate::hosts::MigrationSpec,
        progress: ProgressSink,
    ) -> Result<crate::hosts::MigrationReport> {
        let _ = (id, target, spec, progress);
        unsupported("migration")
    }
    /// The engine's own definition of instance `id` (libvirt's domain XML, secrets
    /// included), kept while its host answers so that it can be defined again on another
    /// host of its compute pool when that host dies (failover).
    async fn definition(&self, id: &str) -> Result<String> {
        let _ = id;
        unsupported("failover")
    }
    /// Defines instance `id` from `definition` (what [`Backend::definition`] answered on
    /// another host of the same engine), and starts it when `start`: failover. Its disks must
    /// be where the definition says (storage the hosts share). Nothing is left defined when
    /// it fails; an instance `id` defined here already is a conflict.
    async fn restore(&self, id: &str, definition: &str, start: bool) -> Result<Instance> {
        let _ = (id, definition, start);
        unsupported("failover")
    }
    /// Removes the definition of instance `id`, leaving its storage (which its copy on
    /// another host uses since it failed over); one that runs here is a conflict and is left.
    async fn remove_definition(&self, id: &str) -> Result<()> {
        let _ = id;
        unsupported("failover")
    }
    /// VM templates.
    async fn template_list(&self) -> Result<Vec<Template>> {
        unsupported("templates")
    }
    /// Saves a template (replacing one of the same name is a conflict).
    async fn template_create(&self, template: &Template) -> Result<Template> {
        let _ = template;
        unsupported("templates")
    }
    /// One template.
    async fn template_get(&self, name: &str) -> Result<Template> {
        let _ = name;
        unsupported("templates")
    }
    /// Deletes a template.
    async fn template_delete(&self, name: &str) -> Result<()> {
        let _ = name;
        unsupported("templates")
    }
}

/// Images: container images, or VM base images and ISO media.
#[async_trait]
pub trait Images: Send + Sync {
    /// Every image.
    async fn image_list(&self) -> Result<Vec<Image>>;
    /// One image by id or reference.
    async fn image_inspect(&self, id: &str) -> Result<Image>;
    /// Pulls from a registry.
    async fn image_pull(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
        progress: ProgressSink,
    ) -> Result<Image> {
        let _ = (reference, auth, progress);
        unsupported("image pull")
    }
    /// Pushes to a registry.
    async fn image_push(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
        progress: ProgressSink,
    ) -> Result<()> {
        let _ = (reference, auth, progress);
        unsupported("image push")
    }
    /// Builds from a context tar.
    async fn image_build(&self, spec: &BuildSpec, progress: ProgressSink) -> Result<Image> {
        let _ = (spec, progress);
        unsupported("image build")
    }
    /// Gives `source` the reference `target`.
    async fn image_tag(&self, source: &str, target: &str) -> Result<()> {
        let _ = (source, target);
        unsupported("image tag")
    }
    /// Removes an image.
    async fn image_remove(&self, id: &str, force: bool) -> Result<()>;
    /// Removes unused images.
    async fn image_prune(&self) -> Result<PruneReport> {
        unsupported("image prune")
    }
    /// Writes an image to a tar file.
    async fn image_save(&self, id: &str, destination: &std::path::Path) -> Result<ExportResult> {
        let _ = (id, destination);
        unsupported("image save")
    }
}

/// Networks.
#[async_trait]
pub trait Networks: Send + Sync {
    /// Every network.
    async fn network_list(&self) -> Result<Vec<Network>> {
        unsupported("networks")
    }
    /// Whether a network made from `spec` would attach its instances to a host bridge or
    /// interface (a host privilege). Backends whose drivers can answer `true`.
    fn network_attaches_host(&self, spec: &NetworkSpec) -> bool {
        let _ = spec;
        false
    }
    /// Creates a network.
    async fn network_create(&self, spec: &NetworkSpec) -> Result<Network> {
        let _ = spec;
        unsupported("networks")
    }
    /// Makes sure this engine has the network that carries an address pool on its host
    /// (see [`crate::addresses::AddressNetwork`]), on the pool's bridge; nothing when it
    /// exists. Engines that can apply pool addresses implement it.
    async fn address_network(&self, network: &crate::AddressNetwork) -> Result<()> {
        let _ = network;
        unsupported("address pools")
    }
    /// One network by id or name.
    async fn network_inspect(&self, id: &str) -> Result<Network> {
        let _ = id;
        unsupported("networks")
    }
    /// Deletes a network.
    async fn network_delete(&self, id: &str) -> Result<()> {
        let _ = id;
        unsupported("networks")
    }
    /// Activates a defined network (libvirt).
    async fn network_start(&self, id: &str) -> Result<()> {
        let _ = id;
        unsupported("network start")
    }
    /// Deactivates a network (libvirt).
    async fn network_stop(&self, id: &str) -> Result<()> {
        let _ = id;
        unsupported("network stop")
    }
    /// Attaches an instance.
    async fn network_connect(&self, network: &str, instance: &str) -> Result<()> {
        let _ = (network, instance);
        unsupported("network connect")
    }
    /// Detaches an instance.
    async fn network_disconnect(&self, network: &str, instance: &str) -> Result<()> {
        let _ = (network, instance);
        unsupported("network disconnect")
    }
}

/// Volumes and, for VMs, storage pools.
#[async_trait]
pub trait Volumes: Send + Sync {
    /// Every volume.
    async fn volume_list(&self) -> Result<Vec<Volume>> {
        unsupported("volumes")
    }
    /// Creates a volume.
    async fn volume_create(&self, spec: &VolumeSpec) -> Result<Volume> {
        let _ = spec;
        unsupported("volumes")
    }
    /// One volume by name (`pool/name` for VM volumes outside the default pool).
    async fn volume_inspect(&self, name: &str) -> Result<Volume> {
        let _ = name;
        unsupported("volumes")
    }
    /// Deletes a volume.
    async fn volume_delete(&self, name: &str, force: bool) -> Result<()> {
        let _ = (name, force);
        unsupported("volumes")
    }
    /// Deletes unused volumes.
    async fn volume_prune(&self) -> Result<PruneReport> {
        unsupported("volume prune")
    }
    /// Grows a VM volume.
    async fn volume_resize(&self, name: &str, size_bytes: u64) -> Result<Volume> {
        let _ = (name, size_bytes);
        unsupported("volume resize")
    }
    /// Overwrites a VM volume with zeros.
    async fn volume_wipe(&self, name: &str) -> Result<()> {
        let _ = name;
        unsupported("volume wipe")
    }
    /// Copies a VM volume.
    async fn volume_clone(&self, source: &str, target: &str) -> Result<Volume> {
        let _ = (source, target);
        unsupported("volume clone")
    }
    /// Fills a VM volume from an image file on the host.
    async fn volume_upload(&self, name: &str, file: &std::path::Path) -> Result<Volume> {
        let _ = (name, file);
        unsupported("volume upload")
    }
    /// Storage pools.
    async fn pool_list(&self) -> Result<Vec<StoragePool>> {
        unsupported("storage pools")
    }
    /// Creates (defines, builds and starts) a pool.
    async fn pool_create(&self, spec: &StoragePoolSpec) -> Result<StoragePool> {
        let _ = spec;
        unsupported("storage pools")
    }
    /// One pool.
    async fn pool_inspect(&self, name: &str) -> Result<StoragePool> {
        let _ = name;
        unsupported("storage pools")
    }
    /// Starts a pool.
    async fn pool_activate(&self, name: &str) -> Result<()> {
        let _ = name;
        unsupported("storage pools")
    }
    /// Stops a pool.
    async fn pool_deactivate(&self, name: &str) -> Result<()> {
        let _ = name;
        unsupported("storage pools")
    }
    /// Deletes a pool (it must be empty).
    async fn pool_delete(&self, name: &str) -> Result<()> {
        let _ = name;
        unsupported("storage pools")
    }
}

/// An engine: instances, images, networks and volumes, plus what it is and supports.
#[async_trait]
pub trait Backend: Compute + Images + Networks + Volumes {
    /// The name it was registered under (`docker`, `kvm`, `host2-docker`…).
    fn name(&self) -> &str;
    /// What it supports.
    fn capabilities(&self) -> Capabilities;
    /// Engine and version.
    async fn info(&self) -> Result<BackendInfo>;
    /// Whether the engine answers now.
    async fn health(&self) -> Health;
    /// What the machine under this engine has and uses.
    async fn host_resources(&self) -> Result<crate::hosts::HostResources> {
        unsupported("host resources")
    }
    /// The backend itself, for one that must reach another of its own engine (migration
    /// hands the target over as `dyn Backend`).
    fn as_any(&self) -> &dyn Any;
}
