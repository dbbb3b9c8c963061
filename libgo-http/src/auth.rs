//! Authentication (JWT bearer tokens, API keys, argon2 passwords) and authorisation (roles,
//! decided from the route before the request body is read).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub use crate::accounts::{
    Role, Scope, check_password_rules, hash_api_key, hash_password, new_api_key, random_hex,
    verify_password,
};
use crate::db::UserRecord;
use crate::error::ApiError;
use crate::state::AppState;

/// What a caller authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A token of a login session.
    Session {
        /// Session id (the token's `sid`).
        id: String,
        /// The token's expiry (seconds since the epoch).
        expires_at: i64,
    },
    /// An API key (its SHA-256, never the key).
    ApiKey {
        /// Hash of the key.
        hash: String,
    },
}

/// The authenticated caller of a request (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// User id.
    pub user_id: String,
    /// User name.
    pub username: String,
    /// The built-in role's level (a custom role counts as a viewer where a handler asks
    /// for a level).
    pub role: Role,
    /// The role's name (built-in or custom).
    pub role_name: String,
    /// A custom role's permissions; `None` for the built-in roles, which are levels.
    pub permissions: Option<Arc<BTreeSet<String>>>,
    /// The groups whose instances the caller is kept to; `None` when its scope is `all`.
    pub groups: Option<Vec<String>>,
    /// How the caller authenticated.
    pub credential: Credential,
    /// The least role the route admitted the caller for (re-checked on long streams).
    pub admitted_as: Role,
    /// The permission the route admitted the caller for (re-checked on long streams).
    pub admitted_for: Option<String>,
}

impl Caller {
    /// The caller behind `user`'s credential, with a custom role's permissions and the
    /// groups of a scoped user read from the database.
    pub async fn load(
        state: &AppState,
        user: UserRecord,
        credential: Credential,
    ) -> Result<Caller, ApiError> {
        let permissions = match user.role_name.parse::<Role>() {
            Ok(_) => None,
            // A role deleted under a user (it cannot be, while held) grants nothing.
            Err(_) => Some(Arc::new(
                crate::tenancy::role_permissions(&state.db, &user.role_name)
                    .await?
                    .unwrap_or_default(),
            )),
        };
        let groups = match user.scope {
            Scope::All => None,
            Scope::Groups => Some(crate::tenancy::groups_of(&state.db, &user.id).await?),
        };
        Ok(Caller {
            user_id: user.id,
            username: user.username,
            role: user.role,
            role_name: user.role_name,
            permissions,
            groups,
            credential,
            admitted_as: Role::Viewer,
            admitted_for: None,
        })
    }

    /// Whether the caller may use a route that declares `permission` at `level`: a
    /// built-in role by its level, a custom role by its permissions.
    pub fn allows(&self, permission: Option<&str>, level: Role) -> bool {
        match (&self.permissions, permission) {
            (None, _) => self.role >= level,
            (Some(granted), Some(p)) => granted.contains(p),
            // Routes on the caller's own account declare no permission.
            (Some(_), None) => true,
        }
    }

    /// Whether the caller may see an instance with these labels: unscoped callers see
    /// every instance, scoped ones those of their groups.
    pub fn sees(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        match &self.groups {
            None => true,
            Some(groups) => labels
                .get(libgo_core::LABEL_GROUP)
                .is_some_and(|g| groups.contains(g)),
        }
    }

    /// Who a network or volume the caller makes is recorded for: the caller, and its group
    /// when it is kept to exactly one.
    pub fn resource_owner(&self) -> libgo_core::Ownership {
        libgo_core::Ownership {
            owner: self.username.clone(),
            group: match self.groups.as_deref() {
                Some([only]) => Some(only.clone()),
                _ => None,
            },
        }
    }

    /// The list filter narrowed to what the caller may see.
    pub fn scope_filter(&self, filter: &mut libgo_core::InstanceFilter) {
        if let Some(groups) = &self.groups {
            filter.label_in = Some((libgo_core::LABEL_GROUP.to_string(), groups.clone()));
        }
    }

    /// The session id, when the caller used a token.
    pub fn session_id(&self) -> Option<&str> {
        match &self.credential {
            Credential::Session { id, .. } => Some(id),
            Credential::ApiKey { .. } => None,
        }
    }

    /// 403 unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role; {} has {}",
                role.as_str(),
                self.username,
                self.role.as_str()
            )))
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("authentication required"))
    }
}

/// Claims of a LibGo token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// User name.
    pub name: String,
    /// Role name when issued (the stored role is what counts).
    pub role: String,
    /// Issued at (seconds).
    pub iat: i64,
    /// Expiry (seconds).
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// Session id: the token is valid while this session lives.
    pub sid: String,
}

/// Token signing with one fixed algorithm (HS256).
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("ttl", &self.ttl).finish()
    }
}

impl Tokens {
    /// Keys from a secret.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        validation.validate_exp = true;
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// A token of session `sid` for `user`, and its expiry (seconds since the epoch).
    pub fn issue(&self, user: &UserRecord, sid: &str) -> Result<(String, i64), ApiError> {
        let now = chrono::Utc::now().timestamp();
        let exp = now + i64::try_from(self.ttl.as_secs()).unwrap_or(3600);
        let claims = Claims {
            sub: user.id.clone(),
            name: user.username.clone(),
            role: user.role_name.clone(),
            iat: now,
            exp,
            jti: uuid::Uuid::new_v4().to_string(),
            sid: sid.to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)?;
        Ok((token, exp))
    }

    /// The claims of a valid token.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| ApiError::unauthorized(format!("invalid token: {e}")))
    }
}

/// Which callers a route admits, as declared next to its handler by the
/// `x-libgo-access` extension of its `#[utoipa::path]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// Any authenticated caller, acting on its own account only (its sessions, keys,
    /// password); the handler scopes the work to the caller.
    OwnAccount,
    /// Authenticated callers with at least this role.
    Role(Role),
}

impl Access {
    /// The name used in route declarations and the OpenAPI document.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::OwnAccount => "self",
            Access::Role(r) => r.as_str(),
        }
    }

    /// Parses a declaration.
    pub fn parse(s: &str) -> Option<Access> {
        match s {
            "public" => Some(Access::Public),
            "self" => Some(Access::OwnAccount),
            other => other.parse().ok().map(Access::Role),
        }
    }

    /// The permission a route of resource `tag` with this rule declares:
    /// `<tag>.read`, `<tag>.write` or `<tag>.admin` for the viewer, operator and admin
    /// levels, so that the built-in roles hold exactly the permissions of their level.
    /// Public routes and routes on the caller's own account declare none.
    pub fn permission(self, tag: &str) -> Option<String> {
        let verb = match self {
            Access::Public | Access::OwnAccount => return None,
            Access::Role(Role::Viewer) => "read",
            Access::Role(Role::Operator) => "write",
            Access::Role(Role::Admin) => "admin",
        };
        Some(format!("{tag}.{verb}"))
    }

    /// The least role that satisfies this rule (`None` for public routes).
    pub fn least_role(self) -> Option<Role> {
        match self {
            Access::Public => None,
            Access::OwnAccount => Some(Role::Viewer),
            Access::Role(r) => Some(r),
        }
    }
}

/// The name of the OpenAPI operation extension that declares a route's [`Access`].
pub const ACCESS_EXTENSION: &str = "x-libgo-access";

static ACCESS_TABLE: std::sync::OnceLock<Arc<AccessTable>> = std::sync::OnceLock::new();

/// The access table of this server's routes: the one the router was built with, else built
/// once (the table is the same for every server of this build).
pub fn access_table() -> &'static AccessTable {
    ACCESS_TABLE.get_or_init(|| Arc::new(AccessTable::from_openapi(&crate::server::openapi())))
}

/// Keeps the router's table as [`access_table`], so that the OpenAPI document is not built a
/// second time to answer the roles' routes.
pub(crate) fn share_access_table(table: &Arc<AccessTable>) {
    let _ = ACCESS_TABLE.set(table.clone());
}

/// Every route's [`Access`], read from the declarations in the OpenAPI document: the one
/// table where authorisation is decided. A route missing from it is refused.
#[derive(Debug, Clone, Default)]
pub struct AccessTable {
    routes: HashMap<(Method, String), Access>,
    permissions: HashMap<(Method, String), String>,
    undeclared: Vec<String>,
}

impl AccessTable {
    /// Reads each operation's declaration. Operations without a valid one are listed by
    /// [`AccessTable::undeclared`] and refused at run time.
    pub fn from_openapi(api: &utoipa::openapi::OpenApi) -> AccessTable {
        let mut table = AccessTable::default();
        for (path, item) in &api.paths.paths {
            let ops = [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::PATCH, &item.patch),
                (Method::HEAD, &item.head),
                (Method::OPTIONS, &item.options),
                (Method::TRACE, &item.trace),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                let declared = op
                    .extensions
                    .as_ref()
                    .and_then(|e| e.get(ACCESS_EXTENSION))
                    .and_then(|v| v.as_str())
                    .and_then(Access::parse);
                let tag = op
                    .tags
                    .as_ref()
                    .and_then(|t| t.first())
                    .map_or("api", String::as_str);
                match declared {
                    Some(a) => {
                        if let Some(p) = a.permission(tag) {
                            table.permissions.insert((method.clone(), path.clone()), p);
                        }
                        table.routes.insert((method, path.clone()), a);
                    }
                    None => table.undeclared.push(format!("{method} {path}")),
                }
            }
        }
        table.undeclared.sort();
        table
    }

    /// The rule of a route, if it declared one.
    pub fn get(&self, method: &Method, route: &str) -> Option<Access> {
        let method = if *method == Method::HEAD
            && !self.routes.contains_key(&(Method::HEAD, route.to_string()))
        {
            Method::GET
        } else {
            method.clone()
        };
        self.routes.get(&(method, route.to_string())).copied()
    }

    /// The permission a route declares, if any (see [`Access::permission`]).
    pub fn permission(&self, method: &Method, route: &str) -> Option<&str> {
        let method = if *method == Method::HEAD
            && !self.routes.contains_key(&(Method::HEAD, route.to_string()))
        {
            Method::GET
        } else {
            method.clone()
        };
        self.permissions
            .get(&(method, route.to_string()))
            .map(String::as_str)
    }

    /// Every permission the routes declare, with the built-in level that holds it.
    pub fn permission_levels(&self) -> BTreeMap<String, Role> {
        self.permission_routes()
            .into_iter()
            .map(|(p, (level, _))| (p, level))
            .collect()
    }

    /// Every permission with the built-in level that holds it and the routes that declare
    /// it (`METHOD /path`, sorted).
    pub fn permission_routes(&self) -> BTreeMap<String, (Role, Vec<String>)> {
        let mut out: BTreeMap<String, (Role, Vec<String>)> = BTreeMap::new();
        for ((method, route), p) in &self.permissions {
            if let Some(level) = self
                .routes
                .get(&(method.clone(), route.clone()))
                .and_then(|a| a.least_role())
            {
                let entry = out.entry(p.clone()).or_insert((level, Vec::new()));
                entry.1.push(format!("{method} {route}"));
            }
        }
        for (_, routes) in out.values_mut() {
            routes.sort();
        }
        out
    }

    /// Whether any method of `route` declared a rule.
    pub fn has_route(&self, route: &str) -> bool {
        self.routes.keys().any(|(_, r)| r == route)
    }

    /// Operations that declared no (valid) rule.
    pub fn undeclared(&self) -> &[String] {
        &self.undeclared
    }

    /// Every declared rule as `(method, route, access)`, sorted by route then method.
    pub fn entries(&self) -> Vec<(String, String, Access)> {
        let mut v: Vec<_> = self
            .routes
            .iter()
            .map(|((m, r), a)| (m.to_string(), r.clone(), *a))
            .collect();
        v.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        v
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "access_token").then(|| v.to_string())
    })
}

/// Finds the caller from a bearer token (whose session must still be live), an
/// `X-API-Key`, or (for WebSocket upgrades, which browsers cannot give headers) an
/// `access_token` query parameter.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Caller, ApiError> {
    if let Some(key) = headers.get("x-api-key") {
        let key = key
            .to_str()
            .map_err(|_| ApiError::unauthorized("invalid API key"))?;
        let hash = hash_api_key(key);
        let user = state
            .db
            .key_owner(&hash)
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid or expired API key"))?;
        return Caller::load(state, user, Credential::ApiKey { hash }).await;
    }
    let is_upgrade = headers.contains_key(axum::http::header::UPGRADE);
    let token = match bearer(headers) {
        Some(t) => t.to_string(),
        None => match query_token(query).filter(|_| is_upgrade) {
            Some(t) => t,
            None => {
                return Err(ApiError::unauthorized(
                    "authentication required: send Authorization: Bearer <token> or X-API-Key",
                ));
            }
        },
    };
    let claims = state.tokens.verify(&token)?;
    let user = state
        .db
        .session_user(&claims.sid, &claims.sub)
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(
                "the session has ended (logged out, password or role changed, or user \
                 deleted): log in again",
            )
        })?;
    Caller::load(
        state,
        user,
        Credential::Session {
            id: claims.sid,
            expires_at: claims.exp,
        },
    )
    .await
}

/// Checks again that the credentials behind `caller` still admit what the request was
/// admitted for: the session is live (or the key exists) and the user's current role still
/// suffices. `Err` carries why not, for a close frame.
pub async fn recheck(state: &AppState, caller: &Caller) -> Result<(), String> {
    let user = match &caller.credential {
        Credential::Session { id, expires_at } => {
            if chrono::Utc::now().timestamp() >= *expires_at {
                return Err("the session expired".into());
            }
            state.db.session_user(id, &caller.user_id).await
        }
        Credential::ApiKey { hash } => state
            .db
            .key_owner(hash)
            .await
            .map(|u| u.filter(|u| u.id == caller.user_id)),
    }
    .map_err(|e| {
        tracing::error!(error = %e, "cannot re-check a session");
        "the session could not be checked".to_string()
    })?;
    let Some(user) = user else {
        return Err("the session has ended".into());
    };
    let now = Caller::load(state, user, caller.credential.clone())
        .await
        .map_err(|e| {
            tracing::error!(status = %e.status(), "cannot re-check a session");
            "the session could not be checked".to_string()
        })?;
    if !now.allows(caller.admitted_for.as_deref(), caller.admitted_as) {
        return Err(format!(
            "{} no longer has the {} role",
            now.username,
            caller
                .admitted_for
                .as_deref()
                .unwrap_or(caller.admitted_as.as_str())
        ));
    }
    Ok(())
}

/// Ends when the credentials behind a long-lived stream stop admitting it: checked every
/// `stream_recheck_secs` and at the token's expiry. Dropping it stops the checks.
#[derive(Debug)]
pub struct SessionWatch {
    ended: tokio_util::sync::CancellationToken,
    reason: Arc<Mutex<String>>,
    _stop: tokio_util::sync::DropGuard,
}

impl SessionWatch {
    /// Starts watching `caller`'s credentials.
    pub fn start(state: Arc<AppState>, caller: Caller) -> SessionWatch {
        let ended = tokio_util::sync::CancellationToken::new();
        let stop = tokio_util::sync::CancellationToken::new();
        let reason = Arc::new(Mutex::new(String::new()));
        let every = Duration::from_secs(state.config.stream_recheck_secs.max(1));
        let (ended2, stop2, reason2) = (ended.clone(), stop.clone(), reason.clone());
        tokio::spawn(async move {
            loop {
                let mut wait = every;
                if let Credential::Session { expires_at, .. } = &caller.credential {
                    let left = expires_at.saturating_sub(chrono::Utc::now().timestamp());
                    wait = wait.min(Duration::from_secs(u64::try_from(left).unwrap_or(0)));
                }
                tokio::select! {
                    _ = stop2.cancelled() => return,
                    _ = state.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                if let Err(why) = recheck(&state, &caller).await {
                    *reason2.lock().unwrap_or_else(|e| e.into_inner()) = why;
                    ended2.cancel();
                    return;
                }
            }
        });
        SessionWatch {
            ended,
            reason,
            _stop: stop.drop_guard(),
        }
    }

    /// Resolves once the credentials no longer admit the stream.
    pub async fn ended(&self) {
        self.ended.cancelled().await
    }

    /// A token cancelled when the credentials no longer admit the stream.
    pub fn token(&self) -> tokio_util::sync::CancellationToken {
        self.ended.clone()
    }

    /// Why the stream was ended (empty while it is not).
    pub fn reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Route middleware: authenticates and authorises from the route's declared [`Access`]
/// alone, before any handler (and so before the body is read). Undeclared routes are
/// refused.
pub async fn authorize(
    State((state, table)): State<(Arc<AppState>, Arc<AccessTable>)>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let Some(access) = table.get(req.method(), &route) else {
        if table.has_route(&route) {
            // A method the route does not serve: the router answers 405, no handler runs.
            return Ok(next.run(req).await);
        }
        tracing::error!(%route, method = %req.method(), "route without an access declaration");
        return Err(ApiError::forbidden(
            "this route declares no permission and is refused",
        ));
    };
    let Some(needed) = access.least_role() else {
        return Ok(next.run(req).await);
    };
    if route == "/metrics" && state.config.metrics_public {
        return Ok(next.run(req).await);
    }
    let query = req.uri().query().map(str::to_string);
    let mut caller = authenticate(&state, req.headers(), query.as_deref()).await?;
    let permission = table.permission(req.method(), &route).map(str::to_string);
    caller.admitted_as = needed;
    caller.admitted_for.clone_from(&permission);
    req.extensions_mut().insert(caller.clone());
    // Let the audit layer outside see who it was, even when the answer is 403.
    let denied = if caller.allows(permission.as_deref(), needed) {
        instance_scope(&state, &caller, &route, req.uri().path())
            .await
            .err()
    } else if caller.permissions.is_some() {
        Some(ApiError::forbidden(format!(
            "this needs the {} permission; {}'s role {} does not grant it",
            permission.as_deref().unwrap_or("?"),
            caller.username,
            caller.role_name
        )))
    } else {
        caller.require(needed).err()
    };
    let mut resp = match denied {
        Some(e) => axum::response::IntoResponse::into_response(e),
        None => next.run(req).await,
    };
    resp.extensions_mut().insert(caller);
    Ok(resp)
}

/// The route prefixes whose `{id}` is an instance.
const INSTANCE_ROUTES: [&str; 3] = [
    "/api/v1/instances/{id}",
    "/api/v1/containers/{id}",
    "/api/v1/vms/{id}",
];

/// A scoped caller reaches only the instances of its groups: any other (or missing) one
/// answers the same 404, so that the answer tells nothing of what exists.
async fn instance_scope(
    state: &AppState,
    caller: &Caller,
    route: &str,
    path: &str,
) -> Result<(), ApiError> {
    if caller.groups.is_none() {
        return Ok(());
    }
    let Some(prefix) = INSTANCE_ROUTES
        .iter()
        .find(|p| route == **p || route.starts_with(&format!("{p}/")))
    else {
        return Ok(());
    };
    // The id is the path segment where the route has `{id}`.
    let at = prefix.split('/').count() - 1;
    let raw = path.split('/').nth(at).unwrap_or_default();
    let id = percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned();
    require_in_scope(state, caller, &id).await
}

/// `Ok` when `caller` may reach instance `id` (unscoped callers always may); another
/// group's instance and a missing one answer the same [`not_in_scope`] 404.
pub async fn require_in_scope(state: &AppState, caller: &Caller, id: &str) -> Result<(), ApiError> {
    if caller.groups.is_none() {
        return Ok(());
    }
    match state.libgo.get(id).await {
        Ok(i) if caller.sees(&i.labels) => Ok(()),
        Ok(_) => Err(not_in_scope(id)),
        Err(e) if e.kind() == libgo_core::ErrorKind::NotFound => Err(not_in_scope(id)),
        Err(e) => Err(e.into()),
    }
}

/// The answer for an instance a scoped caller may not see, whether or not it exists.
pub fn not_in_scope(id: &str) -> ApiError {
    ApiError::not_found(format!("no instance {id:?} in your groups"))
}

/// Why a login may not go ahead now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRefused {
    /// Seconds to wait.
    pub retry_after: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LimitKey {
    User(String),
    Client(IpAddr),
}

/// Limits login attempts per user name (whatever the client) and per client address
/// (whatever the name). An attempt is reserved before the password is checked, so
/// parallel attempts cannot all pass the check; a successful login gives its reservation
/// back.
#[derive(Debug)]
pub struct LoginLimiter {
    per_user: u32,
    per_client: u32,
    window: Duration,
    attempts: Mutex<HashMap<LimitKey, Vec<Instant>>>,
}

impl LoginLimiter {
    /// A limiter allowing `per_user` failures per user name and `per_client` per client
    /// address within `window` (0 turns a limit off).
    pub fn new(per_user: u32, per_client: u32, window: Duration) -> Self {
        LoginLimiter {
            per_user,
            per_client,
            window,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LimitKey, Vec<Instant>>> {
        self.attempts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves an attempt for `user` from `ip`, or says how long to wait.
    pub fn reserve(&self, ip: IpAddr, user: &str) -> Result<(), LoginRefused> {
        let mut map = self.lock();
        let now = Instant::now();
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, v| v.last().is_some_and(|t| now.duration_since(*t) < window));
        }
        let keys = [
            (LimitKey::User(user.to_string()), self.per_user),
            (LimitKey::Client(ip), self.per_client),
        ];
        for (key, max) in &keys {
            if *max == 0 {
                continue;
            }
            if let Some(list) = map.get_mut(key) {
                list.retain(|t| now.duration_since(*t) < self.window);
                if list.len() as u32 >= *max {
                    let oldest = list.first().copied().unwrap_or(now);
                    let wait = self.window.saturating_sub(now.duration_since(oldest));
                    return Err(LoginRefused {
                        retry_after: wait.as_secs().max(1),
                    });
                }
            }
        }
        for (key, max) in keys {
            if max > 0 {
                map.entry(key).or_default().push(now);
            }
        }
        Ok(())
    }

    /// Gives back a reservation that was not a failed attempt (the server was busy).
    pub fn release(&self, ip: IpAddr, user: &str) {
        let mut map = self.lock();
        for key in [LimitKey::User(user.to_string()), LimitKey::Client(ip)] {
            if let Some(list) = map.get_mut(&key) {
                list.pop();
            }
        }
    }

    /// A successful login: the user's failures are forgotten and the reservation given back.
    pub fn succeeded(&self, ip: IpAddr, user: &str) {
        let mut map = self.lock();
        map.remove(&LimitKey::User(user.to_string()));
        if let Some(list) = map.get_mut(&LimitKey::Client(ip)) {
            list.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_declares_its_access() {
        let table = AccessTable::from_openapi(&crate::server::openapi());
        assert!(
            table.undeclared().is_empty(),
            "undeclared: {:?}",
            table.undeclared()
        );
        use super::Role::*;
        let cases = [
            ("GET", "/health", Access::Public),
            ("POST", "/login", Access::Public),
            ("GET", "/api/v1/instances", Access::Role(Viewer)),
            ("POST", "/api/v1/instances", Access::Role(Operator)),
            (
                "GET",
                "/api/v1/instances/{id}/console",
                Access::Role(Operator),
            ),
            ("GET", "/api/v1/instances/{id}/vnc", Access::Role(Operator)),
            ("GET", "/api/v1/users", Access::Role(Admin)),
            ("PUT", "/api/v1/users/me/password", Access::OwnAccount),
            ("POST", "/api/v1/api-keys", Access::OwnAccount),
            ("DELETE", "/api/v1/api-keys/{id}", Access::OwnAccount),
            ("POST", "/api/v1/storage-pools", Access::Role(Admin)),
            ("GET", "/api/v1/audit", Access::Role(Admin)),
        ];
        for (m, r, a) in cases {
            let method: Method = m.parse().expect("method");
            assert_eq!(table.get(&method, r), Some(a), "{m} {r}");
        }
        assert_eq!(table.get(&Method::GET, "/api/v1/nothing"), None);
        // Permissions follow the tag and the level; own-account routes declare none.
        assert_eq!(
            table.permission(&Method::GET, "/api/v1/instances"),
            Some("instances.read")
        );
        assert_eq!(
            table.permission(&Method::GET, "/api/v1/instances/{id}/console"),
            Some("instances.write")
        );
        assert_eq!(
            table.permission(&Method::GET, "/api/v1/audit"),
            Some("audit.admin")
        );
        assert_eq!(table.permission(&Method::GET, "/api/v1/users/me"), None);
        // Each permission belongs to one level, so the built-in roles hold whole ones.
        for (method, route, access) in table.entries() {
            let method: Method = method.parse().expect("method");
            if let Some(p) = table.permission(&method, &route) {
                assert_eq!(
                    table.permission_levels().get(p).copied(),
                    access.least_role(),
                    "{method} {route}"
                );
            }
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let t = Tokens::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60));
        let user = UserRecord {
            id: "u1".into(),
            username: "alice".into(),
            password_hash: String::new(),
            role: super::Role::Operator,
            role_name: "operator".into(),
            scope: super::Scope::All,
            created_at: 0,
            updated_at: 0,
        };
        let (token, _) = t.issue(&user, "s1").expect("token");
        let claims = t.verify(&token).expect("valid");
        assert_eq!((claims.sub.as_str(), claims.sid.as_str()), ("u1", "s1"));
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(t.verify(&tampered).is_err());
        let other = Tokens::new(b"another-secret-another-secret-xx", Duration::from_secs(60));
        assert!(other.verify(&token).is_err());
    }

    #[test]
    fn login_attempts_are_reserved_per_user_and_per_client() {
        let l = LoginLimiter::new(2, 2, Duration::from_secs(60));
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        // Reservations count before any password is checked.
        assert!(l.reserve(a, "alice").is_ok());
        assert!(l.reserve(b, "alice").is_ok());
        // The user's limit holds whatever the client address.
        assert!(l.reserve(a, "alice").is_err());
        assert!(l.reserve(b, "alice").is_err());
        // The client's limit holds whatever the user name.
        assert!(l.reserve(a, "bob").is_ok());
        assert!(l.reserve(a, "carol").is_err());
        // A success forgets the user's failures.
        l.succeeded(b, "alice");
        assert!(l.reserve(b, "alice").is_ok());
    }

    #[test]
    fn api_keys_hash_stably() {
        let (key, prefix) = new_api_key();
        assert!(key.starts_with(&prefix));
        assert_eq!(hash_api_key(&key), hash_api_key(&key));
        assert_ne!(hash_api_key(&key), hash_api_key("lgk_other"));
    }
}
