//! Accounts: roles, scopes, passwords and API keys — what the users, sessions and keys
//! services need, with no HTTP in it (errors are [`libgo_core::Error`]; the routes turn
//! them into responses).

use std::str::FromStr;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use libgo_core::{Error, Result};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

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

/// Where a user's role applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Everything the role's permissions reach.
    #[default]
    All,
    /// Only the instances of the groups the user is a member of (others answer 404);
    /// other resources as the role allows.
    Groups,
}

impl Scope {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Groups => "groups",
        }
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Scope::All),
            "groups" => Ok(Scope::Groups),
            other => Err(format!("unknown scope {other:?}: expected all or groups")),
        }
    }
}

/// Hashes a password with argon2id (on a blocking thread: it is slow by design).
pub async fn hash_password(password: String) -> Result<String> {
    let hashing = |e: &dyn std::fmt::Display| Error::internal(format!("password hashing: {e}"));
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| hashing(&e))
    })
    .await
    .map_err(|e| hashing(&e))?
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
pub fn check_password_rules(password: &str) -> Result<()> {
    if password.chars().count() < 8 {
        return Err(Error::invalid("a password needs at least 8 characters"));
    }
    if password.len() > 1024 {
        return Err(Error::invalid("a password may have at most 1024 bytes"));
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
