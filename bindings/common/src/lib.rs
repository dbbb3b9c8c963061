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

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libgo::{EngineConfig, Error, LibGo, ProgressSink, Result};
use serde_json::Value;

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

/// An interactive console (a container's tty, a VM's serial console, a command run with
/// `exec_interactive`), for bindings whose hosts read and type at their own pace. Reads and
/// writes may come from different threads; reads are served one at a time, and so are writes.
#[derive(Clone)]
pub struct Console {
    output: Arc<tokio::sync::Mutex<Option<libgo::BoxStream<bytes::Bytes>>>>,
    input: Arc<tokio::sync::Mutex<Option<ConsoleInput>>>,
    /// A command's resize and exit code; `None` for an instance's console.
    control: Option<Arc<dyn libgo::ExecControl>>,
    /// Set when the output ended by itself (not by `close`): the exit code is then due.
    ended: Arc<std::sync::atomic::AtomicBool>,
}

/// Where typing into a console goes.
type ConsoleInput = Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
}

impl From<libgo::ConsoleSession> for Console {
    /// Wraps a session from [`LibGo::console`].
    fn from(session: libgo::ConsoleSession) -> Self {
        Console::with(session.output, session.input, None)
    }
}

impl From<libgo::ExecSession> for Console {
    /// Wraps a command from [`LibGo::exec_interactive`]: its stdout and stderr are read as
    /// one output (with a TTY they are one already).
    fn from(session: libgo::ExecSession) -> Self {
        let output = session
            .output
            .map(|item| item.map(|(_, bytes)| bytes))
            .boxed();
        Console::with(output, session.input, Some(session.control))
    }
}

impl Console {
    /// Wraps a session from [`LibGo::console`].
    pub fn new(session: libgo::ConsoleSession) -> Self {
        Console::from(session)
    }

    fn with(
        output: libgo::BoxStream<bytes::Bytes>,
        input: ConsoleInput,
        control: Option<Arc<dyn libgo::ExecControl>>,
    ) -> Self {
        Console {
            output: Arc::new(tokio::sync::Mutex::new(Some(output))),
            input: Arc::new(tokio::sync::Mutex::new(Some(input))),
            control,
            ended: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Sets the size of a command's TTY (rows, columns). An instance's console has no size
    /// to set: `Unsupported`.
    pub async fn resize(&self, rows: u16, columns: u16) -> Result<()> {
        match &self.control {
            Some(control) => control.resize(rows, columns).await,
            None => Err(Error::unsupported(
                "an instance's console cannot be resized; a command's (exec_interactive) can",
            )),
        }
    }

    /// A command's exit code: `None` while it runs. Once its output has been read to the
    /// end, this waits the moment engines take to record the code (up to 2.5 s; `None` if
    /// it never came). An instance's console has none: `None`.
    pub async fn exit_code(&self) -> Result<Option<i64>> {
        let Some(control) = &self.control else {
            return Ok(None);
        };
        if self.ended.load(std::sync::atomic::Ordering::Acquire) {
            control.exit_code_after_output().await
        } else {
            control.exit_code().await
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
                self.ended.store(true, std::sync::atomic::Ordering::Release);
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

mod ops;
pub use ops::{Arg, Kind, OPERATIONS, Operation, args, camel_case};

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

/// Calls operation `op` of the facade with `args` (a JSON object of its arguments, by their
/// camelCase names; unknown ones are refused). `data` is the binary argument of
/// `image_build` (the context tar); `progress` receives progress of pulls, pushes, builds,
/// batches and exports.
pub async fn call(
    libgo: &LibGo,
    op: &str,
    args: Value,
    data: Vec<u8>,
    progress: ProgressSink,
) -> Result<Reply> {
    ops::dispatch(libgo, op, args, data, progress).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use libgo::ErrorKind;
    use serde_json::json;

    async fn call_empty(op: &str, args: Value) -> Result<Reply> {
        call(&LibGo::new(), op, args, Vec::new(), ProgressSink::none()).await
    }

    #[tokio::test]
    async fn every_listed_operation_is_dispatched_and_checks_its_arguments() {
        for op in OPERATIONS {
            if let Err(e) = call_empty(op.name, Value::Null).await {
                assert_ne!(e.kind(), ErrorKind::Unsupported, "{}: {e}", op.name);
                assert_ne!(e.kind(), ErrorKind::Internal, "{}: {e}", op.name);
            }
        }
        let e = call_empty("nope", Value::Null).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let e = call_empty("get", json!({})).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("`id`"), "{e}");
        let e = call_empty("get", json!(["x"])).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let args = json!({"id": "x", "options": {"timeoutSecs": "soon"}});
        let e = call_empty("stop", args).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn unknown_arguments_are_refused_by_name() {
        let e = call_empty("image_remove", json!({"id": "x", "forse": true}))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("`forse`"), "{e}");
        let e = call_empty("list", json!({"filter": {"stat": "running"}}))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("stat"), "{e}");
        let e = call_empty("image_build", json!({"spec": {"dockerfil": "Dockerfile"}}))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("dockerfil"), "{e}");
    }

    /// Each declared argument is one the operation reads: given by its camelCase name with a
    /// value no argument takes, it is refused as a bad value, never as an unknown name.
    #[tokio::test]
    async fn declared_arguments_are_known_by_their_camel_case_names() {
        for op in OPERATIONS {
            for name in op.arg_names() {
                let e = call_empty(op.name, json!({ name.clone(): [[["not a value"]]] }))
                    .await
                    .expect_err("a nested array is no argument's value");
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "{}: {e}", op.name);
                assert!(
                    !e.message().contains("unknown field"),
                    "{}.{name}: {e}",
                    op.name
                );
            }
        }
    }

    /// The table the generated front ends are made from (`bindings/operations.json`) is the
    /// one compiled here; `UPDATE_OPERATIONS=1` rewrites it.
    #[test]
    fn operations_json_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../operations.json");
        let mut current = serde_json::to_string_pretty(OPERATIONS).expect("the table encodes");
        current.push('\n');
        if std::env::var_os("UPDATE_OPERATIONS").is_some() {
            std::fs::write(&path, &current).expect("operations.json is writable");
        }
        let recorded = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            recorded == current,
            "bindings/operations.json is stale: run UPDATE_OPERATIONS=1 cargo test -p \
             libgo-bindings-common, then python3 scripts/gen-bindings.py"
        );
    }
}
