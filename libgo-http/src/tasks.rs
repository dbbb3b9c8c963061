//! Long-running work (pull, build, push, export, batch) as tasks: persisted, observable,
//! waitable and cancellable.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use libgo_core::{Error, Progress, ProgressSink, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::db::{Db, TaskRow, now_ms, to_time};
use crate::error::ErrorBody;
use crate::events::ServerEvent;

/// Why a task did not start.
#[derive(Debug)]
pub enum TaskRefused {
    /// The user runs as many tasks as one may; try again after a while.
    TooMany {
        /// What to tell the user.
        message: String,
        /// When to try again.
        retry_after_secs: u64,
    },
    /// It could not be recorded.
    Failed(Error),
}

/// A database failure as the tasks service reports it: internal, its detail for the log.
fn stored(e: sqlx::Error) -> Error {
    Error::internal(format!("database: {e}")).with_context("store", "tasks")
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Still working.
    Running,
    /// Done; `result` holds the outcome.
    Finished,
    /// Ended with an error (including a server restart or shutdown); see `error`.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl TaskStatus {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Running => "running",
            TaskStatus::Finished => "finished",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> TaskStatus {
        match s {
            "running" => TaskStatus::Running,
            "finished" => TaskStatus::Finished,
            "cancelled" => TaskStatus::Cancelled,
            _ => TaskStatus::Failed,
        }
    }

    /// Whether the task has ended.
    pub fn is_terminal(self) -> bool {
        self != TaskStatus::Running
    }
}

/// A task as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Id.
    pub id: String,
    /// What it does (`image.pull`, `instance.export`, `instances.batch-create`, …).
    pub kind: String,
    /// The object it works on.
    pub target: Option<String>,
    /// Status.
    pub status: TaskStatus,
    /// 0–100.
    pub progress: f64,
    /// Last progress message.
    pub message: String,
    /// Outcome, once finished (per-item statuses for batches).
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Error, once failed.
    pub error: Option<ErrorBody>,
    /// Who started it (user name).
    pub created_by: Option<String>,
    /// Start.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// End.
    pub finished_at: Option<DateTime<Utc>>,
}

impl Task {
    fn to_row(&self) -> TaskRow {
        TaskRow {
            id: self.id.clone(),
            kind: self.kind.clone(),
            target: self.target.clone(),
            status: self.status.as_str().to_string(),
            progress: self.progress,
            message: self.message.clone(),
            result: self.result.as_ref().map(|v| v.to_string()),
            error: self
                .error
                .as_ref()
                .and_then(|e| serde_json::to_string(e).ok()),
            created_by: self.created_by.clone(),
            created_at: self.created_at.timestamp_millis(),
            updated_at: self.updated_at.timestamp_millis(),
            finished_at: self.finished_at.map(|t| t.timestamp_millis()),
        }
    }

    /// A task from its row.
    pub fn from_row(r: TaskRow) -> Task {
        Task {
            id: r.id,
            kind: r.kind,
            target: r.target,
            status: TaskStatus::parse(&r.status),
            progress: r.progress,
            message: r.message,
            result: r.result.and_then(|s| serde_json::from_str(&s).ok()),
            error: r.error.and_then(|s| serde_json::from_str(&s).ok()),
            created_by: r.created_by,
            created_at: to_time(r.created_at),
            updated_at: to_time(r.updated_at),
            finished_at: r.finished_at.map(to_time),
        }
    }
}

struct Live {
    view: watch::Sender<Task>,
    cancel: CancellationToken,
    interrupted: Arc<AtomicBool>,
    done: Arc<tokio::sync::Notify>,
}

/// Starts, tracks and persists tasks.
#[derive(Clone)]
pub struct TaskManager {
    db: Db,
    live: Arc<Mutex<HashMap<String, Live>>>,
    events: broadcast::Sender<ServerEvent>,
    per_user: usize,
    /// This process among the replicas sharing the database: the owner of its tasks.
    replica: String,
}

/// How often a replica renews the leases of its running tasks (and looks for cancels asked
/// through another replica).
pub const LEASE_RENEW: Duration = Duration::from_secs(2);

/// A running task whose lease is older than this lost its replica: it is failed
/// `INTERRUPTED` by a live one.
pub const LEASE_EXPIRY: Duration = Duration::from_secs(10);

impl Task {
    /// Whether `caller` may see (and cancel) this task: its owner and administrators.
    pub fn visible_to(&self, caller: &crate::auth::Caller) -> bool {
        caller.role == crate::auth::Role::Admin
            || self.created_by.as_deref() == Some(caller.username.as_str())
    }
}

impl std::fmt::Debug for TaskManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskManager")
    }
}

/// What a running task reports through.
#[derive(Clone)]
pub struct TaskCtx {
    view: watch::Sender<Task>,
    manager: TaskManager,
    last_write: Arc<Mutex<Instant>>,
    cancel: CancellationToken,
}

impl TaskCtx {
    /// Reports progress (percent where known).
    pub fn progress(&self, percent: Option<f64>, message: impl Into<String>) {
        let message = message.into();
        self.view.send_modify(|t| {
            if let Some(p) = percent {
                t.progress = p.clamp(0.0, 100.0).max(t.progress);
            }
            t.message = message;
            t.updated_at = Utc::now();
        });
        let task = self.view.borrow().clone();
        let _ = self
            .manager
            .events
            .send(ServerEvent::Task { task: task.clone() });
        let write = {
            let mut last = self.last_write.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= Duration::from_millis(500) {
                *last = Instant::now();
                true
            } else {
                false
            }
        };
        if write {
            let db = self.manager.db.clone();
            tokio::spawn(async move {
                if task.status == TaskStatus::Running
                    && let Err(e) = db.task_upsert(&task.to_row()).await
                {
                    tracing::warn!(error = %e, "cannot store task progress");
                }
            });
        }
    }

    /// A [`ProgressSink`] feeding this task.
    pub fn sink(&self) -> ProgressSink {
        let ctx = self.clone();
        ProgressSink::new(move |p: Progress| {
            let msg = match &p.id {
                Some(id) => format!("{id}: {}", p.message),
                None => p.message.clone(),
            };
            ctx.progress(p.percent, msg)
        })
    }

    /// Whether the task has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

impl TaskManager {
    /// A manager storing in `db` and announcing on `events`.
    /// At most `per_user` tasks of one user run at once (0: no limit).
    pub fn new(db: Db, events: broadcast::Sender<ServerEvent>, per_user: usize) -> Self {
        TaskManager {
            db,
            live: Arc::new(Mutex::new(HashMap::new())),
            events,
            per_user,
            replica: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// This replica's id (the owner of the tasks it runs).
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Renews this replica's task leases every [`LEASE_RENEW`], cancels the tasks another
    /// replica was asked to cancel, and fails those whose replica died, until `stop`.
    pub fn spawn_leases(&self, stop: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let live: Vec<String> = me.lock().keys().cloned().collect();
                match me.db.tasks_heartbeat(&me.replica, &live).await {
                    Ok(cancels) => {
                        for id in cancels {
                            if let Some(l) = me.lock().get(&id) {
                                tracing::info!(task = %id, "cancelled through another replica");
                                l.cancel.cancel();
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew task leases"),
                }
                let before = now_ms() - LEASE_EXPIRY.as_millis() as i64;
                match me
                    .db
                    .tasks_fail_stale(
                        "interrupted: the server replica running it stopped answering",
                        before,
                    )
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(tasks = n, "failed the tasks of a replica that died"),
                    Err(e) => tracing::warn!(error = %e, "cannot check task leases"),
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(LEASE_RENEW) => {}
                }
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks tasks a previous server left running as failed: all of them when this server
    /// owns its database (SQLite); with replicas sharing one, those whose lease expired.
    pub async fn recover(&self) -> Result<u64, sqlx::Error> {
        let message = "interrupted: the server restarted while the task ran";
        let n = if self.db.is_shared() {
            let before = now_ms() - LEASE_EXPIRY.as_millis() as i64;
            self.db.tasks_fail_stale(message, before).await?
        } else {
            self.db.tasks_fail_running(message).await?
        };
        if n > 0 {
            tracing::warn!(tasks = n, "marked tasks cut off by a restart as failed");
        }
        Ok(n)
    }

    /// Starts `work` as a task and returns it as first stored.
    pub async fn spawn<F, Fut>(
        &self,
        kind: &str,
        target: Option<String>,
        created_by: &str,
        work: F,
    ) -> std::result::Result<Task, TaskRefused>
    where
        F: FnOnce(TaskCtx) -> Fut,
        Fut: Future<Output = Result<serde_json::Value>> + Send + 'static,
    {
        if self.per_user > 0 {
            let running = self
                .lock()
                .values()
                .filter(|l| l.view.borrow().created_by.as_deref() == Some(created_by))
                .count();
            if running >= self.per_user {
                return Err(TaskRefused::TooMany {
                    message: format!(
                        "{created_by} has {running} tasks running, the most one user may; \
                         wait for one to end"
                    ),
                    retry_after_secs: 5,
                });
            }
        }
        let now = Utc::now();
        let task = Task {
            id: uuid::Uuid::new_v4().to_string(),
            kind: kind.to_string(),
            target,
            status: TaskStatus::Running,
            progress: 0.0,
            message: "started".into(),
            result: None,
            error: None,
            created_by: Some(created_by.to_string()),
            created_at: now,
            updated_at: now,
            finished_at: None,
        };
        self.db
            .task_start(&task.to_row(), &self.replica)
            .await
            .map_err(|e| TaskRefused::Failed(stored(e)))?;
        let (view, _) = watch::channel(task.clone());
        let cancel = CancellationToken::new();
        let interrupted = Arc::new(AtomicBool::new(false));
        let done = Arc::new(tokio::sync::Notify::new());
        let ctx = TaskCtx {
            view: view.clone(),
            manager: self.clone(),
            last_write: Arc::new(Mutex::new(Instant::now())),
            cancel: cancel.clone(),
        };
        self.lock().insert(
            task.id.clone(),
            Live {
                view: view.clone(),
                cancel: cancel.clone(),
                interrupted: interrupted.clone(),
                done: done.clone(),
            },
        );
        let _ = self.events.send(ServerEvent::Task { task: task.clone() });
        let fut = work(ctx);
        let manager = self.clone();
        let id = task.id.clone();
        tokio::spawn(async move {
            let outcome = tokio::select! {
                r = fut => Some(r),
                _ = cancel.cancelled() => None,
            };
            let now = Utc::now();
            view.send_modify(|t| {
                t.updated_at = now;
                t.finished_at = Some(now);
                match outcome {
                    Some(Ok(v)) => {
                        t.status = TaskStatus::Finished;
                        t.progress = 100.0;
                        t.message = "finished".into();
                        t.result = Some(v);
                    }
                    Some(Err(e)) => {
                        let body = ErrorBody::from(e);
                        t.status = TaskStatus::Failed;
                        t.message.clone_from(&body.message);
                        t.error = Some(body);
                    }
                    None if interrupted.load(Ordering::SeqCst) => {
                        let msg = "interrupted: the server shut down while the task ran";
                        t.status = TaskStatus::Failed;
                        t.message = msg.into();
                        t.error = Some(ErrorBody {
                            status: 500,
                            code: "INTERRUPTED".into(),
                            message: msg.into(),
                            field: None,
                        });
                    }
                    None => {
                        t.status = TaskStatus::Cancelled;
                        t.message = "cancelled".into();
                    }
                }
            });
            let task = view.borrow().clone();
            if let Err(e) = manager.db.task_upsert(&task.to_row()).await {
                tracing::error!(error = %e, task = %id, "cannot store the end of a task");
            }
            tracing::info!(task = %id, kind = %task.kind, status = task.status.as_str(), "task ended");
            let _ = manager.events.send(ServerEvent::Task { task });
            manager.lock().remove(&id);
            done.notify_waiters();
        });
        Ok(task)
    }

    /// A task; with `wait`, waits up to that long for it to end.
    pub async fn get(&self, id: &str, wait: Option<Duration>) -> Result<Task> {
        let rx = self.lock().get(id).map(|l| l.view.subscribe());
        if let Some(mut rx) = rx {
            if let Some(wait) = wait {
                let _ = tokio::time::timeout(wait, rx.wait_for(|t| t.status.is_terminal())).await;
            }
            return Ok(rx.borrow().clone());
        }
        // Another replica's task, or an ended one: its row, watched until it ends.
        let deadline = Instant::now() + wait.unwrap_or_default();
        loop {
            let task = self
                .db
                .task_get(id)
                .await
                .map_err(stored)?
                .map(Task::from_row)
                .ok_or_else(|| Error::not_found(format!("no task {id:?}")))?;
            if task.status.is_terminal() || Instant::now() >= deadline {
                return Ok(task);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Tasks, newest first.
    pub async fn list(&self, status: Option<&str>, kind: Option<&str>) -> Result<Vec<Task>> {
        let mut tasks: Vec<Task> = self
            .db
            .task_list(status, kind)
            .await
            .map_err(stored)?
            .into_iter()
            .map(Task::from_row)
            .collect();
        // Live views are fresher than stored rows.
        let live = self.lock();
        for t in &mut tasks {
            if let Some(l) = live.get(&t.id) {
                *t = l.view.borrow().clone();
            }
        }
        Ok(tasks)
    }

    /// Cancels a running task.
    pub async fn cancel(&self, id: &str) -> Result<Task> {
        let live = self
            .lock()
            .get(id)
            .map(|l| (l.cancel.clone(), l.view.subscribe()));
        match live {
            Some((_, rx)) if rx.borrow().status.is_terminal() => {
                let status = rx.borrow().status;
                Err(Error::conflict(format!(
                    "task {id} has ended already ({})",
                    status.as_str()
                )))
            }
            Some((cancel, mut rx)) => {
                cancel.cancel();
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    rx.wait_for(|t| t.status.is_terminal()),
                )
                .await;
                Ok(rx.borrow().clone())
            }
            None => {
                // Another replica runs it: asked through its row, it cancels at its next
                // lease renewal.
                if self.db.task_request_cancel(id).await.map_err(stored)? {
                    return self
                        .get(id, Some(LEASE_RENEW * 3 + Duration::from_secs(1)))
                        .await;
                }
                let t = self.get(id, None).await?;
                Err(Error::conflict(format!(
                    "task {id} has ended already ({})",
                    t.status.as_str()
                )))
            }
        }
    }

    /// Number of tasks running in this process.
    pub fn running(&self) -> usize {
        self.lock().len()
    }

    /// Interrupts every running task (at shutdown) and waits for them to be stored.
    pub async fn interrupt_all(&self, grace: Duration) {
        let waits: Vec<_> = {
            let live = self.lock();
            live.values()
                .map(|l| {
                    l.interrupted.store(true, Ordering::SeqCst);
                    let done = l.done.clone();
                    let notified = Box::pin(async move { done.notified().await });
                    l.cancel.cancel();
                    notified
                })
                .collect()
        };
        if waits.is_empty() {
            return;
        }
        tracing::warn!(tasks = waits.len(), "interrupting running tasks");
        let _ = tokio::time::timeout(grace, futures::future::join_all(waits)).await;
        // Whatever did not store its end in time is failed in the database directly.
        let _ = self
            .db
            .tasks_fail_owned(
                "interrupted: the server shut down while the task ran",
                &self.replica,
            )
            .await;
    }

    /// Current time in stored form (for tests).
    pub fn now_ms() -> i64 {
        now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A live replica sweeps for dead replicas' tasks at any moment, also while another
    /// task is being stored: a task just started is never failed as interrupted (it was,
    /// between the row's insert and its lease, and its export could not be downloaded).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_starting_task_is_not_taken_for_a_dead_replicas() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = Db::connect(&url).await.expect("db");
        let (events, _) = broadcast::channel(16);
        let tasks = TaskManager::new(db.clone(), events, 0);
        let stop = CancellationToken::new();
        let sweeper = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut swept = 0;
                while !stop.is_cancelled() {
                    let before = now_ms() - LEASE_EXPIRY.as_millis() as i64;
                    swept += db.tasks_fail_stale("dead", before).await.expect("sweep");
                    tokio::task::yield_now().await;
                }
                swept
            }
        });
        for _ in 0..200 {
            let t = tasks
                .spawn("test.quick", None, "admin", |_| async {
                    Ok(serde_json::Value::Null)
                })
                .await
                .expect("spawn");
            let ended = tasks
                .get(&t.id, Some(Duration::from_secs(10)))
                .await
                .expect("task");
            assert_eq!(ended.status, TaskStatus::Finished, "{ended:?}");
        }
        stop.cancel();
        assert_eq!(
            sweeper.await.expect("sweeper"),
            0,
            "tasks failed as a dead replica's"
        );
    }
}
