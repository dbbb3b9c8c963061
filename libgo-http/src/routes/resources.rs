//! Networks, volumes, storage pools, templates and backends.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use libgo_core::{
    BackendInfo, Capabilities, Health, Network, NetworkSpec, On, Page, PruneReport, StoragePool,
    StoragePoolSpec, Template, Volume, VolumeSpec,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::instances::created;
use super::{BackendQuery, PageQuery, Router};
use crate::error::{ApiError, ApiResult, payload_too_large};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

type S = State<Arc<AppState>>;

// ---- networks ----

#[utoipa::path(get, path = "/api/v1/networks", extensions(("x-libgo-access" = json!("viewer"))), tag = "networks", params(PageQuery),
    responses((status = 200, description = "Networks of every backend", body = libgo_core::Page<libgo_core::Network>)))]
async fn list_networks(
    State(state): S,
    caller: crate::auth::Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Network>>> {
    let mut page = state.libgo.network_page(q.get()?).await?;
    if let Some(visible) = visible_instances(&state, &caller).await? {
        for n in &mut page.items {
            n.instances.retain(|i| visible.contains(i));
        }
    }
    Ok(Json(page))
}

/// The ids and names of the instances a caller kept to its groups may see; `None` for a
/// caller who sees every instance. Networks and volumes name their users only from these.
pub(crate) async fn visible_instances(
    state: &AppState,
    caller: &crate::auth::Caller,
) -> ApiResult<Option<std::collections::HashSet<String>>> {
    if caller.groups.is_none() {
        return Ok(None);
    }
    let mut filter = libgo_core::InstanceFilter::default();
    caller.scope_filter(&mut filter);
    let seen = state.libgo.list_all(&filter).await?;
    Ok(Some(
        seen.into_iter().flat_map(|i| [i.id, i.name]).collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/networks", extensions(("x-libgo-access" = json!("operator"))), tag = "networks", request_body = libgo_core::NetworkSpec,
    responses((status = 201, description = "Created", body = libgo_core::Network)))]
async fn create_network(
    State(state): S,
    caller: crate::auth::Caller,
    Json(spec): Json<NetworkSpec>,
) -> ApiResult<Response> {
    if caller.role != crate::auth::Role::Admin && state.libgo.network_attaches_host(&spec)? {
        return Err(crate::error::ApiError::forbidden(
            "this network would attach instances to a host bridge or interface: only \
             administrators may create it",
        ));
    }
    let owner = caller.resource_owner();
    let n = state.libgo.network_create_owned(&spec, &owner).await?;
    Ok(created(format!("/api/v1/networks/{}", n.id), n))
}

#[utoipa::path(get, path = "/api/v1/networks/{id}", extensions(("x-libgo-access" = json!("viewer"))), tag = "networks",
    params(("id" = String, Path, description = "Network id or name"), BackendQuery),
    responses((status = 200, description = "The network", body = libgo_core::Network)))]
async fn get_network(
    State(state): S,
    caller: crate::auth::Caller,
    Path(id): Path<String>,
    Query(q): Query<BackendQuery>,
) -> ApiResult<Json<Network>> {
    let mut n = state
        .libgo
        .network_inspect(&id, On::maybe(q.backend.as_deref()))
        .await?;
    if let Some(visible) = visible_instances(&state, &caller).await? {
        n.instances.retain(|i| visible.contains(i));
    }
    Ok(Json(n))
}

#[utoipa::path(delete, path = "/api/v1/networks/{id}", extensions(("x-libgo-access" = json!("operator"))), tag = "networks",
    params(("id" = String, Path, description = "Network id or name"), BackendQuery),
    responses((status = 204, description = "Deleted")))]
async fn delete_network(
    State(state): S,
    Path(id): Path<String>,
    Query(q): Query<BackendQuery>,
) -> ApiResult<StatusCode> {
    state
        .libgo
        .network_delete(&id, On::maybe(q.backend.as_deref()))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An instance to attach or detach.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkAttach {
    /// Instance id or name.
    pub instance: String,
}

/// What to do with a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkAction {
    /// Attach an instance (body: `{instance}`).
    Connect,
    /// Detach an instance (body: `{instance}`).
    Disconnect,
    /// Activate (libvirt).
    Start,
    /// Deactivate (libvirt).
    Stop,
}

#[utoipa::path(post, path = "/api/v1/networks/{id}/{action}", extensions(("x-libgo-access" = json!("operator"))), tag = "networks",
    params(("id" = String, Path, description = "Network id or name"),
           ("action" = NetworkAction, Path, description = "connect, disconnect, start or stop"), BackendQuery),
    request_body(content = Option<NetworkAttach>, description = "For connect and disconnect"),
    responses((status = 200, description = "The network after the action", body = libgo_core::Network)))]
async fn network_action(
    State(state): S,
    caller: crate::auth::Caller,
    Path((id, action)): Path<(String, NetworkAction)>,
    Query(q): Query<BackendQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Network>> {
    let b = q.backend.as_deref();
    let attach = || -> ApiResult<NetworkAttach> {
        serde_json::from_slice(&body).map_err(|e| {
            crate::error::ApiError::invalid(format!("body must be {{\"instance\": …}}: {e}"))
        })
    };
    match action {
        NetworkAction::Connect | NetworkAction::Disconnect => {
            let instance = attach()?.instance;
            super::instances::require_for_host_access(&state, &caller, &instance).await?;
            if action == NetworkAction::Connect && caller.role != crate::auth::Role::Admin {
                let net = state.libgo.network_inspect(&id, On::maybe(b)).await?;
                if net.host_attached || matches!(net.name.as_str(), "host" | "none") {
                    return Err(crate::error::ApiError::forbidden(format!(
                        "network {} attaches to the host: only administrators may connect \
                         instances to it",
                        net.name
                    )));
                }
                state.libgo.network_connect(&id, &instance).await?
            } else if action == NetworkAction::Connect {
                state.libgo.network_connect(&id, &instance).await?
            } else {
                state.libgo.network_disconnect(&id, &instance).await?
            }
        }
        NetworkAction::Start => state.libgo.network_start(&id, On::maybe(b)).await?,
        NetworkAction::Stop => state.libgo.network_stop(&id, On::maybe(b)).await?,
    }
    Ok(Json(state.libgo.network_inspect(&id, On::maybe(b)).await?))
}

// ---- volumes ----

#[utoipa::path(get, path = "/api/v1/volumes", extensions(("x-libgo-access" = json!("viewer"))), tag = "volumes", params(PageQuery),
    responses((status = 200, description = "Volumes of every backend", body = libgo_core::Page<libgo_core::Volume>)))]
async fn list_volumes(
    State(state): S,
    caller: crate::auth::Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Volume>>> {
    let mut page = state.libgo.volume_page(q.get()?).await?;
    if let Some(visible) = visible_instances(&state, &caller).await? {
        for v in &mut page.items {
            v.used_by.retain(|i| visible.contains(i));
        }
    }
    Ok(Json(page))
}

#[utoipa::path(post, path = "/api/v1/volumes", extensions(("x-libgo-access" = json!("operator"))), tag = "volumes", request_body = libgo_core::VolumeSpec,
    responses((status = 201, description = "Created", body = libgo_core::Volume)))]
async fn create_volume(
    State(state): S,
    caller: crate::auth::Caller,
    Json(spec): Json<VolumeSpec>,
) -> ApiResult<Response> {
    let v = state
        .libgo
        .volume_create_owned(&spec, &caller.resource_owner())
        .await?;
    Ok(created(format!("/api/v1/volumes/{}", v.name), v))
}

#[utoipa::path(get, path = "/api/v1/volumes/{name}", extensions(("x-libgo-access" = json!("viewer"))), tag = "volumes",
    params(("name" = String, Path, description = "Volume name (`pool%2Fname` for VM volumes)"), BackendQuery),
    responses((status = 200, description = "The volume", body = libgo_core::Volume)))]
async fn get_volume(
    State(state): S,
    caller: crate::auth::Caller,
    Path(name): Path<String>,
    Query(q): Query<BackendQuery>,
) -> ApiResult<Json<Volume>> {
    let mut v = state
        .libgo
        .volume_inspect(&name, On::maybe(q.backend.as_deref()))
        .await?;
    if let Some(visible) = visible_instances(&state, &caller).await? {
        v.used_by.retain(|i| visible.contains(i));
    }
    Ok(Json(v))
}

#[utoipa::path(delete, path = "/api/v1/volumes/{name}", extensions(("x-libgo-access" = json!("operator"))), tag = "volumes",
    params(("name" = String, Path, description = "Volume name"), BackendQuery),
    responses((status = 204, description = "Deleted")))]
async fn delete_volume(
    State(state): S,
    Path(name): Path<String>,
    Query(q): Query<BackendQuery>,
) -> ApiResult<StatusCode> {
    state
        .libgo
        .volume_delete(
            &name,
            libgo_core::VolumeDeleteOptions {
                backend: q.backend,
                force: q.force,
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new size.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResizeRequest {
    /// New size in bytes (1 MiB to 64 TiB).
    #[schema(minimum = 1048576, maximum = 70368744177664_u64)]
    pub size_bytes: u64,
}

#[utoipa::path(post, path = "/api/v1/volumes/{name}/resize", extensions(("x-libgo-access" = json!("operator"))), tag = "volumes",
    params(("name" = String, Path, description = "Volume name"), BackendQuery), request_body = ResizeRequest,
    responses((status = 200, description = "Resized", body = libgo_core::Volume)))]
async fn resize_volume(
    State(state): S,
    Path(name): Path<String>,
    Query(q): Query<BackendQuery>,
    Json(r): Json<ResizeRequest>,
) -> ApiResult<Json<Volume>> {
    Ok(Json(
        state
            .libgo
            .volume_resize(&name, r.size_bytes, On::maybe(q.backend.as_deref()))
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/volumes/{name}/wipe", extensions(("x-libgo-access" = json!("operator"))), tag = "volumes",
    params(("name" = String, Path, description = "Volume name"), BackendQuery),
    responses((status = 204, description = "Wiped")))]
async fn wipe_volume(
    State(state): S,
    Path(name): Path<String>,
    Query(q): Query<BackendQuery>,
) -> ApiResult<StatusCode> {
    state
        .libgo
        .volume_wipe(&name, On::maybe(q.backend.as_deref()))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A copy's name.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneRequest {
    /// Name of the copy.
    pub target: String,
}

#[utoipa::path(post, path = "/api/v1/volumes/{name}/clone", extensions(("x-libgo-access" = json!("operator"))), tag = "volumes",
    params(("name" = String, Path, description = "Volume name"), BackendQuery), request_body = CloneRequest,
    responses((status = 201, description = "Copied", body = libgo_core::Volume)))]
async fn clone_volume(
    State(state): S,
    Path(name): Path<String>,
    Query(q): Query<BackendQuery>,
    Json(r): Json<CloneRequest>,
) -> ApiResult<Response> {
    let v = state
        .libgo
        .volume_clone(&name, &r.target, On::maybe(q.backend.as_deref()))
        .await?;
    Ok(created(format!("/api/v1/volumes/{}", v.name), v))
}

/// An upload from a file already on the server's host.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadFromHost {
    /// Absolute path of a disk image file on the server's host.
    pub path: String,
}

#[utoipa::path(post, path = "/api/v1/volumes/{name}/upload", extensions(("x-libgo-access" = json!("admin"))), tag = "volumes",
    params(("name" = String, Path, description = "VM volume name (`pool%2Fname`)"), BackendQuery),
    request_body(content(
        (crate::openapi::Binary = "application/octet-stream"),
        (UploadFromHost = "application/json"),
    ), description = "The disk image's bytes, or (JSON) the path of a file on the server's host"),
    responses((status = 200, description = "Filled (administrators only: the volume then holds \
        whatever the caller wrote, and a host path reads a host file); it grows to the data's size", body = libgo_core::Volume)))]
async fn upload_volume(
    State(state): S,
    Path(name): Path<String>,
    Query(q): Query<BackendQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Volume>> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // Fail on an unknown volume before reading the body.
    state
        .libgo
        .volume_inspect(&name, On::maybe(q.backend.as_deref()))
        .await?;
    let volume = if json {
        let bytes = axum::body::to_bytes(body, 64 * 1024)
            .await
            .map_err(|_| payload_too_large())?;
        let from: UploadFromHost = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid(format!("malformed JSON: {e}")))?;
        state
            .libgo
            .volume_upload(
                &name,
                std::path::Path::new(&from.path),
                On::maybe(q.backend.as_deref()),
            )
            .await?
    } else {
        let file =
            crate::spool::spool(&state, &headers, body, "uploads", "the upload is empty").await?;
        state
            .libgo
            .volume_upload(&name, file.path(), On::maybe(q.backend.as_deref()))
            .await?
    };
    Ok(Json(volume))
}

#[utoipa::path(post, path = "/api/v1/volumes/prune", extensions(("x-libgo-access" = json!("operator"))), tag = "volumes", params(BackendQuery),
    responses((status = 200, description = "What was removed", body = libgo_core::PruneReport)))]
async fn prune_volumes(
    State(state): S,
    Query(q): Query<BackendQuery>,
) -> ApiResult<Json<PruneReport>> {
    Ok(Json(
        state
            .libgo
            .volume_prune(On::maybe(q.backend.as_deref()))
            .await?,
    ))
}

// ---- storage pools ----

#[utoipa::path(get, path = "/api/v1/storage-pools", extensions(("x-libgo-access" = json!("viewer"))), tag = "storage-pools", params(PageQuery),
    responses((status = 200, description = "Storage pools", body = libgo_core::Page<libgo_core::StoragePool>)))]
async fn list_pools(
    State(state): S,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<StoragePool>>> {
    Ok(Json(state.libgo.pool_page(q.get()?).await?))
}

#[utoipa::path(post, path = "/api/v1/storage-pools", extensions(("x-libgo-access" = json!("admin"))), tag = "storage-pools", request_body = libgo_core::StoragePoolSpec,
    responses((status = 201, description = "Created (admin only: it names a host directory)", body = libgo_core::StoragePool)))]
async fn create_pool(State(state): S, Json(spec): Json<StoragePoolSpec>) -> ApiResult<Response> {
    let p = state.libgo.pool_create(&spec).await?;
    Ok(created(format!("/api/v1/storage-pools/{}", p.name), p))
}

#[utoipa::path(get, path = "/api/v1/storage-pools/{name}", extensions(("x-libgo-access" = json!("viewer"))), tag = "storage-pools",
    params(("name" = String, Path, description = "Pool name"), BackendQuery),
    responses((status = 200, description = "The pool", body = libgo_core::StoragePool)))]
async fn get_pool(
    State(state): S,
    Path(name): Path<String>,
    Query(q): Query<BackendQuery>,
) -> ApiResult<Json<StoragePool>> {
    Ok(Json(
        state
            .libgo
            .pool_inspect(&name, On::maybe(q.backend.as_deref()))
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/storage-pools/{name}", extensions(("x-libgo-access" = json!("admin"))), tag = "storage-pools",
    params(("name" = String, Path, description = "Pool name"), BackendQuery),
    responses((status = 204, description = "Deleted")))]
async fn delete_pool(
    State(state): S,
    Path(name): Path<String>,
    Query(q): Query<BackendQuery>,
) -> ApiResult<StatusCode> {
    state
        .libgo
        .pool_delete(&name, On::maybe(q.backend.as_deref()))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What to do with a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PoolAction {
    /// Start.
    Activate,
    /// Stop.
    Deactivate,
}

#[utoipa::path(post, path = "/api/v1/storage-pools/{name}/{action}", extensions(("x-libgo-access" = json!("admin"))), tag = "storage-pools",
    params(("name" = String, Path, description = "Pool name"), ("action" = PoolAction, Path, description = "activate or deactivate"), BackendQuery),
    responses((status = 200, description = "The pool after the action", body = libgo_core::StoragePool)))]
async fn pool_action(
    State(state): S,
    Path((name, action)): Path<(String, PoolAction)>,
    Query(q): Query<BackendQuery>,
) -> ApiResult<Json<StoragePool>> {
    let b = q.backend.as_deref();
    match action {
        PoolAction::Activate => state.libgo.pool_activate(&name, On::maybe(b)).await?,
        PoolAction::Deactivate => state.libgo.pool_deactivate(&name, On::maybe(b)).await?,
    }
    Ok(Json(state.libgo.pool_inspect(&name, On::maybe(b)).await?))
}

// ---- templates ----

#[utoipa::path(get, path = "/api/v1/templates", extensions(("x-libgo-access" = json!("viewer"))), tag = "templates", params(PageQuery),
    responses((status = 200, description = "VM templates", body = libgo_core::Page<libgo_core::Template>)))]
async fn list_templates(
    State(state): S,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Template>>> {
    Ok(Json(state.libgo.template_page(q.get()?).await?))
}

#[utoipa::path(post, path = "/api/v1/templates", extensions(("x-libgo-access" = json!("operator"))), tag = "templates", params(BackendQuery), request_body = libgo_core::Template,
    responses((status = 201, description = "Saved", body = libgo_core::Template)))]
async fn create_template(
    State(state): S,
    Query(q): Query<BackendQuery>,
    Json(t): Json<Template>,
) -> ApiResult<Response> {
    let t = state
        .libgo
        .template_create(&t, On::maybe(q.backend.as_deref()))
        .await?;
    Ok(created(format!("/api/v1/templates/{}", t.name), t))
}

#[utoipa::path(get, path = "/api/v1/templates/{name}", extensions(("x-libgo-access" = json!("viewer"))), tag = "templates",
    params(("name" = String, Path, description = "Template name"), BackendQuery),
    responses((status = 200, description = "The template", body = libgo_core::Template)))]
async fn get_template(
    State(state): S,
    Path(name): Path<String>,
    Query(q): Query<BackendQuery>,
) -> ApiResult<Json<Template>> {
    Ok(Json(
        state
            .libgo
            .template_get(&name, On::maybe(q.backend.as_deref()))
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/templates/{name}", extensions(("x-libgo-access" = json!("operator"))), tag = "templates",
    params(("name" = String, Path, description = "Template name"), BackendQuery),
    responses((status = 204, description = "Deleted")))]
async fn delete_template(
    State(state): S,
    Path(name): Path<String>,
    Query(q): Query<BackendQuery>,
) -> ApiResult<StatusCode> {
    state
        .libgo
        .template_delete(&name, On::maybe(q.backend.as_deref()))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- backends ----

/// A backend: what it is, what it supports and whether it answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendView {
    /// Name.
    pub name: String,
    /// Connected (registered with the facade).
    pub connected: bool,
    /// Engine info, when it answers.
    pub info: Option<BackendInfo>,
    /// Capabilities, when connected.
    pub capabilities: Option<Capabilities>,
    /// Health.
    pub health: Health,
}

#[utoipa::path(get, path = "/api/v1/backends", extensions(("x-libgo-access" = json!("viewer"))), tag = "system",
    responses((status = 200, description = "Every configured backend", body = Vec<BackendView>)))]
async fn list_backends(State(state): S) -> ApiResult<Json<Vec<BackendView>>> {
    let backends = state.libgo.backends();
    let infos = state.libgo.info().await;
    let healths = state.libgo.health().await;
    let mut out: Vec<BackendView> = backends
        .iter()
        .zip(infos)
        .zip(healths)
        .map(|((b, info), health)| BackendView {
            name: b.name().to_string(),
            connected: true,
            info: info.ok(),
            capabilities: Some(b.capabilities()),
            health,
        })
        .collect();
    for p in state.pending() {
        out.push(BackendView {
            name: p.name.clone(),
            connected: false,
            info: None,
            capabilities: None,
            health: Health {
                backend: p.name,
                up: false,
                message: p.error,
                latency_ms: 0,
            },
        });
    }
    Ok(Json(out))
}

/// What one connected backend supports.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendCapabilities {
    /// Backend name.
    pub backend: String,
    /// Its capabilities.
    pub capabilities: Capabilities,
}

#[utoipa::path(get, path = "/api/v1/capabilities", extensions(("x-libgo-access" = json!("viewer"))), tag = "system",
    responses((status = 200, description = "What each connected backend supports (Kimchi's /config/capabilities); asks no engine", body = Vec<BackendCapabilities>)))]
async fn list_capabilities(State(state): S) -> ApiResult<Json<Vec<BackendCapabilities>>> {
    Ok(Json(
        state
            .libgo
            .backends()
            .iter()
            .map(|b| BackendCapabilities {
                backend: b.name().to_string(),
                capabilities: b.capabilities(),
            })
            .collect(),
    ))
}

/// The routes of this module.
pub fn router() -> Router {
    Router::new()
        .routes(routes!(list_networks, create_network))
        .routes(routes!(get_network, delete_network))
        .routes(routes!(network_action))
        .routes(routes!(list_volumes, create_volume))
        .routes(routes!(get_volume, delete_volume))
        .routes(routes!(resize_volume))
        .routes(routes!(wipe_volume))
        .routes(routes!(clone_volume))
        .routes(routes!(prune_volumes))
        .routes(routes!(upload_volume))
        .routes(routes!(list_pools, create_pool))
        .routes(routes!(get_pool, delete_pool))
        .routes(routes!(pool_action))
        .routes(routes!(list_templates, create_template))
        .routes(routes!(get_template, delete_template))
        .routes(routes!(list_backends))
        .routes(routes!(list_capabilities))
}
