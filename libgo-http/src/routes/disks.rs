//! A VM's disks and CD-ROM media: attach (hot-plug), detach, resize, insert, eject.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use libgo_core::{AttachedDisk, DiskAttach, DiskResize, MediaInsert};
use utoipa_axum::routes;

use super::Router;
use super::instances::created;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{Json, Path};
use crate::routes::instances::require_for_host_access;
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/instances/{id}/disks", extensions(("x-libgo-access" = json!("viewer"))), tag = "disks",
    params(("id" = String, Path, description = "Instance id or name")),
    responses((status = 200, description = "The VM's disks and CD-ROM drives", body = Vec<AttachedDisk>)))]
async fn list_disks(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<AttachedDisk>>> {
    Ok(Json(state.libgo.disk_list(&id).await?))
}

#[utoipa::path(post, path = "/api/v1/instances/{id}/disks", extensions(("x-libgo-access" = json!("operator"))), tag = "disks",
    params(("id" = String, Path, description = "Instance id or name")),
    request_body = DiskAttach,
    responses((status = 201, description = "Attached (hot-plugged into a running VM); the body names its target", body = AttachedDisk)))]
async fn attach_disk(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(spec): Json<DiskAttach>,
) -> ApiResult<Response> {
    require_for_host_access(&state, &caller, &id).await?;
    let disk = state.libgo.disk_attach(&id, &spec).await?;
    Ok(created(
        format!("/api/v1/instances/{id}/disks/{}", disk.target),
        disk,
    ))
}

#[utoipa::path(delete, path = "/api/v1/instances/{id}/disks/{target}", extensions(("x-libgo-access" = json!("operator"))), tag = "disks",
    params(("id" = String, Path, description = "Instance id or name"), ("target" = String, Path, description = "Device name (vdb)")),
    responses((status = 204, description = "Detached; its volume stays")))]
async fn detach_disk(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((id, target)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    require_for_host_access(&state, &caller, &id).await?;
    state.libgo.disk_detach(&id, &target).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/instances/{id}/disks/{target}/resize", extensions(("x-libgo-access" = json!("operator"))), tag = "disks",
    params(("id" = String, Path, description = "Instance id or name"), ("target" = String, Path, description = "Device name (vdb)")),
    request_body = DiskResize,
    responses((status = 200, description = "Resized: grown online, or shrunk while shut off", body = AttachedDisk)))]
async fn resize_disk(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((id, target)): Path<(String, String)>,
    Json(spec): Json<DiskResize>,
) -> ApiResult<Json<AttachedDisk>> {
    require_for_host_access(&state, &caller, &id).await?;
    Ok(Json(state.libgo.disk_resize(&id, &target, &spec).await?))
}

#[utoipa::path(post, path = "/api/v1/instances/{id}/media", extensions(("x-libgo-access" = json!("operator"))), tag = "disks",
    params(("id" = String, Path, description = "Instance id or name")),
    request_body = MediaInsert,
    responses((status = 200, description = "Inserted into the CD-ROM drive (one is added to a shut-off VM without one)", body = AttachedDisk)))]
async fn insert_media(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(spec): Json<MediaInsert>,
) -> ApiResult<Json<AttachedDisk>> {
    require_for_host_access(&state, &caller, &id).await?;
    Ok(Json(state.libgo.media_insert(&id, &spec).await?))
}

#[utoipa::path(delete, path = "/api/v1/instances/{id}/media", extensions(("x-libgo-access" = json!("operator"))), tag = "disks",
    params(("id" = String, Path, description = "Instance id or name")),
    responses((status = 204, description = "Ejected (nothing to do when the drive is empty)")))]
async fn eject_media(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    require_for_host_access(&state, &caller, &id).await?;
    state.libgo.media_eject(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this module.
pub fn router() -> Router {
    Router::new()
        .routes(routes!(list_disks, attach_disk))
        .routes(routes!(detach_disk))
        .routes(routes!(resize_disk))
        .routes(routes!(insert_media, eject_media))
}
