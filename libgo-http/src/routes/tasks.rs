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
use crate::tasks::{Task, TaskStatus};

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

#[utoipa::path(get, path = "/api/v1/tasks/{id}/download", extensions(("x-libgo-access" = json!("viewer"))), tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses((status = 200, description = "The file a finished export or image save wrote in the server's export directory", content_type = "application/octet-stream", body = Vec<u8>)))]
async fn download_task_file(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::response::Response> {
    use axum::http::header;
    use axum::response::IntoResponse;
    use tokio::io::AsyncReadExt;
    let t = visible_task(&state, &caller, &id).await?;
    if t.status != TaskStatus::Finished {
        return Err(ApiError::conflict(format!(
            "task {id:?} has not finished: nothing to download yet"
        )));
    }
    let missing = || ApiError::not_found(format!("task {id:?} wrote no file the server serves"));
    let path = t
        .result
        .as_ref()
        .and_then(|r| r["path"].as_str())
        .ok_or_else(missing)?;
    // Only files in the export directory: an administrator's chosen destination (any host
    // path) is not served back, and `..` or a link cannot lead out of it.
    let dir = tokio::fs::canonicalize(state.config.data_dir.join("exports"))
        .await
        .map_err(|_| missing())?;
    let file_path = tokio::fs::canonicalize(path).await.map_err(|_| missing())?;
    if file_path.parent() != Some(dir.as_path()) {
        return Err(missing());
    }
    let file = tokio::fs::File::open(&file_path)
        .await
        .map_err(|_| missing())?;
    let size = file.metadata().await.map_err(ApiError::internal)?.len();
    let body = futures::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 256 << 10];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let name = file_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

/// The task routes.
pub fn router() -> Router {
    Router::new()
        .routes(routes!(list_tasks))
        .routes(routes!(get_task))
        .routes(routes!(cancel_task))
        .routes(routes!(download_task_file))
}
