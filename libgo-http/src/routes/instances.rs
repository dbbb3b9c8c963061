//! `/api/v1/instances`: VMs and containers through one set of verbs.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use libgo_core::{
    BatchSpec, ExecResult, ExecSpec, ExportFormat, ExportSpec, Instance, InstanceFilter,
    InstanceKind, InstanceSpec, LogEntry, LogOptions, On, Page, ResourceUpdate, Snapshot,
    SnapshotSpec, StopOptions, paginate,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::{PageQuery, Router};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::tasks::Task;

/// Filters of instance lists.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `vm` or `container`.
    #[param(value_type = Option<String>)]
    pub kind: Option<InstanceKind>,
    /// `running`, `stopped`, `paused`, `creating`, `error` or `unknown`.
    pub state: Option<String>,
    /// Names containing this text.
    pub name: Option<String>,
    /// Only this backend.
    pub backend: Option<String>,
    /// Labels as `key=value`, comma-separated; all must match.
    pub label: Option<String>,
    /// Page number, from 1.
    pub page: Option<u32>,
    /// Items per page, 1–100.
    pub page_size: Option<u32>,
}

impl ListQuery {
    /// The core filter.
    pub fn filter(&self, kind: Option<InstanceKind>) -> ApiResult<InstanceFilter> {
        let mut labels = BTreeMap::new();
        for kv in self.label.iter().flat_map(|l| l.split(',')) {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                ApiError::invalid(format!("label filter {kv:?} is not key=value"))
            })?;
            labels.insert(k.to_string(), v.to_string());
        }
        Ok(InstanceFilter {
            kind: kind.or(self.kind),
            state: self.state.as_deref().map(str::parse).transpose()?,
            name: self.name.clone(),
            labels,
            backend: self.backend.clone(),
            label_in: None,
        })
    }
}

/// `?group=` of a create: the group the new instances belong to.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GroupQuery {
    /// The group the instances belong to: one of the caller's groups when its scope is
    /// `groups` (the only one by default), any group otherwise (none by default).
    pub group: Option<String>,
}

/// Who new instances are made for: the caller, in the group asked for or the scoped
/// caller's only group.
pub async fn ownership(
    state: &AppState,
    caller: &Caller,
    group: Option<String>,
) -> ApiResult<libgo_core::Ownership> {
    let group = match (group, &caller.groups) {
        (Some(g), Some(mine)) if !mine.contains(&g) => {
            return Err(ApiError::forbidden(format!(
                "{} is not a member of group {g:?}",
                caller.username
            ))
            .with_field("group"));
        }
        (Some(g), _) => {
            if crate::tenancy::group(&state.db, &g).await?.is_none() {
                return Err(ApiError::not_found(format!("no group {g:?}")).with_field("group"));
            }
            Some(g)
        }
        (None, None) => None,
        (None, Some(mine)) => match mine.as_slice() {
            [only] => Some(only.clone()),
            [] => {
                return Err(ApiError::forbidden(format!(
                    "{} may only make instances in its groups and is a member of none",
                    caller.username
                )));
            }
            _ => {
                return Err(ApiError::invalid(format!(
                    "{} is a member of several groups ({}): say which with ?group=",
                    caller.username,
                    mine.join(", ")
                ))
                .with_field("group"));
            }
        },
    };
    Ok(libgo_core::Ownership {
        owner: caller.username.clone(),
        group,
    })
}

/// 403 unless an admin asks for host privileges: privileged mode, host paths or devices,
/// a host kernel, the host's network namespace (or none), a network that attaches to a
/// host bridge or interface, or a volume another instance uses as a disk.
pub async fn check_host_privileges(
    state: &AppState,
    caller: &Caller,
    spec: &InstanceSpec,
) -> ApiResult<()> {
    if caller.role == Role::Admin {
        return Ok(());
    }
    let refuse = || {
        ApiError::forbidden(
            "only administrators may create privileged instances, bind-mount host paths, \
             attach host devices, boot host kernels, join the host's network (host, none, \
             container:*) or use networks attached to host bridges",
        )
    };
    if spec.needs_host_privileges() {
        return Err(refuse());
    }
    for n in &spec.networks {
        match state
            .libgo
            .network_inspect(n, On::maybe(spec.backend.as_deref()))
            .await
        {
            Ok(net) if net.host_attached => return Err(refuse()),
            // A missing network is the create call's to report.
            Ok(_) | Err(_) => {}
        }
    }
    // Another instance's disk (or seed) attached, or used as a base, would give this one
    // that instance's data.
    let mut existing: Vec<String> = Vec::new();
    for d in &spec.disks {
        existing.extend(d.volume.iter().chain(d.base_image.iter()).cloned());
    }
    existing.extend(spec.cdrom.iter().cloned());
    for v in &existing {
        match state
            .libgo
            .volume_inspect(v, On::maybe(spec.backend.as_deref()))
            .await
        {
            Ok(volume) if !volume.used_by.is_empty() => {
                return Err(ApiError::forbidden(format!(
                    "volume {v} belongs to {}: only administrators may give it to another \
                     instance",
                    volume.used_by.join(", ")
                )));
            }
            // A missing volume is the create call's to report.
            Ok(_) | Err(_) => {}
        }
    }
    Ok(())
}

/// 403 unless the caller is an admin or the instance holds nothing of its host, as its
/// engine reports it. Verbs that run code in an instance or change it call this: whoever
/// could do so in a privileged instance would be root on the host.
pub async fn require_for_host_access(state: &AppState, caller: &Caller, id: &str) -> ApiResult<()> {
    if caller.role == Role::Admin {
        return Ok(());
    }
    let held = match state.libgo.host_access(id).await {
        Ok(held) => held,
        // A backend that cannot tell is treated as one that holds host access.
        Err(e) if e.kind() == libgo_core::ErrorKind::Unsupported => {
            return Err(ApiError::forbidden(
                "this backend cannot report the instance's host access, so only \
                 administrators may run code in it or change it",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if held.is_empty() {
        return Ok(());
    }
    let what: Vec<String> = held.iter().map(ToString::to_string).collect();
    Err(ApiError::forbidden(format!(
        "instance {id} holds host privileges ({}): only administrators may run code in it \
         or change it",
        what.join(", ")
    )))
}

/// The instance, if it is of `kind`.
pub async fn get_of_kind(
    state: &AppState,
    id: &str,
    kind: Option<InstanceKind>,
) -> ApiResult<Instance> {
    let i = state.libgo.get(id).await?;
    if kind.is_some_and(|k| k != i.kind) {
        return Err(ApiError::not_found(format!(
            "no {} {id:?}",
            kind.map_or("instance", InstanceKind::as_str)
        )));
    }
    Ok(i)
}

/// A 201 with a `Location`.
pub fn created<T: Serialize>(location: String, body: T) -> Response {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    (StatusCode::CREATED, h, axum::Json(body)).into_response()
}

/// A 201 for a new instance, whose audit record names it and its id.
pub fn created_instance(i: Instance) -> Response {
    let target = crate::middleware::AuditTarget(format!("{} ({})", i.name, i.id));
    let mut resp = created(format!("/api/v1/instances/{}", i.id), i);
    resp.extensions_mut().insert(target);
    resp
}

/// A 202 pointing at a task.
pub fn accepted(task: Task) -> Response {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/tasks/{}", task.id)) {
        h.insert(header::LOCATION, v);
    }
    (StatusCode::ACCEPTED, h, axum::Json(task)).into_response()
}

#[utoipa::path(get, path = "/api/v1/instances", extensions(("x-libgo-access" = json!("viewer"))), tag = "instances",
    params(ListQuery),
    responses((status = 200, description = "One page of instances of every backend", body = libgo_core::Page<libgo_core::Instance>)))]
async fn list_instances(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Page<Instance>>> {
    let page = super::pagination(q.page, q.page_size)?;
    let mut filter = q.filter(None)?;
    caller.scope_filter(&mut filter);
    list_page(&state, &filter, page).await.map(Json)
}

/// One page of instances, saying which backends are missing from it: those whose engine
/// failed to answer, and configured ones not connected yet.
pub async fn list_page(
    state: &AppState,
    filter: &InstanceFilter,
    page: libgo_core::Pagination,
) -> ApiResult<Page<Instance>> {
    let mut page = state.libgo.list(filter, page).await?;
    for p in state.pending() {
        if filter.backend.as_deref().is_none_or(|b| b == p.name) {
            page.unavailable.push(libgo_core::Unavailable {
                backend: p.name,
                message: p.error,
            });
        }
    }
    Ok(page)
}

#[utoipa::path(post, path = "/api/v1/instances", extensions(("x-libgo-access" = json!("operator"))), tag = "instances",
    params(GroupQuery), request_body = libgo_core::InstanceSpec,
    responses((status = 201, description = "Created", body = libgo_core::Instance)))]
async fn create_instance(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(g): Query<GroupQuery>,
    Json(spec): Json<InstanceSpec>,
) -> ApiResult<Response> {
    let owner = ownership(&state, &caller, g.group).await?;
    check_host_privileges(&state, &caller, &spec).await?;
    let i = state.libgo.create_owned(&spec, &owner).await?;
    Ok(created_instance(i))
}

#[utoipa::path(get, path = "/api/v1/instances/{id}", extensions(("x-libgo-access" = json!("viewer"))), tag = "instances",
    params(("id" = String, Path, description = "Instance id or name")),
    responses((status = 200, description = "The instance", body = libgo_core::Instance)))]
async fn get_instance(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Instance>> {
    Ok(Json(state.libgo.get(&id).await?))
}

/// `?force=`.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForceQuery {
    /// Stop it first if it runs.
    #[serde(default)]
    pub force: bool,
}

#[utoipa::path(delete, path = "/api/v1/instances/{id}", extensions(("x-libgo-access" = json!("operator"))), tag = "instances",
    params(("id" = String, Path, description = "Instance id or name"), ForceQuery),
    responses((status = 204, description = "Deleted")))]
async fn delete_instance(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<ForceQuery>,
) -> ApiResult<StatusCode> {
    state
        .libgo
        .delete(&id, libgo_core::DeleteOptions { force: q.force })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(patch, path = "/api/v1/instances/{id}", extensions(("x-libgo-access" = json!("operator"))), tag = "instances",
    params(("id" = String, Path, description = "Instance id or name")),
    request_body = libgo_core::ResourceUpdate,
    responses((status = 200, description = "Updated", body = libgo_core::Instance)))]
async fn update_instance(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(update): Json<ResourceUpdate>,
) -> ApiResult<Json<Instance>> {
    require_for_host_access(&state, &caller, &id).await?;
    Ok(Json(state.libgo.update(&id, update).await?))
}

/// A lifecycle verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Start.
    Start,
    /// Stop (gracefully within `timeout`, or at once with `force`).
    Stop,
    /// Restart.
    Restart,
    /// Pause (freeze).
    Pause,
    /// Resume a paused instance.
    Unpause,
    /// Resume a paused instance (alias of unpause).
    Resume,
    /// Send a signal (containers) or power off (VMs).
    Kill,
}

/// Options of lifecycle verbs.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActionQuery {
    /// Seconds to wait for a graceful stop before forcing it (at most 60, so that the
    /// answer comes within the request's deadline).
    #[param(maximum = 60)]
    pub timeout: Option<u64>,
    /// Skip the graceful stop.
    #[serde(default)]
    pub force: bool,
    /// Signal for `kill`.
    pub signal: Option<String>,
}

/// The longest graceful stop a request may wait for.
pub const MAX_STOP_WAIT_SECS: u64 = 60;

/// Runs a verb on an instance of `kind` (any kind when `None`) and returns it.
pub async fn act(
    state: &AppState,
    id: &str,
    action: Action,
    q: &ActionQuery,
    kind: Option<InstanceKind>,
) -> ApiResult<Instance> {
    if q.timeout.is_some_and(|t| t > MAX_STOP_WAIT_SECS) {
        return Err(ApiError::invalid(format!(
            "timeout is at most {MAX_STOP_WAIT_SECS} s; force a stop that takes longer"
        )));
    }
    let i = get_of_kind(state, id, kind).await?;
    let opts = StopOptions {
        timeout_secs: q.timeout,
        force: q.force,
    };
    let l = &state.libgo;
    match action {
        Action::Start => l.start(&i.id).await?,
        Action::Stop => l.stop(&i.id, opts).await?,
        Action::Restart => l.restart(&i.id, opts).await?,
        Action::Pause => l.pause(&i.id).await?,
        Action::Unpause | Action::Resume => l.resume(&i.id).await?,
        Action::Kill => l.kill(&i.id, q.signal.as_deref()).await?,
    }
    Ok(l.get(&i.id).await?)
}

#[utoipa::path(post, path = "/api/v1/instances/{id}/{action}", extensions(("x-libgo-access" = json!("operator"))), tag = "instances",
    params(("id" = String, Path, description = "Instance id or name"),
           ("action" = Action, Path, description = "start, stop, restart, pause, unpause, resume or kill"),
           ActionQuery),
    responses((status = 200, description = "The instance after the action", body = libgo_core::Instance)))]
async fn instance_action(
    State(state): State<Arc<AppState>>,
    Path((id, action)): Path<(String, Action)>,
    Query(q): Query<ActionQuery>,
) -> ApiResult<Json<Instance>> {
    Ok(Json(act(&state, &id, action, &q, None).await?))
}

/// Options of a log read.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only the last N lines (at most 10,000; the server's default, 1,000, when absent).
    #[param(maximum = 10000)]
    pub tail: Option<usize>,
    /// Only lines at or after this time (RFC 3339).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only lines before this time (RFC 3339).
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Prefix times where the engine records them.
    #[serde(default)]
    pub timestamps: bool,
    /// Keep streaming new lines as NDJSON.
    #[serde(default)]
    pub follow: bool,
    /// Page number, from 1.
    pub page: Option<u32>,
    /// Items per page, 1–100.
    pub page_size: Option<u32>,
}

/// The most lines one log read returns.
pub const MAX_LOG_TAIL: usize = 10_000;

/// Reads logs of an instance of `kind`: the last `tail` lines (the server's default tail
/// when absent), paged from the end — page 1 holds the newest lines, oldest first within
/// the page. A followed stream ends when the caller's session does.
pub async fn read_logs(
    state: &Arc<AppState>,
    caller: &Caller,
    id: &str,
    q: LogsQuery,
    kind: Option<InstanceKind>,
) -> ApiResult<Response> {
    let i = get_of_kind(state, id, kind).await?;
    let page = super::pagination(q.page, q.page_size)?;
    let default_tail = state.config.logs_default_tail;
    let opts = LogOptions {
        tail: Some(q.tail.unwrap_or(default_tail).min(MAX_LOG_TAIL)),
        since: q.since,
        until: q.until,
        follow: q.follow,
        timestamps: q.timestamps,
    };
    let stream = state.libgo.logs(&i.id, opts).await?;
    if q.follow {
        let watch = crate::auth::SessionWatch::start(state.clone(), caller.clone());
        let ended = watch.token();
        let stream = stream.take_until(ended.cancelled_owned());
        let body = stream.map(move |item| {
            let _watching = &watch;
            let line = match item {
                Ok(e) => serde_json::to_string(&e),
                Err(e) => serde_json::to_string(&ApiError::from(e).body()),
            }
            .unwrap_or_default();
            Ok::<_, std::convert::Infallible>(format!("{line}\n"))
        });
        return Ok((
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            axum::body::Body::from_stream(body),
        )
            .into_response());
    }
    let entries: Vec<LogEntry> = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.collect::<Vec<_>>(),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "TIMEOUT",
            "reading logs timed out",
        )
    })?
    .into_iter()
    .collect::<Result<_, _>>()?;
    Ok(axum::Json(libgo_core::paginate_from_end(entries, page)).into_response())
}

#[utoipa::path(get, path = "/api/v1/instances/{id}/logs", extensions(("x-libgo-access" = json!("viewer"))), tag = "instances",
    params(("id" = String, Path, description = "Instance id or name"), LogsQuery),
    responses((status = 200, description = "Log lines (NDJSON stream with follow=true)", body = libgo_core::Page<libgo_core::LogEntry>)))]
async fn instance_logs(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Response> {
    read_logs(&state, &caller, &id, q, None).await
}

#[utoipa::path(put, path = "/api/v1/instances/{id}/guest/password", extensions(("x-libgo-access" = json!("operator"))), tag = "instances",
    params(("id" = String, Path, description = "Instance id or name")),
    request_body = libgo_core::GuestPassword,
    responses((status = 204, description = "Set in the guest by its agent")))]
async fn guest_password(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(p): Json<libgo_core::GuestPassword>,
) -> ApiResult<StatusCode> {
    require_for_host_access(&state, &caller, &id).await?;
    state.libgo.guest_password(&id, &p).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/instances/{id}/exec", extensions(("x-libgo-access" = json!("operator"))), tag = "instances",
    params(("id" = String, Path, description = "Instance id or name")),
    request_body = libgo_core::ExecSpec,
    responses((status = 200, description = "Exit code and output", body = libgo_core::ExecResult)))]
async fn instance_exec(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(mut spec): Json<ExecSpec>,
) -> ApiResult<Response> {
    require_for_host_access(&state, &caller, &id).await?;
    // The server's limit bounds what one request can make it hold; a caller may ask less.
    let limit = state.config.exec_output_limit_bytes;
    spec.max_output_bytes = Some(spec.max_output_bytes.map_or(limit, |m| m.min(limit)));
    Ok(exec_response(state.libgo.exec(&id, &spec).await?))
}

/// An [`ExecResult`] as JSON, its output escaped and sent in pieces: escaping can make
/// output six times larger (`\u0000`), and a whole body of that would be held at once.
fn exec_response(r: ExecResult) -> Response {
    const PIECE: usize = 64 << 10;
    fn pieces(text: String) -> impl Iterator<Item = Result<Bytes, std::convert::Infallible>> {
        let mut at = 0;
        std::iter::from_fn(move || {
            if at >= text.len() {
                return None;
            }
            let mut end = (at + PIECE).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            let quoted = serde_json::to_string(&text[at..end]).unwrap_or_default();
            at = end;
            let inner = quoted[1..quoted.len().saturating_sub(1)].to_string();
            Some(Ok(Bytes::from(inner)))
        })
    }
    let head = format!(
        "{{\"exitCode\":{},\"truncated\":{},\"stdout\":\"",
        r.exit_code, r.truncated
    );
    let parts = std::iter::once(Ok(Bytes::from(head)))
        .chain(pieces(r.stdout))
        .chain(std::iter::once(Ok(Bytes::from_static(b"\",\"stderr\":\""))))
        .chain(pieces(r.stderr))
        .chain(std::iter::once(Ok(Bytes::from_static(b"\"}"))));
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(futures::stream::iter(parts)),
    )
        .into_response()
}

#[utoipa::path(get, path = "/api/v1/instances/{id}/screenshot", extensions(("x-libgo-access" = json!("viewer"))), tag = "instances",
    params(("id" = String, Path, description = "Instance id or name")),
    responses((status = 200, description = "PNG of the VM's display", content_type = "image/png", body = Vec<u8>)))]
async fn instance_screenshot(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let png = state.libgo.screenshot(&id).await?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

#[utoipa::path(get, path = "/api/v1/instances/{id}/snapshots", extensions(("x-libgo-access" = json!("viewer"))), tag = "snapshots",
    params(("id" = String, Path, description = "Instance id or name"), PageQuery),
    responses((status = 200, description = "Snapshots, oldest first", body = libgo_core::Page<libgo_core::Snapshot>)))]
async fn list_snapshots(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Snapshot>>> {
    let page = q.get()?;
    Ok(Json(paginate(state.libgo.snapshot_list(&id).await?, page)))
}

#[utoipa::path(post, path = "/api/v1/instances/{id}/snapshots", extensions(("x-libgo-access" = json!("operator"))), tag = "snapshots",
    params(("id" = String, Path, description = "Instance id or name")),
    request_body = libgo_core::SnapshotSpec,
    responses((status = 201, description = "Taken", body = libgo_core::Snapshot)))]
async fn create_snapshot(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(spec): Json<SnapshotSpec>,
) -> ApiResult<Response> {
    require_for_host_access(&state, &caller, &id).await?;
    let s = state.libgo.snapshot_create(&id, &spec).await?;
    Ok(created(
        format!("/api/v1/instances/{id}/snapshots/{}", s.name),
        s,
    ))
}

#[utoipa::path(get, path = "/api/v1/instances/{id}/snapshots/{name}", extensions(("x-libgo-access" = json!("viewer"))), tag = "snapshots",
    params(("id" = String, Path, description = "Instance id or name"), ("name" = String, Path, description = "Snapshot name")),
    responses((status = 200, description = "The snapshot, with its parent and whether it is current", body = libgo_core::Snapshot)))]
async fn get_snapshot(
    State(state): State<Arc<AppState>>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Json<Snapshot>> {
    Ok(Json(state.libgo.snapshot_get(&id, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/instances/{id}/snapshots/{name}", extensions(("x-libgo-access" = json!("operator"))), tag = "snapshots",
    params(("id" = String, Path, description = "Instance id or name"), ("name" = String, Path, description = "Snapshot name")),
    responses((status = 204, description = "Deleted")))]
async fn delete_snapshot(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    require_for_host_access(&state, &caller, &id).await?;
    state.libgo.snapshot_delete(&id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/instances/{id}/snapshots/{name}/revert", extensions(("x-libgo-access" = json!("operator"))), tag = "snapshots",
    params(("id" = String, Path, description = "Instance id or name"), ("name" = String, Path, description = "Snapshot name")),
    responses((status = 200, description = "The instance after the revert", body = libgo_core::Instance)))]
async fn revert_snapshot(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Json<Instance>> {
    require_for_host_access(&state, &caller, &id).await?;
    // By name afterwards: reverting a container makes a new one, with a new id.
    let instance = state.libgo.get(&id).await?.name;
    state.libgo.snapshot_revert(&id, &name).await?;
    Ok(Json(state.libgo.get(&instance).await?))
}

/// An export request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExportRequest {
    /// Format.
    pub format: ExportFormat,
    /// File to write (administrators only); a new file in the server's export directory
    /// when absent.
    pub destination: Option<String>,
}

fn extension(f: ExportFormat) -> &'static str {
    match f {
        ExportFormat::Qcow2 => "qcow2",
        ExportFormat::Vmdk => "vmdk",
        ExportFormat::Vdi => "vdi",
        ExportFormat::Raw => "raw",
        ExportFormat::Ova => "ova",
        ExportFormat::Tar | ExportFormat::ImageTar => "tar",
    }
}

#[utoipa::path(post, path = "/api/v1/instances/{id}/export", extensions(("x-libgo-access" = json!("operator"))), tag = "instances",
    params(("id" = String, Path, description = "Instance id or name")),
    request_body = ExportRequest,
    responses((status = 202, description = "Export task started; Location names it", body = Task)))]
async fn export_instance(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<ExportRequest>,
) -> ApiResult<Response> {
    require_for_host_access(&state, &caller, &id).await?;
    let i = state.libgo.get(&id).await?;
    let destination = match req.destination {
        Some(d) => {
            caller.require(Role::Admin).map_err(|_| {
                ApiError::forbidden("only administrators may choose an export destination")
            })?;
            std::path::PathBuf::from(d)
        }
        None => {
            let dir = state.config.data_dir.join("exports");
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(ApiError::internal)?;
            dir.join(format!(
                "{}-{}.{}",
                i.name,
                uuid::Uuid::new_v4().simple(),
                extension(req.format)
            ))
        }
    };
    let spec = ExportSpec {
        format: req.format,
        destination,
    };
    libgo_core::validate::export_spec(&spec)?;
    let libgo = state.libgo.clone();
    let instance_id = i.id.clone();
    let task = state
        .tasks
        .spawn(
            "instance.export",
            Some(i.name.clone()),
            &caller.username,
            move |ctx| async move {
                ctx.progress(
                    Some(0.0),
                    format!("exporting to {}", spec.destination.display()),
                );
                let r = libgo.export(&instance_id, &spec, ctx.sink()).await?;
                Ok(serde_json::to_value(r).unwrap_or_default())
            },
        )
        .await?;
    Ok(accepted(task))
}

#[utoipa::path(post, path = "/api/v1/instances/{id}/reinstall", extensions(("x-libgo-access" = json!("operator"))), tag = "instances",
    params(("id" = String, Path, description = "Instance id or name")),
    request_body = libgo_core::ReinstallSpec,
    responses((status = 202, description = "Reinstall task started: a VM's root disk rebuilt from the image (other disks kept), a container recreated from it; its result is the instance", body = Task)))]
async fn reinstall_instance(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(spec): Json<libgo_core::ReinstallSpec>,
) -> ApiResult<Response> {
    require_for_host_access(&state, &caller, &id).await?;
    if let Some(image) = &spec.image {
        libgo_core::validate::image_reference(image).map_err(|e| e.with_field("image"))?;
    }
    let i = state.libgo.get(&id).await?;
    let libgo = state.libgo.clone();
    let task = state
        .tasks
        .spawn(
            "instance.reinstall",
            Some(i.name.clone()),
            &caller.username,
            move |ctx| async move {
                ctx.progress(Some(0.0), format!("reinstalling {}", i.name));
                let r = libgo.reinstall(&i.name, &spec).await?;
                Ok(serde_json::to_value(r).unwrap_or_default())
            },
        )
        .await?;
    Ok(accepted(task))
}

/// Delete many instances./// Delete many instances.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BatchDelete {
    /// Ids or names, at most 100.
    pub ids: Vec<String>,
    /// Stop running ones first.
    #[serde(default)]
    pub force: bool,
}

#[utoipa::path(post, path = "/api/v1/instances/batch", extensions(("x-libgo-access" = json!("operator"))), tag = "instances",
    params(GroupQuery), request_body = BatchSpec,
    responses((status = 202, description = "Batch task started; its result is a BatchReport", body = Task)))]
async fn batch_create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(g): Query<GroupQuery>,
    Json(batch): Json<BatchSpec>,
) -> ApiResult<Response> {
    let owner = ownership(&state, &caller, g.group).await?;
    check_host_privileges(&state, &caller, &batch.spec).await?;
    // A wrong batch is refused before a task starts; the core checks it again.
    batch.names()?;
    let libgo = state.libgo.clone();
    let target = batch.name_pattern.clone();
    let task = state
        .tasks
        .spawn(
            "instances.batch-create",
            target,
            &caller.username,
            move |ctx| async move {
                let report = libgo.create_batch_owned(&batch, ctx.sink(), &owner).await?;
                Ok(serde_json::to_value(report).unwrap_or_default())
            },
        )
        .await?;
    Ok(accepted(task))
}

#[utoipa::path(post, path = "/api/v1/instances/batch-delete", extensions(("x-libgo-access" = json!("operator"))), tag = "instances",
    request_body = BatchDelete,
    responses((status = 202, description = "Batch task started; its result is a BatchReport", body = Task)))]
async fn batch_delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<BatchDelete>,
) -> ApiResult<Response> {
    // Refused before a task starts; the core checks it again.
    libgo_core::validate::batch_ids(&req.ids)?;
    for id in &req.ids {
        crate::auth::require_in_scope(&state, &caller, id).await?;
    }
    let libgo = state.libgo.clone();
    let task = state
        .tasks
        .spawn(
            "instances.batch-delete",
            None,
            &caller.username,
            move |ctx| async move {
                let report = libgo
                    .delete_batch(
                        &req.ids,
                        libgo_core::DeleteOptions { force: req.force },
                        ctx.sink(),
                    )
                    .await?;
                Ok(serde_json::to_value(report).unwrap_or_default())
            },
        )
        .await?;
    Ok(accepted(task))
}

/// The instance routes.
pub fn router() -> Router {
    Router::new()
        .routes(routes!(list_instances, create_instance))
        .routes(routes!(get_instance, delete_instance, update_instance))
        .routes(routes!(instance_action))
        .routes(routes!(instance_logs))
        .routes(routes!(instance_exec))
        .routes(routes!(guest_password))
        .routes(routes!(instance_screenshot))
        .routes(routes!(list_snapshots, create_snapshot))
        .routes(routes!(get_snapshot, delete_snapshot))
        .routes(routes!(revert_snapshot))
        .routes(routes!(export_instance))
        .routes(routes!(reinstall_instance))
        .routes(routes!(batch_create))
        .routes(routes!(batch_delete))
}
