//! Webhooks: events POSTed to URLs an administrator registers, each body signed with the
//! webhook's secret (`X-LibGo-Signature: sha256=<HMAC-SHA256 of the body>`).
//!
//! Every delivery is a row of `webhook_deliveries` before anything is sent, so a restart
//! loses none; a replica claims a row (compare-and-set on `claimed_until`) before sending
//! it, so two replicas never send one together. Engine events are seen by every replica:
//! only the one holding the `events` lease queues them, and a delivery's id is derived from
//! the webhook and the event, so a row queued twice around a change of holder is one row.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;

use crate::db::{now_ms, to_time};
use crate::error::{ApiError, ApiResult};
use crate::events::ServerEvent;
use crate::state::AppState;
use crate::tasks::TaskStatus;

/// The events a webhook may ask for; `instance.*`, `task.*`, `host.*`, `alert.*` and `*`
/// name groups of them.
pub const EVENT_NAMES: [&str; 14] = [
    "instance.created",
    "instance.started",
    "instance.stopped",
    "instance.paused",
    "instance.resumed",
    "instance.died",
    "instance.deleted",
    "task.finished",
    "task.failed",
    "task.cancelled",
    "host.down",
    "host.up",
    "alert.firing",
    "alert.resolved",
];

/// How long a claimed delivery stays with its replica (beyond the request's own timeout).
const CLAIM_MS: i64 = 60_000;
/// How long one POST may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two attempts.
const MAX_BACKOFF_MS: u64 = 300_000;
/// Deliveries sent at once by one replica.
const PARALLEL: usize = 8;
/// Ended deliveries kept at most (the oldest go first), and for at most this many days.
const KEPT_DELIVERIES: i64 = 10_000;
const KEPT_DAYS: i64 = 7;
/// The error text kept per delivery.
const ERROR_KEPT: usize = 512;

/// A webhook as the API shows it (the secret only in the answer that created it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Id.
    pub id: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Event names or groups (`instance.died`, `task.*`, `*`).
    pub events: Vec<String>,
    /// `false` queues nothing for it.
    pub enabled: bool,
    /// The signing secret: in the answer to the create (or to a PATCH that set one) only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A new webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookSpec {
    /// `http://` or `https://` URL; its host must not resolve to a loopback, link-local or
    /// metadata address unless the server's `webhook_allow_internal` is set.
    pub url: String,
    /// Event names or groups.
    pub events: Vec<String>,
    /// Signing secret, 16 to 256 printable characters; one is generated when absent.
    pub secret: Option<String>,
    /// Default `true`.
    pub enabled: Option<bool>,
}

/// Changes to a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookPatch {
    /// New URL.
    pub url: Option<String>,
    /// New event list.
    pub events: Option<Vec<String>>,
    /// New secret (shown in the answer).
    pub secret: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Answered 2xx.
    Delivered,
    /// Given up after the retry time.
    Failed,
}

/// One event sent (or being sent) to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Id (`X-LibGo-Delivery`), the same for every attempt.
    pub id: String,
    /// Webhook id.
    pub webhook_id: String,
    /// Event name (`X-LibGo-Event`).
    pub event: String,
    /// Status.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The next attempt, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// HTTP status of the last attempt, if it got an answer.
    pub last_status: Option<u16>,
    /// What went wrong last.
    pub last_error: Option<String>,
    /// How long the last attempt took, in milliseconds.
    pub duration_ms: Option<u64>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// Its last change.
    pub updated_at: DateTime<Utc>,
}

/// The name of `event` as webhooks see it; `None` for what they are not sent (task
/// progress).
pub fn event_name(event: &ServerEvent) -> Option<String> {
    match event {
        ServerEvent::Instance { event } => {
            let action = serde_json::to_value(event.action).ok()?;
            Some(format!("instance.{}", action.as_str()?))
        }
        ServerEvent::Task { task } => match task.status {
            TaskStatus::Running => None,
            status => Some(format!("task.{}", status.as_str())),
        },
        ServerEvent::Host { alive, .. } => {
            Some(if *alive { "host.up" } else { "host.down" }.to_string())
        }
        ServerEvent::Alert { alert } => Some(format!("alert.{}", alert.state.as_str())),
    }
}

/// What makes one event the same event on every replica.
fn event_key(event: &ServerEvent) -> String {
    match event {
        ServerEvent::Instance { event } => format!(
            "instance|{}|{}|{:?}|{}",
            event.backend,
            event.instance_id,
            event.action,
            event.time.timestamp_millis()
        ),
        ServerEvent::Task { task } => format!("task|{}|{}", task.id, task.status.as_str()),
        // Every replica watches hosts: one change is one event per minute at most.
        ServerEvent::Host { host, alive, .. } => {
            format!("host|{host}|{alive}|{}", now_ms() / 60_000)
        }
        ServerEvent::Alert { alert } => format!(
            "alert|{}|{}|{}",
            alert.rule,
            alert.state.as_str(),
            alert.time.timestamp_millis()
        ),
    }
}

/// Whether a webhook asking for `patterns` wants event `name`.
pub fn wants(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| {
        p == "*"
            || p == name
            || p.strip_suffix(".*")
                .is_some_and(|group| name.strip_prefix(group).is_some_and(|r| r.starts_with('.')))
    })
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::from(libgo_core::Error::invalid(message).with_field(field))
}

/// Every word an event list may hold: `*`, each event name and each group (`instance.*`).
pub fn event_words() -> Vec<String> {
    let mut words = vec!["*".to_string()];
    for name in EVENT_NAMES {
        if let Some((group, _)) = name.split_once('.') {
            let group = format!("{group}.*");
            if !words.contains(&group) {
                words.push(group);
            }
        }
        words.push(name.to_string());
    }
    words
}

/// Checks an event list: 1 to 32 known names or groups.
pub fn check_events(events: &[String]) -> ApiResult<()> {
    if events.is_empty() || events.len() > 32 {
        return Err(invalid(
            "events",
            "events must name 1 to 32 events or groups".into(),
        ));
    }
    let words = event_words();
    for e in events {
        if !words.contains(e) {
            return Err(invalid(
                "events",
                format!(
                    "unknown event {e:?}: use one of {}, a group such as \"instance.*\", or \"*\"",
                    EVENT_NAMES.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Checks a secret: 16 to 256 printable ASCII characters.
pub fn check_secret(secret: &str) -> ApiResult<()> {
    if !(16..=256).contains(&secret.len()) || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "secret",
            "the secret must be 16 to 256 printable characters without spaces".into(),
        ));
    }
    Ok(())
}

/// A new random secret (32 bytes, hex).
pub fn new_secret() -> String {
    hex::encode(rand::thread_rng().r#gen::<[u8; 32]>())
}

/// Why `ip` may not receive webhooks (unless the configuration allows internal targets).
fn internal_address(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some("a loopback address"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local (metadata) address"),
        IpAddr::V4(v4) if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() => {
            Some("not a unicast address")
        }
        // Alibaba Cloud's metadata service.
        IpAddr::V4(v4) if v4.octets() == [100, 100, 100, 200] => Some("a metadata address"),
        IpAddr::V6(v6) if v6.is_loopback() => Some("a loopback address"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("a link-local address"),
        IpAddr::V6(v6) if v6.is_unspecified() || v6.is_multicast() => Some("not a unicast address"),
        // AWS's IPv6 metadata service.
        IpAddr::V6(v6) if v6.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] => {
            Some("a metadata address")
        }
        _ => None,
    }
}

/// A checked webhook URL: `http` or `https`, a host, no credentials, at most 2048
/// characters.
pub fn check_url(url: &str) -> ApiResult<reqwest::Url> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| invalid("url", format!("{url:?} is not a URL: {e}")))?;
    if url.len() > 2048 || !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(
            "url",
            "the URL must be http:// or https:// and at most 2048 characters".into(),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("url", "the URL has no host".into()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "url",
            "the URL must not carry credentials: the signature authenticates deliveries".into(),
        ));
    }
    Ok(parsed)
}

/// Resolves the URL's host and checks every address it names; the addresses to connect
/// to (so that a second lookup cannot answer differently).
pub async fn resolve_target(
    url: &reqwest::Url,
    allow_internal: bool,
) -> ApiResult<Vec<SocketAddr>> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::lookup_host((bare, port)),
        )
        .await
        .map_err(|_| invalid("url", format!("resolving {host:?} took too long")))?
        .map_err(|e| invalid("url", format!("cannot resolve {host:?}: {e}")))?
        .collect(),
    };
    if addrs.is_empty() {
        return Err(invalid("url", format!("{host:?} has no address")));
    }
    if !allow_internal {
        for a in &addrs {
            if let Some(why) = internal_address(a.ip()) {
                return Err(ApiError::forbidden(format!(
                    "webhook target {host:?} resolves to {} ({why}); the server's \
                     webhook_allow_internal setting allows such targets",
                    a.ip()
                ))
                .with_field("url"));
            }
        }
    }
    Ok(addrs)
}

/// `sha256=<hex HMAC-SHA256 of body under secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

// ---- storage ----

fn webhook_of(r: &AnyRow) -> Result<(Webhook, String), sqlx::Error> {
    let events: String = r.try_get("events")?;
    let enabled: i64 = r.try_get("enabled")?;
    Ok((
        Webhook {
            id: r.try_get("id")?,
            url: r.try_get("url")?,
            events: serde_json::from_str(&events).unwrap_or_default(),
            enabled: enabled != 0,
            secret: None,
            created_at: to_time(r.try_get("created_at")?),
            updated_at: to_time(r.try_get("updated_at")?),
        },
        r.try_get("secret")?,
    ))
}

fn delivery_of(r: &AnyRow) -> Result<Delivery, sqlx::Error> {
    let status: String = r.try_get("status")?;
    let status = match status.as_str() {
        "delivered" => DeliveryStatus::Delivered,
        "failed" => DeliveryStatus::Failed,
        _ => DeliveryStatus::Pending,
    };
    let attempts: i64 = r.try_get("attempts")?;
    let next: i64 = r.try_get("next_attempt_at")?;
    let last_status: Option<i64> = r.try_get("last_status")?;
    let duration: Option<i64> = r.try_get("duration_ms")?;
    Ok(Delivery {
        id: r.try_get("id")?,
        webhook_id: r.try_get("webhook_id")?,
        event: r.try_get("event")?,
        status,
        attempts: attempts.clamp(0, i64::from(u32::MAX)) as u32,
        next_attempt_at: (status == DeliveryStatus::Pending).then(|| to_time(next)),
        last_status: last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: r.try_get("last_error")?,
        duration_ms: duration.map(|d| d.max(0) as u64),
        created_at: to_time(r.try_get("created_at")?),
        updated_at: to_time(r.try_get("updated_at")?),
    })
}

/// The webhooks, oldest first, each with its secret.
pub async fn list(state: &AppState) -> ApiResult<Vec<(Webhook, String)>> {
    let rows = sqlx::query("SELECT * FROM webhooks ORDER BY created_at, id")
        .fetch_all(state.db.pool())
        .await?;
    Ok(rows.iter().map(webhook_of).collect::<Result<_, _>>()?)
}

/// One webhook and its secret.
pub async fn get(state: &AppState, id: &str) -> ApiResult<(Webhook, String)> {
    let row = sqlx::query("SELECT * FROM webhooks WHERE id = $1")
        .bind(id)
        .fetch_optional(state.db.pool())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no webhook {id:?}")))?;
    Ok(webhook_of(&row)?)
}

/// Stores a new webhook.
pub async fn insert(state: &AppState, hook: &Webhook, secret: &str) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO webhooks (id, url, events, secret, enabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&hook.id)
    .bind(&hook.url)
    .bind(serde_json::to_string(&hook.events).unwrap_or_default())
    .bind(secret)
    .bind(i64::from(hook.enabled))
    .bind(hook.created_at.timestamp_millis())
    .bind(hook.updated_at.timestamp_millis())
    .execute(state.db.pool())
    .await?;
    Ok(())
}

/// Stores a changed webhook.
pub async fn update(state: &AppState, hook: &Webhook, secret: &str) -> ApiResult<()> {
    sqlx::query(
        "UPDATE webhooks SET url = $2, events = $3, secret = $4, enabled = $5, \
         updated_at = $6 WHERE id = $1",
    )
    .bind(&hook.id)
    .bind(&hook.url)
    .bind(serde_json::to_string(&hook.events).unwrap_or_default())
    .bind(secret)
    .bind(i64::from(hook.enabled))
    .bind(hook.updated_at.timestamp_millis())
    .execute(state.db.pool())
    .await?;
    Ok(())
}

/// Forgets a webhook and its deliveries.
pub async fn delete(state: &AppState, id: &str) -> ApiResult<()> {
    let gone = sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(id)
        .execute(state.db.pool())
        .await?
        .rows_affected();
    if gone == 0 {
        return Err(ApiError::not_found(format!("no webhook {id:?}")));
    }
    sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
        .bind(id)
        .execute(state.db.pool())
        .await?;
    Ok(())
}

/// A webhook's deliveries, newest first.
pub async fn deliveries(state: &AppState, id: &str) -> ApiResult<Vec<Delivery>> {
    let rows = sqlx::query(
        "SELECT * FROM webhook_deliveries WHERE webhook_id = $1 \
         ORDER BY created_at DESC, id LIMIT $2",
    )
    .bind(id)
    .bind(KEPT_DELIVERIES)
    .fetch_all(state.db.pool())
    .await?;
    Ok(rows.iter().map(delivery_of).collect::<Result<_, _>>()?)
}

/// Queues `event` for every enabled webhook that wants it.
pub async fn enqueue(state: &AppState, event: &ServerEvent) -> Result<usize, sqlx::Error> {
    let Some(name) = event_name(event) else {
        return Ok(0);
    };
    let rows = sqlx::query("SELECT * FROM webhooks WHERE enabled = 1")
        .fetch_all(state.db.pool())
        .await?;
    let key = event_key(event);
    let now = now_ms();
    let mut queued = 0;
    for row in &rows {
        let (hook, _) = webhook_of(row)?;
        let named_by_rule = matches!(event, ServerEvent::Alert { alert }
            if alert.webhook.as_deref() == Some(hook.id.as_str()));
        if !named_by_rule && !wants(&hook.events, &name) {
            continue;
        }
        let id = hex::encode(&Sha256::digest(format!("{}\n{key}", hook.id))[..16]);
        let body = serde_json::json!({
            "id": id,
            "event": name,
            "time": to_time(now),
            "data": event,
        });
        queued += sqlx::query(
            "INSERT INTO webhook_deliveries (id, webhook_id, event, body, status, attempts, \
             next_attempt_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&id)
        .bind(&hook.id)
        .bind(&name)
        .bind(body.to_string())
        .bind(now)
        .execute(state.db.pool())
        .await?
        .rows_affected() as usize;
    }
    if queued > 0 {
        state.webhook_wake.notify_one();
    }
    Ok(queued)
}

/// Holds or takes the lease `name` for `owner` for `ttl_ms`; whether this replica holds it.
pub async fn lease(state: &AppState, name: &str, ttl_ms: i64) -> Result<bool, sqlx::Error> {
    let owner = state.tasks.replica();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(owner)
    .bind(now + ttl_ms)
    .execute(state.db.pool())
    .await?;
    let held = sqlx::query(
        "UPDATE leases SET owner = $2, expires_at = $3 \
         WHERE name = $1 AND (owner = $2 OR expires_at < $4)",
    )
    .bind(name)
    .bind(owner)
    .bind(now + ttl_ms)
    .bind(now)
    .execute(state.db.pool())
    .await?
    .rows_affected();
    Ok(held == 1)
}

// ---- sending ----

/// The wait before attempt `attempts + 1`: exponential from the configured base, capped,
/// with ±50 % jitter so that many failed deliveries do not come back together.
fn backoff_ms(base_ms: u64, attempts: u32) -> i64 {
    let exp = base_ms
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
        .min(MAX_BACKOFF_MS);
    let jitter = rand::thread_rng().gen_range(0.5..1.5);
    (exp as f64 * jitter) as i64
}

/// One POST of a stored delivery; the HTTP status, or what went wrong.
async fn send(
    state: &AppState,
    hook: &Webhook,
    secret: &str,
    delivery: &Delivery,
    body: &str,
) -> Result<u16, String> {
    let url = check_url(&hook.url).map_err(|e| e.body().message)?;
    let addrs = resolve_target(&url, state.config.webhook_allow_internal)
        .await
        .map_err(|e| e.body().message)?;
    let mut client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("LibGo-Webhook/", env!("CARGO_PKG_VERSION")));
    if let Some(host) = url.host_str() {
        // Connect to the addresses checked above, not to a second lookup's.
        client = client.resolve_to_addrs(host, &addrs);
    }
    let client = client.build().map_err(|e| format!("HTTP client: {e}"))?;
    let answer = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-libgo-event", &delivery.event)
        .header("x-libgo-delivery", &delivery.id)
        .header("x-libgo-signature", signature(secret, body.as_bytes()))
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        })?;
    Ok(answer.status().as_u16())
}

/// Claims due deliveries for this replica and sends them; how many were attempted.
async fn run_due(state: &Arc<AppState>) -> Result<usize, sqlx::Error> {
    let now = now_ms();
    let rows = sqlx::query(
        "SELECT d.*, w.url AS hook_url, w.secret AS hook_secret, w.events AS hook_events, \
         w.enabled AS hook_enabled, w.created_at AS hook_created, w.updated_at AS hook_updated \
         FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
         WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
         AND (d.claimed_until IS NULL OR d.claimed_until < $1) \
         ORDER BY d.next_attempt_at LIMIT 32",
    )
    .bind(now)
    .fetch_all(state.db.pool())
    .await?;
    let mut claimed = Vec::new();
    for r in &rows {
        let delivery = delivery_of(r)?;
        let won = sqlx::query(
            "UPDATE webhook_deliveries SET claimed_by = $2, claimed_until = $3 \
             WHERE id = $1 AND status = 'pending' \
             AND (claimed_until IS NULL OR claimed_until < $4)",
        )
        .bind(&delivery.id)
        .bind(state.tasks.replica())
        .bind(now + CLAIM_MS)
        .bind(now)
        .execute(state.db.pool())
        .await?
        .rows_affected();
        if won != 1 {
            continue;
        }
        let events: String = r.try_get("hook_events")?;
        let enabled: i64 = r.try_get("hook_enabled")?;
        let hook = Webhook {
            id: delivery.webhook_id.clone(),
            url: r.try_get("hook_url")?,
            events: serde_json::from_str(&events).unwrap_or_default(),
            enabled: enabled != 0,
            secret: None,
            created_at: to_time(r.try_get("hook_created")?),
            updated_at: to_time(r.try_get("hook_updated")?),
        };
        let secret: String = r.try_get("hook_secret")?;
        let body: String = r.try_get("body")?;
        claimed.push((hook, secret, delivery, body));
    }
    let attempted = claimed.len();
    futures::stream::iter(claimed)
        .for_each_concurrent(PARALLEL, |(hook, secret, delivery, body)| {
            let state = state.clone();
            async move {
                let started = std::time::Instant::now();
                let outcome = send(&state, &hook, &secret, &delivery, &body).await;
                let took = started.elapsed().as_millis() as i64;
                if let Err(e) = record(&state, &delivery, outcome, took).await {
                    tracing::warn!(delivery = %delivery.id, error = %e, "cannot record a webhook delivery");
                }
            }
        })
        .await;
    Ok(attempted)
}

/// Stores the outcome of one attempt: delivered, retried later, or given up.
async fn record(
    state: &AppState,
    delivery: &Delivery,
    outcome: Result<u16, String>,
    took_ms: i64,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    let attempts = delivery.attempts + 1;
    let (status, error) = match &outcome {
        Ok(code) if (200..300).contains(code) => (None, None),
        Ok(code) => (Some(*code), Some(format!("the receiver answered {code}"))),
        Err(e) => (None, Some(e.clone())),
    };
    let delivered = outcome.is_ok() && error.is_none();
    let wait = backoff_ms(state.config.webhook_retry_base_ms, attempts);
    let deadline = delivery.created_at.timestamp_millis()
        + (state.config.webhook_retry_secs as i64).saturating_mul(1000);
    let next_status = if delivered {
        "delivered"
    } else if now + wait > deadline {
        "failed"
    } else {
        "pending"
    };
    if let Some(e) = &error {
        tracing::info!(delivery = %delivery.id, attempts, error = %e, status = next_status, "webhook delivery not accepted");
    }
    let mut error = error;
    if let Some(e) = error.as_mut() {
        if e.len() > ERROR_KEPT {
            let cut = (0..=ERROR_KEPT)
                .rev()
                .find(|i| e.is_char_boundary(*i))
                .unwrap_or(0);
            e.truncate(cut);
        }
    }
    let last_status = match outcome {
        Ok(code) => Some(i64::from(code)),
        Err(_) => status.map(i64::from),
    };
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $2, attempts = $3, next_attempt_at = $4, \
         claimed_by = NULL, claimed_until = NULL, last_status = $5, last_error = $6, \
         duration_ms = $7, updated_at = $8 WHERE id = $1",
    )
    .bind(&delivery.id)
    .bind(next_status)
    .bind(i64::from(attempts))
    .bind(now + wait)
    .bind(last_status)
    .bind(error)
    .bind(took_ms)
    .bind(now)
    .execute(state.db.pool())
    .await?;
    Ok(())
}

async fn purge(state: &AppState) -> Result<u64, sqlx::Error> {
    let old = now_ms() - KEPT_DAYS * 86_400_000;
    let mut n =
        sqlx::query("DELETE FROM webhook_deliveries WHERE status <> 'pending' AND updated_at < $1")
            .bind(old)
            .execute(state.db.pool())
            .await?
            .rows_affected();
    n += sqlx::query(
        "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND updated_at < (SELECT \
         MIN(updated_at) FROM (SELECT updated_at FROM webhook_deliveries WHERE status <> \
         'pending' ORDER BY updated_at DESC LIMIT $1) AS newest)",
    )
    .bind(KEPT_DELIVERIES)
    .execute(state.db.pool())
    .await?
    .rows_affected();
    Ok(n)
}

/// The lease on queuing engine and host events (seen by every replica).
const EVENTS_LEASE: &str = "webhook-events";
const EVENTS_LEASE_MS: i64 = 15_000;

/// Starts queuing events and sending deliveries until the server stops.
pub fn spawn(state: Arc<AppState>) {
    let queue = state.clone();
    tokio::spawn(async move {
        let state = queue;
        let mut events = state.events.subscribe();
        let mut held_until = 0i64;
        loop {
            let event = tokio::select! {
                _ = state.shutdown.cancelled() => return,
                e = events.recv() => e,
            };
            let event = match event {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "webhooks fell behind the event stream");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            // Every replica sees the engines' and hosts' events; one queues them. A task's
            // events come from the replica that runs it, an alert's from the one that
            // evaluated it.
            let shared = matches!(
                event,
                ServerEvent::Instance { .. } | ServerEvent::Host { .. }
            );
            if shared && state.db.is_shared() && now_ms() >= held_until {
                match lease(&state, EVENTS_LEASE, EVENTS_LEASE_MS).await {
                    Ok(true) => held_until = now_ms() + EVENTS_LEASE_MS / 3,
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take the webhook events lease");
                        continue;
                    }
                }
            }
            if let Err(e) = enqueue(&state, &event).await {
                tracing::warn!(error = %e, "cannot queue a webhook delivery");
            }
        }
    });
    tokio::spawn(async move {
        let mut last_purge = std::time::Instant::now();
        loop {
            match run_due(&state).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the webhook queue"),
            }
            if last_purge.elapsed() > Duration::from_secs(600) {
                last_purge = std::time::Instant::now();
                if let Err(e) = purge(&state).await {
                    tracing::warn!(error = %e, "cannot purge webhook deliveries");
                }
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = state.webhook_wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_names_match() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wants(&p(&["*"]), "task.failed"));
        assert!(wants(&p(&["instance.*"]), "instance.died"));
        assert!(!wants(&p(&["instance.*"]), "instances.x"));
        assert!(wants(&p(&["task.finished"]), "task.finished"));
        assert!(!wants(&p(&["task.finished"]), "task.failed"));
        assert!(check_events(&p(&["instance.*", "task.finished", "*"])).is_ok());
        assert!(check_events(&p(&["instance.exploded"])).is_err());
        assert!(check_events(&p(&["bogus.*"])).is_err());
        assert!(check_events(&[]).is_err());
    }

    #[test]
    fn internal_targets_are_named() {
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "fd00:ec2::254",
            "100.100.100.200",
        ] {
            assert!(internal_address(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in ["10.0.0.1", "192.168.1.2", "8.8.8.8", "2001:db8::1"] {
            assert!(internal_address(ip.parse().unwrap()).is_none(), "{ip}");
        }
    }

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!((500..1500).contains(&backoff_ms(1000, 1)));
        assert!((2000..6000).contains(&backoff_ms(1000, 3)));
        assert!(backoff_ms(1000, 40) <= (MAX_BACKOFF_MS as f64 * 1.5) as i64);
    }
}
