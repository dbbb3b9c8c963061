//! Login, users, API keys, sessions and the audit log: HTTP over the [`crate::users`] services.

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
use crate::auth::{Caller, Role};
use crate::db::{ApiKey, AuditFilter, AuditRecord, Session, User};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::ratelimit::client_ip;
use crate::state::AppState;
use crate::users::{
    Actor, CreatedApiKey, LoginOrigin, NewApiKey, NewUser, PasswordChange, UserUpdate, Users,
};

/// The caller as the users service sees it.
fn actor(caller: &Caller) -> Actor<'_> {
    Actor {
        user_id: &caller.user_id,
        admin: caller.role == Role::Admin,
        session_id: caller.session_id(),
    }
}

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

/// A refused login: counted (never stored one row each), then answered.
async fn login_refused(state: &AppState, meta: &LoginOrigin, e: ApiError) -> ApiError {
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
    let meta = LoginOrigin {
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
    let user = Users::new(&state.db)
        .authenticate(&creds.username, &creds.password)
        .await?;
    drop(permit);
    let Some(user) = user else {
        state.metrics.login_failures.inc();
        let e = ApiError::unauthorized("wrong user name or password");
        return Err(login_refused(&state, &meta, e).await);
    };
    state.login_limiter.succeeded(ip, &creds.username);
    let sid = uuid::Uuid::new_v4().to_string();
    let (token, exp) = state.tokens.issue(&user, &sid)?;
    Users::new(&state.db)
        .open_session(&user, &sid, exp * 1000, &meta)
        .await?;
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

#[utoipa::path(get, path = "/api/v1/users", extensions(("x-libgo-access" = json!("admin"))), tag = "users", params(PageQuery),
    responses((status = 200, description = "Users", body = libgo_core::Page<User>)))]
async fn list_users(
    State(state): State<Arc<AppState>>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<User>>> {
    let page = q.get()?;
    let users = Users::new(&state.db).list().await?;
    Ok(Json(libgo_core::paginate(users, page)))
}

#[utoipa::path(post, path = "/api/v1/users", extensions(("x-libgo-access" = json!("admin"))), tag = "users", request_body = NewUser,
    responses((status = 201, description = "Created", body = User)))]
async fn create_user(
    State(state): State<Arc<AppState>>,
    Json(u): Json<NewUser>,
) -> ApiResult<Response> {
    let user = Users::new(&state.db).create(u).await?;
    Ok(created(format!("/api/v1/users/{}", user.id), user))
}

#[utoipa::path(get, path = "/api/v1/users/me", extensions(("x-libgo-access" = json!("self"))), tag = "users",
    responses((status = 200, description = "The caller", body = User)))]
async fn me(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<User>> {
    let me = Users::new(&state.db).me(actor(&caller)).await?;
    Ok(Json(User::from(&me)))
}

#[utoipa::path(put, path = "/api/v1/users/me/password", extensions(("x-libgo-access" = json!("self"))), tag = "users", request_body = PasswordChange,
    responses((status = 204, description = "Changed")))]
async fn change_my_password(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(p): Json<PasswordChange>,
) -> ApiResult<StatusCode> {
    Users::new(&state.db)
        .change_own_password(actor(&caller), p)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/users/{id}", extensions(("x-libgo-access" = json!("admin"))), tag = "users",
    params(("id" = String, Path, description = "User id or name")),
    responses((status = 200, description = "The user", body = User)))]
async fn get_user(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(Users::new(&state.db).get(&id).await?))
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", extensions(("x-libgo-access" = json!("admin"))), tag = "users",
    params(("id" = String, Path, description = "User id or name")), request_body = UserUpdate,
    responses((status = 200, description = "Updated", body = User)))]
async fn update_user(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Json(up): Json<UserUpdate>,
) -> ApiResult<Json<User>> {
    Ok(Json(Users::new(&state.db).update(&id, up).await?))
}

#[utoipa::path(put, path = "/api/v1/users/{id}/password", extensions(("x-libgo-access" = json!("admin"))), tag = "users",
    params(("id" = String, Path, description = "User id or name")), request_body = PasswordChange,
    responses((status = 204, description = "Changed")))]
async fn set_password(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Json(p): Json<PasswordChange>,
) -> ApiResult<StatusCode> {
    Users::new(&state.db)
        .set_password(&id, p.new_password)
        .await?;
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
    Users::new(&state.db).delete(actor(&caller), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/api-keys", extensions(("x-libgo-access" = json!("self"))), tag = "api-keys", params(PageQuery),
    responses((status = 200, description = "The caller's keys (every key for administrators)", body = libgo_core::Page<ApiKey>)))]
async fn list_keys(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<ApiKey>>> {
    let page = q.get()?;
    let keys = Users::new(&state.db).keys(actor(&caller)).await?;
    Ok(Json(libgo_core::paginate(keys, page)))
}

#[utoipa::path(post, path = "/api/v1/api-keys", extensions(("x-libgo-access" = json!("self"))), tag = "api-keys", request_body = NewApiKey,
    responses((status = 201, description = "Created; the key is in this answer only", body = CreatedApiKey)))]
async fn create_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(k): Json<NewApiKey>,
) -> ApiResult<Response> {
    let created_key = Users::new(&state.db).create_key(actor(&caller), k).await?;
    Ok(created(
        format!("/api/v1/api-keys/{}", created_key.api_key.id),
        created_key,
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
    Users::new(&state.db)
        .revoke_key(actor(&caller), &id)
        .await?;
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
    let sessions = Users::new(&state.db).sessions(actor(&caller)).await?;
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
    Users::new(&state.db)
        .end_session(actor(&caller), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn do_logout(state: &AppState, caller: &Caller) -> ApiResult<StatusCode> {
    Users::new(&state.db).logout(actor(caller)).await?;
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
    Ok(Json(Users::new(&state.db).audit(&f, page).await?))
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
