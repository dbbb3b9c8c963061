//! Authentication, roles and the error shape, over real HTTP.

mod common;

use common::{assert_error, concrete, start, unique};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Every (method, route) of the OpenAPI document.
fn operations() -> Vec<(Method, String)> {
    let doc = serde_json::to_value(libgo_http::openapi()).expect("doc");
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in ["get", "post", "put", "patch", "delete"] {
            if item.get(m).is_some() {
                ops.push((
                    Method::from_bytes(m.to_uppercase().as_bytes()).expect("method"),
                    path.clone(),
                ));
            }
        }
    }
    ops
}

/// The role each operation declares (`x-libgo-access`), from the OpenAPI document.
fn declared(route: &str, method: &Method) -> String {
    let doc = serde_json::to_value(libgo_http::openapi()).expect("doc");
    doc["paths"][route][method.as_str().to_lowercase()]["x-libgo-access"]
        .as_str()
        .unwrap_or("undeclared")
        .to_string()
}

fn rank(role: &str) -> u8 {
    match role {
        "public" => 0,
        "viewer" | "self" => 1,
        "operator" => 2,
        "admin" => 3,
        other => panic!("operation with access {other:?}"),
    }
}

/// Every operation of the document (WebSockets included) × every role, against the
/// declaration next to its handler: a role below it gets 403 before the body is read, a
/// role at or above it is let through to the handler.
#[tokio::test]
async fn role_matrix() {
    let s = start(false, |_| {}).await;
    let (_, viewer) = s.user("viewer").await;
    let (_, operator) = s.user("operator").await;
    let ops = operations();
    assert!(
        ops.len() > 60,
        "the document lists every route ({})",
        ops.len()
    );
    let roles = [
        ("viewer", &viewer),
        ("operator", &operator),
        ("admin", &s.admin),
    ];
    let mut refused = 0;
    let mut admitted = 0;
    for (method, route) in &ops {
        let access = declared(route, method);
        let needed = rank(&access);
        // Public routes need nothing; logout would end the sessions this loop uses (its
        // own test covers it).
        if needed == 0 || route.ends_with("/logout") {
            continue;
        }
        let path = concrete(route);
        for (role, token) in roles {
            // The body is malformed on purpose: authorisation must answer before it is read.
            let r = s
                .req(method.clone(), &path, token)
                .header("content-type", "application/json")
                .body("{not json")
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            if rank(role) < needed {
                assert_error(r, 403, "FORBIDDEN").await;
                refused += 1;
            } else {
                assert!(
                    status != 401 && (status != 403 || route.ends_with("/password")),
                    "{role} {method} {route} ({access}): {status}"
                );
                admitted += 1;
            }
        }
        // Without credentials, everything but the public routes is 401.
        let r = s
            .client
            .request(method.clone(), s.url(&path))
            .send()
            .await
            .expect("request");
        assert_error(r, 401, "UNAUTHORIZED").await;
    }
    assert!(refused >= 60, "refusals checked: {refused}");
    assert!(admitted > 100, "admissions checked: {admitted}");
    // The WebSocket routes are in the matrix, with consoles and VNC for operators.
    assert_eq!(
        declared("/api/v1/instances/{id}/console", &Method::GET),
        "operator"
    );
    assert_eq!(
        declared("/api/v1/instances/{id}/vnc", &Method::GET),
        "operator"
    );
    assert_eq!(declared("/api/v1/events", &Method::GET), "viewer");

    // Viewers read; operators may not ask for host privileges.
    let r = s
        .req(Method::GET, "/api/v1/tasks", &viewer)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    for body in [
        json!({"name": unique("priv"), "kind": "container", "image": "x", "privileged": true}),
        json!({"name": unique("bind"), "kind": "container", "image": "x",
               "mounts": [{"kind": "bind", "source": "/etc", "target": "/host"}]}),
        json!({"name": unique("dev"), "kind": "container", "image": "x", "devices": ["/dev/sda"]}),
        json!({"name": unique("kboot"), "kind": "vm", "kernelBoot": {"kernel": "/boot/vmlinuz"}}),
    ] {
        let r = s
            .req(Method::POST, "/api/v1/instances", &operator)
            .json(&body)
            .send()
            .await
            .expect("req");
        assert_error(r, 403, "FORBIDDEN").await;
    }
    // The seed-001 shape with a host path is a bind mount too.
    let r = s
        .req(Method::POST, "/api/v1/containers", &operator)
        .json(&json!({"name": unique("seed"), "image": "x",
                      "volumes": [{"host_path": "/", "container_path": "/host"}]}))
        .send()
        .await
        .expect("req");
    assert_error(r, 403, "FORBIDDEN").await;
    // Operators may not choose export destinations on the host.
    let r = s
        .req(Method::POST, "/api/v1/instances/x/export", &operator)
        .json(&json!({"format": "tar", "destination": "/etc/passwd2"}))
        .send()
        .await
        .expect("req");
    assert!(
        matches!(r.status().as_u16(), 403 | 404 | 503),
        "{}",
        r.status()
    );
    // Every role may change its own password.
    let r = s
        .req(Method::PUT, "/api/v1/users/me/password", &viewer)
        .json(&json!({"currentPassword": "password-123", "newPassword": "password-456"}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    s.stop().await;
}

fn b64(v: &Value) -> String {
    // URL-safe base64 without padding, by hand (no extra dependency).
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = v.to_string().into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn bad_tokens_are_401() {
    let s = start(false, |_| {}).await;
    let good = s.admin.clone();
    let r = s
        .req(Method::GET, "/api/v1/users/me", &good)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    let parts: Vec<&str> = good.split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims: Value = {
        // Decode the payload by asking the server who we are, then forge variants.
        let me: Value = s
            .req(Method::GET, "/api/v1/users/me", &good)
            .send()
            .await
            .expect("req")
            .json()
            .await
            .expect("json");
        let sessions: Value = s
            .req(Method::GET, "/api/v1/sessions", &good)
            .send()
            .await
            .expect("req")
            .json()
            .await
            .expect("json");
        let sid = sessions["items"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["current"] == true))
            .map(|i| i["id"].clone())
            .expect("the caller's session");
        let now = chrono::Utc::now().timestamp();
        json!({"sub": me["id"], "name": "admin", "role": "admin", "iat": now - 7200, "exp": now - 3600, "jti": "x", "sid": sid})
    };
    let mut tampered_sig = parts[2].to_string();
    let last = tampered_sig.pop().unwrap_or('A');
    tampered_sig.push(if last == 'A' { 'B' } else { 'A' });
    let mut fresh = claims.clone();
    fresh["exp"] = json!(chrono::Utc::now().timestamp() + 3600);
    let cases = [
        format!("{}.{}.{}", parts[0], parts[1], tampered_sig),
        // A payload swapped under the original signature.
        format!("{}.{}.{}", parts[0], b64(&fresh), parts[2]),
        // Expired, signed with the right header but a wrong secret.
        format!("{}.{}.{}", parts[0], b64(&claims), parts[2]),
        // alg=none with no signature.
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&fresh)
        ),
        // HS512 header.
        format!(
            "{}.{}.{}",
            b64(&json!({"alg": "HS512", "typ": "JWT"})),
            parts[1],
            parts[2]
        ),
        "garbage".to_string(),
    ];
    for t in cases {
        let r = s
            .req(Method::GET, "/api/v1/instances", &t)
            .send()
            .await
            .expect("req");
        assert_error(r, 401, "UNAUTHORIZED").await;
    }
    // A correctly signed but expired token: the server's own secret, from its database.
    let secret = s
        .state
        .db
        .setting_or_insert("jwt_secret", "unused")
        .await
        .expect("secret");
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode");
    let r = s
        .req(Method::GET, "/api/v1/instances", &expired)
        .send()
        .await
        .expect("req");
    let body = assert_error(r, 401, "UNAUTHORIZED").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("xpired"),
        "{body}"
    );
    // And the same claims, unexpired, are accepted: the secret was right.
    let ok = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &fresh,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode");
    let r = s
        .req(Method::GET, "/api/v1/users/me", &ok)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    // Rightly signed, but naming a session that does not exist: refused.
    let mut forged = fresh.clone();
    forged["sid"] = json!("made-up-session");
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &forged,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode");
    let r = s
        .req(Method::GET, "/api/v1/users/me", &forged)
        .send()
        .await
        .expect("req");
    assert_error(r, 401, "UNAUTHORIZED").await;
    s.stop().await;
}

#[tokio::test]
async fn api_keys_users_and_audit() {
    let s = start(false, |_| {}).await;
    let (op_name, operator) = s.user("operator").await;
    // A key is shown once, works as X-API-Key, is listed without the secret, and revokes.
    let r = s
        .req(Method::POST, "/api/v1/api-keys", &operator)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.expect("json");
    let key = created["key"].as_str().expect("key").to_string();
    let id = created["apiKey"]["id"].as_str().expect("id").to_string();
    let me: Value = s
        .client
        .get(s.url("/api/v1/users/me"))
        .header("X-API-Key", &key)
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(me["username"], op_name.as_str());
    assert_eq!(me["role"], "operator");
    let list: Value = s
        .req(Method::GET, "/api/v1/api-keys", &operator)
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(list["count"], 1);
    assert!(
        !list.to_string().contains(&key),
        "a listed key never shows its secret"
    );
    let stored: Vec<String> = {
        use sqlx::Row;
        sqlx::query("SELECT key_hash FROM api_keys")
            .fetch_all(s.state.db.pool())
            .await
            .expect("rows")
            .iter()
            .map(|r| r.try_get::<String, _>("key_hash").expect("hash"))
            .collect()
    };
    assert!(
        stored.iter().all(|h| h != &key && h.len() == 64),
        "keys are stored hashed"
    );
    let r = s
        .req(Method::DELETE, &format!("/api/v1/api-keys/{id}"), &operator)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s
        .client
        .get(s.url("/api/v1/users/me"))
        .header("X-API-Key", &key)
        .send()
        .await
        .expect("req");
    assert_error(r, 401, "UNAUTHORIZED").await;

    // Users: read, update role, change password, delete; duplicate is 409.
    let name = unique("dora");
    let r = s
        .req(Method::POST, "/api/v1/users", &s.admin)
        .json(&json!({"username": name, "password": "password-123", "role": "viewer"}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .req(Method::POST, "/api/v1/users", &s.admin)
        .json(&json!({"username": name, "password": "password-123", "role": "viewer"}))
        .send()
        .await
        .expect("req");
    assert_error(r, 409, "RESOURCE_CONFLICT").await;
    let u: Value = s
        .req(Method::PATCH, &format!("/api/v1/users/{name}"), &s.admin)
        .json(&json!({"role": "operator", "password": "new-password-1"}))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(u["role"], "operator");
    assert!(u.get("passwordHash").is_none() && !u.to_string().contains("argon2"));
    s.login(&name, "new-password-1").await;
    let r = s
        .req(Method::DELETE, &format!("/api/v1/users/{name}"), &s.admin)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s
        .req(Method::GET, &format!("/api/v1/users/{name}"), &s.admin)
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;

    // The audit log: logins and mutations, filterable, paginated, without secrets.
    let audit: Value = s
        .req(
            Method::GET,
            "/api/v1/audit?method=POST&path=/api/v1/users&pageSize=100",
            &s.admin,
        )
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert!(audit["count"].as_u64().unwrap_or(0) >= 3, "{audit}");
    assert!(
        audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["method"] == "POST")
    );
    let logins: Value = s
        .req(
            Method::GET,
            &format!("/api/v1/audit?path=/login&username={name}"),
            &s.admin,
        )
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(logins["count"], 1, "{logins}");
    assert!(logins["items"][0]["requestId"].as_str().is_some());
    let denied: Value = s
        .req(
            Method::GET,
            "/api/v1/audit?outcome=success&pageSize=1&page=2",
            &s.admin,
        )
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(denied["page"], 2);
    assert_eq!(denied["pageSize"], 1);
    let all: Value = s
        .req(Method::GET, "/api/v1/audit?pageSize=100", &s.admin)
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    let text = all.to_string();
    for secret in [
        "password-123",
        "new-password-1",
        common::ADMIN_PASSWORD,
        key.as_str(),
    ] {
        assert!(!text.contains(secret), "audit leaks {secret}");
    }
    s.stop().await;
}

#[tokio::test]
async fn error_shapes_and_limits() {
    let s = start(false, |c| {
        c.body_limit_bytes = 4096;
        c.login_max_failures = 3;
    })
    .await;
    let t = s.admin.clone();
    // 404 unknown route (authenticated or not), 405 wrong method.
    assert_error(
        s.req(Method::GET, "/api/v1/nope", &t)
            .send()
            .await
            .expect("req"),
        404,
        "NOT_FOUND",
    )
    .await;
    assert_error(
        s.client.get(s.url("/nope")).send().await.expect("req"),
        404,
        "NOT_FOUND",
    )
    .await;
    assert_error(
        s.req(Method::PUT, "/api/v1/tasks", &t)
            .send()
            .await
            .expect("req"),
        405,
        "METHOD_NOT_ALLOWED",
    )
    .await;
    // 400: malformed JSON, bad pagination, bad query, invalid spec.
    let r = s
        .req(Method::POST, "/api/v1/users", &t)
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .expect("req");
    assert_error(r, 400, "INVALID_INPUT").await;
    assert_error(
        s.req(Method::GET, "/api/v1/instances?pageSize=101", &t)
            .send()
            .await
            .expect("req"),
        400,
        "INVALID_INPUT",
    )
    .await;
    assert_error(
        s.req(Method::GET, "/api/v1/tasks?page=0", &t)
            .send()
            .await
            .expect("req"),
        400,
        "INVALID_INPUT",
    )
    .await;
    assert_error(
        s.req(Method::GET, "/api/v1/tasks?pageSize=abc", &t)
            .send()
            .await
            .expect("req"),
        400,
        "INVALID_INPUT",
    )
    .await;
    let r = s
        .req(Method::POST, "/api/v1/users", &t)
        .json(&json!({"username": "Bad Name", "password": "password-123", "role": "viewer"}))
        .send()
        .await
        .expect("req");
    assert_error(r, 400, "INVALID_INPUT").await;
    // 415 without a JSON content type.
    let r = s
        .req(Method::POST, "/api/v1/users", &t)
        .body("{}")
        .send()
        .await
        .expect("req");
    assert_error(r, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    // 413 over the body limit.
    let big = json!({"username": "x".repeat(8192), "password": "p", "role": "viewer"});
    let r = s
        .req(Method::POST, "/api/v1/users", &t)
        .json(&big)
        .send()
        .await
        .expect("req");
    assert_error(r, 413, "PAYLOAD_TOO_LARGE").await;
    // 409 conflict.
    let r = s
        .req(Method::POST, "/api/v1/users", &t)
        .json(&json!({"username": "admin", "password": "password-123", "role": "viewer"}))
        .send()
        .await
        .expect("req");
    assert_error(r, 409, "RESOURCE_CONFLICT").await;
    // 404 of a task; 409 cancelling an ended one is shown in the tasks test.
    assert_error(
        s.req(Method::GET, "/api/v1/tasks/nope", &t)
            .send()
            .await
            .expect("req"),
        404,
        "NOT_FOUND",
    )
    .await;
    // 503 when no backend can do it.
    let r = s
        .req(Method::POST, "/api/v1/instances", &t)
        .json(&json!({"name": unique("c"), "kind": "container", "image": "busybox"}))
        .send()
        .await
        .expect("req");
    assert_error(r, 503, "BACKEND_UNAVAILABLE").await;
    // Pagination shape.
    let v: Value = s
        .req(Method::GET, "/api/v1/users?page=1&pageSize=1", &t)
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(v["page"], 1);
    assert_eq!(v["pageSize"], 1);
    assert!(v["count"].as_u64().is_some() && v["items"].as_array().is_some_and(|a| a.len() == 1));
    // Request ids: generated, or the client's echoed.
    let r = s
        .client
        .get(s.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("req");
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = s.client.get(s.url("/health")).send().await.expect("req");
    assert!(r.headers().contains_key("x-request-id"));
    // /health is served from a view refreshed at most once a second.
    let checked = || async {
        let v: Value = s
            .client
            .get(s.url("/health"))
            .send()
            .await
            .expect("req")
            .json()
            .await
            .expect("json");
        v["checkedAt"].as_str().expect("checkedAt").to_string()
    };
    let (a, b) = (checked().await, checked().await);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let c = checked().await;
    assert!(c != b, "refreshed after a second: {b} then {c}");
    let d = checked().await;
    // Two answers a few milliseconds apart share one check (at most one of the two pairs
    // can straddle an expiry).
    assert!(a == b || c == d, "cached: {a} {b} {c} {d}");
    // 401 wrong password, then 429 with Retry-After after too many failures.
    for _ in 0..3 {
        let r = s
            .client
            .post(s.url("/login"))
            .json(&json!({"username": "admin", "password": "wrong-password"}))
            .send()
            .await
            .expect("req");
        assert_error(r, 401, "UNAUTHORIZED").await;
    }
    let r = s
        .client
        .post(s.url("/login"))
        .json(&json!({"username": "admin", "password": common::ADMIN_PASSWORD}))
        .send()
        .await
        .expect("req");
    assert!(r.headers().contains_key("retry-after"));
    assert_error(r, 429, "RATE_LIMITED").await;
    s.stop().await;
}

#[tokio::test]
async fn per_client_rate_limit() {
    let s = start(false, |c| c.rate_limit_per_minute = 5).await;
    // The login in start() used one request.
    let mut last = None;
    for i in 0..5 {
        let r = s
            .req(Method::GET, "/api/v1/tasks", &s.admin)
            .send()
            .await
            .expect("req");
        let remaining: u32 = r.headers()["x-ratelimit-remaining"]
            .to_str()
            .expect("h")
            .parse()
            .expect("n");
        assert_eq!(r.headers()["x-ratelimit-limit"], "5");
        assert!(r.headers().contains_key("x-ratelimit-reset"));
        if i < 4 {
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(remaining, 3 - i);
        }
        last = Some(r);
    }
    let r = last.expect("response");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert_error(r, 429, "RATE_LIMITED").await;
    // /health is never limited.
    let r = s.client.get(s.url("/health")).send().await.expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}
