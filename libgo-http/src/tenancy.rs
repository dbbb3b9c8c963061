//! Tenancy: custom roles (sets of the permissions the routes declare), groups of users,
//! and the scope a user's role applies in (everything, or the instances of the user's
//! groups), stored in the server's database.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use crate::db::{Db, now_ms, to_time};

/// A role as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleInfo {
    /// Name.
    pub name: String,
    /// Whether it is one of `admin`, `operator`, `viewer` (which cannot be changed).
    pub builtin: bool,
    /// The permissions it grants (`<tag>.read|write|admin`, from the routes).
    pub permissions: Vec<String>,
    /// Creation time (absent for built-in roles).
    pub created_at: Option<DateTime<Utc>>,
}

/// A group of users, and the instances made by its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// Name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The members' user names.
    pub members: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

fn permissions_from(text: &str) -> Result<BTreeSet<String>, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(e.into()))
}

fn custom_role_from_row(r: &AnyRow) -> Result<RoleInfo, sqlx::Error> {
    let permissions: String = r.try_get("permissions")?;
    Ok(RoleInfo {
        name: r.try_get("name")?,
        builtin: false,
        permissions: permissions_from(&permissions)?.into_iter().collect(),
        created_at: Some(to_time(r.try_get("created_at")?)),
    })
}

/// The permissions of custom role `name`, if it exists.
pub async fn role_permissions(
    db: &Db,
    name: &str,
) -> Result<Option<BTreeSet<String>>, sqlx::Error> {
    let row = sqlx::query("SELECT permissions FROM roles WHERE name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await?;
    match row {
        Some(r) => Ok(Some(permissions_from(
            &r.try_get::<String, _>("permissions")?,
        )?)),
        None => Ok(None),
    }
}

/// Every custom role, by name.
pub async fn custom_roles(db: &Db) -> Result<Vec<RoleInfo>, sqlx::Error> {
    sqlx::query("SELECT name, permissions, created_at FROM roles ORDER BY name")
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(custom_role_from_row)
        .collect()
}

/// Custom role `name`.
pub async fn custom_role(db: &Db, name: &str) -> Result<Option<RoleInfo>, sqlx::Error> {
    sqlx::query("SELECT name, permissions, created_at FROM roles WHERE name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(custom_role_from_row)
        .transpose()
}

/// Stores a custom role; a taken name is `Ok(false)`.
pub async fn role_insert(
    db: &Db,
    name: &str,
    permissions: &BTreeSet<String>,
) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let text = serde_json::to_string(permissions).map_err(|e| sqlx::Error::Encode(e.into()))?;
    let done = sqlx::query(
        "INSERT INTO roles (name, permissions, created_at, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(text)
    .bind(now)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Replaces a custom role's permissions; a missing role is `Ok(false)`.
pub async fn role_update(
    db: &Db,
    name: &str,
    permissions: &BTreeSet<String>,
) -> Result<bool, sqlx::Error> {
    let text = serde_json::to_string(permissions).map_err(|e| sqlx::Error::Encode(e.into()))?;
    let done = sqlx::query("UPDATE roles SET permissions = $1, updated_at = $2 WHERE name = $3")
        .bind(text)
        .bind(now_ms())
        .bind(name)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// How many users hold role `name`.
pub async fn role_holders(db: &Db, name: &str) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = $1")
        .bind(name)
        .fetch_one(db.pool())
        .await?
        .try_get("n")
}

/// Deletes a custom role held by no user, in one statement (so that no user is given it
/// meanwhile); `Ok(false)` when it is missing or held.
pub async fn role_delete_unheld(db: &Db, name: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM roles WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM users WHERE role = $1)",
    )
    .bind(name)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

async fn members_of(db: &Db, group: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query(
        "SELECT u.username FROM user_group_members m JOIN users u ON u.id = m.user_id \
         WHERE m.group_name = $1 ORDER BY u.username",
    )
    .bind(group)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| r.try_get("username"))
    .collect()
}

async fn group_from_row(db: &Db, r: &AnyRow) -> Result<Group, sqlx::Error> {
    let name: String = r.try_get("name")?;
    Ok(Group {
        members: members_of(db, &name).await?,
        name,
        description: r.try_get("description")?,
        created_at: to_time(r.try_get("created_at")?),
        updated_at: to_time(r.try_get("updated_at")?),
    })
}

/// Group `name`, with its members.
pub async fn group(db: &Db, name: &str) -> Result<Option<Group>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT name, description, created_at, updated_at FROM user_groups WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(db.pool())
    .await?;
    match row {
        Some(r) => Ok(Some(group_from_row(db, &r).await?)),
        None => Ok(None),
    }
}

/// Every group, by name.
pub async fn groups(db: &Db) -> Result<Vec<Group>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT name, description, created_at, updated_at FROM user_groups ORDER BY name",
    )
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(group_from_row(db, r).await?);
    }
    Ok(out)
}

/// Stores a group; a taken name is `Ok(false)`.
pub async fn group_insert(db: &Db, name: &str, description: &str) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let done = sqlx::query(
        "INSERT INTO user_groups (name, description, created_at, updated_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(description)
    .bind(now)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Changes a group's description; a missing group is `Ok(false)`.
pub async fn group_update(db: &Db, name: &str, description: &str) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE user_groups SET description = $1, updated_at = $2 WHERE name = $3")
            .bind(description)
            .bind(now_ms())
            .bind(name)
            .execute(db.pool())
            .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes a group and its memberships (its instances keep their label).
pub async fn group_delete(db: &Db, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM user_group_members WHERE group_name = $1")
        .bind(name)
        .execute(db.pool())
        .await?;
    let done = sqlx::query("DELETE FROM user_groups WHERE name = $1")
        .bind(name)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Makes a user a member of a group (already one is fine).
pub async fn member_add(db: &Db, group: &str, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO user_group_members (group_name, user_id) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING",
    )
    .bind(group)
    .bind(user_id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Removes a user from a group; `Ok(false)` when it was not a member.
pub async fn member_remove(db: &Db, group: &str, user_id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM user_group_members WHERE group_name = $1 AND user_id = $2")
        .bind(group)
        .bind(user_id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The groups a user is a member of, by name.
pub async fn groups_of(db: &Db, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query("SELECT group_name FROM user_group_members WHERE user_id = $1 ORDER BY group_name")
        .bind(user_id)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| r.try_get("group_name"))
        .collect()
}
