//! # libgo-bindings-common
//!
//! What the bindings share. For Python and Node, one table: [`call`] takes an operation name and
//! its arguments as a JSON object, converts them to the core's types, calls the
//! [`LibGo`] facade once and converts the answer back to JSON (or a stream of JSON items,
//! or bytes). For all three (C too), [`Console`]: an interactive console read and written
//! at the host's pace. No behaviour of its own: validation and routing live in the core.
//!
//! Argument names are camelCase, like the JSON of the core's types: `{"id": "web",
//! "options": {"timeoutSecs": 5}}`. Optional arguments may be missing or `null`.
#![deny(missing_docs)]

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libgo::{
    BatchSpec, BuildSpec, EngineConfig, Error, EventFilter, ExecSpec, ExportSpec, InstanceFilter,
    InstanceSpec, LibGo, LogOptions, NetworkSpec, Pagination, ProgressSink, RegistryAuth,
    ResourceUpdate, Result, SnapshotSpec, StopOptions, StoragePoolSpec, Template, VolumeSpec,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use libgo;

/// A stream of JSON texts: log entries, stats samples or events.
pub type JsonStream = futures::stream::BoxStream<'static, Result<String>>;

/// What an operation answers.
///
/// Results cross as JSON text, serialised straight from the core's types: each binding
/// parses it with its language's own JSON parser (`json.loads`, `JSON.parse`), which is
/// cheaper than building the host's objects one property at a time from a
/// `serde_json::Value`.
pub enum Reply {
    /// A JSON text (`null` for operations that return nothing).
    Json(String),
    /// A stream of JSON items.
    Stream(JsonStream),
    /// Raw bytes (a screenshot).
    Bytes(Vec<u8>),
    /// An open interactive console.
    Console(Console),
}

/// An interactive console (a container's tty, a VM's serial console), for bindings whose
/// hosts read and type at their own pace. Reads and writes may come from different threads;
/// reads are served one at a time, and so are writes.
#[derive(Clone)]
pub struct Console {
    output: Arc<tokio::sync::Mutex<Option<libgo::BoxStream<bytes::Bytes>>>>,
    input: Arc<tokio::sync::Mutex<Option<ConsoleInput>>>,
}

/// Where typing into a console goes.
type ConsoleInput = Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
}

impl Console {
    /// Wraps a session from [`LibGo::console`].
    pub fn new(session: libgo::ConsoleSession) -> Self {
        Console {
            output: Arc::new(tokio::sync::Mutex::new(Some(session.output))),
            input: Arc::new(tokio::sync::Mutex::new(Some(session.input))),
        }
    }

    /// The next output the instance printed; `None` once the console has ended or was
    /// closed. With a `timeout`, waiting longer is a `Timeout` error (and nothing is lost).
    pub async fn read(&self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>> {
        let mut output = self.output.lock().await;
        let Some(stream) = output.as_mut() else {
            return Ok(None);
        };
        // An empty chunk is neither output nor the end (where bindings answer empty bytes).
        let next = async {
            loop {
                match stream.next().await {
                    Some(Ok(b)) if b.is_empty() => continue,
                    other => return other,
                }
            }
        };
        let next = match timeout {
            None => next.await,
            Some(limit) => tokio::time::timeout(limit, next).await.map_err(|_| {
                Error::new(
                    libgo::ErrorKind::Timeout,
                    format!("no console output within {limit:?}"),
                )
            })?,
        };
        match next {
            Some(chunk) => chunk.map(|b| Some(b.to_vec())),
            None => {
                *output = None;
                Ok(None)
            }
        }
    }

    /// Types `data` into the console.
    pub async fn write(&self, data: &[u8]) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut input = self.input.lock().await;
        let writer = input
            .as_mut()
            .ok_or_else(|| Error::invalid("the console is closed"))?;
        writer.write_all(data).await?;
        writer.flush().await?;
        Ok(())
    }

    /// Ends the session: later reads answer `None`, later writes fail.
    pub async fn close(&self) {
        if let Some(mut writer) = self.input.lock().await.take() {
            use tokio::io::AsyncWriteExt;
            if let Err(e) = writer.shutdown().await {
                tracing::debug!(error = %e, "closing a console's input");
            }
        }
        self.output.lock().await.take();
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Json(v) => f.debug_tuple("Json").field(v).finish(),
            Reply::Stream(_) => f.write_str("Stream"),
            Reply::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Reply::Console(_) => f.write_str("Console"),
        }
    }
}

/// An operation [`call`] knows: its name and the names of its arguments.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// The name bindings call it by.
    pub name: &'static str,
    /// Its arguments (camelCase); any other is refused.
    pub args: &'static [&'static str],
}

/// Every operation [`call`] knows, for the bindings' own checks and docs.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        name: "backends",
        args: &[],
    },
    Operation {
        name: "health",
        args: &[],
    },
    Operation {
        name: "info",
        args: &[],
    },
    Operation {
        name: "capabilities",
        args: &["backend"],
    },
    Operation {
        name: "create",
        args: &["spec"],
    },
    Operation {
        name: "get",
        args: &["id"],
    },
    Operation {
        name: "list",
        args: &["filter", "page", "pageSize"],
    },
    Operation {
        name: "image_page",
        args: &["page", "pageSize"],
    },
    Operation {
        name: "network_page",
        args: &["page", "pageSize"],
    },
    Operation {
        name: "volume_page",
        args: &["page", "pageSize"],
    },
    Operation {
        name: "pool_page",
        args: &["page", "pageSize"],
    },
    Operation {
        name: "template_page",
        args: &["page", "pageSize"],
    },
    Operation {
        name: "list_all",
        args: &["filter"],
    },
    Operation {
        name: "start",
        args: &["id"],
    },
    Operation {
        name: "stop",
        args: &["id", "options"],
    },
    Operation {
        name: "restart",
        args: &["id", "options"],
    },
    Operation {
        name: "kill",
        args: &["id", "signal"],
    },
    Operation {
        name: "pause",
        args: &["id"],
    },
    Operation {
        name: "resume",
        args: &["id"],
    },
    Operation {
        name: "delete",
        args: &["id", "force"],
    },
    Operation {
        name: "create_batch",
        args: &["batch"],
    },
    Operation {
        name: "delete_batch",
        args: &["ids", "force"],
    },
    Operation {
        name: "update",
        args: &["id", "update"],
    },
    Operation {
        name: "stats",
        args: &["id"],
    },
    Operation {
        name: "stats_stream",
        args: &["id"],
    },
    Operation {
        name: "logs",
        args: &["id", "options"],
    },
    Operation {
        name: "exec",
        args: &["id", "spec"],
    },
    Operation {
        name: "console",
        args: &["id"],
    },
    Operation {
        name: "vnc_display",
        args: &["id"],
    },
    Operation {
        name: "screenshot",
        args: &["id"],
    },
    Operation {
        name: "snapshot_create",
        args: &["id", "spec"],
    },
    Operation {
        name: "snapshot_list",
        args: &["id"],
    },
    Operation {
        name: "snapshot_revert",
        args: &["id", "snapshot"],
    },
    Operation {
        name: "snapshot_delete",
        args: &["id", "snapshot"],
    },
    Operation {
        name: "export",
        args: &["id", "spec"],
    },
    Operation {
        name: "events",
        args: &["filter"],
    },
    Operation {
        name: "image_list",
        args: &[],
    },
    Operation {
        name: "image_inspect",
        args: &["backend", "id"],
    },
    Operation {
        name: "image_pull",
        args: &["backend", "reference", "auth"],
    },
    Operation {
        name: "image_push",
        args: &["backend", "reference", "auth"],
    },
    Operation {
        name: "image_build",
        args: &["backend", "spec"],
    },
    Operation {
        name: "image_tag",
        args: &["backend", "source", "target"],
    },
    Operation {
        name: "image_remove",
        args: &["backend", "id", "force"],
    },
    Operation {
        name: "image_prune",
        args: &["backend"],
    },
    Operation {
        name: "image_save",
        args: &["backend", "id", "destination"],
    },
    Operation {
        name: "network_list",
        args: &[],
    },
    Operation {
        name: "network_create",
        args: &["spec"],
    },
    Operation {
        name: "network_inspect",
        args: &["backend", "id"],
    },
    Operation {
        name: "network_delete",
        args: &["backend", "id"],
    },
    Operation {
        name: "network_start",
        args: &["backend", "id"],
    },
    Operation {
        name: "network_stop",
        args: &["backend", "id"],
    },
    Operation {
        name: "network_connect",
        args: &["network", "instance"],
    },
    Operation {
        name: "network_disconnect",
        args: &["network", "instance"],
    },
    Operation {
        name: "volume_list",
        args: &[],
    },
    Operation {
        name: "volume_create",
        args: &["spec"],
    },
    Operation {
        name: "volume_inspect",
        args: &["backend", "name"],
    },
    Operation {
        name: "volume_delete",
        args: &["backend", "name", "force"],
    },
    Operation {
        name: "volume_prune",
        args: &["backend"],
    },
    Operation {
        name: "volume_resize",
        args: &["backend", "name", "sizeBytes"],
    },
    Operation {
        name: "volume_wipe",
        args: &["backend", "name"],
    },
    Operation {
        name: "volume_clone",
        args: &["backend", "source", "target"],
    },
    Operation {
        name: "volume_upload",
        args: &["backend", "name", "file"],
    },
    Operation {
        name: "pool_list",
        args: &[],
    },
    Operation {
        name: "pool_create",
        args: &["spec"],
    },
    Operation {
        name: "pool_inspect",
        args: &["backend", "name"],
    },
    Operation {
        name: "pool_activate",
        args: &["backend", "name"],
    },
    Operation {
        name: "pool_deactivate",
        args: &["backend", "name"],
    },
    Operation {
        name: "pool_delete",
        args: &["backend", "name"],
    },
    Operation {
        name: "template_list",
        args: &[],
    },
    Operation {
        name: "template_create",
        args: &["backend", "template"],
    },
    Operation {
        name: "template_get",
        args: &["backend", "name"],
    },
    Operation {
        name: "template_delete",
        args: &["backend", "name"],
    },
];

/// Connects the engines of an `EngineConfig` given as JSON (`null` for the defaults); an
/// `auto` engine that is down joins once it answers ([`libgo::connect_shared`]).
pub async fn connect(config: Value) -> Result<Arc<LibGo>> {
    let config: EngineConfig = if config.is_null() {
        EngineConfig::default()
    } else {
        serde_json::from_value(config)
            .map_err(|e| Error::invalid(format!("config: invalid engine config: {e}")))?
    };
    libgo::connect_shared(&config).await
}

/// The arguments of one call, checked against its operation's declaration.
struct Args {
    values: Map<String, Value>,
    op: &'static Operation,
}

impl Args {
    fn new(op: &'static Operation, args: Value) -> Result<Self> {
        let values = match args {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => {
                return Err(Error::invalid(format!(
                    "arguments must be an object, not {other}"
                )));
            }
        };
        // An argument no operation reads would be silently dropped: refuse it by name.
        if let Some(unknown) = values.keys().find(|k| !op.args.contains(&k.as_str())) {
            return Err(Error::invalid(format!(
                "{}: unknown argument {unknown:?} (it takes {})",
                op.name,
                if op.args.is_empty() {
                    "none".to_string()
                } else {
                    op.args.join(", ")
                }
            )));
        }
        Ok(Args { values, op })
    }

    /// An optional argument: missing and `null` are `None`.
    fn opt<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>> {
        if !self.op.args.contains(&name) {
            return Err(Error::internal(format!(
                "{} reads argument {name:?}, which OPERATIONS does not declare",
                self.op.name
            )));
        }
        match self.values.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| Error::invalid(format!("{name}: {e}"))),
        }
    }

    fn req<T: DeserializeOwned>(&mut self, name: &str) -> Result<T> {
        self.opt(name)?
            .ok_or_else(|| Error::invalid(format!("{name} is required")))
    }

    fn or_default<T: DeserializeOwned + Default>(&mut self, name: &str) -> Result<T> {
        Ok(self.opt(name)?.unwrap_or_default())
    }

    fn string(&mut self, name: &str) -> Result<String> {
        self.req(name)
    }

    fn backend(&mut self) -> Result<Option<String>> {
        self.opt("backend")
    }

    /// `page` and `pageSize`, each defaulted.
    fn page(&mut self) -> Result<Pagination> {
        let mut page = Pagination::default();
        if let Some(p) = self.opt("page")? {
            page.page = p;
        }
        if let Some(s) = self.opt("pageSize")? {
            page.page_size = s;
        }
        Ok(page)
    }
}

fn json<T: Serialize>(value: T) -> Result<Reply> {
    serde_json::to_string(&value)
        .map(Reply::Json)
        .map_err(|e| Error::internal(format!("cannot encode the result as JSON: {e}")))
}

fn done(_: ()) -> Result<Reply> {
    Ok(Reply::Json("null".to_owned()))
}

fn stream<T: Serialize + Send + 'static>(s: libgo::BoxStream<T>) -> Result<Reply> {
    Ok(Reply::Stream(
        s.map(|item| {
            item.and_then(|v| {
                serde_json::to_string(&v)
                    .map_err(|e| Error::internal(format!("cannot encode a stream item: {e}")))
            })
        })
        .boxed(),
    ))
}

/// Calls operation `op` of the facade with `args` (a JSON object). `data` is the binary
/// argument of `image_build` (the context tar); `progress` receives progress of pulls,
/// pushes, builds and exports.
pub async fn call(
    libgo: &LibGo,
    op: &str,
    args: Value,
    data: Vec<u8>,
    progress: ProgressSink,
) -> Result<Reply> {
    let Some(operation) = OPERATIONS.iter().find(|o| o.name == op) else {
        return Err(Error::unsupported(format!("unknown operation {op:?}")));
    };
    let mut a = Args::new(operation, args)?;
    match op {
        "backends" => json(libgo.backend_names()),
        "health" => json(libgo.health().await),
        "info" => json(
            libgo
                .info()
                .await
                .into_iter()
                .filter_map(Result::ok)
                .collect::<Vec<_>>(),
        ),
        "capabilities" => json(libgo.backend(&a.string("backend")?)?.capabilities()),

        "create" => json(libgo.create(&a.req::<InstanceSpec>("spec")?).await?),
        "get" => json(libgo.get(&a.string("id")?).await?),
        "list" => {
            let filter: InstanceFilter = a.or_default("filter")?;
            json(libgo.list(&filter, a.page()?).await?)
        }
        "image_page" => json(libgo.image_page(a.page()?).await?),
        "network_page" => json(libgo.network_page(a.page()?).await?),
        "volume_page" => json(libgo.volume_page(a.page()?).await?),
        "pool_page" => json(libgo.pool_page(a.page()?).await?),
        "template_page" => json(libgo.template_page(a.page()?).await?),
        "list_all" => json(
            libgo
                .list_all(&a.or_default::<InstanceFilter>("filter")?)
                .await?,
        ),
        "start" => done(libgo.start(&a.string("id")?).await?),
        "stop" => {
            let id = a.string("id")?;
            let options: StopOptions = a.or_default("options")?;
            done(libgo.stop(&id, options).await?)
        }
        "restart" => {
            let id = a.string("id")?;
            let options: StopOptions = a.or_default("options")?;
            done(libgo.restart(&id, options).await?)
        }
        "kill" => {
            let id = a.string("id")?;
            let signal: Option<String> = a.opt("signal")?;
            done(libgo.kill(&id, signal.as_deref()).await?)
        }
        "pause" => done(libgo.pause(&a.string("id")?).await?),
        "resume" => done(libgo.resume(&a.string("id")?).await?),
        "delete" => {
            let id = a.string("id")?;
            let force: bool = a.or_default("force")?;
            done(libgo.delete(&id, force).await?)
        }
        "create_batch" => {
            let batch: BatchSpec = a.req("batch")?;
            json(libgo.create_batch(&batch, progress).await?)
        }
        "delete_batch" => {
            let ids: Vec<String> = a.req("ids")?;
            let force: bool = a.or_default("force")?;
            json(libgo.delete_batch(&ids, force, progress).await?)
        }
        "update" => {
            let id = a.string("id")?;
            let update: ResourceUpdate = a.or_default("update")?;
            json(libgo.update(&id, update).await?)
        }
        "stats" => json(libgo.stats(&a.string("id")?).await?),
        "stats_stream" => stream(libgo.stats_stream(&a.string("id")?).await?),
        "logs" => {
            let id = a.string("id")?;
            let options: LogOptions = a.or_default("options")?;
            stream(libgo.logs(&id, options).await?)
        }
        "exec" => {
            let id = a.string("id")?;
            let spec: ExecSpec = a.req("spec")?;
            json(libgo.exec(&id, &spec).await?)
        }
        "console" => Ok(Reply::Console(Console::new(
            libgo.console(&a.string("id")?).await?,
        ))),
        "vnc_display" => json(libgo.vnc_display(&a.string("id")?).await?),
        "screenshot" => Ok(Reply::Bytes(libgo.screenshot(&a.string("id")?).await?)),
        "snapshot_create" => {
            let id = a.string("id")?;
            let spec: SnapshotSpec = a.req("spec")?;
            json(libgo.snapshot_create(&id, &spec).await?)
        }
        "snapshot_list" => json(libgo.snapshot_list(&a.string("id")?).await?),
        "snapshot_revert" => {
            let id = a.string("id")?;
            done(libgo.snapshot_revert(&id, &a.string("snapshot")?).await?)
        }
        "snapshot_delete" => {
            let id = a.string("id")?;
            done(libgo.snapshot_delete(&id, &a.string("snapshot")?).await?)
        }
        "export" => {
            let id = a.string("id")?;
            let spec: ExportSpec = a.req("spec")?;
            json(libgo.export(&id, &spec, progress).await?)
        }
        "events" => stream(libgo.events(a.or_default::<EventFilter>("filter")?).await?),

        "image_list" => json(libgo.image_list().await?),
        "image_inspect" => {
            let backend = a.backend()?;
            json(
                libgo
                    .image_inspect(backend.as_deref(), &a.string("id")?)
                    .await?,
            )
        }
        "image_pull" => {
            let backend = a.backend()?;
            let reference = a.string("reference")?;
            let auth: Option<RegistryAuth> = a.opt("auth")?;
            json(
                libgo
                    .image_pull(backend.as_deref(), &reference, auth.as_ref(), progress)
                    .await?,
            )
        }
        "image_push" => {
            let backend = a.backend()?;
            let reference = a.string("reference")?;
            let auth: Option<RegistryAuth> = a.opt("auth")?;
            done(
                libgo
                    .image_push(backend.as_deref(), &reference, auth.as_ref(), progress)
                    .await?,
            )
        }
        "image_build" => {
            let backend = a.backend()?;
            let mut spec: BuildSpec = a.or_default("spec")?;
            spec.context_tar = data;
            json(
                libgo
                    .image_build(backend.as_deref(), &spec, progress)
                    .await?,
            )
        }
        "image_tag" => {
            let backend = a.backend()?;
            let (source, target) = (a.string("source")?, a.string("target")?);
            done(
                libgo
                    .image_tag(backend.as_deref(), &source, &target)
                    .await?,
            )
        }
        "image_remove" => {
            let backend = a.backend()?;
            let id = a.string("id")?;
            let force: bool = a.or_default("force")?;
            done(libgo.image_remove(backend.as_deref(), &id, force).await?)
        }
        "image_prune" => json(libgo.image_prune(a.backend()?.as_deref()).await?),
        "image_save" => {
            let backend = a.backend()?;
            let id = a.string("id")?;
            let destination: PathBuf = a.req("destination")?;
            json(
                libgo
                    .image_save(backend.as_deref(), &id, &destination)
                    .await?,
            )
        }

        "network_list" => json(libgo.network_list().await?),
        "network_create" => json(libgo.network_create(&a.req::<NetworkSpec>("spec")?).await?),
        "network_inspect" => {
            let backend = a.backend()?;
            json(
                libgo
                    .network_inspect(backend.as_deref(), &a.string("id")?)
                    .await?,
            )
        }
        "network_delete" => {
            let backend = a.backend()?;
            done(
                libgo
                    .network_delete(backend.as_deref(), &a.string("id")?)
                    .await?,
            )
        }
        "network_start" => {
            let backend = a.backend()?;
            done(
                libgo
                    .network_start(backend.as_deref(), &a.string("id")?)
                    .await?,
            )
        }
        "network_stop" => {
            let backend = a.backend()?;
            done(
                libgo
                    .network_stop(backend.as_deref(), &a.string("id")?)
                    .await?,
            )
        }
        "network_connect" => {
            let (network, instance) = (a.string("network")?, a.string("instance")?);
            done(libgo.network_connect(&network, &instance).await?)
        }
        "network_disconnect" => {
            let (network, instance) = (a.string("network")?, a.string("instance")?);
            done(libgo.network_disconnect(&network, &instance).await?)
        }

        "volume_list" => json(libgo.volume_list().await?),
        "volume_create" => json(libgo.volume_create(&a.req::<VolumeSpec>("spec")?).await?),
        "volume_inspect" => {
            let backend = a.backend()?;
            json(
                libgo
                    .volume_inspect(backend.as_deref(), &a.string("name")?)
                    .await?,
            )
        }
        "volume_delete" => {
            let backend = a.backend()?;
            let name = a.string("name")?;
            let force: bool = a.or_default("force")?;
            done(
                libgo
                    .volume_delete(backend.as_deref(), &name, force)
                    .await?,
            )
        }
        "volume_prune" => json(libgo.volume_prune(a.backend()?.as_deref()).await?),
        "volume_resize" => {
            let backend = a.backend()?;
            let name = a.string("name")?;
            let size: u64 = a.req("sizeBytes")?;
            json(libgo.volume_resize(backend.as_deref(), &name, size).await?)
        }
        "volume_wipe" => {
            let backend = a.backend()?;
            done(
                libgo
                    .volume_wipe(backend.as_deref(), &a.string("name")?)
                    .await?,
            )
        }
        "volume_clone" => {
            let backend = a.backend()?;
            let (source, target) = (a.string("source")?, a.string("target")?);
            json(
                libgo
                    .volume_clone(backend.as_deref(), &source, &target)
                    .await?,
            )
        }
        "volume_upload" => {
            let backend = a.backend()?;
            let name = a.string("name")?;
            let file: PathBuf = a.req("file")?;
            json(
                libgo
                    .volume_upload(backend.as_deref(), &name, &file)
                    .await?,
            )
        }

        "pool_list" => json(libgo.pool_list().await?),
        "pool_create" => json(
            libgo
                .pool_create(&a.req::<StoragePoolSpec>("spec")?)
                .await?,
        ),
        "pool_inspect" => {
            let backend = a.backend()?;
            json(
                libgo
                    .pool_inspect(backend.as_deref(), &a.string("name")?)
                    .await?,
            )
        }
        "pool_activate" => {
            let backend = a.backend()?;
            done(
                libgo
                    .pool_activate(backend.as_deref(), &a.string("name")?)
                    .await?,
            )
        }
        "pool_deactivate" => {
            let backend = a.backend()?;
            done(
                libgo
                    .pool_deactivate(backend.as_deref(), &a.string("name")?)
                    .await?,
            )
        }
        "pool_delete" => {
            let backend = a.backend()?;
            done(
                libgo
                    .pool_delete(backend.as_deref(), &a.string("name")?)
                    .await?,
            )
        }

        "template_list" => json(libgo.template_list().await?),
        "template_create" => {
            let backend = a.backend()?;
            let template: Template = a.req("template")?;
            json(libgo.template_create(backend.as_deref(), &template).await?)
        }
        "template_get" => {
            let backend = a.backend()?;
            json(
                libgo
                    .template_get(backend.as_deref(), &a.string("name")?)
                    .await?,
            )
        }
        "template_delete" => {
            let backend = a.backend()?;
            done(
                libgo
                    .template_delete(backend.as_deref(), &a.string("name")?)
                    .await?,
            )
        }
        other => Err(Error::unsupported(format!("unknown operation {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libgo::ErrorKind;
    use serde_json::json;

    #[tokio::test]
    async fn every_listed_operation_is_known_and_checks_its_arguments() {
        let libgo = LibGo::new();
        for op in OPERATIONS {
            let answer = call(
                &libgo,
                op.name,
                Value::Null,
                Vec::new(),
                ProgressSink::none(),
            )
            .await;
            if let Err(e) = answer {
                assert_ne!(
                    e.message(),
                    format!("unknown operation {:?}", op.name),
                    "{} is listed but not dispatched",
                    op.name
                );
                assert_ne!(e.kind(), ErrorKind::Internal, "{}: {e}", op.name);
            }
        }
        let e = call(
            &libgo,
            "nope",
            Value::Null,
            Vec::new(),
            ProgressSink::none(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let e = call(&libgo, "get", json!({}), Vec::new(), ProgressSink::none())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = call(
            &libgo,
            "stop",
            json!({"id": "x", "options": {"timeoutSecs": "soon"}}),
            Vec::new(),
            ProgressSink::none(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn unknown_arguments_are_refused_by_name() {
        let libgo = LibGo::new();
        let e = call(
            &libgo,
            "image_remove",
            json!({"id": "x", "forse": true}),
            Vec::new(),
            ProgressSink::none(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("\"forse\""), "{e}");
        let e = call(
            &libgo,
            "list",
            json!({"filter": {"stat": "running"}}),
            Vec::new(),
            ProgressSink::none(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("stat"), "{e}");
    }

    /// An operation that reads an argument its declaration lacks fails with an internal
    /// error: with each declared argument in turn given a value no argument takes, every
    /// operation answers bad input instead.
    #[tokio::test]
    async fn declared_arguments_are_the_ones_read() {
        let libgo = LibGo::new();
        for op in OPERATIONS {
            for arg in op.args {
                let args = json!({ *arg: [[["not an argument"]]] });
                let e = call(&libgo, op.name, args, Vec::new(), ProgressSink::none())
                    .await
                    .expect_err("a nested array is no argument's value");
                assert_ne!(e.kind(), ErrorKind::Internal, "{}: {e}", op.name);
            }
        }
    }
}
