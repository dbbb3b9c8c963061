//! # libgo-python
//!
//! The native part of LibGo's Python SDK, the module `libgo._native`. It converts Python
//! values to JSON and back, calls the facade through [`libgo_bindings_common::call`], and
//! turns errors into the exception classes of `libgo.errors`. The typed `libgo.Client` and
//! `libgo.AsyncClient` are thin Python classes over it (see `python/libgo`).
//!
//! - Sync calls release the GIL (`Python::detach`) while the engine works.
//! - Async calls return asyncio awaitables (pyo3-async-runtimes, one tokio runtime).
//! - Streams (logs, stats, events) are iterators (`Stream`) or async iterators
//!   (`AsyncStream`).
//! - Results arrive as JSON text (serialised straight from the core's types, without the
//!   GIL) and become Python objects with one `json.loads` call.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libgo_bindings_common::libgo::{Error, ErrorKind, LibGo, Progress, ProgressSink};
use libgo_bindings_common::{JsonStream, Reply};
use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

// ---- values ----

/// `json.loads`, looked up once.
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// JSON text to Python (dicts, lists, str, int, float, bool, None) with CPython's own
/// parser: one call, which also shares the key strings between the dicts of a list.
fn to_py<'py>(py: Python<'py>, json: &str) -> PyResult<Bound<'py, PyAny>> {
    let loads = LOADS.get_or_try_init(py, || {
        py.import("json")?.getattr("loads").map(Bound::unbind)
    })?;
    loads.bind(py).call1((PyString::new(py, json),))
}

/// Python to JSON. Also takes tuples, `os.PathLike` (as its path) and datetimes (as ISO
/// 8601, so they must carry a time zone).
fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        return Ok(Value::from(obj.extract::<u64>()?));
    }
    if obj.is_instance_of::<PyFloat>() {
        let f: f64 = obj.extract()?;
        return Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| PyValueError::new_err("NaN and infinity are not valid here"));
    }
    if obj.is_instance_of::<PyString>() {
        return Ok(Value::String(obj.extract()?));
    }
    if obj.is_instance_of::<PyDict>() {
        let mut map = Map::new();
        for (k, v) in obj.extract::<Bound<'_, PyDict>>()?.iter() {
            let key: String = k
                .extract()
                .map_err(|_| PyTypeError::new_err("dictionary keys must be str"))?;
            map.insert(key, from_py(&v)?);
        }
        return Ok(Value::Object(map));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for item in obj.try_iter()? {
            items.push(from_py(&item?)?);
        }
        return Ok(Value::Array(items));
    }
    if obj.hasattr("__fspath__")? {
        return from_py(&obj.call_method0("__fspath__")?);
    }
    if obj.hasattr("isoformat")? {
        return from_py(&obj.call_method0("isoformat")?);
    }
    Err(PyTypeError::new_err(format!(
        "cannot pass a {} to LibGo",
        obj.get_type().name()?
    )))
}

/// A JSON text crossing back into Python from a future.
struct Json(String);

impl<'py> IntoPyObject<'py> for Json {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.0)
    }
}

/// The exception class of `libgo.errors` for a kind.
fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "NotFoundError",
        ErrorKind::InvalidInput => "InvalidInputError",
        ErrorKind::Conflict => "ConflictError",
        ErrorKind::Unauthorized => "UnauthorizedError",
        ErrorKind::Forbidden => "ForbiddenError",
        ErrorKind::Unsupported => "UnsupportedError",
        ErrorKind::Unavailable => "UnavailableError",
        ErrorKind::Timeout => "TimeoutError",
        ErrorKind::Internal => "InternalError",
    }
}

/// A LibGo error as an instance of `libgo.errors.<Kind>Error(message, code)`.
fn py_err(e: Error) -> PyErr {
    Python::attach(|py| {
        let made = py
            .import("libgo.errors")
            .and_then(|m| m.getattr(class_name(e.kind())))
            .and_then(|cls| cls.call1((e.to_string(), e.kind().code())));
        match made {
            Ok(instance) => PyErr::from_value(instance),
            Err(import_failed) => {
                PyRuntimeError::new_err(format!("{e} (libgo.errors unavailable: {import_failed})"))
            }
        }
    })
}

fn args_of(args: Option<&Bound<'_, PyAny>>) -> PyResult<Value> {
    args.map(from_py).transpose().map(Option::unwrap_or_default)
}

/// Calls `progress(dict)` for each report, from whatever thread the engine works on.
fn progress_sink(progress: Option<Py<PyAny>>) -> ProgressSink {
    let Some(callback) = progress else {
        return ProgressSink::none();
    };
    ProgressSink::new(move |p: Progress| {
        let Ok(value) = serde_json::to_string(&p) else {
            return;
        };
        Python::attach(|py| {
            let outcome = to_py(py, &value).and_then(|v| callback.call1(py, (v,)));
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "the progress callback raised");
            }
        });
    })
}

// ---- the client ----

/// A connection to the engines. Use `libgo.Client` or `libgo.AsyncClient` instead.
#[pyclass(module = "libgo._native", frozen)]
struct Native {
    libgo: Arc<LibGo>,
}

#[pymethods]
impl Native {
    /// Connects to the engines of an EngineConfig dict (None: the defaults), blocking.
    #[staticmethod]
    #[pyo3(signature = (config=None))]
    fn connect(py: Python<'_>, config: Option<&Bound<'_, PyAny>>) -> PyResult<Native> {
        let config = args_of(config)?;
        let libgo = py
            .detach(|| runtime().block_on(libgo_bindings_common::connect(config)))
            .map_err(py_err)?;
        Ok(Native { libgo })
    }

    /// Connects without blocking the event loop: an awaitable of a Native.
    #[staticmethod]
    #[pyo3(signature = (config=None))]
    fn connect_async<'py>(
        py: Python<'py>,
        config: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let config = args_of(config)?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let libgo = libgo_bindings_common::connect(config)
                .await
                .map_err(py_err)?;
            Ok(Native { libgo })
        })
    }

    /// Names of every operation `call` knows.
    #[staticmethod]
    fn operations() -> Vec<&'static str> {
        libgo_bindings_common::OPERATIONS
            .iter()
            .map(|o| o.name)
            .collect()
    }

    /// Runs one operation with its arguments (a dict), blocking without the GIL.
    #[pyo3(signature = (op, args=None, data=None, progress=None))]
    fn call(
        &self,
        py: Python<'_>,
        op: &str,
        args: Option<&Bound<'_, PyAny>>,
        data: Option<&[u8]>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let args = args_of(args)?;
        let data = data.map(<[u8]>::to_vec).unwrap_or_default();
        let libgo = self.libgo.clone();
        let sink = progress_sink(progress);
        let reply = py
            .detach(|| {
                runtime().block_on(libgo_bindings_common::call(&libgo, op, args, data, sink))
            })
            .map_err(py_err)?;
        Ok(match reply {
            Reply::Json(v) => to_py(py, &v)?.unbind(),
            Reply::Bytes(b) => PyBytes::new(py, &b).into_any().unbind(),
            Reply::Stream(s) => Py::new(py, Stream::new(s))?.into_any(),
            Reply::Console(c) => Py::new(py, Console { inner: c })?.into_any(),
        })
    }

    /// Runs one operation: an awaitable of its result.
    #[pyo3(signature = (op, args=None, data=None, progress=None))]
    fn call_async<'py>(
        &self,
        py: Python<'py>,
        op: String,
        args: Option<&Bound<'py, PyAny>>,
        data: Option<&[u8]>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = args_of(args)?;
        let data = data.map(<[u8]>::to_vec).unwrap_or_default();
        let libgo = self.libgo.clone();
        let sink = progress_sink(progress);
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let reply = libgo_bindings_common::call(&libgo, &op, args, data, sink)
                .await
                .map_err(py_err)?;
            Ok(AsyncReply(reply))
        })
    }

    fn __repr__(&self) -> String {
        format!("<libgo backends={:?}>", self.libgo.backend_names())
    }
}

/// The answer of `call_async`, converted once the GIL is held again.
struct AsyncReply(Reply);

impl<'py> IntoPyObject<'py> for AsyncReply {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.0 {
            Reply::Json(v) => to_py(py, &v)?,
            Reply::Bytes(b) => PyBytes::new(py, &b).into_any(),
            Reply::Stream(s) => Bound::new(py, AsyncStream::new(s))?.into_any(),
            Reply::Console(c) => Bound::new(py, AsyncConsole { inner: c })?.into_any(),
        })
    }
}

type Shared = Arc<tokio::sync::Mutex<Option<JsonStream>>>;

async fn next_item(inner: Shared) -> Option<Result<String, Error>> {
    let mut guard = inner.lock().await;
    let next = guard.as_mut()?.next().await;
    if next.is_none() {
        *guard = None;
    }
    next
}

/// An iterator over a stream of dicts (log entries, stats, events). Closing it (or leaving
/// a `with` block) ends the engine stream.
#[pyclass(module = "libgo._native", frozen)]
struct Stream {
    inner: Shared,
}

impl Stream {
    fn new(s: JsonStream) -> Self {
        Stream {
            inner: Arc::new(tokio::sync::Mutex::new(Some(s))),
        }
    }
}

#[pymethods]
impl Stream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let inner = self.inner.clone();
        match py.detach(|| runtime().block_on(next_item(inner))) {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(to_py(py, &v)?.unbind())),
            Some(Err(e)) => Err(py_err(e)),
        }
    }

    /// Ends the stream.
    fn close(&self, py: Python<'_>) {
        let inner = self.inner.clone();
        py.detach(|| runtime().block_on(async move { inner.lock().await.take() }));
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }
}

/// An async iterator over a stream of dicts; `aclose()` (or `async with`) ends it.
#[pyclass(module = "libgo._native", frozen)]
struct AsyncStream {
    inner: Shared,
}

impl AsyncStream {
    fn new(s: JsonStream) -> Self {
        AsyncStream {
            inner: Arc::new(tokio::sync::Mutex::new(Some(s))),
        }
    }
}

#[pymethods]
impl AsyncStream {
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            match next_item(inner).await {
                None => Err(PyStopAsyncIteration::new_err(())),
                Some(Ok(v)) => Ok(Json(v)),
                Some(Err(e)) => Err(py_err(e)),
            }
        })
    }

    /// Ends the stream: an awaitable.
    fn aclose<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            inner.lock().await.take();
            Ok(())
        })
    }

    fn __aenter__<'py>(slf: PyRef<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this: Py<AsyncStream> = slf.into();
        pyo3_async_runtimes::tokio::future_into_py(py, async move { Ok(this) })
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            inner.lock().await.take();
            Ok(false)
        })
    }
}

// ---- consoles ----

/// A read timeout in seconds, as Python gives it.
fn timeout_of(seconds: Option<f64>) -> PyResult<Option<Duration>> {
    seconds
        .map(|s| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                PyValueError::new_err(format!("timeout must be seconds >= 0, not {s}"))
            })
        })
        .transpose()
}

/// Console output for an awaitable: `bytes`, `b""` once the console has ended.
struct Output(Option<Vec<u8>>);

impl<'py> IntoPyObject<'py> for Output {
    type Target = PyBytes;
    type Output = Bound<'py, PyBytes>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, self.0.as_deref().unwrap_or_default()))
    }
}

/// An interactive console (a container shell, a VM serial console): `read()` what the
/// instance prints, `write()` to type into it; `close()` (or leaving a `with` block) ends it.
#[pyclass(module = "libgo._native", frozen)]
struct Console {
    inner: libgo_bindings_common::Console,
}

#[pymethods]
impl Console {
    /// The next output, blocking without the GIL: `b""` once the console has ended. With a
    /// `timeout` in seconds, `libgo.errors.TimeoutError` when nothing came (nothing is lost).
    #[pyo3(signature = (timeout=None))]
    fn read<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let limit = timeout_of(timeout)?;
        let console = self.inner.clone();
        let chunk = py
            .detach(|| runtime().block_on(console.read(limit)))
            .map_err(py_err)?;
        Output(chunk).into_pyobject(py)
    }

    /// Types `data` into the console.
    fn write(&self, py: Python<'_>, data: Vec<u8>) -> PyResult<()> {
        let console = self.inner.clone();
        py.detach(|| runtime().block_on(console.write(&data)))
            .map_err(py_err)
    }

    /// Sets the TTY size of a command from `exec_interactive`; an instance's console cannot
    /// be resized (`libgo.errors.UnsupportedError`).
    fn resize(&self, py: Python<'_>, rows: u16, columns: u16) -> PyResult<()> {
        let console = self.inner.clone();
        py.detach(|| runtime().block_on(console.resize(rows, columns)))
            .map_err(py_err)
    }

    /// The exit code of a command from `exec_interactive`: `None` while it runs (and for an
    /// instance's console). After `read()` answered `b""` it waits the moment the engine
    /// takes to record it (up to 2.5 s; `None` if it never came).
    fn exit_code(&self, py: Python<'_>) -> PyResult<Option<i64>> {
        let console = self.inner.clone();
        py.detach(|| runtime().block_on(console.exit_code()))
            .map_err(py_err)
    }

    /// Ends the session.
    fn close(&self, py: Python<'_>) {
        let console = self.inner.clone();
        py.detach(|| runtime().block_on(console.close()));
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }
}

/// An interactive console for asyncio: `await read()`, `await write()`, `await aclose()` (or
/// `async with`).
#[pyclass(module = "libgo._native", frozen)]
struct AsyncConsole {
    inner: libgo_bindings_common::Console,
}

#[pymethods]
impl AsyncConsole {
    /// An awaitable of the next output: `b""` once the console has ended. With a `timeout` in
    /// seconds, `libgo.errors.TimeoutError` when nothing came (nothing is lost).
    #[pyo3(signature = (timeout=None))]
    fn read<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let limit = timeout_of(timeout)?;
        let console = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            console.read(limit).await.map(Output).map_err(py_err)
        })
    }

    /// Types `data` into the console: an awaitable.
    fn write<'py>(&self, py: Python<'py>, data: Vec<u8>) -> PyResult<Bound<'py, PyAny>> {
        let console = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            console.write(&data).await.map_err(py_err)
        })
    }

    /// Sets the TTY size of a command from `exec_interactive`: an awaitable.
    fn resize<'py>(&self, py: Python<'py>, rows: u16, columns: u16) -> PyResult<Bound<'py, PyAny>> {
        let console = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            console.resize(rows, columns).await.map_err(py_err)
        })
    }

    /// The exit code of a command from `exec_interactive` (`None` while it runs): an
    /// awaitable.
    fn exit_code<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let console = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            console.exit_code().await.map_err(py_err)
        })
    }

    /// Ends the session: an awaitable.
    fn aclose<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let console = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            console.close().await;
            Ok(())
        })
    }

    fn __aenter__<'py>(slf: PyRef<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this: Py<AsyncConsole> = slf.into();
        pyo3_async_runtimes::tokio::future_into_py(py, async move { Ok(this) })
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let console = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            console.close().await;
            Ok(false)
        })
    }
}

/// LibGo's native module.
#[pymodule]
#[pyo3(name = "_native")]
fn libgo_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Native>()?;
    m.add_class::<Stream>()?;
    m.add_class::<AsyncStream>()?;
    m.add_class::<Console>()?;
    m.add_class::<AsyncConsole>()?;
    Ok(())
}
