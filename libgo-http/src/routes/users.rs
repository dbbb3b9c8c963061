//! Login, users, API keys and the audit log.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use libgo_core::{Page, validate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::instances::created;
use super::{PageQuery, Router};
use crate::auth::{
    Caller, Role, Scope, check_password_rules, hash_api_key, hash_password, new_api_key,
    verify_password,
};
use crate::db::{ApiKey, AuditFilter, AuditRecord, Session, User};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::middleware::outcome;
use crate::ratelimit::client_ip;
use crate::state::AppState;

/// Credentials.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    /// The JWT, for `Authorization: Bearer`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Seconds until expiry.
    pub expires_in: u64,
    /// The session this token belongs to (`DELETE /api/v1/sessions/{id}` or
    /// `POST /logout` ends it).
    pub session_id: String,
    /// Who logged in.
    pub user: User,
}

async fn audit_login(state: &AppState, req: &LoginMeta, user: &crate::db::UserRecord) {
    let record = AuditRecord {
        id: uuid::Uuid::new_v4().to_string(),
        time: Utc::now(),
        username: Some(user.username.clone()),
        role: Some(user.role_name.clone()),
        method: "POST".into(),
        path: req.path.clone(),
        route: Some(req.path.clone()),
        target: Some(user.username.clone()),
        status: 200,
        outcome: outcome(200).into(),
        request_id: req.request_id.clone(),
        client: Some(req.client.clone()),
    };
    if let Err(e) = state.db.audit_insert(&record).await {
        tracing::error!(error = %e, "cannot write the audit log");
    }
}

struct LoginMeta {
    path: String,
    request_id: Option<String>,
    client: String,
    user_agent: Option<String>,
}

/// A refused login: counted (never stored one row each), then answered.
async fn login_refused(state: &AppState, meta: &LoginMeta, e: ApiError) -> ApiError {
    state
        .note_unauthenticated_failure(e.status().as_u16(), &meta.client)
        .await;
    e
}

async fn do_login(
    state: Arc<AppState>,
    req: axum::extract::Request,
) -> ApiResult<Json<LoginResponse>> {
    let ip = client_ip(&req);
    let header = |req: &axum::extract::Request, name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let meta = LoginMeta {
        path: req.uri().path().to_string(),
        request_id: header(&req, "x-request-id"),
        client: ip.to_string(),
        user_agent: header(&req, "user-agent"),
    };
    let limit = state.config.body_limit_bytes.min(16 << 10);
    let bytes = match axum::body::to_bytes(req.into_body(), limit).await {
        Ok(b) => b,
        Err(_) => {
            return Err(login_refused(&state, &meta, crate::error::payload_too_large()).await);
        }
    };
    let creds: LoginRequest = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => {
            let e = ApiError::invalid(format!("body must be {{\"username\", \"password\"}}: {e}"));
            return Err(login_refused(&state, &meta, e).await);
        }
    };
    // Names are checked before they reach the limiter's memory or the audit log.
    if validate::name("username", &creds.username).is_err() || creds.password.len() > 1024 {
        let e = ApiError::unauthorized("wrong user name or password");
        return Err(login_refused(&state, &meta, e).await);
    }
    if let Err(r) = state.login_limiter.reserve(ip, &creds.username) {
        let e = ApiError::rate_limited(
            format!("too many failed logins; retry in {} s", r.retry_after),
            r.retry_after,
        );
        return Err(login_refused(&state, &meta, e).await);
    }
    // Password hashing is slow and memory-hungry by design: a bounded number at once.
    let permit = match tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.password_slots.acquire(),
    )
    .await
    {
        Ok(Ok(p)) => p,
        _ => {
            state.login_limiter.release(ip, &creds.username);
            let e = ApiError::rate_limited("too many logins at once; retry in 1 s", 1);
            return Err(login_refused(&state, &meta, e).await);
        }
    };
    let user = state.db.user_by_name(&creds.username).await?;
    let ok = match &user {
        Some(u) => verify_password(creds.password.clone(), u.password_hash.clone()).await,
        None => {
            // Spend the same time as a real check, so names cannot be probed by timing.
            let _ = hash_password(creds.password.clone()).await;
            false
        }
    };
    drop(permit);
    let Some(user) = user.filter(|_| ok) else {
        state.metrics.login_failures.inc();
        let e = ApiError::unauthorized("wrong user name or password");
        return Err(login_refused(&state, &meta, e).await);
    };
    state.login_limiter.succeeded(ip, &creds.username);
    let sid = uuid::Uuid::new_v4().to_string();
    let (token, exp) = state.tokens.issue(&user, &sid)?;
    state
        .db
        .session_insert(
            &sid,
            &user.id,
            exp * 1000,
            Some(&meta.client),
            meta.user_agent.as_deref(),
        )
        .await?;
    audit_login(&state, &meta, &user).await;
    Ok(Json(LoginResponse {
        token,
        token_type: "Bearer".into(),
        expires_at: crate::db::to_time(exp * 1000),
        expires_in: state.config.token_ttl_secs,
        session_id: sid,
        user: User::from(&user),
    }))
}

#[utoipa::path(post, path = "/login", extensions(("x-libgo-access" = json!("public"))), tag = "auth", security(()), request_body = LoginRequest,
    responses((status = 200, description = "A token", body = LoginResponse)))]
async fn login(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
) -> ApiResult<Json<LoginResponse>> {
    do_login(state, req).await
}

#[utoipa::path(post, path = "/api/v1/login", extensions(("x-libgo-access" = json!("public"))), tag = "auth", security(()), request_body = LoginRequest,
    responses((status = 200, description = "A token (same as /login)", body = LoginResponse)))]
async fn login_v1(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
) -> ApiResult<Json<LoginResponse>> {
    do_login(state, req).await
}

/// A user to create.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name (lowercase letters, digits, '-').
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)]
    pub username: String,
    /// Password (at least 8 characters).
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    /// Role: `admin`, `operator`, `viewer` or a custom role's name.
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)]
    pub role: String,
    /// Where the role applies (default `all`).
    #[serde(default)]
    pub scope: Scope,
}

/// Changes to a user.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// New role: `admin`, `operator`, `viewer` or a custom role's name.
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)]
    pub role: Option<String>,
    /// New scope.
    pub scope: Option<Scope>,
    /// New password.
    pub password: Option<String>,
}

/// 400 unless `role` is a built-in role or a stored custom one.
async fn check_role_exists(state: &AppState, role: &str) -> ApiResult<()> {
    if role.parse::<Role>().is_ok()
        || crate::tenancy::role_permissions(&state.db, role)
            .await?
            .is_some()
    {
        return Ok(());
    }
    Err(ApiError::invalid(format!(
        "unknown role {role:?}: expected admin, operator, viewer or a role from /api/v1/roles"
    ))
    .with_field("role"))
}

/// A password change.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PasswordChange {
    /// The current password (needed when changing one's own).
    pub current_password: Option<String>,
    /// The new password (at least 8 characters).
    #[schema(min_length = 8, max_length = 1024)]
    pub new_password: String,
}

#[utoipa::path(get, path = "/api/v1/users", extensions(("x-libgo-access" = json!("admin"))), tag = "users", params(PageQuery),
    responses((status = 200, description = "Users", body = libgo_core::Page<User>)))]
async fn list_users(
    State(state): State<Arc<AppState>>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<User>>> {
    let page = q.get()?;
    let users: Vec<User> = state.db.user_list().await?.iter().map(User::from).collect();
    Ok(Json(libgo_core::paginate(users, page)))
}

#[utoipa::path(post, path = "/api/v1/users", extensions(("x-libgo-access" = json!("admin"))), tag = "users", request_body = NewUser,
    responses((status = 201, description = "Created", body = User)))]
async fn create_user(
    State(state): State<Arc<AppState>>,
    Json(u): Json<NewUser>,
) -> ApiResult<Response> {
    validate::name("username", &u.username)?;
    check_role_exists(&state, &u.role).await?;
    check_password_rules(&u.password)?;
    let hash = hash_password(u.password).await?;
    let user = state
        .db
        .user_insert(&u.username, &hash, &u.role, u.scope)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(format!("a user named {:?} exists already", u.username))
        })?;
    Ok(created(
        format!("/api/v1/users/{}", user.id),
        User::from(&user),
    ))
}

#[utoipa::path(get, path = "/api/v1/users/me", extensions(("x-libgo-access" = json!("self"))), tag = "users",
    responses((status = 200, description = "The caller", body = User)))]
async fn me(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<User>> {
    let u = state
        .db
        .user_by_id(&caller.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("no such user"))?;
    Ok(Json(User::from(&u)))
}

#[utoipa::path(put, path = "/api/v1/users/me/password", extensions(("x-libgo-access" = json!("self"))), tag = "users", request_body = PasswordChange,
    responses((status = 204, description = "Changed")))]
async fn change_my_password(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(p): Json<PasswordChange>,
) -> ApiResult<StatusCode> {
    let u = state
        .db
        .user_by_id(&caller.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("no such user"))?;
    let current = p.current_password.unwrap_or_default();
    if !verify_password(current, u.password_hash.clone()).await {
        return Err(ApiError::forbidden("the current password is wrong"));
    }
    check_password_rules(&p.new_password)?;
    let hash = hash_password(p.new_password).await?;
    state.db.user_update(&u.id, None, None, Some(&hash)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn find_user(state: &AppState, id: &str) -> ApiResult<crate::db::UserRecord> {
    state
        .db
        .user_find(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {id:?}")))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", extensions(("x-libgo-access" = json!("admin"))), tag = "users",
    params(("id" = String, Path, description = "User id or name")),
    responses((status = 200, description = "The user", body = User)))]
async fn get_user(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(User::from(&find_user(&state, &id).await?)))
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", extensions(("x-libgo-access" = json!("admin"))), tag = "users",
    params(("id" = String, Path, description = "User id or name")), request_body = UserUpdate,
    responses((status = 200, description = "Updated", body = User)))]
async fn update_user(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Json(up): Json<UserUpdate>,
) -> ApiResult<Json<User>> {
    let u = find_user(&state, &id).await?;
    if let Some(r) = &up.role {
        check_role_exists(&state, r).await?;
    }
    if u.role_name == Role::Admin.as_str()
        && up
            .role
            .as_deref()
            .is_some_and(|r| r != Role::Admin.as_str())
        && state.db.admin_count().await? <= 1
    {
        return Err(ApiError::conflict(
            "the last administrator cannot lose the admin role",
        ));
    }
    let hash = match up.password {
        Some(p) => {
            check_password_rules(&p)?;
            Some(hash_password(p).await?)
        }
        None => None,
    };
    state
        .db
        .user_update(&u.id, up.role.as_deref(), up.scope, hash.as_deref())
        .await?;
    Ok(Json(User::from(&find_user(&state, &u.id).await?)))
}

#[utoipa::path(put, path = "/api/v1/users/{id}/password", extensions(("x-libgo-access" = json!("admin"))), tag = "users",
    params(("id" = String, Path, description = "User id or name")), request_body = PasswordChange,
    responses((status = 204, description = "Changed")))]
async fn set_password(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Json(p): Json<PasswordChange>,
) -> ApiResult<StatusCode> {
    let u = find_user(&state, &id).await?;
    check_password_rules(&p.new_password)?;
    let hash = hash_password(p.new_password).await?;
    state.db.user_update(&u.id, None, None, Some(&hash)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/users/{id}", extensions(("x-libgo-access" = json!("admin"))), tag = "users",
    params(("id" = String, Path, description = "User id or name")),
    responses((status = 204, description = "Deleted, with the user's API keys")))]
async fn delete_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let u = find_user(&state, &id).await?;
    if u.id == caller.user_id {
        return Err(ApiError::conflict("you cannot delete yourself"));
    }
    if u.role_name == Role::Admin.as_str() && state.db.admin_count().await? <= 1 {
        return Err(ApiError::conflict(
            "the last administrator cannot be deleted",
        ));
    }
    state.db.user_delete(&u.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A key to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewApiKey {
    /// A label: 1 to 100 characters, not only spaces.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
    /// Lifetime in days (1–3650); no expiry when absent.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
    /// Owner (administrators only); the caller when absent.
    pub user: Option<String>,
}

/// The longest lifetime of an API key, in days (ten years).
pub const MAX_KEY_DAYS: u32 = 3650;

/// A new key: the only time the key itself is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKey {
    /// The key, for `X-API-Key`. Shown once; only its hash is stored.
    pub key: String,
    /// The stored record.
    pub api_key: ApiKey,
}

#[utoipa::path(get, path = "/api/v1/api-keys", extensions(("x-libgo-access" = json!("self"))), tag = "api-keys", params(PageQuery),
    responses((status = 200, description = "The caller's keys (every key for administrators)", body = libgo_core::Page<ApiKey>)))]
async fn list_keys(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<ApiKey>>> {
    let page = q.get()?;
    let owner = (caller.role != Role::Admin).then_some(caller.user_id.as_str());
    Ok(Json(libgo_core::paginate(
        state.db.key_list(owner).await?,
        page,
    )))
}

#[utoipa::path(post, path = "/api/v1/api-keys", extensions(("x-libgo-access" = json!("self"))), tag = "api-keys", request_body = NewApiKey,
    responses((status = 201, description = "Created; the key is in this answer only", body = CreatedApiKey)))]
async fn create_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(k): Json<NewApiKey>,
) -> ApiResult<Response> {
    if k.name.trim().is_empty() || k.name.chars().count() > 100 {
        return Err(ApiError::invalid("name must have 1 to 100 characters"));
    }
    if k.expires_in_days
        .is_some_and(|d| !(1..=MAX_KEY_DAYS).contains(&d))
    {
        return Err(ApiError::invalid(format!(
            "expiresInDays must be between 1 and {MAX_KEY_DAYS}"
        )));
    }
    let owner = match &k.user {
        Some(u) => {
            caller.require(Role::Admin)?;
            find_user(&state, u).await?
        }
        None => find_user(&state, &caller.user_id).await?,
    };
    let expires = k
        .expires_in_days
        .map(|d| crate::db::now_ms() + i64::from(d) * 86_400_000);
    let (key, prefix) = new_api_key();
    let id = state
        .db
        .key_insert(
            &owner.id,
            k.name.trim(),
            &prefix,
            &hash_api_key(&key),
            expires,
        )
        .await?;
    let api_key = state
        .db
        .key_list(Some(&owner.id))
        .await?
        .into_iter()
        .find(|x| x.id == id)
        .ok_or_else(|| ApiError::internal("stored key vanished"))?;
    Ok(created(
        format!("/api/v1/api-keys/{id}"),
        CreatedApiKey { key, api_key },
    ))
}

#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", extensions(("x-libgo-access" = json!("self"))), tag = "api-keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204, description = "Revoked")))]
async fn revoke_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let owner = (caller.role != Role::Admin).then_some(caller.user_id.as_str());
    if !state.db.key_delete(&id, owner).await? {
        return Err(ApiError::not_found(format!("no API key {id:?}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/sessions", extensions(("x-libgo-access" = json!("self"))), tag = "sessions", params(PageQuery),
    responses((status = 200, description = "Live sessions: the caller's own (every user's for administrators), newest first", body = libgo_core::Page<Session>)))]
async fn list_sessions(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Session>>> {
    let page = q.get()?;
    let owner = (caller.role != Role::Admin).then_some(caller.user_id.as_str());
    let mut sessions = state.db.session_list(owner).await?;
    for s in &mut sessions {
        s.current = caller.session_id() == Some(s.id.as_str());
    }
    Ok(Json(libgo_core::paginate(sessions, page)))
}

#[utoipa::path(delete, path = "/api/v1/sessions/{id}", extensions(("x-libgo-access" = json!("self"))), tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 204, description = "Ended: its token is refused from now on, and its open streams close")))]
async fn end_session(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let owner = (caller.role != Role::Admin).then_some(caller.user_id.as_str());
    if !state.db.session_delete(&id, owner).await? {
        return Err(ApiError::not_found(format!("no session {id:?}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn do_logout(state: &AppState, caller: &Caller) -> ApiResult<StatusCode> {
    let Some(sid) = caller.session_id() else {
        return Err(ApiError::invalid(
            "an API key has no session to end: revoke the key instead",
        ));
    };
    state.db.session_delete(sid, Some(&caller.user_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/logout", extensions(("x-libgo-access" = json!("self"))), tag = "auth",
    responses((status = 204, description = "The caller's session ended")))]
async fn logout(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<StatusCode> {
    do_logout(&state, &caller).await
}

#[utoipa::path(post, path = "/api/v1/logout", extensions(("x-libgo-access" = json!("self"))), tag = "auth",
    responses((status = 204, description = "The caller's session ended (same as /logout)")))]
async fn logout_v1(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<StatusCode> {
    do_logout(&state, &caller).await
}

/// Audit query: filters and page.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page number, from 1.
    pub page: Option<u32>,
    /// Items per page, 1–100.
    pub page_size: Option<u32>,
    /// Only this user.
    pub username: Option<String>,
    /// Only this method.
    pub method: Option<String>,
    /// Only paths starting with this.
    pub path: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// `success`, `denied` or `failure`.
    pub outcome: Option<String>,
    /// Only at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
}

#[utoipa::path(get, path = "/api/v1/audit", extensions(("x-libgo-access" = json!("admin"))), tag = "audit", params(AuditQuery),
    responses((status = 200, description = "Audit records, newest first", body = libgo_core::Page<AuditRecord>)))]
async fn audit(
    State(state): State<Arc<AppState>>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Page<AuditRecord>>> {
    let page = super::pagination(q.page, q.page_size)?;
    let f = AuditFilter {
        username: q.username,
        method: q.method,
        path: q.path,
        target: q.target,
        outcome: q.outcome,
        since: q.since,
        until: q.until,
    };
    let offset = i64::from(page.page - 1) * i64::from(page.page_size);
    let (items, count) = state
        .db
        .audit_query(&f, offset, i64::from(page.page_size))
        .await?;
    Ok(Json(Page {
        items,
        count: usize::try_from(count).unwrap_or(0),
        page: page.page,
        page_size: page.page_size,
        unavailable: Vec::new(),
    }))
}

/// The routes of this module.
pub fn router() -> Router {
    Router::new()
        .routes(routes!(login))
        .routes(routes!(login_v1))
        .routes(routes!(list_users, create_user))
        .routes(routes!(me))
        .routes(routes!(change_my_password))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(set_password))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
        .routes(routes!(audit))
        .routes(routes!(list_sessions))
        .routes(routes!(end_session))
        .routes(routes!(logout))
        .routes(routes!(logout_v1))
}
