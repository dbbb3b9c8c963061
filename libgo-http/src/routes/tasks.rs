//! `/api/v1/tasks`: long-running work.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use libgo_core::{Page, paginate};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::routes;

use super::Router;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::tasks::Task;

/// Task list filters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct TaskListQuery {
    /// `running`, `finished`, `failed` or `cancelled`.
    pub status: Option<String>,
    /// Kind (`image.pull`, …).
    pub kind: Option<String>,
    /// Page number, from 1.
    pub page: Option<u32>,
    /// Items per page, 1–100.
    pub page_size: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/tasks", extensions(("x-libgo-access" = json!("viewer"))), tag = "tasks", params(TaskListQuery),
    responses((status = 200, description = "Tasks, newest first: the caller's own (every user's for administrators)", body = libgo_core::Page<Task>)))]
async fn list_tasks(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<TaskListQuery>,
) -> ApiResult<Json<Page<Task>>> {
    let page = super::pagination(q.page, q.page_size)?;
    let mut all = state
        .tasks
        .list(q.status.as_deref(), q.kind.as_deref())
        .await?;
    all.retain(|t| t.visible_to(&caller));
    Ok(Json(paginate(all, page)))
}

/// The longest `?wait=`.
pub const MAX_WAIT_SECS: u64 = 300;

/// `?wait=SECONDS`.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Wait up to this many seconds (at most 300) for the task to end.
    pub wait: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/tasks/{id}", extensions(("x-libgo-access" = json!("viewer"))), tag = "tasks",
    params(("id" = String, Path, description = "Task id"), WaitQuery),
    responses((status = 200, description = "The task", body = Task)))]
async fn get_task(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Json<Task>> {
    visible_task(&state, &caller, &id).await?;
    let wait = q.wait.map(|s| Duration::from_secs(s.min(MAX_WAIT_SECS)));
    Ok(Json(state.tasks.get(&id, wait).await?))
}

/// The task, if the caller may see it; others' tasks are answered as missing.
async fn visible_task(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Task> {
    let t = state.tasks.get(id, None).await?;
    if !t.visible_to(caller) {
        return Err(ApiError::not_found(format!("no task {id:?}")));
    }
    Ok(t)
}

#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", extensions(("x-libgo-access" = json!("operator"))), tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses((status = 200, description = "The cancelled task", body = Task)))]
async fn cancel_task(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Task>> {
    visible_task(&state, &caller, &id).await?;
    Ok(Json(state.tasks.cancel(&id).await?))
}

/// The task routes.
pub fn router() -> Router {
    Router::new()
        .routes(routes!(list_tasks))
        .routes(routes!(get_task))
        .routes(routes!(cancel_task))
}
