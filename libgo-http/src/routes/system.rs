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
use crate::schema;
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
    /// Each backend.
    #[schema(value_type = Vec<schema::Health>)]
    pub backends: Vec<libgo_core::Health>,
}

#[utoipa::path(get, path = "/health", tag = "system", security(()),
    responses((status = 200, description = "The server answers; see each backend", body = HealthReport)))]
async fn health(State(state): State<Arc<AppState>>) -> Json<HealthReport> {
    let backends = state.health().await;
    let status = if backends.iter().all(|b| b.up) {
        "ok"
    } else {
        "degraded"
    };
    Json(HealthReport {
        status: status.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_secs: state.started.elapsed().as_secs(),
        backends,
    })
}

#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(&state).await;
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
