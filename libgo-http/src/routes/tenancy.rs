//! Custom roles, the permissions they are made of, and groups of users.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use libgo_core::{Page, validate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::instances::created;
use super::{PageQuery, Router};
use crate::auth::{Role, access_table};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::tenancy::{self as store, Group, RoleInfo};

/// A permission a route declares, and the built-in role that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    /// `<tag>.read`, `<tag>.write` or `<tag>.admin`.
    pub name: String,
    /// The least built-in role that holds it.
    pub role: Role,
    /// The routes that declare it (`METHOD /path`).
    pub routes: Vec<String>,
}

/// A custom role to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    /// Name (lowercase letters, digits, '-'), not a built-in role's.
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)]
    pub name: String,
    /// Permissions from `GET /api/v1/permissions`.
    #[schema(max_items = 500)]
    pub permissions: Vec<String>,
}

/// Changes to a custom role.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleUpdate {
    /// The new set of permissions (replaces the old one; applies at the holders' next
    /// request).
    #[schema(max_items = 500)]
    pub permissions: Vec<String>,
}

/// A group to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// Name (lowercase letters, digits, '-'): the value of its instances'
    /// `io.libgo.group` label.
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)]
    pub name: String,
    /// Free text (at most 1,000 characters).
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: String,
}

/// Changes to a group.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupUpdate {
    /// New description.
    #[schema(max_length = 1000)]
    pub description: String,
}

fn permissions_of(role: Role) -> Vec<String> {
    access_table()
        .permission_levels()
        .into_iter()
        .filter(|(_, level)| *level <= role)
        .map(|(p, _)| p)
        .collect()
}

fn builtin(role: Role) -> RoleInfo {
    RoleInfo {
        name: role.as_str().to_string(),
        builtin: true,
        permissions: permissions_of(role),
        created_at: None,
    }
}

/// The permissions asked for, each one a route declares; else 400 naming the others.
fn checked_permissions(asked: Vec<String>) -> ApiResult<BTreeSet<String>> {
    let known = access_table().permission_levels();
    let unknown: Vec<&str> = asked
        .iter()
        .filter(|p| !known.contains_key(*p))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::invalid(format!(
            "unknown permissions {}: see GET /api/v1/permissions",
            unknown.join(", ")
        ))
        .with_field("permissions"));
    }
    Ok(asked.into_iter().collect())
}

fn refuse_builtin(name: &str) -> ApiResult<()> {
    if name.parse::<Role>().is_ok() {
        return Err(ApiError::conflict(format!(
            "{name} is a built-in role and cannot be changed"
        )));
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/permissions", extensions(("x-libgo-access" = json!("admin"))), tag = "roles",
    responses((status = 200, description = "Every permission the routes declare", body = Vec<Permission>)))]
async fn list_permissions() -> Json<Vec<Permission>> {
    Json(
        access_table()
            .permission_routes()
            .into_iter()
            .map(|(name, (role, routes))| Permission { name, role, routes })
            .collect(),
    )
}

#[utoipa::path(get, path = "/api/v1/roles", extensions(("x-libgo-access" = json!("admin"))), tag = "roles", params(PageQuery),
    responses((status = 200, description = "The built-in roles, then the custom ones", body = libgo_core::Page<RoleInfo>)))]
async fn list_roles(
    State(state): State<Arc<AppState>>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<RoleInfo>>> {
    let page = q.get()?;
    let mut roles: Vec<RoleInfo> = [Role::Admin, Role::Operator, Role::Viewer]
        .into_iter()
        .map(builtin)
        .collect();
    roles.extend(store::custom_roles(&state.db).await?);
    Ok(Json(libgo_core::paginate(roles, page)))
}

#[utoipa::path(post, path = "/api/v1/roles", extensions(("x-libgo-access" = json!("admin"))), tag = "roles", request_body = NewRole,
    responses((status = 201, description = "Created", body = RoleInfo)))]
async fn create_role(
    State(state): State<Arc<AppState>>,
    Json(r): Json<NewRole>,
) -> ApiResult<Response> {
    validate::name("name", &r.name)?;
    refuse_builtin(&r.name)?;
    let permissions = checked_permissions(r.permissions)?;
    if !store::role_insert(&state.db, &r.name, &permissions).await? {
        return Err(ApiError::conflict(format!(
            "a role named {:?} exists already",
            r.name
        )));
    }
    let role = store::custom_role(&state.db, &r.name)
        .await?
        .ok_or_else(|| ApiError::internal("the role vanished after it was stored"))?;
    Ok(created(format!("/api/v1/roles/{}", r.name), role))
}

async fn find_role(state: &AppState, name: &str) -> ApiResult<RoleInfo> {
    if let Ok(role) = name.parse::<Role>() {
        return Ok(builtin(role));
    }
    store::custom_role(&state.db, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no role {name:?}")))
}

#[utoipa::path(get, path = "/api/v1/roles/{name}", extensions(("x-libgo-access" = json!("admin"))), tag = "roles",
    params(("name" = String, Path, description = "Role name")),
    responses((status = 200, description = "The role", body = RoleInfo)))]
async fn get_role(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<RoleInfo>> {
    Ok(Json(find_role(&state, &name).await?))
}

#[utoipa::path(patch, path = "/api/v1/roles/{name}", extensions(("x-libgo-access" = json!("admin"))), tag = "roles",
    params(("name" = String, Path, description = "Role name")), request_body = RoleUpdate,
    responses((status = 200, description = "Updated", body = RoleInfo)))]
async fn update_role(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Json(up): Json<RoleUpdate>,
) -> ApiResult<Json<RoleInfo>> {
    find_role(&state, &name).await?;
    refuse_builtin(&name)?;
    let permissions = checked_permissions(up.permissions)?;
    if !store::role_update(&state.db, &name, &permissions).await? {
        return Err(ApiError::not_found(format!("no role {name:?}")));
    }
    Ok(Json(find_role(&state, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/roles/{name}", extensions(("x-libgo-access" = json!("admin"))), tag = "roles",
    params(("name" = String, Path, description = "Role name")),
    responses((status = 204, description = "Deleted")))]
async fn delete_role(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    find_role(&state, &name).await?;
    refuse_builtin(&name)?;
    if !store::role_delete_unheld(&state.db, &name).await? {
        let held = store::role_holders(&state.db, &name).await?;
        return Err(ApiError::conflict(format!(
            "role {name} is held by {held} user(s): give them another role first"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/groups", extensions(("x-libgo-access" = json!("admin"))), tag = "groups", params(PageQuery),
    responses((status = 200, description = "Groups", body = libgo_core::Page<Group>)))]
async fn list_groups(
    State(state): State<Arc<AppState>>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Group>>> {
    let page = q.get()?;
    Ok(Json(libgo_core::paginate(
        store::groups(&state.db).await?,
        page,
    )))
}

fn check_description(d: &str) -> ApiResult<()> {
    if d.chars().count() > 1000 || d.contains('\0') {
        return Err(
            ApiError::invalid("a description has at most 1,000 characters and no NUL")
                .with_field("description"),
        );
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/groups", extensions(("x-libgo-access" = json!("admin"))), tag = "groups", request_body = NewGroup,
    responses((status = 201, description = "Created", body = Group)))]
async fn create_group(
    State(state): State<Arc<AppState>>,
    Json(g): Json<NewGroup>,
) -> ApiResult<Response> {
    validate::name("name", &g.name)?;
    check_description(&g.description)?;
    if !store::group_insert(&state.db, &g.name, &g.description).await? {
        return Err(ApiError::conflict(format!(
            "a group named {:?} exists already",
            g.name
        )));
    }
    let group = find_group(&state, &g.name).await?;
    Ok(created(format!("/api/v1/groups/{}", g.name), group))
}

async fn find_group(state: &AppState, name: &str) -> ApiResult<Group> {
    store::group(&state.db, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no group {name:?}")))
}

#[utoipa::path(get, path = "/api/v1/groups/{name}", extensions(("x-libgo-access" = json!("admin"))), tag = "groups",
    params(("name" = String, Path, description = "Group name")),
    responses((status = 200, description = "The group and its members", body = Group)))]
async fn get_group(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Group>> {
    Ok(Json(find_group(&state, &name).await?))
}

#[utoipa::path(patch, path = "/api/v1/groups/{name}", extensions(("x-libgo-access" = json!("admin"))), tag = "groups",
    params(("name" = String, Path, description = "Group name")), request_body = GroupUpdate,
    responses((status = 200, description = "Updated", body = Group)))]
async fn update_group(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Json(up): Json<GroupUpdate>,
) -> ApiResult<Json<Group>> {
    check_description(&up.description)?;
    if !store::group_update(&state.db, &name, &up.description).await? {
        return Err(ApiError::not_found(format!("no group {name:?}")));
    }
    Ok(Json(find_group(&state, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/groups/{name}", extensions(("x-libgo-access" = json!("admin"))), tag = "groups",
    params(("name" = String, Path, description = "Group name")),
    responses((status = 204, description = "Deleted with its memberships"),
        (status = 409, description = "It still has instances", body = crate::error::ErrorBody),
        (status = 503, description = "A backend that may hold its instances is down", body = crate::error::ErrorBody)))]
async fn delete_group(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    find_group(&state, &name).await?;
    // Instances carry the group's name: a group made again under that name would get them
    // back, so a group goes only once it has none (as an Incus project).
    let filter = libgo_core::InstanceFilter {
        labels: [(libgo_core::LABEL_GROUP.to_string(), name.clone())].into(),
        ..Default::default()
    };
    let (held, unavailable) = state.libgo.list_all_reporting(&filter).await?;
    if let Some(u) = unavailable.first() {
        return Err(ApiError::from(libgo_core::Error::unavailable(format!(
            "cannot tell whether group {name:?} has instances on backend {:?}, which is down: {}",
            u.backend, u.message
        ))));
    }
    if !held.is_empty() {
        let names: Vec<&str> = held.iter().take(5).map(|i| i.name.as_str()).collect();
        return Err(ApiError::conflict(format!(
            "group {name:?} has {} instances ({}{}): delete them first",
            held.len(),
            names.join(", "),
            if held.len() > names.len() {
                ", …"
            } else {
                ""
            }
        )));
    }
    if !store::group_delete(&state.db, &name).await? {
        return Err(ApiError::not_found(format!("no group {name:?}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn member_ids(state: &AppState, group: &str, user: &str) -> ApiResult<String> {
    find_group(state, group).await?;
    let u = state
        .db
        .user_find(user)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {user:?}")))?;
    Ok(u.id)
}

#[utoipa::path(put, path = "/api/v1/groups/{name}/members/{user}", extensions(("x-libgo-access" = json!("admin"))), tag = "groups",
    params(("name" = String, Path, description = "Group name"), ("user" = String, Path, description = "User id or name")),
    responses((status = 200, description = "The group with the new member", body = Group)))]
async fn add_member(
    State(state): State<Arc<AppState>>,
    Path((name, user)): Path<(String, String)>,
) -> ApiResult<Json<Group>> {
    let id = member_ids(&state, &name, &user).await?;
    store::member_add(&state.db, &name, &id).await?;
    Ok(Json(find_group(&state, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/groups/{name}/members/{user}", extensions(("x-libgo-access" = json!("admin"))), tag = "groups",
    params(("name" = String, Path, description = "Group name"), ("user" = String, Path, description = "User id or name")),
    responses((status = 204, description = "No longer a member")))]
async fn remove_member(
    State(state): State<Arc<AppState>>,
    Path((name, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let id = member_ids(&state, &name, &user).await?;
    if !store::member_remove(&state.db, &name, &id).await? {
        return Err(ApiError::not_found(format!(
            "{user} is not a member of group {name}"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The role and group routes.
pub fn router() -> Router {
    Router::new()
        .routes(routes!(list_permissions))
        .routes(routes!(list_roles, create_role))
        .routes(routes!(get_role, update_role, delete_role))
        .routes(routes!(list_groups, create_group))
        .routes(routes!(get_group, update_group, delete_group))
        .routes(routes!(add_member, remove_member))
}
