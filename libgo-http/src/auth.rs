//! Authentication (JWT bearer tokens, API keys, argon2 passwords) and authorisation (roles,
//! decided from the route before the request body is read).

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::db::UserRecord;
use crate::error::ApiError;
use crate::state::AppState;

/// What a user may do. Each role includes the ones below it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything but users, keys of others and the audit log.
    Viewer,
    /// Also manage instances, images, networks and volumes.
    Operator,
    /// Also manage users, read the audit log, and create privileged containers, bind
    /// mounts and host devices.
    Admin,
}

impl Role {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected admin, operator or viewer"
            )),
        }
    }
}

/// The authenticated caller of a request (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// User id.
    pub user_id: String,
    /// User name.
    pub username: String,
    /// Role.
    pub role: Role,
}

impl Caller {
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
    /// Role when issued (the stored role is what counts).
    pub role: Role,
    /// Issued at (seconds).
    pub iat: i64,
    /// Expiry (seconds).
    pub exp: i64,
    /// Token id.
    pub jti: String,
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

    /// A token for `user` and its expiry (seconds since the epoch).
    pub fn issue(&self, user: &UserRecord) -> Result<(String, i64), ApiError> {
        let now = chrono::Utc::now().timestamp();
        let exp = now + i64::try_from(self.ttl.as_secs()).unwrap_or(3600);
        let claims = Claims {
            sub: user.id.clone(),
            name: user.username.clone(),
            role: user.role,
            iat: now,
            exp,
            jti: uuid::Uuid::new_v4().to_string(),
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

/// Hashes a password with argon2id (on a blocking thread: it is slow by design).
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)?
}

/// Checks a password against an argon2 PHC string.
pub async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Checks the rules for a new password.
pub fn check_password_rules(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 8 {
        return Err(ApiError::invalid("a password needs at least 8 characters"));
    }
    if password.len() > 1024 {
        return Err(ApiError::invalid("a password may have at most 1024 bytes"));
    }
    Ok(())
}

/// A random secret of `bytes` bytes, hex-encoded.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A new API key: `lgk_` + 8 hex prefix + `_` + 48 hex secret. Returns (key, prefix).
pub fn new_api_key() -> (String, String) {
    let prefix = random_hex(4);
    let key = format!("lgk_{prefix}_{}", random_hex(24));
    (key, format!("lgk_{prefix}"))
}

/// SHA-256 of an API key, hex. Keys carry 224 random bits, so a fast hash suffices and
/// lets a key be found by its hash in one indexed lookup (argon2 is for low-entropy
/// passwords).
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Which callers a route admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// Authenticated callers with at least this role.
    Role(Role),
}

/// The access rule of a route: the one table where authorisation is decided.
///
/// - Reads need `viewer`; writes need `operator`.
/// - Users, the audit log, storage pools (they name host directories) and volume uploads
///   (they read a host file) need `admin` for writes; users and the audit log for reads too.
/// - Every caller may read itself, change its own password and list its own keys.
/// - Privileged container specs are checked again once the body is parsed (admin only).
pub fn access_for(method: &Method, route: &str) -> Access {
    let read = matches!(*method, Method::GET | Method::HEAD);
    match route {
        "/health" | "/login" | "/api/v1/login" => return Access::Public,
        "/api/v1/users/me" | "/api/v1/users/me/password" | "/api/v1/api-keys" if read => {
            return Access::Role(Role::Viewer);
        }
        "/api/v1/users/me/password" => return Access::Role(Role::Viewer),
        _ => {}
    }
    let admin_prefixes = ["/api/v1/users", "/api/v1/audit"];
    if admin_prefixes.iter().any(|p| route.starts_with(p)) {
        return Access::Role(Role::Admin);
    }
    if read {
        return Access::Role(Role::Viewer);
    }
    let admin_writes = ["/api/v1/storage-pools", "/api/v1/volumes/{name}/upload"];
    if admin_writes.iter().any(|p| route.starts_with(p)) {
        return Access::Role(Role::Admin);
    }
    Access::Role(Role::Operator)
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

/// Finds the caller from a bearer token, an `X-API-Key`, or (for WebSocket upgrades, which
/// browsers cannot give headers) an `access_token` query parameter.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Caller, ApiError> {
    let user = if let Some(key) = headers.get("x-api-key") {
        let key = key
            .to_str()
            .map_err(|_| ApiError::unauthorized("invalid API key"))?;
        state
            .db
            .key_owner(&hash_api_key(key))
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid or expired API key"))?
    } else {
        let is_upgrade = headers.contains_key(axum::http::header::UPGRADE);
        let token = match bearer(headers) {
            Some(t) => t.to_string(),
            None => match query_token(query).filter(|_| is_upgrade) {
                Some(t) => t,
                None => {
                    return Err(ApiError::unauthorized(
                        "authentication required: send Authorization: Bearer <token> or \
                         X-API-Key",
                    ));
                }
            },
        };
        let claims = state.tokens.verify(&token)?;
        state
            .db
            .user_by_id(&claims.sub)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token's user no longer exists"))?
    };
    Ok(Caller {
        user_id: user.id,
        username: user.username,
        role: user.role,
    })
}

/// Route middleware: authenticates and authorises from the route alone, before any handler
/// (and so before the body is read).
pub async fn authorize(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let access = access_for(req.method(), &route);
    let Access::Role(needed) = access else {
        return Ok(next.run(req).await);
    };
    if route == "/metrics" && state.config.metrics_public {
        return Ok(next.run(req).await);
    }
    let query = req.uri().query().map(str::to_string);
    let caller = authenticate(&state, req.headers(), query.as_deref()).await?;
    req.extensions_mut().insert(caller.clone());
    // Let the audit layer outside see who it was, even when the answer is 403.
    let denied = caller.require(needed).err();
    let mut resp = match denied {
        Some(e) => axum::response::IntoResponse::into_response(e),
        None => next.run(req).await,
    };
    resp.extensions_mut().insert(caller);
    Ok(resp)
}

/// Counts failed logins per client and user name, and refuses logins past the limit.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<(IpAddr, String), Vec<Instant>>>,
}

impl LoginLimiter {
    /// A limiter allowing `max_failures` per `window`.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        LoginLimiter {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(IpAddr, String), Vec<Instant>>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(seconds to wait)` when the client must wait before trying again.
    pub fn check(&self, ip: IpAddr, user: &str) -> Result<(), u64> {
        if self.max_failures == 0 {
            return Ok(());
        }
        let mut map = self.lock();
        let now = Instant::now();
        let Some(list) = map.get_mut(&(ip, user.to_string())) else {
            return Ok(());
        };
        list.retain(|t| now.duration_since(*t) < self.window);
        if list.len() as u32 >= self.max_failures {
            let oldest = list.first().copied().unwrap_or(now);
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            return Err(wait.as_secs().max(1));
        }
        Ok(())
    }

    /// Records a failure.
    pub fn failed(&self, ip: IpAddr, user: &str) {
        let mut map = self.lock();
        if map.len() > 100_000 {
            let now = Instant::now();
            let window = self.window;
            map.retain(|_, v| v.last().is_some_and(|t| now.duration_since(*t) < window));
        }
        map.entry((ip, user.to_string()))
            .or_default()
            .push(Instant::now());
    }

    /// Forgets failures after a success.
    pub fn succeeded(&self, ip: IpAddr, user: &str) {
        self.lock().remove(&(ip, user.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_table() {
        use Access::*;
        assert_eq!(access_for(&Method::GET, "/health"), Public);
        assert_eq!(access_for(&Method::POST, "/login"), Public);
        assert_eq!(
            access_for(&Method::GET, "/api/v1/instances"),
            Role(super::Role::Viewer)
        );
        assert_eq!(
            access_for(&Method::POST, "/api/v1/instances"),
            Role(super::Role::Operator)
        );
        assert_eq!(
            access_for(&Method::GET, "/api/v1/users"),
            Role(super::Role::Admin)
        );
        assert_eq!(
            access_for(&Method::PUT, "/api/v1/users/me/password"),
            Role(super::Role::Viewer)
        );
        assert_eq!(
            access_for(&Method::POST, "/api/v1/storage-pools"),
            Role(super::Role::Admin)
        );
        assert_eq!(
            access_for(&Method::GET, "/api/v1/audit"),
            Role(super::Role::Admin)
        );
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let t = Tokens::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60));
        let user = UserRecord {
            id: "u1".into(),
            username: "alice".into(),
            password_hash: String::new(),
            role: super::Role::Operator,
            created_at: 0,
            updated_at: 0,
        };
        let (token, _) = t.issue(&user).expect("token");
        assert_eq!(t.verify(&token).expect("valid").sub, "u1");
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(t.verify(&tampered).is_err());
        let other = Tokens::new(b"another-secret-another-secret-xx", Duration::from_secs(60));
        assert!(other.verify(&token).is_err());
    }

    #[test]
    fn login_limiter_blocks_after_failures() {
        let l = LoginLimiter::new(2, Duration::from_secs(60));
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert!(l.check(ip, "a").is_ok());
        l.failed(ip, "a");
        l.failed(ip, "a");
        assert!(l.check(ip, "a").is_err());
        assert!(l.check(ip, "b").is_ok());
        l.succeeded(ip, "a");
        assert!(l.check(ip, "a").is_ok());
    }

    #[test]
    fn api_keys_hash_stably() {
        let (key, prefix) = new_api_key();
        assert!(key.starts_with(&prefix));
        assert_eq!(hash_api_key(&key), hash_api_key(&key));
        assert_ne!(hash_api_key(&key), hash_api_key("lgk_other"));
    }
}
