//! The users, sessions, API keys and audit services: what the account routes do, with no
//! HTTP in it. Each call answers [`libgo_core::Error`]; the routes turn it into a response.
//!
//! ```no_run
//! # async fn example(db: &libgo_http::db::Db) -> libgo_core::Result<()> {
//! use libgo_http::accounts::Scope;
//! use libgo_http::users::{NewUser, Users};
//!
//! let users = Users::new(db);
//! let ada = users
//!     .create(NewUser {
//!         username: "ada".into(),
//!         password: "correct horse".into(),
//!         role: "operator".into(),
//!         scope: Scope::All,
//!     })
//!     .await?;
//! assert_eq!(users.get("ada").await?.id, ada.id);
//! # Ok(())
//! # }
//! ```

use libgo_core::{Error, ErrorKind, Page, Pagination, Result, validate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::{
    Role, Scope, check_password_rules, hash_api_key, hash_password, new_api_key, verify_password,
};
use crate::db::{ApiKey, AuditFilter, AuditRecord, Db, Session, User, UserRecord};

/// A database failure as these services report it: internal, its detail for the log.
fn stored(e: sqlx::Error) -> Error {
    Error::internal(format!("database: {e}")).with_context("store", "users")
}

/// Who asks, as the services need to know it.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// The caller's user id.
    pub user_id: &'a str,
    /// Whether the caller holds the built-in admin role (sees and manages everyone's keys
    /// and sessions).
    pub admin: bool,
    /// The session the caller's token belongs to; `None` for an API key.
    pub session_id: Option<&'a str>,
}

impl Actor<'_> {
    /// The owner a non-administrator is kept to; `None` (everyone) for an administrator.
    fn owner(&self) -> Option<&str> {
        (!self.admin).then_some(self.user_id)
    }
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
#[derive(Clone, Default, Deserialize, ToSchema)]
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

/// Where a login came from, for its session and its audit record.
#[derive(Debug, Clone)]
pub struct LoginOrigin {
    /// The path the login was posted to.
    pub path: String,
    /// The request id the client got.
    pub request_id: Option<String>,
    /// The client's address.
    pub client: String,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
}

/// The users, sessions, API keys and audit services over one store.
#[derive(Debug, Clone, Copy)]
pub struct Users<'a> {
    db: &'a Db,
}

impl<'a> Users<'a> {
    /// The services over `db`.
    pub fn new(db: &'a Db) -> Self {
        Users { db }
    }

    /// Every user, by name.
    pub async fn list(&self) -> Result<Vec<User>> {
        Ok(self
            .db
            .user_list()
            .await
            .map_err(stored)?
            .iter()
            .map(User::from)
            .collect())
    }

    /// Makes a user; a taken name is a conflict.
    pub async fn create(&self, u: NewUser) -> Result<User> {
        validate::name("username", &u.username)?;
        self.check_role_exists(&u.role).await?;
        check_password_rules(&u.password)?;
        let hash = hash_password(u.password).await?;
        let user = self
            .db
            .user_insert(&u.username, &hash, &u.role, u.scope)
            .await
            .map_err(stored)?
            .ok_or_else(|| {
                Error::conflict(format!("a user named {:?} exists already", u.username))
            })?;
        Ok(User::from(&user))
    }

    /// The stored user by id or name.
    pub async fn find(&self, id_or_name: &str) -> Result<UserRecord> {
        self.db
            .user_find(id_or_name)
            .await
            .map_err(stored)?
            .ok_or_else(|| Error::not_found(format!("no user {id_or_name:?}")))
    }

    /// A user by id or name.
    pub async fn get(&self, id_or_name: &str) -> Result<User> {
        Ok(User::from(&self.find(id_or_name).await?))
    }

    /// The caller's own record; a user deleted since the token was issued is unauthorized.
    pub async fn me(&self, actor: Actor<'_>) -> Result<UserRecord> {
        self.db
            .user_by_id(actor.user_id)
            .await
            .map_err(stored)?
            .ok_or_else(|| Error::new(ErrorKind::Unauthorized, "no such user"))
    }

    /// Changes the caller's own password, which needs the current one.
    pub async fn change_own_password(
        &self,
        actor: Actor<'_>,
        change: PasswordChange,
    ) -> Result<()> {
        let me = self.me(actor).await?;
        let current = change.current_password.unwrap_or_default();
        if !verify_password(current, me.password_hash.clone()).await {
            return Err(Error::new(
                ErrorKind::Forbidden,
                "the current password is wrong",
            ));
        }
        self.store_password(&me.id, change.new_password).await
    }

    /// Sets a user's password (an administrator's act: the current one is not asked).
    pub async fn set_password(&self, id_or_name: &str, new_password: String) -> Result<()> {
        let u = self.find(id_or_name).await?;
        self.store_password(&u.id, new_password).await
    }

    async fn store_password(&self, user_id: &str, password: String) -> Result<()> {
        check_password_rules(&password)?;
        let hash = hash_password(password).await?;
        self.db
            .user_update(user_id, None, None, Some(&hash))
            .await
            .map_err(stored)?;
        Ok(())
    }

    /// Changes a user's role, scope or password; the last administrator keeps the role.
    pub async fn update(&self, id_or_name: &str, up: UserUpdate) -> Result<User> {
        let u = self.find(id_or_name).await?;
        if let Some(r) = &up.role {
            self.check_role_exists(r).await?;
        }
        if u.role_name == Role::Admin.as_str()
            && up
                .role
                .as_deref()
                .is_some_and(|r| r != Role::Admin.as_str())
            && self.admin_count().await? <= 1
        {
            return Err(Error::conflict(
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
        self.db
            .user_update(&u.id, up.role.as_deref(), up.scope, hash.as_deref())
            .await
            .map_err(stored)?;
        self.get(&u.id).await
    }

    /// Deletes a user with its keys and sessions; nobody deletes themselves or the last
    /// administrator.
    pub async fn delete(&self, actor: Actor<'_>, id_or_name: &str) -> Result<()> {
        let u = self.find(id_or_name).await?;
        if u.id == actor.user_id {
            return Err(Error::conflict("you cannot delete yourself"));
        }
        if u.role_name == Role::Admin.as_str() && self.admin_count().await? <= 1 {
            return Err(Error::conflict("the last administrator cannot be deleted"));
        }
        self.db.user_delete(&u.id).await.map_err(stored)?;
        Ok(())
    }

    async fn admin_count(&self) -> Result<i64> {
        self.db.admin_count().await.map_err(stored)
    }

    /// Invalid input naming `role` unless it is a built-in role or a stored custom one.
    async fn check_role_exists(&self, role: &str) -> Result<()> {
        if role.parse::<Role>().is_ok()
            || crate::tenancy::role_permissions(self.db, role)
                .await
                .map_err(stored)?
                .is_some()
        {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "unknown role {role:?}: expected admin, operator, viewer or a role from /api/v1/roles"
        ))
        .with_field("role"))
    }

    /// The user whose name and password these are, or `None`. A missing user costs the
    /// same time as a wrong password, so names cannot be probed by timing.
    pub async fn authenticate(&self, username: &str, password: &str) -> Result<Option<UserRecord>> {
        let user = self.db.user_by_name(username).await.map_err(stored)?;
        let ok = match &user {
            Some(u) => verify_password(password.to_string(), u.password_hash.clone()).await,
            None => {
                let _ = hash_password(password.to_string()).await;
                false
            }
        };
        Ok(user.filter(|_| ok))
    }

    /// Stores the session a login opened (until `expires_ms`) and audits the login.
    pub async fn open_session(
        &self,
        user: &UserRecord,
        session_id: &str,
        expires_ms: i64,
        origin: &LoginOrigin,
    ) -> Result<()> {
        self.db
            .session_insert(
                session_id,
                &user.id,
                expires_ms,
                Some(&origin.client),
                origin.user_agent.as_deref(),
            )
            .await
            .map_err(stored)?;
        let record = AuditRecord {
            id: uuid::Uuid::new_v4().to_string(),
            time: chrono::Utc::now(),
            username: Some(user.username.clone()),
            role: Some(user.role_name.clone()),
            method: "POST".into(),
            path: origin.path.clone(),
            route: Some(origin.path.clone()),
            target: Some(user.username.clone()),
            status: 200,
            outcome: crate::middleware::outcome(200).into(),
            request_id: origin.request_id.clone(),
            client: Some(origin.client.clone()),
        };
        // A login that worked stays worked when the audit log cannot be written.
        if let Err(e) = self.db.audit_insert(&record).await {
            tracing::error!(error = %e, "cannot write the audit log");
        }
        Ok(())
    }

    /// Live sessions: the actor's own, or everyone's for an administrator; the actor's
    /// current one is marked.
    pub async fn sessions(&self, actor: Actor<'_>) -> Result<Vec<Session>> {
        let mut sessions = self.db.session_list(actor.owner()).await.map_err(stored)?;
        for s in &mut sessions {
            s.current = actor.session_id == Some(s.id.as_str());
        }
        Ok(sessions)
    }

    /// Ends a session the actor may see.
    pub async fn end_session(&self, actor: Actor<'_>, id: &str) -> Result<()> {
        if !self
            .db
            .session_delete(id, actor.owner())
            .await
            .map_err(stored)?
        {
            return Err(Error::not_found(format!("no session {id:?}")));
        }
        Ok(())
    }

    /// Ends the actor's own session; an API key has none.
    pub async fn logout(&self, actor: Actor<'_>) -> Result<()> {
        let Some(sid) = actor.session_id else {
            return Err(Error::invalid(
                "an API key has no session to end: revoke the key instead",
            ));
        };
        self.db
            .session_delete(sid, Some(actor.user_id))
            .await
            .map_err(stored)?;
        Ok(())
    }

    /// API keys: the actor's own, or everyone's for an administrator.
    pub async fn keys(&self, actor: Actor<'_>) -> Result<Vec<ApiKey>> {
        self.db.key_list(actor.owner()).await.map_err(stored)
    }

    /// Makes an API key for the actor, or for `k.user` when the actor is an administrator.
    pub async fn create_key(&self, actor: Actor<'_>, k: NewApiKey) -> Result<CreatedApiKey> {
        if k.name.trim().is_empty() || k.name.chars().count() > 100 {
            return Err(Error::invalid("name must have 1 to 100 characters").with_field("name"));
        }
        if k.expires_in_days
            .is_some_and(|d| !(1..=MAX_KEY_DAYS).contains(&d))
        {
            return Err(Error::invalid(format!(
                "expiresInDays must be between 1 and {MAX_KEY_DAYS}"
            ))
            .with_field("expiresInDays"));
        }
        let owner = match &k.user {
            Some(u) if !actor.admin => {
                return Err(Error::new(
                    ErrorKind::Forbidden,
                    format!("only an administrator makes keys for others (asked for {u:?})"),
                ));
            }
            Some(u) => self.find(u).await?,
            None => self.find(actor.user_id).await?,
        };
        let expires = k
            .expires_in_days
            .map(|d| crate::db::now_ms() + i64::from(d) * 86_400_000);
        let (key, prefix) = new_api_key();
        let id = self
            .db
            .key_insert(
                &owner.id,
                k.name.trim(),
                &prefix,
                &hash_api_key(&key),
                expires,
            )
            .await
            .map_err(stored)?;
        let api_key = self
            .db
            .key_list(Some(&owner.id))
            .await
            .map_err(stored)?
            .into_iter()
            .find(|x| x.id == id)
            .ok_or_else(|| Error::internal("stored key vanished"))?;
        Ok(CreatedApiKey { key, api_key })
    }

    /// Revokes a key the actor may see.
    pub async fn revoke_key(&self, actor: Actor<'_>, id: &str) -> Result<()> {
        if !self
            .db
            .key_delete(id, actor.owner())
            .await
            .map_err(stored)?
        {
            return Err(Error::not_found(format!("no API key {id:?}")));
        }
        Ok(())
    }

    /// One page of the audit log, newest first.
    pub async fn audit(&self, filter: &AuditFilter, page: Pagination) -> Result<Page<AuditRecord>> {
        validate::pagination(page)?;
        let offset = i64::from(page.page - 1) * i64::from(page.page_size);
        let (items, count) = self
            .db
            .audit_query(filter, offset, i64::from(page.page_size))
            .await
            .map_err(stored)?;
        Ok(Page {
            items,
            count: usize::try_from(count).unwrap_or(0),
            page: page.page,
            page_size: page.page_size,
            unavailable: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("u.db").display());
        let db = Db::connect(&url).await.expect("db");
        (dir, db)
    }

    fn new_user(name: &str, role: &str) -> NewUser {
        NewUser {
            username: name.into(),
            password: "long enough".into(),
            role: role.into(),
            scope: Scope::All,
        }
    }

    fn actor_of<'a>(user: &'a User, admin: bool, session_id: Option<&'static str>) -> Actor<'a> {
        Actor {
            user_id: &user.id,
            admin,
            session_id,
        }
    }

    /// The rules a client of the service meets with no HTTP in between: each refusal is a
    /// core error of the right kind, and a refused call changes nothing.
    #[tokio::test]
    async fn the_users_service_keeps_its_rules_without_http() {
        let (_dir, db) = store().await;
        let users = Users::new(&db);
        let root = users
            .create(new_user("root", "admin"))
            .await
            .expect("admin");
        let ada = users
            .create(new_user("ada", "operator"))
            .await
            .expect("ada");

        let taken = users.create(new_user("ada", "viewer")).await.unwrap_err();
        assert_eq!(taken.kind(), ErrorKind::Conflict);
        let role = users.create(new_user("bob", "wizard")).await.unwrap_err();
        assert_eq!(
            (role.kind(), role.field()),
            (ErrorKind::InvalidInput, Some("role"))
        );
        assert_eq!(users.list().await.expect("list").len(), 2);

        let root_actor = actor_of(&root, true, Some("s-root"));
        let last = users
            .update(
                "root",
                UserUpdate {
                    role: Some("viewer".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(last.kind(), ErrorKind::Conflict);
        let myself = users.delete(root_actor, "root").await.unwrap_err();
        assert_eq!(myself.kind(), ErrorKind::Conflict);
        assert_eq!(users.get("root").await.expect("root").role, "admin");

        let wrong = users
            .change_own_password(
                actor_of(&ada, false, None),
                PasswordChange {
                    current_password: Some("not it at all".into()),
                    new_password: "another one".into(),
                },
            )
            .await
            .unwrap_err();
        assert_eq!(wrong.kind(), ErrorKind::Forbidden);
        assert!(
            users
                .authenticate("ada", "long enough")
                .await
                .expect("auth")
                .is_some()
        );
        assert!(
            users
                .authenticate("ada", "another one")
                .await
                .expect("auth")
                .is_none()
        );

        // Keys: an operator makes its own, not another's, and sees only its own.
        let ada_actor = actor_of(&ada, false, None);
        let for_root = users
            .create_key(
                ada_actor,
                NewApiKey {
                    name: "ci".into(),
                    expires_in_days: None,
                    user: Some("root".into()),
                },
            )
            .await
            .unwrap_err();
        assert_eq!(for_root.kind(), ErrorKind::Forbidden);
        let days = users
            .create_key(
                ada_actor,
                NewApiKey {
                    name: "ci".into(),
                    expires_in_days: Some(MAX_KEY_DAYS + 1),
                    user: None,
                },
            )
            .await
            .unwrap_err();
        assert_eq!(days.field(), Some("expiresInDays"));
        let key = users
            .create_key(
                ada_actor,
                NewApiKey {
                    name: " ci ".into(),
                    expires_in_days: Some(1),
                    user: None,
                },
            )
            .await
            .expect("key");
        assert_eq!(key.api_key.name, "ci");
        users
            .create_key(
                root_actor,
                NewApiKey {
                    name: "root's".into(),
                    expires_in_days: None,
                    user: None,
                },
            )
            .await
            .expect("root key");
        assert_eq!(users.keys(ada_actor).await.expect("keys").len(), 1);
        assert_eq!(users.keys(root_actor).await.expect("keys").len(), 2);
        let other = users
            .create_key(
                root_actor,
                NewApiKey {
                    name: "for ada".into(),
                    expires_in_days: None,
                    user: Some("ada".into()),
                },
            )
            .await
            .expect("for ada");
        assert_eq!(other.api_key.user_id, ada.id);

        // Sessions: the current one is marked; an API key has none to end.
        let origin = LoginOrigin {
            path: "/login".into(),
            request_id: None,
            client: "192.0.2.1".into(),
            user_agent: Some("test".into()),
        };
        let ada_record = users.find("ada").await.expect("ada");
        let later = crate::db::now_ms() + 60_000;
        users
            .open_session(&ada_record, "s-1", later, &origin)
            .await
            .expect("s-1");
        users
            .open_session(&ada_record, "s-2", later, &origin)
            .await
            .expect("s-2");
        let ada_in_s1 = actor_of(&ada, false, Some("s-1"));
        let sessions = users.sessions(ada_in_s1).await.expect("sessions");
        let current: Vec<&str> = sessions
            .iter()
            .filter(|s| s.current)
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!((sessions.len(), current), (2, vec!["s-1"]));
        assert_eq!(
            users.logout(ada_actor).await.unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        users.logout(ada_in_s1).await.expect("logout");
        assert_eq!(users.sessions(ada_in_s1).await.expect("left").len(), 1);
        assert_eq!(
            users
                .end_session(ada_actor, "s-1")
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );

        // The logins are in the audit log, newest first.
        let page = users
            .audit(
                &AuditFilter {
                    username: Some("ada".into()),
                    ..Default::default()
                },
                Pagination {
                    page: 1,
                    page_size: 10,
                },
            )
            .await
            .expect("audit");
        assert_eq!(page.count, 2);
        assert!(
            page.items
                .iter()
                .all(|r| r.target.as_deref() == Some("ada"))
        );

        users.delete(root_actor, "ada").await.expect("delete ada");
        assert_eq!(
            users.get("ada").await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert!(users.keys(root_actor).await.expect("keys").len() == 1);
    }
}
