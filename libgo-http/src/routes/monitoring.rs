//! Webhooks, alert rules and stats history.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use libgo_core::{Page, paginate};
use utoipa_axum::routes;

use super::instances::created;
use super::{PageQuery, Router};
use crate::alerts::{self, AlertRule, AlertSpec, AlertTransition};
use crate::db::to_time;
use crate::error::ApiResult;
use crate::extract::{Json, Path, Query};
use crate::history::{HistoryQuery, StatsHistoryAnswer};
use crate::state::AppState;
use crate::webhooks::{self, Delivery, Webhook, WebhookPatch, WebhookSpec};

type S = State<Arc<AppState>>;

// ---- webhooks ----

#[utoipa::path(get, path = "/api/v1/webhooks", extensions(("x-libgo-access" = json!("admin"))), tag = "monitoring",
    params(PageQuery),
    responses((status = 200, description = "Webhooks, oldest first (never their secrets)", body = Page<Webhook>)))]
async fn list_webhooks(
    State(state): S,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Webhook>>> {
    let page = q.get()?;
    let all = webhooks::list(&state)
        .await?
        .into_iter()
        .map(|(w, _)| w)
        .collect();
    Ok(Json(paginate(all, page)))
}

#[utoipa::path(post, path = "/api/v1/webhooks", extensions(("x-libgo-access" = json!("admin"))), tag = "monitoring",
    request_body = WebhookSpec,
    responses((status = 201, description = "Created; the answer holds the secret, which is never shown again", body = Webhook)))]
async fn create_webhook(State(state): S, Json(spec): Json<WebhookSpec>) -> ApiResult<Response> {
    let url = webhooks::check_url(&spec.url)?;
    webhooks::check_events(&spec.events)?;
    if let Some(s) = &spec.secret {
        webhooks::check_secret(s)?;
    }
    webhooks::resolve_target(&url, state.config.webhook_allow_internal).await?;
    let secret = spec.secret.unwrap_or_else(webhooks::new_secret);
    let now = to_time(crate::db::now_ms());
    let mut hook = Webhook {
        id: uuid::Uuid::new_v4().to_string(),
        url: spec.url,
        events: spec.events,
        enabled: spec.enabled.unwrap_or(true),
        secret: None,
        created_at: now,
        updated_at: now,
    };
    webhooks::insert(&state, &hook, &secret).await?;
    hook.secret = Some(secret);
    Ok(created(format!("/api/v1/webhooks/{}", hook.id), hook))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", extensions(("x-libgo-access" = json!("admin"))), tag = "monitoring",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, description = "The webhook (never its secret)", body = Webhook)))]
async fn get_webhook(State(state): S, Path(id): Path<String>) -> ApiResult<Json<Webhook>> {
    Ok(Json(webhooks::get(&state, &id).await?.0))
}

#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", extensions(("x-libgo-access" = json!("admin"))), tag = "monitoring",
    params(("id" = String, Path, description = "Webhook id")),
    request_body = WebhookPatch,
    responses((status = 200, description = "The webhook; with the new secret if the patch set one", body = Webhook)))]
async fn patch_webhook(
    State(state): S,
    Path(id): Path<String>,
    Json(patch): Json<WebhookPatch>,
) -> ApiResult<Json<Webhook>> {
    let (mut hook, mut secret) = webhooks::get(&state, &id).await?;
    if let Some(url) = patch.url {
        let parsed = webhooks::check_url(&url)?;
        webhooks::resolve_target(&parsed, state.config.webhook_allow_internal).await?;
        hook.url = url;
    }
    if let Some(events) = patch.events {
        webhooks::check_events(&events)?;
        hook.events = events;
    }
    if let Some(s) = &patch.secret {
        webhooks::check_secret(s)?;
        secret = s.clone();
    }
    if let Some(e) = patch.enabled {
        hook.enabled = e;
    }
    hook.updated_at = to_time(crate::db::now_ms());
    webhooks::update(&state, &hook, &secret).await?;
    hook.secret = patch.secret;
    Ok(Json(hook))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", extensions(("x-libgo-access" = json!("admin"))), tag = "monitoring",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted, with its deliveries")))]
async fn delete_webhook(State(state): S, Path(id): Path<String>) -> ApiResult<StatusCode> {
    webhooks::delete(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", extensions(("x-libgo-access" = json!("admin"))), tag = "monitoring",
    params(("id" = String, Path, description = "Webhook id"), PageQuery),
    responses((status = 200, description = "Its deliveries, newest first: status, attempts, last error, timing", body = Page<Delivery>)))]
async fn list_deliveries(
    State(state): S,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Delivery>>> {
    let page = q.get()?;
    webhooks::get(&state, &id).await?;
    Ok(Json(paginate(
        webhooks::deliveries(&state, &id).await?,
        page,
    )))
}

// ---- alert rules ----

#[utoipa::path(get, path = "/api/v1/alerts", extensions(("x-libgo-access" = json!("viewer"))), tag = "monitoring",
    params(PageQuery),
    responses((status = 200, description = "Alert rules, oldest first, with the instances each fires for", body = Page<AlertRule>)))]
async fn list_alerts(
    State(state): S,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<AlertRule>>> {
    let page = q.get()?;
    Ok(Json(paginate(alerts::list(&state).await?, page)))
}

#[utoipa::path(post, path = "/api/v1/alerts", extensions(("x-libgo-access" = json!("admin"))), tag = "monitoring",
    request_body = AlertSpec,
    responses((status = 201, description = "Created", body = AlertRule)))]
async fn create_alert(State(state): S, Json(spec): Json<AlertSpec>) -> ApiResult<Response> {
    let rule = alerts::insert(&state, spec).await?;
    Ok(created(format!("/api/v1/alerts/{}", rule.id), rule))
}

#[utoipa::path(get, path = "/api/v1/alerts/{id}", extensions(("x-libgo-access" = json!("viewer"))), tag = "monitoring",
    params(("id" = String, Path, description = "Rule id")),
    responses((status = 200, description = "The rule", body = AlertRule)))]
async fn get_alert(State(state): S, Path(id): Path<String>) -> ApiResult<Json<AlertRule>> {
    Ok(Json(alerts::get(&state, &id).await?))
}

#[utoipa::path(delete, path = "/api/v1/alerts/{id}", extensions(("x-libgo-access" = json!("admin"))), tag = "monitoring",
    params(("id" = String, Path, description = "Rule id")),
    responses((status = 204, description = "Deleted, with its history")))]
async fn delete_alert(State(state): S, Path(id): Path<String>) -> ApiResult<StatusCode> {
    alerts::delete(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/alerts/{id}/history", extensions(("x-libgo-access" = json!("viewer"))), tag = "monitoring",
    params(("id" = String, Path, description = "Rule id"), PageQuery),
    responses((status = 200, description = "Its firing and resolved transitions, newest first", body = Page<AlertTransition>)))]
async fn alert_history(
    State(state): S,
    caller: crate::auth::Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<AlertTransition>>> {
    let page = q.get()?;
    let mut items = alerts::history(&state, &id).await?;
    if caller.groups.is_some() {
        // A caller kept to its groups sees their instances' transitions only.
        let mut scope = crate::events::GroupScope::default();
        let mut kept = Vec::with_capacity(items.len());
        for t in items {
            if scope.sees_instance(&state, &caller, &t.instance_id).await {
                kept.push(t);
            }
        }
        items = kept;
    }
    Ok(Json(paginate(items, page)))
}

// ---- stats history ----

fn interval(state: &AppState) -> std::time::Duration {
    std::time::Duration::from_secs(state.config.stats_interval_secs)
}

#[utoipa::path(get, path = "/api/v1/instances/{id}/stats/history", extensions(("x-libgo-access" = json!("viewer"))), tag = "monitoring",
    params(("id" = String, Path, description = "Instance id or name"), HistoryQuery),
    responses((status = 200, description = "The instance's sampled stats, averaged per step", body = StatsHistoryAnswer)))]
async fn instance_history(
    State(state): S,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<StatsHistoryAnswer>> {
    let instance = state.libgo.get(&id).await?;
    let key = format!("instance:{}", instance.id);
    Ok(Json(state.history.answer(&key, &q, interval(&state))?))
}

#[utoipa::path(get, path = "/api/v1/hosts/{name}/stats/history", extensions(("x-libgo-access" = json!("viewer"))), tag = "monitoring",
    params(("name" = String, Path, description = "Host name"), HistoryQuery),
    responses((status = 200, description = "The sums of the host's running instances' stats, averaged per step", body = StatsHistoryAnswer)))]
async fn host_history(
    State(state): S,
    Path(name): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<StatsHistoryAnswer>> {
    state.libgo.host_membership(&name)?;
    let key = format!("host:{name}");
    Ok(Json(state.history.answer(&key, &q, interval(&state))?))
}

/// The routes of this module.
pub fn router() -> Router {
    Router::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, patch_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(list_alerts, create_alert))
        .routes(routes!(get_alert, delete_alert))
        .routes(routes!(alert_history))
        .routes(routes!(instance_history))
        .routes(routes!(host_history))
}
