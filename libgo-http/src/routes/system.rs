//! `/health` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::Router;
use crate::extract::Json;
use crate::state::AppState;

/// Health of the server and each backend.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    /// `ok` when every backend answers, `degraded` otherwise.
    pub status: String,
    /// Server version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// When the backends were last asked: the answer is cached for up to a second.
    pub checked_at: chrono::DateTime<chrono::Utc>,
    /// Each backend.
    pub backends: Vec<libgo_core::Health>,
}

/// Served from a view refreshed at most once a second (see `AppState::cached_health`), so
/// that however many load balancers poll, the engines are asked about once a second.
#[utoipa::path(get, path = "/health", extensions(("x-libgo-access" = json!("public"))), tag = "system", security(()),
    responses((status = 200, description = "The server answers; see each backend. The \
        backends' health is at most one second old (`checkedAt`).", body = HealthReport)))]
async fn health(State(state): State<Arc<AppState>>) -> Json<HealthReport> {
    let snapshot = state.cached_health().await;
    let backends = snapshot.backends;
    let status = if backends.iter().all(|b| b.up) {
        "ok"
    } else {
        "degraded"
    };
    Json(HealthReport {
        status: status.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_secs: state.started.elapsed().as_secs(),
        checked_at: snapshot.checked_at,
        backends,
    })
}

#[utoipa::path(get, path = "/metrics", extensions(("x-libgo-access" = json!("viewer"))), tag = "system",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
) -> Response {
    // Its series name every instance of every group.
    if caller.is_some_and(|c| c.groups.is_some()) {
        return crate::error::ApiError::forbidden(
            "/metrics names the instances of every group: callers kept to their groups read \
             their instances' stats instead",
        )
        .into_response();
    }
    let health = state.cached_health().await.backends;
    let text = state.metrics.render(&health, &state.libgo, &state.db).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The system routes.
pub fn router() -> Router {
    Router::new()
        .routes(routes!(health))
        .routes(routes!(metrics))
}
