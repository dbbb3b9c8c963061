//! Cross-cutting layers: the JSON error shape for every error response, metrics and the
//! audit log.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use crate::auth::Caller;
use crate::db::AuditRecord;
use crate::error::{ApiError, code_for_status};
use crate::ratelimit::client_ip;
use crate::state::AppState;

/// Replaces any error response that is not JSON (axum's 405, a limit layer's 413, a panic's
/// 500…) with the `{status, code, message}` shape.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if status.as_u16() < 400 {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, _) = resp.into_parts();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this resource".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than the server accepts".to_string()
        }
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let mut new = ApiError::new(status, code_for_status(status), message).into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            new.headers_mut().insert(k.clone(), v.clone());
        }
    }
    new
}

/// Routes whose handlers bound their own time: uploads and build contexts (as long as the
/// body takes to arrive) and task waits (`?wait=`, capped below the deadline).
const OWN_DEADLINE: [&str; 3] = [
    "/api/v1/images/build",
    "/api/v1/volumes/{name}/upload",
    "/api/v1/tasks/{id}",
];

/// Answers 504 `TIMEOUT` when a request is not answered within the server's deadline (a
/// handler waiting on an engine that does not answer), and 503 when the server already
/// handles as many requests as it may.
pub async fn deadline(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Ok(_slot) = state.request_slots.try_acquire() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "BACKEND_UNAVAILABLE",
            "the server is handling as many requests as it may; retry shortly",
        )
        .with_header(header::RETRY_AFTER, "1")
        .into_response();
    };
    let own = req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|m| OWN_DEADLINE.contains(&m.as_str()));
    if own {
        return next.run(req).await;
    }
    let limit = std::time::Duration::from_secs(state.config.request_timeout_secs);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "TIMEOUT",
            format!(
                "no answer within {} s (an engine may be stuck); the work may still finish",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

/// A request no route took: a page or asset of the web console (see [`crate::web`]), or
/// the JSON 404.
pub async fn not_found(req: Request<Body>) -> Response {
    if let Some(page) = crate::web::serve(req.method(), req.uri().path(), req.headers()) {
        return page;
    }
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
    .into_response()
}

/// What a request acted on, set by a handler that knows better than the path (a create:
/// the new object's name and id).
#[derive(Debug, Clone)]
pub struct AuditTarget(pub String);

/// The id a `201 Created` answer names in its `Location`.
fn created_target(resp: &Response) -> Option<String> {
    if resp.status() != StatusCode::CREATED {
        return None;
    }
    let location = resp.headers().get(header::LOCATION)?.to_str().ok()?;
    location.rsplit('/').next().map(str::to_string)
}

/// The value of the first `{param}` of `route` in `path`.
fn target_of(route: &str, path: &str) -> Option<String> {
    route
        .split('/')
        .zip(path.split('/'))
        .find(|(r, _)| r.starts_with('{'))
        .map(|(_, p)| p.to_string())
}

/// Records metrics for every request, and an audit record for every authenticated mutating
/// one (logins audit themselves; unauthenticated failures are only counted).
pub async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let client = client_ip(&req).to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let route_label = route.as_deref().unwrap_or("unmatched");
    state.metrics.observe(
        method.as_str(),
        route_label,
        status,
        start.elapsed().as_secs_f64(),
    );
    let sensitive_read = route
        .as_deref()
        .is_some_and(|r| r.ends_with("/console") || r.ends_with("/vnc"));
    let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let is_login = matches!(route.as_deref(), Some("/login" | "/api/v1/login"));
    let caller = resp.extensions().get::<Caller>();
    if caller.is_none() && matches!(status, 401 | 429) && !is_login {
        // Unauthenticated failures are counted, never stored one row each: a flood of
        // them must not grow the database.
        state.note_unauthenticated_failure(status, &client).await;
        return resp;
    }
    if (mutating || sensitive_read) && !is_login {
        let record = AuditRecord {
            id: uuid::Uuid::new_v4().to_string(),
            time: Utc::now(),
            username: caller.map(|c| c.username.clone()),
            role: caller.map(|c| c.role_name.clone()),
            method: method.to_string(),
            target: resp
                .extensions()
                .get::<AuditTarget>()
                .map(|t| t.0.clone())
                .or_else(|| created_target(&resp))
                .or_else(|| route.as_deref().and_then(|r| target_of(r, &path))),
            path,
            route,
            status,
            outcome: outcome(status).into(),
            request_id,
            client: Some(client),
        };
        if let Err(e) = state.db.audit_insert(&record).await {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
    resp
}

/// `success`, `denied` or `failure`.
pub fn outcome(status: u16) -> &'static str {
    match status {
        s if s < 400 => "success",
        401 | 403 | 429 => "denied",
        _ => "failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_come_from_the_first_path_parameter() {
        assert_eq!(
            target_of(
                "/api/v1/instances/{id}/start",
                "/api/v1/instances/web/start"
            ),
            Some("web".into())
        );
        assert_eq!(target_of("/api/v1/instances", "/api/v1/instances"), None);
    }
}
