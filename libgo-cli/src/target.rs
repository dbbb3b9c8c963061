//! Where commands go: the local engines through the library (embedded), or a server over
//! REST (remote). Both speak the operation table's names and JSON arguments, so every
//! command is written once.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use libgo::{Error, ErrorKind, LibGo, Progress, ProgressSink, Result};
use libgo_bindings_common::Reply;
use serde_json::{Value, json};

use crate::config::Remote;
use crate::rest::{self, Answer};

/// A destination for operations.
pub enum Target {
    /// The engines of this machine, opened by the library.
    Local(Arc<LibGo>),
    /// A `libgo-server`.
    Remote(RemoteClient),
}

/// A REST client for one remote.
pub struct RemoteClient {
    /// The remote's name, shown in the `HOST` column.
    pub name: String,
    base: String,
    http: reqwest::Client,
    auth: Option<(&'static str, String)>,
}

/// Where progress reports of a long operation go.
pub type OnProgress = Arc<dyn Fn(Progress) + Send + Sync>;

impl RemoteClient {
    /// A client for `remote`; `api_key` (from `--api-key`) wins over stored credentials.
    pub fn new(name: &str, remote: &Remote, api_key: Option<String>) -> Result<Self> {
        let auth = match (api_key.or_else(|| remote.api_key.clone()), &remote.token) {
            (Some(key), _) => Some(("x-api-key", key)),
            (None, Some(token)) => Some(("authorization", format!("Bearer {token}"))),
            (None, None) => None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::internal(format!("HTTP client: {e}")))?;
        Ok(RemoteClient {
            name: name.to_string(),
            base: remote.url.trim_end_matches('/').to_string(),
            http,
            auth,
        })
    }

    /// A request to `path` with the remote's credentials.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.auth {
            Some((header, value)) => req.header(*header, value),
            None => req,
        }
    }

    /// Sends `req`; a refusal of the server becomes its error (kind from the body's code).
    async fn execute(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.send().await.map_err(|e| {
            Error::unavailable(format!("cannot reach {}: {e}", self.base))
                .with_context("remote", self.name.clone())
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(server_error(status.as_u16(), &body))
    }

    /// The JSON of a successful answer (`null` for an empty body).
    async fn json_of(resp: reqwest::Response) -> Result<Value> {
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::unavailable(format!("reading the answer: {e}")))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::internal(format!("the server's answer is not JSON: {e}")))
    }

    /// Sends one request and reads a JSON answer (`null` for an empty body).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut req = self.request(method, path).query(query);
        if let Some(body) = body {
            req = req.json(body);
        }
        Self::json_of(self.execute(req).await?).await
    }

    /// POSTs a tar archive (a build context) and reads the JSON answer.
    async fn send_tar(
        &self,
        path: &str,
        query: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Value> {
        let req = self
            .request(reqwest::Method::POST, path)
            .query(query)
            .header("content-type", "application/x-tar")
            .body(body);
        Self::json_of(self.execute(req).await?).await
    }

    /// Every item of a paginated route, up to `limit`, page by page.
    pub async fn all_pages(
        &self,
        path: &str,
        query: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        for page in 1u32.. {
            let mut q = query.to_vec();
            q.push(("page".into(), page.to_string()));
            q.push(("pageSize".into(), limit.clamp(1, 100).to_string()));
            let answer = self.send(reqwest::Method::GET, path, &q, None).await?;
            let got = answer["items"].as_array().cloned().unwrap_or_default();
            let count = answer["count"].as_u64().unwrap_or(0) as usize;
            let empty = got.is_empty();
            items.extend(got);
            if empty || items.len() >= count.min(limit) {
                break;
            }
        }
        items.truncate(limit);
        Ok(items)
    }

    /// Opens a WebSocket on `path` with the remote's credentials.
    pub async fn websocket(
        &self,
        path: &str,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    > {
        use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
        let url = match self.base.split_once("://") {
            Some(("http", rest)) => format!("ws://{rest}{path}"),
            Some(("https", rest)) => format!("wss://{rest}{path}"),
            _ => return Err(Error::invalid(format!("{}: not an http(s) URL", self.base))),
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| Error::invalid(format!("{url}: {e}")))?;
        if let Some((header, value)) = &self.auth {
            let value = value
                .parse()
                .map_err(|_| Error::invalid("the stored credentials are not a valid header"))?;
            request.headers_mut().insert(*header, value);
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => Ok(socket),
            Err(tungstenite::Error::Http(resp)) => Err(server_error(
                resp.status().as_u16(),
                resp.body().as_deref().unwrap_or_default(),
            )),
            Err(e) => Err(
                Error::unavailable(format!("cannot reach {}: {e}", self.base))
                    .with_context("remote", self.name.clone()),
            ),
        }
    }

    /// Newline-delimited JSON items of a streaming answer.
    async fn lines(&self, route: &rest::Route) -> Result<BoxStream<'static, Result<Value>>> {
        let req = self
            .request(route.method.clone(), &route.path)
            .query(&route.query);
        let resp = self.execute(req).await?;
        let bytes = resp.bytes_stream();
        let items = futures::stream::unfold(
            (bytes, Vec::<u8>::new(), false),
            |(mut bytes, mut pending, done)| async move {
                loop {
                    if let Some(i) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=i).collect();
                        if line.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        let item = serde_json::from_slice(&line).map_err(Error::from);
                        return Some((item, (bytes, pending, done)));
                    }
                    if done {
                        return None;
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
                        Some(Err(e)) => {
                            let e = Error::unavailable(format!("the stream broke: {e}"));
                            return Some((Err(e), (bytes, Vec::new(), true)));
                        }
                        None => {
                            pending.push(b'\n');
                            return if pending.iter().all(u8::is_ascii_whitespace) {
                                None
                            } else {
                                let item = serde_json::from_slice(&pending).map_err(Error::from);
                                Some((item, (bytes, Vec::new(), true)))
                            };
                        }
                    }
                }
            },
        );
        Ok(items.boxed())
    }

    /// Has the server export instance `id` as `format`, follows the task, and downloads the
    /// file to `output` (removed again if the download fails). Answers the export result
    /// with `path` set to `output`.
    pub async fn export_and_download(
        &self,
        id: &str,
        format: &str,
        output: &std::path::Path,
        on_progress: Option<OnProgress>,
    ) -> Result<Value> {
        let path = format!("/api/v1/instances/{}/export", rest::escape(id));
        let task = self
            .send(
                reqwest::Method::POST,
                &path,
                &[],
                Some(&json!({ "format": format })),
            )
            .await?;
        let task_id = task["id"].as_str().unwrap_or_default().to_string();
        let mut result = self.wait_task(task, on_progress.as_ref()).await?["result"].take();
        let download = format!("/api/v1/tasks/{}/download", rest::escape(&task_id));
        let resp = self
            .execute(self.request(reqwest::Method::GET, &download))
            .await?;
        let written = async {
            use tokio::io::AsyncWriteExt;
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(output)
                .await?;
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| Error::unavailable(format!("download: {e}")))?;
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(output).await;
            return Err(e);
        }
        result["path"] = Value::String(output.display().to_string());
        Ok(result)
    }

    /// Follows `task` (as the server answered it) to its end, reporting its progress;
    /// answers the finished task, or its error.
    pub async fn wait_task(&self, task: Value, on_progress: Option<&OnProgress>) -> Result<Value> {
        let id = task["id"]
            .as_str()
            .ok_or_else(|| Error::internal("the server answered without a task id"))?
            .to_string();
        let path = format!("/api/v1/tasks/{}", rest::escape(&id));
        let mut task = task;
        loop {
            if let Some(f) = on_progress {
                f(Progress {
                    percent: task["progress"].as_f64(),
                    message: task["message"].as_str().unwrap_or_default().to_string(),
                    id: None,
                });
            }
            match task["status"].as_str() {
                Some("finished") => return Ok(task),
                Some("running") => {}
                _ => return Err(error_of(&task["error"], "the task did not finish")),
            }
            // `wait=1` holds the answer up to a second unless the task ends.
            let wait = [("wait".to_string(), "1".to_string())];
            task = self.send(reqwest::Method::GET, &path, &wait, None).await?;
        }
    }
}

/// Operation `op` through the table, its answer as JSON (a stream's items as an array).
async fn local_json(
    libgo: &LibGo,
    op: &str,
    args: Value,
    data: Vec<u8>,
    on_progress: Option<OnProgress>,
) -> Result<Value> {
    let sink = match on_progress {
        Some(f) => ProgressSink::new(move |p| f(p)),
        None => ProgressSink::none(),
    };
    match libgo_bindings_common::call(libgo, op, args, data, sink).await? {
        Reply::Json(text) => Ok(serde_json::from_str(&text)?),
        Reply::Stream(mut items) => {
            let mut all = Vec::new();
            while let Some(item) = items.next().await {
                all.push(serde_json::from_str(&item?)?);
            }
            Ok(Value::Array(all))
        }
        Reply::Bytes(_) | Reply::Console(_) => {
            Err(Error::unsupported(format!("{op} does not answer JSON")))
        }
    }
}

/// The kind of a REST error code: the core's codes, and the HTTP layer's own.
pub fn kind_of(code: &str) -> ErrorKind {
    ErrorKind::from_code(code).unwrap_or(match code {
        "PAYLOAD_TOO_LARGE" | "UNSUPPORTED_MEDIA_TYPE" => ErrorKind::InvalidInput,
        "METHOD_NOT_ALLOWED" => ErrorKind::Unsupported,
        "RATE_LIMITED" => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    })
}

/// The error an error body (`{status, code, message}`) describes.
pub fn error_of(body: &Value, fallback: &str) -> Error {
    Error::new(
        kind_of(body["code"].as_str().unwrap_or_default()),
        body["message"].as_str().unwrap_or(fallback).to_string(),
    )
}

/// The error a WebSocket text frame carries (an error body).
pub fn error_frame(text: &str) -> Error {
    error_of(&serde_json::from_str(text).unwrap_or_default(), text)
}

/// The code a bare HTTP status stands for.
fn status_code(status: u16) -> &'static str {
    match status {
        404 => "NOT_FOUND",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        _ => "INTERNAL_SERVER_ERROR",
    }
}

pub(crate) fn server_error(status: u16, body: &[u8]) -> Error {
    let mut parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if parsed["code"].is_null() {
        // Not LibGo's body (a proxy's page): the status says what it can.
        parsed["code"] = Value::from(status_code(status));
    }
    let e = error_of(&parsed, &format!("HTTP {status}"));
    if status == 401 {
        return e.with_context("hint", "libgo login");
    }
    e
}

impl Target {
    /// Calls operation `op` of the table with `args`; `on_progress` receives progress of
    /// long operations. The result is the operation's JSON (`null` for none).
    pub async fn call(
        &self,
        op: &str,
        args: Value,
        on_progress: Option<OnProgress>,
    ) -> Result<Value> {
        match self {
            Target::Local(libgo) => local_json(libgo, op, args, Vec::new(), on_progress).await,
            Target::Remote(remote) => {
                let route = rest::route(op, &args)?;
                match route.answer {
                    Answer::Lines => {
                        use futures::TryStreamExt;
                        let items: Vec<Value> = remote.lines(&route).await?.try_collect().await?;
                        Ok(Value::Array(items))
                    }
                    Answer::AllPages => Ok(Value::Array(
                        remote
                            .all_pages(&route.path, &route.query, usize::MAX)
                            .await?,
                    )),
                    answer => {
                        let body = route.body.as_ref();
                        let answered = remote
                            .send(route.method, &route.path, &route.query, body)
                            .await?;
                        match answer {
                            Answer::Unit => Ok(Value::Null),
                            Answer::Task => Ok(remote
                                .wait_task(answered, on_progress.as_ref())
                                .await?["result"]
                                .take()),
                            _ => Ok(answered),
                        }
                    }
                }
            }
        }
    }

    /// The items of a streaming operation (`logs` with `follow`), as they come.
    pub async fn stream(&self, op: &str, args: Value) -> Result<BoxStream<'static, Result<Value>>> {
        match self {
            Target::Local(libgo) => {
                let reply =
                    libgo_bindings_common::call(libgo, op, args, Vec::new(), ProgressSink::none())
                        .await?;
                match reply {
                    Reply::Stream(items) => Ok(items
                        .map(|item| item.and_then(|t| Ok(serde_json::from_str(&t)?)))
                        .boxed()),
                    _ => Err(Error::unsupported(format!("{op} is not a stream"))),
                }
            }
            Target::Remote(remote) => {
                let route = rest::route(op, &args)?;
                if route.answer != Answer::Lines {
                    return Err(Error::unsupported(format!("{op} is not a stream")));
                }
                remote.lines(&route).await
            }
        }
    }

    /// Builds an image from a context tar; `spec` is the table's `BuildSpec` JSON
    /// (`dockerfile`, `tags`, `buildArgs`).
    pub async fn build(
        &self,
        backend: Option<String>,
        spec: Value,
        context_tar: Vec<u8>,
        on_progress: Option<OnProgress>,
    ) -> Result<Value> {
        match self {
            Target::Local(libgo) => {
                let args = json!({ "backend": backend, "spec": spec });
                local_json(libgo, "image_build", args, context_tar, on_progress).await
            }
            Target::Remote(remote) => {
                let mut query: Vec<(String, String)> = spec["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(|t| ("tags".to_string(), t.to_string())))
                    .collect();
                if let Some(f) = spec["dockerfile"].as_str() {
                    query.push(("dockerfile".into(), f.into()));
                }
                if spec["buildArgs"].as_object().is_some_and(|a| !a.is_empty()) {
                    query.push(("buildArgs".into(), spec["buildArgs"].to_string()));
                }
                if let Some(b) = backend {
                    query.push(("backend".into(), b));
                }
                let task = remote
                    .send_tar("/api/v1/images/build", &query, context_tar)
                    .await?;
                Ok(remote.wait_task(task, on_progress.as_ref()).await?["result"].take())
            }
        }
    }

    /// What each connected backend supports, as `GET /api/v1/capabilities` answers it:
    /// `[{backend, capabilities}]`.
    pub async fn capabilities(&self) -> Result<Vec<Value>> {
        match self {
            Target::Local(libgo) => {
                let mut out = Vec::new();
                for name in libgo.backend_names() {
                    let capabilities = self
                        .call("capabilities", json!({ "backend": name }), None)
                        .await?;
                    out.push(json!({"backend": name, "capabilities": capabilities}));
                }
                Ok(out)
            }
            Target::Remote(remote) => {
                let answer = remote
                    .send(reqwest::Method::GET, "/api/v1/capabilities", &[], None)
                    .await?;
                match answer {
                    Value::Array(items) => Ok(items),
                    other => Err(Error::internal(format!(
                        "the server's capabilities are not a list: {other}"
                    ))),
                }
            }
        }
    }

    /// Every instance passing `filter`, and the backends that could not answer.
    pub async fn list_instances(&self, filter: Value) -> Result<(Vec<Value>, Vec<Value>)> {
        if let Target::Local(libgo) = self {
            // In-process there is no page to save: pages of 100 would list every engine
            // once per page (ten Docker and libvirt lists for 1,000 instances).
            let filter: libgo::InstanceFilter = serde_json::from_value(filter)
                .map_err(|e| Error::invalid(format!("filter: {e}")))?;
            let (items, unavailable) = libgo.list_all_reporting(&filter).await?;
            let json = |v: Result<Value, serde_json::Error>| {
                v.map_err(|e| Error::internal(format!("cannot encode the list as JSON: {e}")))
            };
            let items = items
                .iter()
                .map(|i| json(serde_json::to_value(i)))
                .collect::<Result<Vec<_>>>()?;
            let unavailable = unavailable
                .iter()
                .map(|u| json(serde_json::to_value(u)))
                .collect::<Result<Vec<_>>>()?;
            return Ok((items, unavailable));
        }
        let mut items = Vec::new();
        let mut unavailable = Vec::new();
        for page in 1u32.. {
            let answer = self
                .call(
                    "list",
                    json!({"filter": filter, "page": page, "pageSize": 100}),
                    None,
                )
                .await?;
            if page == 1 {
                unavailable = answer["unavailable"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
            }
            let got = answer["items"].as_array().cloned().unwrap_or_default();
            let count = answer["count"].as_u64().unwrap_or(0) as usize;
            let empty = got.is_empty();
            items.extend(got);
            if empty || items.len() >= count {
                break;
            }
        }
        Ok((items, unavailable))
    }

    /// What the `HOST` column shows: `local`, or the remote's name.
    pub fn host(&self) -> &str {
        match self {
            Target::Local(_) => "local",
            Target::Remote(r) => &r.name,
        }
    }
}
