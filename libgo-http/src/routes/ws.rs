//! WebSockets: events, stats streams, consoles and VNC.
//!
//! Browsers cannot set headers on a WebSocket, so these routes also accept the token as an
//! `access_token` query parameter (see [`crate::auth::authenticate`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use libgo_core::{BoxStream, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::routes;

use super::Router;
use crate::auth::{Caller, SessionWatch};
use crate::error::{ApiError, ApiResult};
use crate::events::EventQuery;
use crate::extract::{Json, Path, Query};
use crate::routes::instances::require_for_host_access;
use crate::state::AppState;

/// A dead peer's socket is found and dropped: the server pings every `websocket_ping_secs`
/// and gives up on a client that sent nothing (a pong included) for three pings.
struct Liveness {
    ping: tokio::time::Interval,
    every: Duration,
    last_seen: Instant,
}

impl Liveness {
    fn new(state: &AppState) -> Liveness {
        let every = Duration::from_secs(state.config.websocket_ping_secs.max(1));
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Liveness {
            ping,
            every,
            last_seen: Instant::now(),
        }
    }

    /// The client sent something.
    fn seen(&mut self) {
        self.last_seen = Instant::now();
    }

    /// Waits for the next ping; `None` when the client has been silent too long.
    async fn next_ping(&mut self) -> Option<Message> {
        self.ping.tick().await;
        (self.last_seen.elapsed() <= self.every * 3)
            .then(|| Message::Ping(Bytes::from_static(b"libgo")))
    }
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The largest WebSocket message a client may send.
const MAX_MESSAGE: usize = 1 << 20;

async fn upgrade(req: Request) -> ApiResult<WebSocketUpgrade> {
    let (mut parts, _) = req.into_parts();
    WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map(|ws| ws.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE))
        .map_err(|e| {
            ApiError::invalid(format!(
                "a WebSocket upgrade is needed here: {}",
                e.body_text()
            ))
        })
}

/// One open WebSocket of a user: counted against the per-user cap while it lives.
struct SocketSlot {
    state: Arc<AppState>,
    user_id: String,
}

impl SocketSlot {
    fn take(state: &Arc<AppState>, caller: &Caller) -> ApiResult<SocketSlot> {
        let mut open = state.sockets.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(caller.user_id.clone()).or_insert(0);
        if *n >= state.config.websockets_per_user {
            return Err(ApiError::rate_limited(
                format!(
                    "{} has {} WebSockets open, the most one user may",
                    caller.username, n
                ),
                5,
            ));
        }
        *n += 1;
        Ok(SocketSlot {
            state: state.clone(),
            user_id: caller.user_id.clone(),
        })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.state.sockets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.user_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user_id);
            }
        }
    }
}

/// What a WebSocket handler holds while it runs: its slot and the watch on its session.
struct Guarded {
    _slot: SocketSlot,
    watch: SessionWatch,
}

impl Guarded {
    fn new(state: &Arc<AppState>, caller: &Caller) -> ApiResult<Guarded> {
        Ok(Guarded {
            _slot: SocketSlot::take(state, caller)?,
            watch: SessionWatch::start(state.clone(), caller.clone()),
        })
    }

    /// The close frame sent when the session ended.
    fn close(&self) -> Message {
        Message::Close(Some(CloseFrame {
            code: close_code::POLICY,
            reason: format!("session ended: {}", self.watch.reason()).into(),
        }))
    }
}

fn text(v: &impl serde::Serialize) -> Message {
    Message::Text(serde_json::to_string(v).unwrap_or_default().into())
}

#[utoipa::path(get, path = "/api/v1/events", extensions(("x-libgo-access" = json!("viewer"))), tag = "events", params(EventQuery),
    responses((status = 101, description = "WebSocket of JSON messages: instance events and task changes", body = crate::events::ServerEvent)))]
async fn events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<EventQuery>,
    req: Request,
) -> ApiResult<Response> {
    let filter = q.filter()?;
    let ws = upgrade(req).await?;
    let guard = Guarded::new(&state, &caller)?;
    Ok(ws.on_upgrade(move |socket| async move {
        let mut socket = socket;
        let mut rx = state.events.subscribe();
        let mut live = Liveness::new(&state);
        let mut scope = crate::events::GroupScope::default();
        loop {
            tokio::select! {
                _ = guard.watch.ended() => {
                    let _ = socket.send(guard.close()).await;
                    break;
                }
                _ = state.shutdown.cancelled() => {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
                ping = live.next_ping() => {
                    let Some(p) = ping else { break };
                    if socket.send(p).await.is_err() {
                        break;
                    }
                },
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        live.seen();
                        let is_ping = t.trim() == "ping"
                            || serde_json::from_str::<serde_json::Value>(&t)
                                .ok()
                                .is_some_and(|v| v["type"] == "ping");
                        if is_ping && socket.send(text(&serde_json::json!({"type": "pong"}))).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => live.seen(),
                },
                ev = rx.recv() => match ev {
                    Ok(e) => {
                        if q.admits(&filter, &e)
                            && e.visible_to(&caller)
                            && scope.admits(&state, &caller, &e).await
                            && socket.send(text(&e)).await.is_err()
                        {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        let m = serde_json::json!({"type": "lagged", "missed": n});
                        if socket.send(text(&m)).await.is_err() {
                            break;
                        }
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        }
    }))
}

async fn pump_stats(
    mut socket: WebSocket,
    mut stream: BoxStream<Stats>,
    state: Arc<AppState>,
    guard: Guarded,
) {
    let mut live = Liveness::new(&state);
    loop {
        tokio::select! {
            _ = guard.watch.ended() => {
                let _ = socket.send(guard.close()).await;
                return;
            }
            _ = state.shutdown.cancelled() => break,
            ping = live.next_ping() => {
                let Some(p) = ping else { break };
                if socket.send(p).await.is_err() {
                    break;
                }
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => live.seen(),
            },
            s = stream.next() => match s {
                Some(Ok(s)) => {
                    if socket.send(text(&s)).await.is_err() {
                        break;
                    }
                }
                Some(Err(e)) => {
                    let _ = socket.send(text(&ApiError::from(e).body())).await;
                    break;
                }
                None => break,
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

#[utoipa::path(get, path = "/api/v1/instances/{id}/stats", extensions(("x-libgo-access" = json!("viewer"))), tag = "instances",
    params(("id" = String, Path, description = "Instance id or name")),
    responses((status = 200, description = "One sample; with a WebSocket upgrade, a stream of samples about once a second", body = libgo_core::Stats)))]
async fn instance_stats(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    if is_upgrade(req.headers()) {
        let ws = upgrade(req).await?;
        let guard = Guarded::new(&state, &caller)?;
        let stream = state.libgo.stats_stream(&id).await?;
        return Ok(ws.on_upgrade(move |socket| pump_stats(socket, stream, state, guard)));
    }
    Ok(Json(state.libgo.stats(&id).await?).into_response())
}

#[utoipa::path(get, path = "/api/v1/instances/{id}/console", extensions(("x-libgo-access" = json!("operator"))), tag = "instances",
    params(("id" = String, Path, description = "Instance id or name")),
    responses((status = 101, description = "WebSocket: binary frames of console output; text or binary frames typed in")))]
async fn instance_console(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let ws = upgrade(req).await?;
    require_for_host_access(&state, &caller, &id).await?;
    let guard = Guarded::new(&state, &caller)?;
    let session = state.libgo.console(&id).await?;
    Ok(ws.on_upgrade(move |mut socket| async move {
        let mut output = session.output;
        let mut input = session.input;
        let mut live = Liveness::new(&state);
        loop {
            tokio::select! {
                _ = guard.watch.ended() => {
                    let _ = socket.send(guard.close()).await;
                    let _ = input.shutdown().await;
                    return;
                }
                _ = state.shutdown.cancelled() => break,
                ping = live.next_ping() => {
                    let Some(p) = ping else { break };
                    if socket.send(p).await.is_err() {
                        break;
                    }
                },
                chunk = output.next() => match chunk {
                    Some(Ok(b)) => {
                        if socket.send(Message::Binary(b)).await.is_err() {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        let _ = socket.send(text(&ApiError::from(e).body())).await;
                        break;
                    }
                    None => break,
                },
                msg = socket.recv() => {
                    live.seen();
                    let data: Bytes = match msg {
                        Some(Ok(Message::Text(t))) => Bytes::copy_from_slice(t.as_bytes()),
                        Some(Ok(Message::Binary(b))) => b,
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => continue,
                    };
                    if input.write_all(&data).await.is_err() || input.flush().await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = input.shutdown().await;
        let _ = socket.send(Message::Close(None)).await;
    }))
}

/// A message of an interactive exec's control channel (text frames), either way.
#[derive(serde::Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
enum ExecControlMessage {
    /// The TTY's new size.
    Resize { rows: u16, columns: u16 },
    /// The client has no more input: the command's stdin is closed.
    Eof,
}

/// How long the client has to send the command after the upgrade.
const EXEC_SPEC_WITHIN: Duration = Duration::from_secs(10);

#[utoipa::path(get, path = "/api/v1/instances/{id}/exec/attach", extensions(("x-libgo-access" = json!("operator"))), tag = "instances",
    params(("id" = String, Path, description = "Container id or name")),
    responses((status = 101, description = "WebSocket running one command attached (`docker exec -it`). The client's first text frame is the `ExecSpec`; then binary frames are its standard input, and text frames `{\"type\":\"resize\",\"rows\":R,\"columns\":C}` or `{\"type\":\"eof\"}`. The server sends binary frames whose first byte is 1 (stdout) or 2 (stderr) followed by the bytes, and at the end a text frame `{\"type\":\"exit\",\"exitCode\":N}`; an error is a text frame with the error body.")))]
async fn instance_exec_attach(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let ws = upgrade(req).await?;
    require_for_host_access(&state, &caller, &id).await?;
    let guard = Guarded::new(&state, &caller)?;
    Ok(ws.on_upgrade(move |mut socket| async move {
        let spec = match tokio::time::timeout(EXEC_SPEC_WITHIN, socket.recv()).await {
            Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<libgo_core::ExecSpec>(&t)
                .map_err(|e| ApiError::invalid(format!("the first frame must be an ExecSpec: {e}"))),
            _ => Err(ApiError::invalid("the first frame must be an ExecSpec (JSON text)")),
        };
        let session = match spec {
            Ok(spec) => state
                .libgo
                .exec_interactive(&id, &spec)
                .await
                .map_err(ApiError::from),
            Err(e) => Err(e),
        };
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                let _ = socket.send(text(&e.body())).await;
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        };
        let control = session.control;
        let mut output = session.output;
        let mut input = session.input;
        let mut live = Liveness::new(&state);
        let mut input_open = true;
        let ended = loop {
            tokio::select! {
                _ = guard.watch.ended() => {
                    let _ = socket.send(guard.close()).await;
                    let _ = input.shutdown().await;
                    return;
                }
                _ = state.shutdown.cancelled() => break false,
                ping = live.next_ping() => {
                    let Some(p) = ping else { break false };
                    if socket.send(p).await.is_err() {
                        break false;
                    }
                },
                chunk = output.next() => match chunk {
                    Some(Ok((stream, bytes))) => {
                        let channel = if stream == libgo_core::LogStream::Stderr { 2u8 } else { 1u8 };
                        let mut frame = Vec::with_capacity(bytes.len() + 1);
                        frame.push(channel);
                        frame.extend_from_slice(&bytes);
                        if socket.send(Message::Binary(frame.into())).await.is_err() {
                            break false;
                        }
                    }
                    Some(Err(e)) => {
                        let _ = socket.send(text(&ApiError::from(e).body())).await;
                        break false;
                    }
                    None => break true,
                },
                msg = socket.recv() => {
                    live.seen();
                    match msg {
                        Some(Ok(Message::Binary(b))) if input_open => {
                            if input.write_all(&b).await.is_err() || input.flush().await.is_err() {
                                input_open = false;
                            }
                        }
                        Some(Ok(Message::Text(t))) => match serde_json::from_str::<ExecControlMessage>(&t) {
                            Ok(ExecControlMessage::Resize { rows, columns }) => {
                                if let Err(e) = control.resize(rows, columns).await {
                                    tracing::debug!(error = %e, "exec resize refused");
                                }
                            }
                            Ok(ExecControlMessage::Eof) => {
                                input_open = false;
                                let _ = input.shutdown().await;
                            }
                            Err(e) => {
                                let e = ApiError::invalid(format!("not an exec control message: {e}"));
                                let _ = socket.send(text(&e.body())).await;
                            }
                        },
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break false,
                        Some(Ok(_)) => {}
                    }
                }
            }
        };
        let _ = input.shutdown().await;
        if ended {
            let code = control.exit_code_after_output().await.unwrap_or_else(|e| {
                tracing::debug!(error = %e, "exec exit code unknown");
                None
            });
            let _ = socket
                .send(text(&serde_json::json!({"type": "exit", "exitCode": code})))
                .await;
        }
        let _ = socket.send(Message::Close(None)).await;
    }))
}

#[utoipa::path(get, path = "/api/v1/instances/{id}/vnc", extensions(("x-libgo-access" = json!("operator"))), tag = "instances",
    params(("id" = String, Path, description = "VM id or name")),
    responses((status = 101, description = "WebSocket (subprotocol `binary`) carrying the RFB stream in binary frames, for noVNC")))]
async fn instance_vnc(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let ws = upgrade(req).await?.protocols(["binary"]);
    require_for_host_access(&state, &caller, &id).await?;
    let guard = Guarded::new(&state, &caller)?;
    let display = state.libgo.vnc_display(&id).await?;
    let tcp = tokio::net::TcpStream::connect((display.host.as_str(), display.port))
        .await
        .map_err(|e| {
            ApiError::from(libgo_core::Error::unavailable(format!(
                "VNC display unreachable: {e}"
            )))
        })?;
    Ok(ws.on_upgrade(move |mut socket| async move {
        let (mut rd, mut wr) = tcp.into_split();
        let mut buf = vec![0u8; 64 * 1024];
        let mut live = Liveness::new(&state);
        loop {
            tokio::select! {
                _ = guard.watch.ended() => {
                    let _ = socket.send(guard.close()).await;
                    return;
                }
                _ = state.shutdown.cancelled() => break,
                ping = live.next_ping() => {
                    let Some(p) = ping else { break };
                    if socket.send(p).await.is_err() {
                        break;
                    }
                },
                n = rd.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if socket.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                            break;
                        }
                    }
                },
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Binary(b))) => {
                        live.seen();
                        if wr.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => live.seen(),
                }
            }
        }
        let _ = socket.send(Message::Close(None)).await;
    }))
}

/// The WebSocket routes.
pub fn router() -> Router {
    Router::new()
        .routes(routes!(events))
        .routes(routes!(instance_stats))
        .routes(routes!(instance_console))
        .routes(routes!(instance_exec_attach))
        .routes(routes!(instance_vnc))
}
