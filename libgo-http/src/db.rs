//! The server's own state — users, API keys, tasks and the audit log — behind sqlx's `Any`
//! driver.
//!
//! Why sqlx `Any`: one pool type and one set of queries serve SQLite (the default: a file
//! in the data dir, nothing to install) and PostgreSQL (shared by several replicas), chosen
//! by the URL at run time. The queries use only portable SQL (`$n` placeholders, which
//! SQLite accepts too; `BIGINT`, `TEXT` and `DOUBLE PRECISION` columns; `ON CONFLICT DO
//! NOTHING`), and the schema is versioned by sqlx's embedded migrations.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use utoipa::ToSchema;

use crate::accounts::{Role, Scope};

/// The embedded schema migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Milliseconds since the epoch, as stored.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A stored time as a `DateTime`.
pub fn to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A fourth parameter of a task query.
enum Extra<'a> {
    None,
    Text(&'a str),
    Int(i64),
}

/// The tables that hold named configurations as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigTable {
    /// Hosts (`libgo::HostConfig`).
    Hosts,
    /// Compute pools (`libgo_core::ComputePoolSpec`).
    ComputePools,
    /// Address pools (`libgo_core::AddressPoolSpec`).
    AddressPools,
}

impl ConfigTable {
    fn name(self) -> &'static str {
        match self {
            ConfigTable::Hosts => "hosts",
            ConfigTable::ComputePools => "compute_pools",
            ConfigTable::AddressPools => "address_pools",
        }
    }
}

/// Handle on the database.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    shared: bool,
}

/// A user as stored (with the password hash, never serialised).
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// Id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    /// The built-in role's level; custom roles count as viewers where a handler asks for a
    /// level (they are sets of route permissions).
    pub role: Role,
    /// The role's name: a built-in one or a custom one.
    pub role_name: String,
    /// Where the role applies.
    pub scope: Scope,
    /// Creation time (ms).
    pub created_at: i64,
    /// Last change (ms).
    pub updated_at: i64,
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Role: `admin`, `operator`, `viewer` or a custom role's name.
    pub role: String,
    /// Where the role applies: everything, or the instances of the user's groups.
    pub scope: Scope,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<&UserRecord> for User {
    fn from(u: &UserRecord) -> Self {
        User {
            id: u.id.clone(),
            username: u.username.clone(),
            role: u.role_name.clone(),
            scope: u.scope,
            created_at: to_time(u.created_at),
            updated_at: to_time(u.updated_at),
        }
    }
}

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// Id.
    pub id: String,
    /// Owner's id.
    pub user_id: String,
    /// Owner's name.
    pub username: String,
    /// Label given at creation.
    pub name: String,
    /// First characters of the key, to recognise it.
    pub prefix: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last use.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Id.
    pub id: String,
    /// When.
    pub time: DateTime<Utc>,
    /// Who (absent when unauthenticated).
    pub username: Option<String>,
    /// Their role.
    pub role: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Request path (no query string).
    pub path: String,
    /// Route template.
    pub route: Option<String>,
    /// The object acted on (the path's id), where there is one.
    pub target: Option<String>,
    /// Response status.
    pub status: u16,
    /// `success`, `denied` or `failure`.
    pub outcome: String,
    /// Request id.
    pub request_id: Option<String>,
    /// Client address.
    pub client: Option<String>,
}

/// The most characters a free-text audit field keeps.
pub const AUDIT_FIELD_MAX: usize = 256;

fn cut(s: &str) -> String {
    s.chars().take(AUDIT_FIELD_MAX).collect()
}

impl AuditRecord {
    /// The record with every free-text field cut to [`AUDIT_FIELD_MAX`] characters.
    pub fn bounded(&self) -> AuditRecord {
        let opt = |o: &Option<String>| o.as_deref().map(cut);
        AuditRecord {
            id: self.id.clone(),
            time: self.time,
            username: opt(&self.username),
            role: opt(&self.role),
            method: cut(&self.method),
            path: cut(&self.path),
            route: opt(&self.route),
            target: opt(&self.target),
            status: self.status,
            outcome: cut(&self.outcome),
            request_id: opt(&self.request_id),
            client: opt(&self.client),
        }
    }
}

/// A login session as listed (the token itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// Id (the token's `sid`).
    pub id: String,
    /// Owner's id.
    pub user_id: String,
    /// Owner's name.
    pub username: String,
    /// Login time.
    pub created_at: DateTime<Utc>,
    /// When its token expires.
    pub expires_at: DateTime<Utc>,
    /// Client address at login.
    pub client: Option<String>,
    /// `User-Agent` at login (cut to 256 characters).
    pub user_agent: Option<String>,
    /// Whether this is the session of the request that lists it.
    pub current: bool,
}

/// Filters of the audit query.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Only this user.
    pub username: Option<String>,
    /// Only this method.
    pub method: Option<String>,
    /// Only paths starting with this.
    pub path: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Only this outcome.
    pub outcome: Option<String>,
    /// Only at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds a task row's columns as `$1`…`$12`, in the order `task_upsert` and `task_start`
/// name them.
fn bind_task<'q>(q: AnyQuery<'q>, t: &'q TaskRow) -> AnyQuery<'q> {
    q.bind(&t.id)
        .bind(&t.kind)
        .bind(&t.target)
        .bind(&t.status)
        .bind(t.progress)
        .bind(&t.message)
        .bind(&t.result)
        .bind(&t.error)
        .bind(&t.created_by)
        .bind(t.created_at)
        .bind(t.updated_at)
        .bind(t.finished_at)
}

/// A task row.
#[derive(Debug, Clone)]
pub struct TaskRow {
    /// Id.
    pub id: String,
    /// Kind (`image.pull`, …).
    pub kind: String,
    /// Object.
    pub target: Option<String>,
    /// Status name.
    pub status: String,
    /// 0–100.
    pub progress: f64,
    /// Last message.
    pub message: String,
    /// JSON result.
    pub result: Option<String>,
    /// JSON error.
    pub error: Option<String>,
    /// Creator.
    pub created_by: Option<String>,
    /// Times (ms).
    pub created_at: i64,
    /// Last change (ms).
    pub updated_at: i64,
    /// End (ms).
    pub finished_at: Option<i64>,
}

fn user_from_row(r: &AnyRow) -> Result<UserRecord, sqlx::Error> {
    let role_name: String = r.try_get("role")?;
    let scope: String = r.try_get("scope")?;
    Ok(UserRecord {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        password_hash: r.try_get("password_hash")?,
        role: Role::from_str(&role_name).unwrap_or(Role::Viewer),
        role_name,
        scope: Scope::from_str(&scope).map_err(|e| sqlx::Error::Decode(e.into()))?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn task_from_row(r: &AnyRow) -> Result<TaskRow, sqlx::Error> {
    Ok(TaskRow {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        target: r.try_get("target")?,
        status: r.try_get("status")?,
        progress: r.try_get("progress")?,
        message: r.try_get("message")?,
        result: r.try_get("result")?,
        error: r.try_get("error")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

const USER_COLS: &str = "id, username, password_hash, role, scope, created_at, updated_at";
const TASK_COLS: &str = "id, kind, target, status, progress, message, result, error, \
                         created_by, created_at, updated_at, finished_at";

impl Db {
    /// Connects to `url` and runs the migrations.
    pub async fn connect(url: &str) -> Result<Db, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 16 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Db {
            pool,
            shared: !sqlite,
        })
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    // ---- settings ----

    /// A stored setting, inserting `default` first when absent. Concurrent replicas agree
    /// on the first value stored.
    pub async fn setting_or_insert(
        &self,
        name: &str,
        default: &str,
    ) -> Result<String, sqlx::Error> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(default)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        row.try_get("value")
    }

    // ---- hosts and compute pools ----

    /// Stores a new row (a name and its configuration as JSON) in `table`, which is
    /// `hosts` or `compute_pools`; a taken name is `Ok(false)`.
    pub async fn config_insert(
        &self,
        table: ConfigTable,
        name: &str,
        config: &str,
    ) -> Result<bool, sqlx::Error> {
        let now = now_ms();
        let r = sqlx::query(&format!(
            "INSERT INTO {} (name, config, created_at, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
            table.name()
        ))
        .bind(name)
        .bind(config)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Replaces a row's configuration; an unknown name is `Ok(false)`.
    pub async fn config_update(
        &self,
        table: ConfigTable,
        name: &str,
        config: &str,
    ) -> Result<bool, sqlx::Error> {
        let r = sqlx::query(&format!(
            "UPDATE {} SET config = $2, updated_at = $3 WHERE name = $1",
            table.name()
        ))
        .bind(name)
        .bind(config)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Deletes a row; an unknown name is `Ok(false)`.
    pub async fn config_delete(&self, table: ConfigTable, name: &str) -> Result<bool, sqlx::Error> {
        let r = sqlx::query(&format!("DELETE FROM {} WHERE name = $1", table.name()))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Every row: (name, configuration JSON), by name.
    pub async fn config_list(
        &self,
        table: ConfigTable,
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        sqlx::query(&format!(
            "SELECT name, config FROM {} ORDER BY name",
            table.name()
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("name")?, r.try_get("config")?)))
        .collect()
    }

    // ---- users ----

    /// Number of users.
    pub async fn user_count(&self) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?;
        row.try_get("n")
    }

    /// Inserts a user; a taken name is `Ok(None)`.
    pub async fn user_insert(
        &self,
        username: &str,
        password_hash: &str,
        role: &str,
        scope: Scope,
    ) -> Result<Option<UserRecord>, sqlx::Error> {
        let now = now_ms();
        let id = uuid::Uuid::new_v4().to_string();
        let done = sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, scope, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(username)
        .bind(password_hash)
        .bind(role)
        .bind(scope.as_str())
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.user_by_id(&id).await
    }

    /// A user by id.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, sqlx::Error> {
        sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    /// A user by name.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>, sqlx::Error> {
        sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users WHERE username = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    /// A user by id or name.
    pub async fn user_find(&self, key: &str) -> Result<Option<UserRecord>, sqlx::Error> {
        match self.user_by_id(key).await? {
            Some(u) => Ok(Some(u)),
            None => self.user_by_name(key).await,
        }
    }

    /// Every user, by name.
    pub async fn user_list(&self) -> Result<Vec<UserRecord>, sqlx::Error> {
        sqlx::query(&format!("SELECT {USER_COLS} FROM users ORDER BY username"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    /// Changes a user's role, scope and/or password hash, and ends the user's sessions.
    pub async fn user_update(
        &self,
        id: &str,
        role: Option<&str>,
        scope: Option<Scope>,
        password_hash: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let now = now_ms();
        if let Some(r) = role {
            sqlx::query("UPDATE users SET role = $1, updated_at = $2 WHERE id = $3")
                .bind(r)
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        if let Some(sc) = scope {
            sqlx::query("UPDATE users SET scope = $1, updated_at = $2 WHERE id = $3")
                .bind(sc.as_str())
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        if let Some(h) = password_hash {
            sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
                .bind(h)
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        if role.is_some() || scope.is_some() || password_hash.is_some() {
            // A new password, role or scope ends every session issued under the old one.
            self.sessions_end_for_user(id).await?;
        }
        Ok(())
    }

    /// Deletes a user, their keys and their sessions.
    pub async fn user_delete(&self, id: &str) -> Result<bool, sqlx::Error> {
        sqlx::query("DELETE FROM api_keys WHERE user_id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.sessions_end_for_user(id).await?;
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Number of administrators.
    pub async fn admin_count(&self) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = $1")
            .bind(Role::Admin.as_str())
            .fetch_one(&self.pool)
            .await?;
        row.try_get("n")
    }

    // ---- API keys ----

    /// Stores a key's hash.
    pub async fn key_insert(
        &self,
        user_id: &str,
        name: &str,
        prefix: &str,
        key_hash: &str,
        expires_at: Option<i64>,
    ) -> Result<String, sqlx::Error> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(name)
        .bind(prefix)
        .bind(key_hash)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// The owner of a key hash, if the key is valid now; records its use.
    pub async fn key_owner(&self, key_hash: &str) -> Result<Option<UserRecord>, sqlx::Error> {
        let now = now_ms();
        let row = sqlx::query(
            "SELECT id, user_id, expires_at, last_used_at FROM api_keys WHERE key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let expires: Option<i64> = row.try_get("expires_at")?;
        if expires.is_some_and(|e| e <= now) {
            return Ok(None);
        }
        let id: String = row.try_get("id")?;
        let last: Option<i64> = row.try_get("last_used_at")?;
        // Record use at most once a minute to keep writes off the hot path.
        if last.is_none_or(|l| now - l > 60_000) {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&id)
                .execute(&self.pool)
                .await?;
        }
        let user_id: String = row.try_get("user_id")?;
        self.user_by_id(&user_id).await
    }

    /// Keys of one user, or of everyone.
    pub async fn key_list(&self, user_id: Option<&str>) -> Result<Vec<ApiKey>, sqlx::Error> {
        let sql = "SELECT k.id, k.user_id, u.username, k.name, k.prefix, k.created_at, \
                   k.last_used_at, k.expires_at FROM api_keys k JOIN users u ON u.id = k.user_id";
        let rows = match user_id {
            Some(u) => {
                sqlx::query(&format!("{sql} WHERE k.user_id = $1 ORDER BY k.created_at"))
                    .bind(u)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("{sql} ORDER BY k.created_at"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(ApiKey {
                    id: r.try_get("id")?,
                    user_id: r.try_get("user_id")?,
                    username: r.try_get("username")?,
                    name: r.try_get("name")?,
                    prefix: r.try_get("prefix")?,
                    created_at: to_time(r.try_get("created_at")?),
                    last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(to_time),
                    expires_at: r.try_get::<Option<i64>, _>("expires_at")?.map(to_time),
                })
            })
            .collect()
    }

    /// Deletes a key (only the owner's, when `user_id` is given).
    pub async fn key_delete(&self, id: &str, user_id: Option<&str>) -> Result<bool, sqlx::Error> {
        let done = match user_id {
            Some(u) => {
                sqlx::query("DELETE FROM api_keys WHERE id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(u)
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM api_keys WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(done.rows_affected() > 0)
    }

    // ---- tasks ----

    /// Inserts or replaces a task row. An ended task's row is never changed again: a
    /// progress report stored late (they are written in the background) must not turn a
    /// finished task back into a running one.
    pub async fn task_upsert(&self, t: &TaskRow) -> Result<(), sqlx::Error> {
        bind_task(
            sqlx::query(
                "INSERT INTO tasks (id, kind, target, status, progress, message, result, \
                 error, created_by, created_at, updated_at, finished_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
                 progress = excluded.progress, message = excluded.message, \
                 result = excluded.result, error = excluded.error, \
                 updated_at = excluded.updated_at, finished_at = excluded.finished_at \
                 WHERE tasks.status = 'running'",
            ),
            t,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One task.
    pub async fn task_get(&self, id: &str) -> Result<Option<TaskRow>, sqlx::Error> {
        sqlx::query(&format!("SELECT {TASK_COLS} FROM tasks WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(task_from_row)
            .transpose()
    }

    /// Tasks, newest first, optionally of one status and kind.
    pub async fn task_list(
        &self,
        status: Option<&str>,
        kind: Option<&str>,
    ) -> Result<Vec<TaskRow>, sqlx::Error> {
        sqlx::query(&format!(
            "SELECT {TASK_COLS} FROM tasks WHERE ($1 IS NULL OR status = $1) \
             AND ($2 IS NULL OR kind = $2) ORDER BY created_at DESC"
        ))
        .bind(status)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(task_from_row)
        .collect()
    }

    /// Counts of tasks by status.
    pub async fn task_counts(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query("SELECT status, COUNT(*) AS n FROM tasks GROUP BY status")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }

    /// Marks every task left running (by a server that stopped) as failed.
    pub async fn tasks_fail_running(&self, message: &str) -> Result<u64, sqlx::Error> {
        self.tasks_fail_where(message, "TRUE", Extra::None).await
    }

    /// Fails the running tasks of replica `owner` (at its shutdown).
    pub async fn tasks_fail_owned(&self, message: &str, owner: &str) -> Result<u64, sqlx::Error> {
        self.tasks_fail_where(message, "owner = $4", Extra::Text(owner))
            .await
    }

    /// Fails the running tasks whose owner has not renewed its lease since `before` (ms):
    /// their replica died.
    pub async fn tasks_fail_stale(&self, message: &str, before: i64) -> Result<u64, sqlx::Error> {
        self.tasks_fail_where(
            message,
            "(heartbeat_at IS NULL OR heartbeat_at < $4)",
            Extra::Int(before),
        )
        .await
    }

    async fn tasks_fail_where(
        &self,
        message: &str,
        condition: &str,
        extra: Extra<'_>,
    ) -> Result<u64, sqlx::Error> {
        let sql = format!(
            "UPDATE tasks SET status = 'failed', message = $1, \
             error = $2, updated_at = $3, finished_at = $3 WHERE status = 'running' \
             AND {condition}"
        );
        let q = sqlx::query(&sql)
            .bind(message)
            .bind(
                serde_json::json!({"status": 500, "code": "INTERRUPTED", "message": message})
                    .to_string(),
            )
            .bind(now_ms());
        let q = match extra {
            Extra::None => q,
            Extra::Text(t) => q.bind(t),
            Extra::Int(i) => q.bind(i),
        };
        Ok(q.execute(&self.pool).await?.rows_affected())
    }

    /// Stores a new task as run by replica `owner`, its lease taken in the same write: a
    /// row without a lease, even between two statements, is one a live replica fails as
    /// its replica's death (seen as an export that finished but could not be downloaded).
    pub async fn task_start(&self, t: &TaskRow, owner: &str) -> Result<(), sqlx::Error> {
        bind_task(
            sqlx::query(
                "INSERT INTO tasks (id, kind, target, status, progress, message, result, \
                 error, created_by, created_at, updated_at, finished_at, owner, heartbeat_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            ),
            t,
        )
        .bind(owner)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Renews the leases of tasks `ids` (those replica `owner` runs now), and answers those
    /// of its tasks another replica asked to cancel.
    pub async fn tasks_heartbeat(
        &self,
        owner: &str,
        ids: &[String],
    ) -> Result<Vec<String>, sqlx::Error> {
        let now = now_ms();
        for id in ids {
            sqlx::query(
                "UPDATE tasks SET heartbeat_at = $3 WHERE id = $1 AND owner = $2 \
                 AND status = 'running'",
            )
            .bind(id)
            .bind(owner)
            .bind(now)
            .execute(&self.pool)
            .await?;
        }
        sqlx::query(
            "SELECT id FROM tasks WHERE owner = $1 AND status = 'running' AND cancel_requested = 1",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect()
    }

    /// Asks the replica running task `id` to cancel it; `false` when it is not running.
    pub async fn task_request_cancel(&self, id: &str) -> Result<bool, sqlx::Error> {
        let r = sqlx::query(
            "UPDATE tasks SET cancel_requested = 1 WHERE id = $1 AND status = 'running'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Whether several servers may share this database (PostgreSQL) rather than one owning
    /// it (SQLite).
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    // ---- audit ----

    /// Appends an audit record. Free-text fields are cut to [`AUDIT_FIELD_MAX`] characters,
    /// so one record's size is bounded whatever a client sends.
    pub async fn audit_insert(&self, a: &AuditRecord) -> Result<(), sqlx::Error> {
        let a = &a.bounded();
        sqlx::query(
            "INSERT INTO audit_log (id, time, username, role, method, path, route, target, \
             status, outcome, request_id, client) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&a.id)
        .bind(a.time.timestamp_millis())
        .bind(&a.username)
        .bind(&a.role)
        .bind(&a.method)
        .bind(&a.path)
        .bind(&a.route)
        .bind(&a.target)
        .bind(a.status as i64)
        .bind(&a.outcome)
        .bind(&a.request_id)
        .bind(&a.client)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Audit records passing `f`, newest first: one page and the total count.
    pub async fn audit_query(
        &self,
        f: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<AuditRecord>, i64), sqlx::Error> {
        let filter = "WHERE ($1 IS NULL OR username = $1) AND ($2 IS NULL OR method = $2) \
             AND ($3 IS NULL OR path LIKE $3) AND ($4 IS NULL OR target = $4) \
             AND ($5 IS NULL OR outcome = $5) AND ($6 IS NULL OR time >= $6) \
             AND ($7 IS NULL OR time < $7)";
        let path_like = f.path.as_ref().map(|p| {
            let escaped: String = p.chars().filter(|c| *c != '%' && *c != '_').collect();
            format!("{escaped}%")
        });
        let method = f.method.as_ref().map(|m| m.to_ascii_uppercase());
        let since = f.since.map(|t| t.timestamp_millis());
        let until = f.until.map(|t| t.timestamp_millis());
        macro_rules! binds {
            ($q:expr) => {
                $q.bind(&f.username)
                    .bind(&method)
                    .bind(&path_like)
                    .bind(&f.target)
                    .bind(&f.outcome)
                    .bind(since)
                    .bind(until)
            };
        }
        let count: i64 = binds!(sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM audit_log {filter}"
        )))
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let rows = binds!(sqlx::query(&format!(
            "SELECT id, time, username, role, method, path, route, target, status, outcome, \
             request_id, client FROM audit_log {filter} ORDER BY time DESC, id \
             LIMIT $8 OFFSET $9"
        )))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(AuditRecord {
                    id: r.try_get("id")?,
                    time: to_time(r.try_get("time")?),
                    username: r.try_get("username")?,
                    role: r.try_get("role")?,
                    method: r.try_get("method")?,
                    path: r.try_get("path")?,
                    route: r.try_get("route")?,
                    target: r.try_get("target")?,
                    status: u16::try_from(r.try_get::<i64, _>("status")?).unwrap_or(0),
                    outcome: r.try_get("outcome")?,
                    request_id: r.try_get("request_id")?,
                    client: r.try_get("client")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok((items, count))
    }

    // ---- sessions ----

    /// Stores a new session.
    pub async fn session_insert(
        &self,
        id: &str,
        user_id: &str,
        expires_at_ms: i64,
        client: Option<&str>,
        user_agent: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, expires_at, client, user_agent) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(user_id)
        .bind(now_ms())
        .bind(expires_at_ms)
        .bind(client.map(cut))
        .bind(user_agent.map(cut))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user of a live session (`None` when it ended, expired or is someone else's).
    pub async fn session_user(
        &self,
        session_id: &str,
        user_id: &str,
    ) -> Result<Option<UserRecord>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.password_hash, u.role, u.scope, u.created_at, u.updated_at \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id = $1 AND s.user_id = $2 AND s.expires_at > $3",
        )
        .bind(session_id)
        .bind(user_id)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Live sessions, of one user or of all, newest first.
    pub async fn session_list(&self, user_id: Option<&str>) -> Result<Vec<Session>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT s.id, s.user_id, u.username, s.created_at, s.expires_at, s.client, \
             s.user_agent FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE ($1 IS NULL OR s.user_id = $1) AND s.expires_at > $2 \
             ORDER BY s.created_at DESC, s.id",
        )
        .bind(user_id)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Session {
                    id: r.try_get("id")?,
                    user_id: r.try_get("user_id")?,
                    username: r.try_get("username")?,
                    created_at: to_time(r.try_get("created_at")?),
                    expires_at: to_time(r.try_get("expires_at")?),
                    client: r.try_get("client")?,
                    user_agent: r.try_get("user_agent")?,
                    current: false,
                })
            })
            .collect()
    }

    /// Ends one session (only the owner's when `user_id` is given).
    pub async fn session_delete(
        &self,
        id: &str,
        user_id: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let done =
            sqlx::query("DELETE FROM sessions WHERE id = $1 AND ($2 IS NULL OR user_id = $2)")
                .bind(id)
                .bind(user_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends every session of a user; returns how many.
    pub async fn sessions_end_for_user(&self, user_id: &str) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    // ---- retention ----

    /// Deletes expired sessions, audit records older than `audit_max_age_ms` or beyond the
    /// newest `audit_max_rows`, and ended tasks likewise. Returns the rows deleted.
    pub async fn purge(
        &self,
        audit_max_age_ms: i64,
        audit_max_rows: i64,
        task_max_age_ms: i64,
        task_max_rows: i64,
    ) -> Result<u64, sqlx::Error> {
        let now = now_ms();
        let mut n = 0;
        n += sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        n += sqlx::query("DELETE FROM audit_log WHERE time < $1")
            .bind(now - audit_max_age_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        n += sqlx::query(
            "DELETE FROM audit_log WHERE time < (SELECT MIN(time) FROM \
             (SELECT time FROM audit_log ORDER BY time DESC LIMIT $1) AS newest)",
        )
        .bind(audit_max_rows)
        .execute(&self.pool)
        .await?
        .rows_affected();
        n += sqlx::query("DELETE FROM tasks WHERE finished_at IS NOT NULL AND finished_at < $1")
            .bind(now - task_max_age_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        n += sqlx::query(
            "DELETE FROM tasks WHERE finished_at IS NOT NULL AND finished_at < (SELECT \
             MIN(finished_at) FROM (SELECT finished_at FROM tasks WHERE finished_at IS NOT NULL \
             ORDER BY finished_at DESC LIMIT $1) AS newest)",
        )
        .bind(task_max_rows)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, status: &str, message: &str) -> TaskRow {
        TaskRow {
            id: id.into(),
            kind: "instance.migrate".into(),
            target: None,
            status: status.into(),
            progress: 100.0,
            message: message.into(),
            result: None,
            error: None,
            created_by: Some("admin".into()),
            created_at: 1,
            updated_at: 2,
            finished_at: None,
        }
    }

    /// The order a task's last progress report and its end may reach the database in: the
    /// end stays (seen as a migration task reading `running` forever).
    #[tokio::test]
    async fn a_late_progress_write_does_not_revive_an_ended_task() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = Db::connect(&url).await.expect("db");
        db.task_upsert(&row("t1", "running", "started"))
            .await
            .expect("start");
        db.task_upsert(&row("t1", "finished", "finished"))
            .await
            .expect("end");
        db.task_upsert(&row("t1", "running", "vm runs on kvm"))
            .await
            .expect("late");
        let t = db.task_get("t1").await.expect("get").expect("row");
        assert_eq!(t.status, "finished");
        assert_eq!(t.message, "finished");
    }
}
