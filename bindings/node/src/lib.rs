//! # libgo-node
//!
//! The native part of LibGo's Node package: a `Native` class whose Promise methods call the
//! facade through [`libgo_bindings_common::call`], a `NativeStream` for logs, stats and
//! events, and a `NativeConsole` for interactive consoles. Arguments cross as JavaScript objects (napi's serde support); results cross as
//! JSON text, serialised straight from the core's types off the JS thread, which `lib.js`
//! turns into objects with one `JSON.parse` (much cheaper than napi building them one
//! property at a time). Errors reject
//! with an `Error` whose `code` is the error kind's code (`NOT_FOUND`, …). The typed
//! `Client` with async iterators is the thin JavaScript layer in `lib.js`.

use std::sync::Arc;

use futures::StreamExt;
use libgo_bindings_common::libgo::{self, LibGo, ProgressSink};
use libgo_bindings_common::{JsonStream, Reply};
use napi::bindgen_prelude::{Buffer, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use serde_json::Value;

use napi::Result;

/// A rejection carrying the error kind's code as its `cause` (an Error whose message is the
/// code, e.g. `NOT_FOUND`); `lib.js` moves it into `error.code`. napi's async functions
/// reject only with its own `Status` as `code`, so the kind travels in the one other field
/// napi fills, never parsed out of the message.
fn js_err(e: libgo::Error) -> napi::Error {
    let mut err = napi::Error::new(napi::Status::GenericFailure, e.to_string());
    err.set_cause(napi::Error::new(
        napi::Status::GenericFailure,
        e.kind().code().to_string(),
    ));
    err
}

fn misuse(message: &str) -> napi::Error {
    js_err(libgo::Error::invalid(message))
}

/// A JavaScript function called with the JSON text of each Progress report, from the
/// engine's thread through a thread-safe function (so on the JavaScript thread).
type ProgressFn = ThreadsafeFunction<String, Unknown<'static>, String, napi::Status, false>;

/// Forwards progress reports to `progress`, without waiting for JavaScript to run them.
fn progress_sink(progress: Option<ProgressFn>) -> ProgressSink {
    let Some(f) = progress else {
        return ProgressSink::none();
    };
    ProgressSink::new(move |p: libgo::Progress| {
        if let Ok(json) = serde_json::to_string(&p) {
            f.call(json, ThreadsafeFunctionCallMode::NonBlocking);
        }
    })
}

/// A connection to the engines. Use `Client` from the package instead.
#[napi]
pub struct Native {
    libgo: Arc<LibGo>,
}

#[napi]
impl Native {
    /// Connects to the engines of an EngineConfig (undefined: the defaults).
    #[napi(factory)]
    pub async fn connect(config: Option<Value>) -> Result<Native> {
        let libgo = libgo_bindings_common::connect(config.unwrap_or(Value::Null))
            .await
            .map_err(js_err)?;
        Ok(Native { libgo })
    }

    /// Names of every operation.
    #[napi]
    pub fn operations() -> Vec<String> {
        libgo_bindings_common::OPERATIONS
            .iter()
            .map(|o| o.name.to_string())
            .collect()
    }

    /// Runs an operation that answers JSON: its JSON text. `progress` receives the JSON
    /// text of each Progress report of pulls, pushes, builds and exports.
    #[napi]
    pub async fn call(
        &self,
        op: String,
        args: Option<Value>,
        data: Option<Buffer>,
        #[napi(ts_arg_type = "((progressJson: string) => void) | undefined | null")]
        progress: Option<ProgressFn>,
    ) -> Result<String> {
        let data = data.map(|b| b.to_vec()).unwrap_or_default();
        let reply = self.run(op, args, data, progress_sink(progress)).await?;
        match reply {
            Reply::Json(v) => Ok(v),
            _ => Err(misuse("this operation answers a stream or bytes")),
        }
    }

    /// Runs an operation that answers bytes (a screenshot).
    #[napi]
    pub async fn call_bytes(&self, op: String, args: Option<Value>) -> Result<Buffer> {
        match self.run(op, args, Vec::new(), ProgressSink::none()).await? {
            Reply::Bytes(b) => Ok(b.into()),
            _ => Err(misuse("this operation does not answer bytes")),
        }
    }

    /// Runs an operation that answers a stream (logs, stats_stream, events).
    #[napi]
    pub async fn open_stream(&self, op: String, args: Option<Value>) -> Result<NativeStream> {
        match self.run(op, args, Vec::new(), ProgressSink::none()).await? {
            Reply::Stream(s) => Ok(NativeStream {
                inner: Arc::new(tokio::sync::Mutex::new(Some(s))),
            }),
            _ => Err(misuse("this operation does not answer a stream")),
        }
    }

    /// Runs an operation that answers an interactive console.
    #[napi]
    pub async fn open_console(&self, op: String, args: Option<Value>) -> Result<NativeConsole> {
        match self.run(op, args, Vec::new(), ProgressSink::none()).await? {
            Reply::Console(inner) => Ok(NativeConsole { inner }),
            _ => Err(misuse("this operation does not answer a console")),
        }
    }
}

impl Native {
    async fn run(
        &self,
        op: String,
        args: Option<Value>,
        data: Vec<u8>,
        progress: ProgressSink,
    ) -> Result<Reply> {
        let libgo = self.libgo.clone();
        let args = args.unwrap_or(Value::Null);
        libgo_bindings_common::call(&libgo, &op, args, data, progress)
            .await
            .map_err(js_err)
    }
}

/// A stream of JSON texts; `next()` resolves to `null` at the end.
#[napi]
pub struct NativeStream {
    inner: Arc<tokio::sync::Mutex<Option<JsonStream>>>,
}

#[napi]
impl NativeStream {
    /// The next item's JSON text, or `null` at the end.
    #[napi]
    pub async fn next(&self) -> Result<Option<String>> {
        let mut guard = self.inner.lock().await;
        let Some(stream) = guard.as_mut() else {
            return Ok(None);
        };
        match stream.next().await {
            None => {
                *guard = None;
                Ok(None)
            }
            Some(item) => item.map(Some).map_err(js_err),
        }
    }

    /// Ends the stream.
    #[napi]
    pub async fn close(&self) -> Result<()> {
        self.inner.lock().await.take();
        Ok(())
    }
}

/// An interactive console: what the instance prints, and a way to type into it.
#[napi]
pub struct NativeConsole {
    inner: libgo_bindings_common::Console,
}

#[napi]
impl NativeConsole {
    /// The next output, or `null` once the console has ended. With `timeoutMs`, a rejection
    /// with code `TIMEOUT` when nothing came (nothing is lost).
    #[napi]
    pub async fn read(&self, timeout_ms: Option<u32>) -> Result<Option<Buffer>> {
        let limit = timeout_ms.map(|ms| std::time::Duration::from_millis(u64::from(ms)));
        let chunk = self.inner.read(limit).await.map_err(js_err)?;
        Ok(chunk.map(Buffer::from))
    }

    /// Types `data` into the console.
    #[napi]
    pub async fn write(&self, data: Buffer) -> Result<()> {
        let data = data.to_vec();
        self.inner.write(&data).await.map_err(js_err)
    }

    /// Sets the TTY size of a command from `exec_interactive`; an instance's console cannot
    /// be resized (code `UNSUPPORTED`).
    #[napi]
    pub async fn resize(&self, rows: u16, columns: u16) -> Result<()> {
        self.inner.resize(rows, columns).await.map_err(js_err)
    }

    /// The exit code of a command from `exec_interactive`: `null` while it runs (and for an
    /// instance's console); after `read()` answered `null` it waits the moment the engine
    /// takes to record it (up to 2.5 s; `null` if it never came).
    #[napi]
    pub async fn exit_code(&self) -> Result<Option<i64>> {
        self.inner.exit_code().await.map_err(js_err)
    }

    /// Ends the session.
    #[napi]
    pub async fn close(&self) -> Result<()> {
        self.inner.close().await;
        Ok(())
    }
}
