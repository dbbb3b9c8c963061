//! The operation table: every verb the bindings offer, declared once.
//!
//! Each line names an operation, its arguments with their Rust types (from which serde
//! decodes them, refusing unknown ones), its kind and result type, and the facade call.
//! From this one declaration come the dispatcher ([`call`](crate::call)), the list
//! [`OPERATIONS`] (which `operations.json` records), and from that file, by
//! `scripts/gen-bindings.py`, the Python and TypeScript methods and the C entry points.
//!
//! Argument markers, for the generated front ends:
//! - `[positional]`: an optional argument that stays positional (Python, Node) instead of
//!   going into the keyword arguments / trailing options object.
//! - `[spread]`: a struct whose fields are the caller's parameters: Python takes them as
//!   parameters (required fields positional, the others keyword-only); Node merges the
//!   fields of an optional one into the options object.
//!
//! Operation markers: `progress` (progress reports reach a callback), `data` (a binary
//! argument: the context tar of a build).

use libgo::{
    AttachedDisk, BackendInfo, BatchReport, BatchSpec, BuildSpec, Capabilities, ComputePool,
    ConsoleSession, DeleteOptions, DiskAttach, DiskResize, Event, EventFilter, ExecResult,
    ExecSession, ExecSpec, ExportResult, ExportSpec, GuestPassword, Health, Host, Image,
    ImageRemoveOptions, Instance, InstanceFilter, InstanceSpec, LibGo, LogEntry, LogOptions,
    MediaInsert, MigrateRequest, MigrationReport, Network, NetworkSpec, On, Page, Pagination,
    PoolStatus, ProgressSink, PruneReport, RegistryAuth, RegistryOptions, ReinstallSpec,
    ResourceUpdate, Result, Snapshot, SnapshotSpec, Stats, StopOptions, StoragePool,
    StoragePoolSpec, Template, VncDisplay, Volume, VolumeDeleteOptions, VolumeSpec,
};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;

use crate::{Console, Reply};

/// What an operation answers, which decides how each front end returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// A JSON value.
    Value,
    /// Nothing.
    Unit,
    /// A stream of JSON items.
    Stream,
    /// Raw bytes.
    Bytes,
    /// An interactive console.
    Console,
}

/// One argument of an operation.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    /// Its name in Rust (snake_case); the JSON name is its camelCase form.
    pub name: &'static str,
    /// Its Rust type as written in the table (`Option<…>` for an optional one).
    pub rust_type: &'static str,
    /// Markers for the generated front ends (`positional`, `spread`).
    pub flags: &'static [&'static str],
}

/// An operation [`call`](crate::call) knows.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// The name bindings call it by.
    pub name: &'static str,
    /// What it does (the doc comment of its line).
    pub doc: &'static str,
    /// What it answers.
    pub kind: Kind,
    /// The Rust type of its result (of each item, for a stream).
    pub result: &'static str,
    /// Its arguments, in their positional order; any other is refused.
    pub args: &'static [Arg],
    /// Markers: `progress`, `data`.
    pub flags: &'static [&'static str],
    /// The name of its C entry point.
    pub c_name: &'static str,
}

impl Operation {
    /// The JSON (camelCase) names of its arguments.
    pub fn arg_names(&self) -> impl Iterator<Item = String> + '_ {
        self.args.iter().map(|a| camel_case(a.name))
    }
}

/// `page_size` → `pageSize`.
pub fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn json<T: Serialize>(value: &T) -> Result<Reply> {
    serde_json::to_string(value)
        .map(Reply::Json)
        .map_err(|e| libgo::Error::internal(format!("cannot encode the result as JSON: {e}")))
}

fn stream<T: Serialize + Send + 'static>(s: libgo::BoxStream<T>) -> Reply {
    use futures::StreamExt;
    Reply::Stream(
        s.map(|item| {
            item.and_then(|v| {
                serde_json::to_string(&v).map_err(|e| {
                    libgo::Error::internal(format!("cannot encode a stream item: {e}"))
                })
            })
        })
        .boxed(),
    )
}

/// Decodes an operation's arguments: a JSON object (or null for none), unknown names refused.
fn decode<T: serde::de::DeserializeOwned>(op: &str, args: Value) -> Result<T> {
    let args = match args {
        Value::Null => Value::Object(serde_json::Map::new()),
        Value::Object(map) => Value::Object(map),
        other => {
            return Err(libgo::Error::invalid(format!(
                "{op}: arguments must be an object, not {other}"
            )));
        }
    };
    serde_json::from_value(args).map_err(|e| libgo::Error::invalid(format!("{op}: {e}")))
}

/// A page request from optional arguments, each defaulted.
fn pagination(page: Option<u32>, page_size: Option<u32>) -> Pagination {
    let mut p = Pagination::default();
    if let Some(n) = page {
        p.page = n;
    }
    if let Some(n) = page_size {
        p.page_size = n;
    }
    p
}

macro_rules! c_name {
    ($name:ident) => {
        concat!("libgo_", stringify!($name))
    };
    ($name:ident $c:literal) => {
        $c
    };
}

/// Wraps an operation's result as a [`Reply`], typed by its declared kind and result.
macro_rules! reply {
    (Value, $res:ty, $body:expr) => {{
        let value: $res = $body;
        json(&value)
    }};
    (Unit, $res:ty, $body:expr) => {{
        let (): $res = $body;
        Ok(Reply::Json("null".to_owned()))
    }};
    (Stream, $res:ty, $body:expr) => {{
        let items: libgo::BoxStream<$res> = $body;
        Ok(stream(items))
    }};
    (Bytes, $res:ty, $body:expr) => {{
        let bytes: $res = $body;
        Ok(Reply::Bytes(bytes))
    }};
    (Console, $res:ty, $body:expr) => {{
        let session: $res = $body;
        Ok(Reply::Console(Console::from(session)))
    }};
}

macro_rules! operations {
    (
        ($libgo:ident, $a:ident, $data:ident, $progress:ident);
        $(
            $(#[doc = $doc:literal])*
            $name:ident ( $( $arg:ident : $ty:ty $([$flag:ident])? ),* $(,)? )
                -> $kind:ident $res:ty
                $([$($opflag:ident),*])?
                $(, c = $cname:literal)?
                => $body:expr;
        )*
    ) => {
        /// The arguments of each operation, as serde decodes them.
        #[allow(non_camel_case_types, missing_docs)]
        pub mod args {
            use super::*;
            $(
                #[derive(Debug, serde::Deserialize)]
                #[serde(deny_unknown_fields, rename_all = "camelCase")]
                pub struct $name { $( pub $arg: $ty, )* }
            )*
        }

        /// Every operation [`call`](crate::call) knows, in the table's order.
        pub const OPERATIONS: &[Operation] = &[$(
            Operation {
                name: stringify!($name),
                doc: concat!($($doc, "\n",)*),
                kind: Kind::$kind,
                result: stringify!($res),
                args: &[$(Arg {
                    name: stringify!($arg),
                    rust_type: stringify!($ty),
                    flags: &[$(stringify!($flag))?],
                }),*],
                flags: &[$($(stringify!($opflag)),*)?],
                c_name: c_name!($name $($cname)?),
            },
        )*];

        /// Decodes the arguments of `op` and calls the facade.
        #[allow(unused_variables)]
        pub(crate) async fn dispatch(
            $libgo: &LibGo,
            op: &str,
            args: Value,
            $data: Vec<u8>,
            $progress: ProgressSink,
        ) -> Result<Reply> {
            match op {
                $(stringify!($name) => {
                    let $a: args::$name = decode(op, args)?;
                    reply!($kind, $res, $body)
                })*
                other => Err(libgo::Error::unsupported(format!("unknown operation {other:?}"))),
            }
        }
    };
}

operations! {
    (libgo, a, data, progress);

    /// Names of the connected backends.
    backends() -> Value Vec<String> => libgo.backend_names();
    /// Health of every backend.
    health() -> Value Vec<Health> => libgo.health().await;
    /// Every host (`local` and the others added), with engines, capacity, use and instances.
    host_list() -> Value Vec<Host> => libgo.host_list().await?;
    /// One host.
    host_get(name: String) -> Value Host => libgo.host(&a.name).await?;
    /// Every compute pool, with its hosts.
    compute_pool_list() -> Value Vec<ComputePool> => libgo.compute_pools();
    /// Every host and pool together.
    zone_status() -> Value PoolStatus => libgo.zone_status().await?;
    /// Moves an instance to another host: a VM by libvirt's migration (live unless
    /// `live` is false), a container by a cold move.
    migrate(id: String, request: MigrateRequest [spread]) -> Value MigrationReport [progress],
        c = "libgo_instance_migrate" => libgo.migrate(&a.id, &a.request, progress).await?;
    /// Info of every backend that answers.
    info() -> Value Vec<BackendInfo> =>
        libgo.info().await.into_iter().filter_map(Result::ok).collect();
    /// What a backend supports.
    capabilities(backend: String) -> Value Capabilities =>
        libgo.backend(&a.backend)?.capabilities();

    /// Creates a VM or a container (and starts it when the spec says `start`).
    create(spec: InstanceSpec) -> Value Instance, c = "libgo_instance_create" =>
        libgo.create(&a.spec).await?;
    /// One instance by id or name.
    get(id: String) -> Value Instance, c = "libgo_instance_get" => libgo.get(&a.id).await?;
    /// One page of the instances of every backend passing the filter, sorted by name.
    list(filter: Option<InstanceFilter> [positional], page: Option<u32>, page_size: Option<u32>)
        -> Value Page<Instance>, c = "libgo_instance_list" =>
        libgo.list(&a.filter.unwrap_or_default(), pagination(a.page, a.page_size)).await?;
    /// Every instance of every backend passing the filter, sorted by name.
    list_all(filter: Option<InstanceFilter> [positional]) -> Value Vec<Instance>,
        c = "libgo_instance_list_all" => libgo.list_all(&a.filter.unwrap_or_default()).await?;
    /// Starts an instance.
    start(id: String) -> Unit (), c = "libgo_instance_start" => libgo.start(&a.id).await?;
    /// Stops an instance: gracefully within `timeoutSecs`, then forcibly.
    stop(id: String, options: Option<StopOptions> [spread]) -> Unit (),
        c = "libgo_instance_stop" => libgo.stop(&a.id, a.options.unwrap_or_default()).await?;
    /// Restarts an instance.
    restart(id: String, options: Option<StopOptions> [spread]) -> Unit (),
        c = "libgo_instance_restart" =>
        libgo.restart(&a.id, a.options.unwrap_or_default()).await?;
    /// Sends a signal to a container (the engine's default without one), or pulls a VM's plug.
    kill(id: String, signal: Option<String> [positional]) -> Unit (),
        c = "libgo_instance_kill" => libgo.kill(&a.id, a.signal.as_deref()).await?;
    /// Freezes an instance.
    pause(id: String) -> Unit (), c = "libgo_instance_pause" => libgo.pause(&a.id).await?;
    /// Thaws a paused instance.
    resume(id: String) -> Unit (), c = "libgo_instance_resume" => libgo.resume(&a.id).await?;
    /// Deletes an instance; `force` stops it first.
    delete(id: String, force: Option<bool>) -> Unit (), c = "libgo_instance_delete" =>
        libgo.delete(&a.id, DeleteOptions { force: a.force.unwrap_or_default() }).await?;
    /// Creates `count` instances from one spec, named by `namePattern` (`{n}` is the number); a failed item is reported and the batch goes on.
    create_batch(batch: BatchSpec) -> Value BatchReport [progress],
        c = "libgo_instance_create_batch" => libgo.create_batch(&a.batch, progress).await?;
    /// Deletes many instances (at most 100), reporting each.
    delete_batch(ids: Vec<String>, force: Option<bool>) -> Value BatchReport [progress],
        c = "libgo_instance_delete_batch" =>
        libgo.delete_batch(&a.ids, DeleteOptions { force: a.force.unwrap_or_default() }, progress)
            .await?;
    /// Changes CPU and memory limits; answers the instance.
    update(id: String, update: ResourceUpdate [spread]) -> Value Instance,
        c = "libgo_instance_update" => libgo.update(&a.id, a.update).await?;
    /// One resource-usage sample.
    stats(id: String) -> Value Stats, c = "libgo_instance_stats" => libgo.stats(&a.id).await?;
    /// Resource-usage samples, about one a second, until the stream is closed.
    stats_stream(id: String) -> Stream Stats, c = "libgo_instance_stats_stream" =>
        libgo.stats_stream(&a.id).await?;
    /// Log entries; with `follow`, new ones as they come, until the stream is closed.
    logs(id: String, options: Option<LogOptions> [spread]) -> Stream LogEntry,
        c = "libgo_instance_logs" => libgo.logs(&a.id, a.options.unwrap_or_default()).await?;
    /// Runs a command inside an instance and waits for it.
    exec(id: String, spec: ExecSpec [spread]) -> Value ExecResult,
        c = "libgo_instance_exec" => libgo.exec(&a.id, &a.spec).await?;
    /// Runs a command interactively (`docker exec -it`): a console whose output is the
    /// command's, that takes its input, resizes its TTY and, once it ends, has its exit code.
    exec_interactive(id: String, spec: ExecSpec [spread]) -> Console ExecSession,
        c = "libgo_instance_exec_interactive" => libgo.exec_interactive(&a.id, &a.spec).await?;
    /// An interactive console: a shell in a container, the serial console of a VM.
    console(id: String) -> Console ConsoleSession, c = "libgo_instance_console" =>
        libgo.console(&a.id).await?;
    /// Where a VM's display listens.
    vnc_display(id: String) -> Value VncDisplay, c = "libgo_instance_vnc_display" =>
        libgo.vnc_display(&a.id).await?;
    /// A PNG screenshot of a VM's display.
    screenshot(id: String) -> Bytes Vec<u8>, c = "libgo_instance_screenshot" =>
        libgo.screenshot(&a.id).await?;
    /// Takes a snapshot.
    snapshot_create(id: String, spec: SnapshotSpec [spread]) -> Value Snapshot =>
        libgo.snapshot_create(&a.id, &a.spec).await?;
    /// Snapshots of an instance.
    snapshot_list(id: String) -> Value Vec<Snapshot> => libgo.snapshot_list(&a.id).await?;
    /// One snapshot of an instance, with its parent and whether it is current.
    snapshot_get(id: String, snapshot: String) -> Value Snapshot =>
        libgo.snapshot_get(&a.id, &a.snapshot).await?;
    /// Reverts an instance to a snapshot.
    snapshot_revert(id: String, snapshot: String) -> Unit () =>
        libgo.snapshot_revert(&a.id, &a.snapshot).await?;
    /// Deletes a snapshot.
    snapshot_delete(id: String, snapshot: String) -> Unit () =>
        libgo.snapshot_delete(&a.id, &a.snapshot).await?;
    /// Rebuilds an instance from an image with the same configuration: a VM's root disk
    /// (other disks kept) or a container; running again if it ran.
    reinstall(id: String, spec: ReinstallSpec [spread]) -> Value Instance =>
        libgo.reinstall(&a.id, &a.spec).await?;
    /// Sets a user's password inside a VM's guest, through its QEMU guest agent.
    guest_password(id: String, password: GuestPassword [spread]) -> Unit () =>
        libgo.guest_password(&a.id, &a.password).await?;
    /// The disks and CD-ROM drives of a VM.
    disk_list(id: String) -> Value Vec<AttachedDisk> => libgo.disk_list(&a.id).await?;
    /// Attaches a disk to a VM: an existing volume or a new one of `sizeBytes` (hot-plugged when it runs).
    disk_attach(id: String, disk: DiskAttach [spread]) -> Value AttachedDisk =>
        libgo.disk_attach(&a.id, &a.disk).await?;
    /// Detaches a disk from a VM; its volume stays.
    disk_detach(id: String, target: String) -> Unit () =>
        libgo.disk_detach(&a.id, &a.target).await?;
    /// Grows a disk (online), or shrinks it while the VM is shut off (`allowShrink`).
    disk_resize(id: String, target: String, resize: DiskResize [spread]) -> Value AttachedDisk =>
        libgo.disk_resize(&a.id, &a.target, &a.resize).await?;
    /// Inserts an ISO volume into a VM's CD-ROM drive.
    media_insert(id: String, media: MediaInsert [spread]) -> Value AttachedDisk =>
        libgo.media_insert(&a.id, &a.media).await?;
    /// Ejects the media of a VM's CD-ROM drive.
    media_eject(id: String) -> Unit () => libgo.media_eject(&a.id).await?;
    /// Exports an instance to a new file (`tar`/`imagetar` for containers, a disk format for VMs).
    export(id: String, spec: ExportSpec [spread]) -> Value ExportResult [progress],
        c = "libgo_instance_export" => libgo.export(&a.id, &a.spec, progress).await?;
    /// Lifecycle events of every backend, as they happen, until the stream is closed.
    events(filter: Option<EventFilter> [positional]) -> Stream Event =>
        libgo.events(a.filter.unwrap_or_default()).await?;

    /// Images of every backend.
    image_list() -> Value Vec<Image> => libgo.image_list().await?;
    /// One page of the images of every backend; `unavailable` names the backends that could not be listed.
    image_page(page: Option<u32>, page_size: Option<u32>) -> Value Page<Image> =>
        libgo.image_page(pagination(a.page, a.page_size)).await?;
    /// One image by id or reference.
    image_inspect(backend: Option<String>, id: String) -> Value Image =>
        libgo.image_inspect(&a.id, On { backend: a.backend }).await?;
    /// Pulls an image.
    image_pull(backend: Option<String>, reference: String, auth: Option<RegistryAuth>)
        -> Value Image [progress] =>
        libgo.image_pull(&a.reference, &RegistryOptions { backend: a.backend, auth: a.auth }, progress).await?;
    /// Pushes an image.
    image_push(backend: Option<String>, reference: String, auth: Option<RegistryAuth>)
        -> Unit () [progress] =>
        libgo.image_push(&a.reference, &RegistryOptions { backend: a.backend, auth: a.auth }, progress).await?;
    /// Builds an image from a context tar archive (the binary argument).
    image_build(backend: Option<String>, spec: Option<BuildSpec> [spread])
        -> Value Image [data, progress] => {
        let mut spec = a.spec.unwrap_or_default();
        spec.context_tar = data;
        libgo.image_build(&spec, On { backend: a.backend }, progress).await?
    };
    /// Gives an image another reference.
    image_tag(backend: Option<String>, source: String, target: String) -> Unit () =>
        libgo.image_tag(&a.source, &a.target, On { backend: a.backend }).await?;
    /// Removes an image; `force` also when containers use it.
    image_remove(backend: Option<String>, id: String, force: Option<bool>) -> Unit () =>
        libgo.image_remove(&a.id, ImageRemoveOptions {
            backend: a.backend,
            force: a.force.unwrap_or_default(),
        }).await?;
    /// Removes unused images.
    image_prune(backend: Option<String>) -> Value PruneReport =>
        libgo.image_prune(On { backend: a.backend }).await?;
    /// Saves an image to a new tar file.
    image_save(backend: Option<String>, id: String, destination: PathBuf) -> Value ExportResult =>
        libgo.image_save(&a.id, &a.destination, On { backend: a.backend }).await?;

    /// Networks of every backend.
    network_list() -> Value Vec<Network> => libgo.network_list().await?;
    /// One page of the networks of every backend; `unavailable` names the backends that could not be listed.
    network_page(page: Option<u32>, page_size: Option<u32>) -> Value Page<Network> =>
        libgo.network_page(pagination(a.page, a.page_size)).await?;
    /// Creates a network.
    network_create(spec: NetworkSpec) -> Value Network => libgo.network_create(&a.spec).await?;
    /// One network by id or name.
    network_inspect(backend: Option<String>, id: String) -> Value Network =>
        libgo.network_inspect(&a.id, On { backend: a.backend }).await?;
    /// Deletes a network.
    network_delete(backend: Option<String>, id: String) -> Unit () =>
        libgo.network_delete(&a.id, On { backend: a.backend }).await?;
    /// Activates a network (libvirt).
    network_start(backend: Option<String>, id: String) -> Unit () =>
        libgo.network_start(&a.id, On { backend: a.backend }).await?;
    /// Deactivates a network (libvirt).
    network_stop(backend: Option<String>, id: String) -> Unit () =>
        libgo.network_stop(&a.id, On { backend: a.backend }).await?;
    /// Attaches an instance to a network.
    network_connect(network: String, instance: String) -> Unit () =>
        libgo.network_connect(&a.network, &a.instance).await?;
    /// Detaches an instance from a network.
    network_disconnect(network: String, instance: String) -> Unit () =>
        libgo.network_disconnect(&a.network, &a.instance).await?;

    /// Volumes of every backend.
    volume_list() -> Value Vec<Volume> => libgo.volume_list().await?;
    /// One page of the volumes of every backend; `unavailable` names the backends that could not be listed.
    volume_page(page: Option<u32>, page_size: Option<u32>) -> Value Page<Volume> =>
        libgo.volume_page(pagination(a.page, a.page_size)).await?;
    /// Creates a volume.
    volume_create(spec: VolumeSpec) -> Value Volume => libgo.volume_create(&a.spec).await?;
    /// One volume.
    volume_inspect(backend: Option<String>, name: String) -> Value Volume =>
        libgo.volume_inspect(&a.name, On { backend: a.backend }).await?;
    /// Deletes a volume; `force` also when an instance uses it.
    volume_delete(backend: Option<String>, name: String, force: Option<bool>) -> Unit () =>
        libgo.volume_delete(&a.name, VolumeDeleteOptions {
            backend: a.backend,
            force: a.force.unwrap_or_default(),
        }).await?;
    /// Removes unused volumes.
    volume_prune(backend: Option<String>) -> Value PruneReport =>
        libgo.volume_prune(On { backend: a.backend }).await?;
    /// Grows a VM volume.
    volume_resize(backend: Option<String>, name: String, size_bytes: u64) -> Value Volume =>
        libgo.volume_resize(&a.name, a.size_bytes, On { backend: a.backend }).await?;
    /// Zeroes a VM volume.
    volume_wipe(backend: Option<String>, name: String) -> Unit () =>
        libgo.volume_wipe(&a.name, On { backend: a.backend }).await?;
    /// Copies a VM volume.
    volume_clone(backend: Option<String>, source: String, target: String) -> Value Volume =>
        libgo.volume_clone(&a.source, &a.target, On { backend: a.backend }).await?;
    /// Fills a VM volume from a host file.
    volume_upload(backend: Option<String>, name: String, file: PathBuf) -> Value Volume =>
        libgo.volume_upload(&a.name, &a.file, On { backend: a.backend }).await?;

    /// Storage pools of every backend.
    pool_list() -> Value Vec<StoragePool> => libgo.pool_list().await?;
    /// One page of the storage pools of every backend; `unavailable` names the backends that could not be listed.
    pool_page(page: Option<u32>, page_size: Option<u32>) -> Value Page<StoragePool> =>
        libgo.pool_page(pagination(a.page, a.page_size)).await?;
    /// Creates a storage pool.
    pool_create(spec: StoragePoolSpec) -> Value StoragePool => libgo.pool_create(&a.spec).await?;
    /// One storage pool.
    pool_inspect(backend: Option<String>, name: String) -> Value StoragePool =>
        libgo.pool_inspect(&a.name, On { backend: a.backend }).await?;
    /// Starts a storage pool.
    pool_activate(backend: Option<String>, name: String) -> Unit () =>
        libgo.pool_activate(&a.name, On { backend: a.backend }).await?;
    /// Stops a storage pool.
    pool_deactivate(backend: Option<String>, name: String) -> Unit () =>
        libgo.pool_deactivate(&a.name, On { backend: a.backend }).await?;
    /// Deletes a storage pool.
    pool_delete(backend: Option<String>, name: String) -> Unit () =>
        libgo.pool_delete(&a.name, On { backend: a.backend }).await?;

    /// VM templates of every backend.
    template_list() -> Value Vec<Template> => libgo.template_list().await?;
    /// One page of the templates of every backend; `unavailable` names the backends that could not be listed.
    template_page(page: Option<u32>, page_size: Option<u32>) -> Value Page<Template> =>
        libgo.template_page(pagination(a.page, a.page_size)).await?;
    /// Saves a VM template.
    template_create(backend: Option<String>, template: Template) -> Value Template =>
        libgo.template_create(&a.template, On { backend: a.backend }).await?;
    /// One VM template.
    template_get(backend: Option<String>, name: String) -> Value Template =>
        libgo.template_get(&a.name, On { backend: a.backend }).await?;
    /// Deletes a VM template.
    template_delete(backend: Option<String>, name: String) -> Unit () =>
        libgo.template_delete(&a.name, On { backend: a.backend }).await?;
}
