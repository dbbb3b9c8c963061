//! Address pools (Nano's): `/api/v1/address-pools` and their ranges. Instances ask for an
//! address with `addresses: [{pool}]` in their spec; the allocation is
//! `crate::addresses::DbAllocator`'s.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use libgo_core::{AddressPool, AddressPoolSpec, AddressRange, Page, paginate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::instances::created;
use super::{PageQuery, Router};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

type S = State<Arc<AppState>>;

/// What a PATCH of an address pool may change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddressPoolPatch {
    /// Name servers for instances created from now on.
    pub dns: Option<Vec<String>>,
}

#[utoipa::path(get, path = "/api/v1/address-pools", extensions(("x-libgo-access" = json!("viewer"))), tag = "address-pools", params(PageQuery),
    responses((status = 200, description = "Address pools with how many addresses they hold and hand out", body = Page<AddressPool>)))]
async fn list_address_pools(
    State(state): S,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<AddressPool>>> {
    let page = q.get()?;
    let mut pools = crate::addresses::pools(&state.db).await?;
    if let Some(visible) = super::resources::visible_instances(&state, &caller).await? {
        for p in &mut pools {
            p.allocations.retain(|a| visible.contains(&a.instance));
        }
    }
    Ok(Json(paginate(pools, page)))
}

#[utoipa::path(post, path = "/api/v1/address-pools", extensions(("x-libgo-access" = json!("admin"))), tag = "address-pools",
    request_body = AddressPoolSpec,
    responses((status = 201, description = "Created", body = AddressPool),
        (status = 409, description = "The name is taken, or two ranges overlap", body = crate::error::ErrorBody)))]
async fn create_address_pool(
    State(state): S,
    Json(spec): Json<AddressPoolSpec>,
) -> ApiResult<Response> {
    let pool = crate::addresses::create(&state.db, &spec).await?;
    Ok(created(
        format!("/api/v1/address-pools/{}", pool.name),
        pool,
    ))
}

#[utoipa::path(get, path = "/api/v1/address-pools/{name}", extensions(("x-libgo-access" = json!("viewer"))), tag = "address-pools",
    params(("name" = String, Path, description = "Pool name")),
    responses((status = 200, description = "The pool and who holds which address", body = AddressPool)))]
async fn get_address_pool(
    State(state): S,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<AddressPool>> {
    let pool = crate::addresses::pool(&state.db, &name).await?;
    Ok(Json(shown(&state, &caller, pool).await?))
}

/// A pool as `caller` may see it: a caller kept to its groups learns how many addresses are
/// taken, and which by its groups' instances only.
async fn shown(state: &AppState, caller: &Caller, mut pool: AddressPool) -> ApiResult<AddressPool> {
    if let Some(visible) = super::resources::visible_instances(state, caller).await? {
        pool.allocations.retain(|a| visible.contains(&a.instance));
    }
    Ok(pool)
}

#[utoipa::path(patch, path = "/api/v1/address-pools/{name}", extensions(("x-libgo-access" = json!("admin"))), tag = "address-pools",
    params(("name" = String, Path, description = "Pool name")),
    request_body = AddressPoolPatch,
    responses((status = 200, description = "The pool", body = AddressPool)))]
async fn patch_address_pool(
    State(state): S,
    caller: Caller,
    Path(name): Path<String>,
    Json(patch): Json<AddressPoolPatch>,
) -> ApiResult<Json<AddressPool>> {
    let pool = match patch.dns {
        Some(dns) => crate::addresses::set_dns(&state.db, &name, dns).await?,
        None => crate::addresses::pool(&state.db, &name).await?,
    };
    Ok(Json(shown(&state, &caller, pool).await?))
}

#[utoipa::path(delete, path = "/api/v1/address-pools/{name}", extensions(("x-libgo-access" = json!("admin"))), tag = "address-pools",
    params(("name" = String, Path, description = "Pool name")),
    responses((status = 204, description = "Deleted, with the engines' networks that carried it"),
        (status = 409, description = "It hands out addresses", body = crate::error::ErrorBody)))]
async fn delete_address_pool(State(state): S, Path(name): Path<String>) -> ApiResult<StatusCode> {
    crate::addresses::delete(&state.db, &name).await?;
    // The engines' networks go with it (containers' first: Docker sits on the VM engine's
    // bridge); one an engine cannot delete now stays, named after the pool.
    let network = libgo_core::addresses::network_name(&name);
    let mut backends = state.libgo.backends();
    backends.sort_by_key(|b| {
        b.capabilities()
            .kinds
            .contains(&libgo_core::InstanceKind::Vm)
    });
    for b in backends {
        match b.network_delete(&network).await {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    libgo_core::ErrorKind::NotFound | libgo_core::ErrorKind::Unsupported
                ) => {}
            Err(e) => {
                tracing::warn!(backend = b.name(), %network, error = %e, "could not delete an address pool's network")
            }
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/address-pools/{name}/ranges", extensions(("x-libgo-access" = json!("viewer"))), tag = "address-pools",
    params(("name" = String, Path, description = "Pool name")),
    responses((status = 200, description = "The pool's ranges, in the order addresses are handed out", body = Vec<AddressRange>)))]
async fn list_address_ranges(
    State(state): S,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<AddressRange>>> {
    Ok(Json(crate::addresses::pool(&state.db, &name).await?.ranges))
}

#[utoipa::path(post, path = "/api/v1/address-pools/{name}/ranges", extensions(("x-libgo-access" = json!("admin"))), tag = "address-pools",
    params(("name" = String, Path, description = "Pool name")),
    request_body = AddressRange,
    responses((status = 201, description = "Added; the pool", body = AddressPool),
        (status = 409, description = "It overlaps another range", body = crate::error::ErrorBody)))]
async fn add_address_range(
    State(state): S,
    caller: Caller,
    Path(name): Path<String>,
    Json(range): Json<AddressRange>,
) -> ApiResult<Response> {
    let pool = crate::addresses::add_range(&state.db, &name, range).await?;
    let pool = shown(&state, &caller, pool).await?;
    Ok(created(format!("/api/v1/address-pools/{name}"), pool))
}

#[utoipa::path(delete, path = "/api/v1/address-pools/{name}/ranges/{start}", extensions(("x-libgo-access" = json!("admin"))), tag = "address-pools",
    params(("name" = String, Path, description = "Pool name"), ("start" = String, Path, description = "The range's first address")),
    responses((status = 200, description = "Removed; the pool", body = AddressPool),
        (status = 409, description = "One of its addresses is allocated", body = crate::error::ErrorBody)))]
async fn remove_address_range(
    State(state): S,
    caller: Caller,
    Path((name, start)): Path<(String, String)>,
) -> ApiResult<Json<AddressPool>> {
    let pool = crate::addresses::remove_range(&state.db, &name, &start).await?;
    Ok(Json(shown(&state, &caller, pool).await?))
}

/// The routes.
pub fn router() -> Router {
    Router::new()
        .routes(routes!(list_address_pools, create_address_pool))
        .routes(routes!(
            get_address_pool,
            patch_address_pool,
            delete_address_pool
        ))
        .routes(routes!(list_address_ranges, add_address_range))
        .routes(routes!(remove_address_range))
}
