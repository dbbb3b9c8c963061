//! Alert rules: a metric of the instances a rule selects compared with a threshold at each
//! stats sample; a condition that holds for `forSeconds` fires, one that stops holding
//! resolves. Each transition is stored, announced on `/api/v1/events` and queued for the
//! webhooks that want `alert.*` and the rule's own webhook. One replica (the holder of
//! the `alerts` lease) evaluates; whether a rule fires for an instance is kept in the
//! database, so a restart neither repeats nor forgets a transition.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use libgo_core::{Instance, InstanceState, Stats};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use crate::db::{now_ms, to_time};
use crate::error::{ApiError, ApiResult};
use crate::events::ServerEvent;
use crate::state::AppState;

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum AlertMetric {
    /// CPU use in percent of one core.
    CpuPercent,
    /// Memory in use, in percent of the instance's limit.
    MemoryPercent,
    /// The instance's state (compared with `state` by `==` or `!=`).
    State,
}

/// How the metric is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum AlertOp {
    /// Greater than.
    #[serde(rename = ">")]
    Gt,
    /// At least.
    #[serde(rename = ">=")]
    Ge,
    /// Less than.
    #[serde(rename = "<")]
    Lt,
    /// At most.
    #[serde(rename = "<=")]
    Le,
    /// Equal.
    #[serde(rename = "==")]
    Eq,
    /// Not equal.
    #[serde(rename = "!=")]
    Ne,
}

impl AlertOp {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            AlertOp::Gt => value > threshold,
            AlertOp::Ge => value >= threshold,
            AlertOp::Lt => value < threshold,
            AlertOp::Le => value <= threshold,
            AlertOp::Eq => value == threshold,
            AlertOp::Ne => value != threshold,
        }
    }
}

/// A rule as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AlertSpec {
    /// Name, DNS-label-like: 1 to 63 lowercase letters, digits and `-`.
    pub name: String,
    /// What is watched.
    pub metric: AlertMetric,
    /// How it is compared.
    pub op: AlertOp,
    /// The threshold of `cpuPercent` and `memoryPercent`.
    pub threshold: Option<f64>,
    /// The state `state` is compared with (`==` or `!=`).
    pub state: Option<InstanceState>,
    /// How long the condition must hold before the rule fires (default 0: at once).
    #[serde(default)]
    #[schema(maximum = 86400)]
    pub for_seconds: u64,
    /// One instance (id or name); with neither this nor `label`, every instance.
    pub instance: Option<String>,
    /// The instances carrying all these labels.
    pub label: Option<BTreeMap<String, String>>,
    /// A webhook id that receives this rule's transitions (whatever events it asks for).
    pub webhook: Option<String>,
    /// Default `true`.
    pub enabled: Option<bool>,
}

/// A rule as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertRule {
    /// Id.
    pub id: String,
    /// The rule.
    #[serde(flatten)]
    pub spec: AlertSpec,
    /// Instances it fires for now.
    pub firing: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition has held for `forSeconds`.
    Firing,
    /// It no longer holds.
    Resolved,
}

impl AlertState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One transition of a rule for one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertTransition {
    /// Rule id.
    pub rule: String,
    /// Rule name.
    pub name: String,
    /// Instance id.
    pub instance_id: String,
    /// Instance name.
    pub instance_name: String,
    /// Firing or resolved.
    pub state: AlertState,
    /// The metric's value then (none for `state`).
    pub value: Option<f64>,
    /// The rule's webhook, if it names one.
    pub webhook: Option<String>,
    /// When.
    pub time: DateTime<Utc>,
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::from(libgo_core::Error::invalid(message.to_string()).with_field(field))
}

/// Checks a rule.
pub fn check(spec: &AlertSpec) -> ApiResult<()> {
    libgo_core::validate::name("alert", &spec.name).map_err(|e| e.with_field("name"))?;
    match spec.metric {
        AlertMetric::State => {
            if spec.state.is_none() || spec.threshold.is_some() {
                return Err(invalid(
                    "state",
                    "a `state` rule names a `state` and no `threshold`",
                ));
            }
            if !matches!(spec.op, AlertOp::Eq | AlertOp::Ne) {
                return Err(invalid("op", "a `state` rule compares with == or !="));
            }
        }
        _ => match spec.threshold {
            Some(t) if t.is_finite() && (0.0..=1e6).contains(&t) && spec.state.is_none() => {}
            _ => {
                return Err(invalid(
                    "threshold",
                    "a `cpuPercent` or `memoryPercent` rule needs a `threshold` from 0 to \
                     1000000 and no `state`",
                ));
            }
        },
    }
    if spec.for_seconds > 86_400 {
        return Err(invalid("forSeconds", "`forSeconds` is at most 86400"));
    }
    if spec.instance.is_some() && spec.label.is_some() {
        return Err(invalid(
            "label",
            "select instances by `instance` or by `label`, not both",
        ));
    }
    if let Some(i) = &spec.instance {
        libgo_core::validate::object_id("instance", i).map_err(|e| e.with_field("instance"))?;
    }
    if let Some(l) = &spec.label {
        libgo_core::validate::labels(l).map_err(|e| e.with_field("label"))?;
    }
    Ok(())
}

fn selects(spec: &AlertSpec, i: &Instance) -> bool {
    match (&spec.instance, &spec.label) {
        (Some(x), _) => i.id == *x || i.name == *x,
        (None, Some(labels)) => labels.iter().all(|(k, v)| i.labels.get(k) == Some(v)),
        (None, None) => true,
    }
}

/// Whether the condition holds for `i`, and the value seen.
fn condition(spec: &AlertSpec, i: &Instance, stats: Option<&Stats>) -> (bool, Option<f64>) {
    match spec.metric {
        AlertMetric::State => {
            let same = Some(i.state) == spec.state;
            (if spec.op == AlertOp::Eq { same } else { !same }, None)
        }
        AlertMetric::CpuPercent | AlertMetric::MemoryPercent => {
            // A stopped instance uses nothing: its value is 0.
            let value = match (spec.metric, stats) {
                (AlertMetric::CpuPercent, Some(s)) => s.cpu_percent,
                (_, Some(s)) if s.memory_limit_bytes > 0 => {
                    s.memory_bytes as f64 / s.memory_limit_bytes as f64 * 100.0
                }
                _ => 0.0,
            };
            (
                spec.op.holds(value, spec.threshold.unwrap_or(0.0)),
                Some(value),
            )
        }
    }
}

fn rule_of(r: &AnyRow) -> Result<(String, AlertSpec, i64), sqlx::Error> {
    let spec: String = r.try_get("spec")?;
    let spec = serde_json::from_str(&spec).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok((r.try_get("id")?, spec, r.try_get("created_at")?))
}

async fn firing_of(state: &AppState, id: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT instance_id FROM alert_states WHERE rule_id = $1 AND firing = 1")
            .bind(id)
            .fetch_all(state.db.pool())
            .await?;
    rows.iter().map(|r| r.try_get("instance_id")).collect()
}

/// Every rule, oldest first.
pub async fn list(state: &AppState) -> ApiResult<Vec<AlertRule>> {
    let rows = sqlx::query("SELECT * FROM alerts ORDER BY created_at, id")
        .fetch_all(state.db.pool())
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        let (id, spec, created) = rule_of(r)?;
        out.push(AlertRule {
            firing: firing_of(state, &id).await?,
            id,
            spec,
            created_at: to_time(created),
        });
    }
    Ok(out)
}

/// One rule.
pub async fn get(state: &AppState, id: &str) -> ApiResult<AlertRule> {
    let row = sqlx::query("SELECT * FROM alerts WHERE id = $1")
        .bind(id)
        .fetch_optional(state.db.pool())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no alert rule {id:?}")))?;
    let (id, spec, created) = rule_of(&row)?;
    Ok(AlertRule {
        firing: firing_of(state, &id).await?,
        id,
        spec,
        created_at: to_time(created),
    })
}

/// Stores a new rule (its webhook must exist).
pub async fn insert(state: &AppState, spec: AlertSpec) -> ApiResult<AlertRule> {
    check(&spec)?;
    if let Some(w) = &spec.webhook {
        crate::webhooks::get(state, w)
            .await
            .map_err(|e| e.with_field("webhook"))?;
    }
    let taken = sqlx::query("SELECT id FROM alerts WHERE name = $1")
        .bind(&spec.name)
        .fetch_optional(state.db.pool())
        .await?;
    if taken.is_some() {
        return Err(ApiError::conflict(format!(
            "an alert rule named {:?} exists already",
            spec.name
        )));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO alerts (id, name, spec, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(&id)
    .bind(&spec.name)
    .bind(serde_json::to_string(&spec).unwrap_or_default())
    .bind(now)
    .execute(state.db.pool())
    .await?;
    Ok(AlertRule {
        id,
        spec,
        firing: Vec::new(),
        created_at: to_time(now),
    })
}

/// Forgets a rule, its states and its history.
pub async fn delete(state: &AppState, id: &str) -> ApiResult<()> {
    let gone = sqlx::query("DELETE FROM alerts WHERE id = $1")
        .bind(id)
        .execute(state.db.pool())
        .await?
        .rows_affected();
    if gone == 0 {
        return Err(ApiError::not_found(format!("no alert rule {id:?}")));
    }
    for table in ["alert_states", "alert_history"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE rule_id = $1"))
            .bind(id)
            .execute(state.db.pool())
            .await?;
    }
    Ok(())
}

/// A rule's transitions, newest first (at most 1,000).
pub async fn history(state: &AppState, id: &str) -> ApiResult<Vec<AlertTransition>> {
    let rule = get(state, id).await?;
    let rows = sqlx::query(
        "SELECT * FROM alert_history WHERE rule_id = $1 ORDER BY time DESC, id LIMIT 1000",
    )
    .bind(id)
    .fetch_all(state.db.pool())
    .await?;
    let mut out = Vec::new();
    for r in &rows {
        let s: String = r.try_get("state")?;
        out.push(AlertTransition {
            rule: rule.id.clone(),
            name: rule.spec.name.clone(),
            instance_id: r.try_get("instance_id")?,
            instance_name: r.try_get("instance_name")?,
            state: if s == "firing" {
                AlertState::Firing
            } else {
                AlertState::Resolved
            },
            value: r.try_get("value")?,
            webhook: rule.spec.webhook.clone(),
            time: to_time(r.try_get("time")?),
        });
    }
    Ok(out)
}

/// Since when each (rule, instance) condition has held without firing yet.
#[derive(Debug, Default)]
pub struct Pending(Mutex<HashMap<(String, String), i64>>);

/// Evaluates every enabled rule against one round of samples: `instances` is every
/// instance, `stats` the samples of the running ones by id.
pub async fn evaluate(
    state: &AppState,
    instances: &[Instance],
    stats: &HashMap<String, Stats>,
) -> Result<(), sqlx::Error> {
    let rows = sqlx::query("SELECT * FROM alerts ORDER BY created_at")
        .fetch_all(state.db.pool())
        .await?;
    let now = now_ms();
    let mut seen = std::collections::HashSet::new();
    for r in &rows {
        let (id, spec, _) = rule_of(r)?;
        if spec.enabled == Some(false) {
            continue;
        }
        let firing: Vec<String> = firing_of(state, &id).await?;
        for i in instances.iter().filter(|i| selects(&spec, i)) {
            let key = (id.clone(), i.id.clone());
            seen.insert(key.clone());
            let (holds, value) = condition(&spec, i, stats.get(&i.id));
            let is_firing = firing.contains(&i.id);
            let next = {
                let mut pending = state
                    .alert_pending
                    .0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if holds && !is_firing {
                    let since = *pending.entry(key.clone()).or_insert(now);
                    (now - since >= (spec.for_seconds as i64) * 1000).then_some(AlertState::Firing)
                } else {
                    pending.remove(&key);
                    (!holds && is_firing).then_some(AlertState::Resolved)
                }
            };
            if let Some(to) = next {
                transition(state, &id, &spec, (&i.id, &i.name), to, value, now).await?;
            }
        }
        // A firing instance that is gone (deleted) resolves.
        for gone in firing
            .iter()
            .filter(|f| !instances.iter().any(|i| &i.id == *f))
        {
            transition(
                state,
                &id,
                &spec,
                (gone, gone),
                AlertState::Resolved,
                None,
                now,
            )
            .await?;
        }
    }
    state
        .alert_pending
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|k, _| seen.contains(k));
    Ok(())
}

/// Stores one transition (if the stored state still says otherwise) and announces it.
async fn transition(
    state: &AppState,
    id: &str,
    spec: &AlertSpec,
    (instance_id, instance_name): (&str, &str),
    to: AlertState,
    value: Option<f64>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let firing = i64::from(to == AlertState::Firing);
    sqlx::query(
        "INSERT INTO alert_states (rule_id, instance_id, firing, since) VALUES ($1, $2, 0, $3) \
         ON CONFLICT (rule_id, instance_id) DO NOTHING",
    )
    .bind(id)
    .bind(instance_id)
    .bind(now)
    .execute(state.db.pool())
    .await?;
    let changed = sqlx::query(
        "UPDATE alert_states SET firing = $3, since = $4 \
         WHERE rule_id = $1 AND instance_id = $2 AND firing <> $3",
    )
    .bind(id)
    .bind(instance_id)
    .bind(firing)
    .bind(now)
    .execute(state.db.pool())
    .await?
    .rows_affected();
    if changed != 1 {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO alert_history (id, rule_id, instance_id, instance_name, state, value, time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(id)
    .bind(instance_id)
    .bind(instance_name)
    .bind(to.as_str())
    .bind(value)
    .bind(now)
    .execute(state.db.pool())
    .await?;
    tracing::info!(rule = %spec.name, instance = %instance_name, state = to.as_str(), "alert");
    let _ = state.events.send(ServerEvent::Alert {
        alert: AlertTransition {
            rule: id.to_string(),
            name: spec.name.clone(),
            instance_id: instance_id.to_string(),
            instance_name: instance_name.to_string(),
            state: to,
            value,
            webhook: spec.webhook.clone(),
            time: to_time(now),
        },
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> Result<AlertSpec, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn rules_are_checked() {
        let ok = spec(
            serde_json::json!({"name": "hot", "metric": "cpuPercent", "op": ">",
            "threshold": 50, "forSeconds": 10, "label": {"app": "web"}}),
        )
        .unwrap();
        assert!(check(&ok).is_ok());
        let state = spec(
            serde_json::json!({"name": "down", "metric": "state", "op": "!=",
            "state": "running", "instance": "web"}),
        )
        .unwrap();
        assert!(check(&state).is_ok());
        for bad in [
            serde_json::json!({"name": "x", "metric": "cpuPercent", "op": ">"}),
            serde_json::json!({"name": "x", "metric": "state", "op": ">", "state": "running"}),
            serde_json::json!({"name": "x", "metric": "cpuPercent", "op": ">", "threshold": 1,
                "instance": "a", "label": {"k": "v"}}),
            serde_json::json!({"name": "x", "metric": "cpuPercent", "op": ">", "threshold": -1}),
        ] {
            assert!(check(&spec(bad.clone()).unwrap()).is_err(), "{bad}");
        }
        assert!(spec(serde_json::json!({"name": "x", "metric": "cpu", "op": ">"})).is_err());
        assert!(
            spec(
                serde_json::json!({"name": "x", "metric": "state", "op": "==",
            "state": "running", "bogus": 1})
            )
            .is_err()
        );
    }
}
