//! Webhooks, stats history and alert rules against a real server, real Docker and a
//! receiver on loopback.

mod common;
mod receiver;

use std::collections::HashMap;
use std::time::Duration;

use common::{TestServer, assert_error, json_of, start, start_in, unique};
use reqwest::Method;
use serde_json::{Value, json};

const IMAGE: &str = "libgo-test/busybox:latest";
use receiver::{Mode, Received, Receiver, SECRET, about, sign};

async fn post(s: &TestServer, path: &str, body: Value) -> reqwest::Response {
    s.req(Method::POST, path, &s.admin)
        .json(&body)
        .send()
        .await
        .expect("req")
}

async fn get(s: &TestServer, path: &str) -> Value {
    json_of(
        s.req(Method::GET, path, &s.admin)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await
}

async fn container(s: &TestServer, name: &str, command: &str) -> Value {
    json_of(
        post(
            s,
            "/api/v1/instances",
            json!({"name": name, "kind": "container", "image": IMAGE,
                   "command": ["sh", "-c", command], "start": true}),
        )
        .await,
        201,
    )
    .await
}

async fn webhook(s: &TestServer, url: &str, events: Value) -> Value {
    json_of(
        post(
            s,
            "/api/v1/webhooks",
            json!({"url": url, "events": events, "secret": SECRET}),
        )
        .await,
        201,
    )
    .await
}

/// Signed deliveries with their headers, a 500 retried once and never sent again, and the
/// delivery log; the boundaries of the webhook API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_retried_once_after_a_500_and_not_duplicated() {
    let rx = Receiver::start(Mode::FailFirst).await;
    let s = start(true, |c| {
        c.webhook_allow_internal = true;
        c.webhook_retry_base_ms = 200;
    })
    .await;
    let hook = webhook(&s, &rx.url, json!(["instance.created", "instance.deleted"])).await;
    assert_eq!(
        hook["secret"], SECRET,
        "the answer to the create shows the secret"
    );
    let id = hook["id"].as_str().unwrap().to_string();
    let listed = get(&s, &format!("/api/v1/webhooks/{id}")).await;
    assert!(listed.get("secret").is_none(), "{listed}");
    assert!(
        !get(&s, "/api/v1/webhooks")
            .await
            .to_string()
            .contains(SECRET)
    );

    let name = unique("hook");
    let c = container(&s, &name, "sleep 600").await;
    let cid = c["id"].clone();
    rx.until(30, "created, refused once, then accepted", |got| {
        got.iter()
            .any(|r| about(r, &cid) && r.event == "instance.created" && r.answered == 200)
    })
    .await;
    s.remove_instance(&name).await;
    rx.until(30, "deleted, refused once, then accepted", |got| {
        got.iter()
            .any(|r| about(r, &cid) && r.event == "instance.deleted" && r.answered == 200)
    })
    .await;
    // Nothing comes after an accepted attempt.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got: Vec<Received> = rx.all().into_iter().filter(|r| about(r, &cid)).collect();
    let mut per_delivery: HashMap<&str, Vec<&Received>> = HashMap::new();
    for r in &got {
        per_delivery.entry(&r.delivery).or_default().push(r);
    }
    assert_eq!(per_delivery.len(), 2, "{got:#?}");
    for (delivery, attempts) in &per_delivery {
        assert_eq!(
            attempts.iter().map(|r| r.answered).collect::<Vec<_>>(),
            vec![500, 200],
            "{delivery}: {got:#?}"
        );
        for r in attempts {
            assert_eq!(r.signature, sign(&r.body), "the HMAC of the body");
            let body: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["id"], *delivery, "{body}");
            assert_eq!(body["event"], r.event, "{body}");
            assert_eq!(body["data"]["event"]["instanceId"], c["id"], "{body}");
        }
        assert_eq!(
            attempts[0].body, attempts[1].body,
            "a retry sends the same body"
        );
    }
    // The delivery log says the same.
    let log = get(&s, &format!("/api/v1/webhooks/{id}/deliveries")).await;
    let items: Vec<&Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| per_delivery.contains_key(d["id"].as_str().unwrap()))
        .collect();
    assert_eq!(items.len(), 2, "{log}");
    for d in items {
        assert_eq!(
            (&d["status"], &d["attempts"], &d["lastStatus"]),
            (&json!("delivered"), &json!(2), &json!(200)),
            "{d}"
        );
        assert!(d["durationMs"].is_u64(), "{d}");
        assert!(per_delivery.contains_key(d["id"].as_str().unwrap()), "{d}");
    }

    // Only administrators manage webhooks.
    let (_, operator) = s.user("operator").await;
    let r = s
        .req(Method::GET, "/api/v1/webhooks", &operator)
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "FORBIDDEN").await;
    // Bad input: unknown fields, events, URLs and secrets.
    for (body, field) in [
        (json!({"url": rx.url, "events": ["*"], "bogus": 1}), None),
        (
            json!({"url": rx.url, "events": ["instance.exploded"]}),
            Some("events"),
        ),
        (json!({"url": rx.url, "events": []}), Some("events")),
        (
            json!({"url": "ftp://example.com/x", "events": ["*"]}),
            Some("url"),
        ),
        (
            json!({"url": "http://u:p@example.com/x", "events": ["*"]}),
            Some("url"),
        ),
        (
            json!({"url": rx.url, "events": ["*"], "secret": "short"}),
            Some("secret"),
        ),
    ] {
        let e = assert_error(
            post(&s, "/api/v1/webhooks", body.clone()).await,
            400,
            "INVALID_INPUT",
        )
        .await;
        if let Some(f) = field {
            assert_eq!(e["field"], f, "{body}: {e}");
        }
    }
    // PATCH changes what it names; a new secret is shown once.
    let patched = json_of(
        s.req(Method::PATCH, &format!("/api/v1/webhooks/{id}"), &s.admin)
            .json(&json!({"enabled": false, "secret": "another-secret-0123456789"}))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["secret"], "another-secret-0123456789");
    let r = s
        .req(Method::DELETE, &format!("/api/v1/webhooks/{id}"), &s.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s
        .req(
            Method::GET,
            &format!("/api/v1/webhooks/{id}/deliveries"),
            &s.admin,
        )
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "NOT_FOUND").await;
    s.stop().await;
}

/// Without the configuration's switch, a webhook cannot aim at the server's own loopback,
/// a link-local or a cloud metadata address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_targets_are_refused_unless_allowed() {
    let s = start(false, |_| {}).await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fd00:ec2::254]/",
    ] {
        let e = assert_error(
            post(&s, "/api/v1/webhooks", json!({"url": url, "events": ["*"]})).await,
            403,
            "FORBIDDEN",
        )
        .await;
        assert_eq!(e["field"], "url", "{url}: {e}");
    }
    assert_eq!(get(&s, "/api/v1/webhooks").await["count"], 0);
    s.stop().await;
}

/// A delivery the receiver could not take before the server stopped is sent by the next
/// server on the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_delivery_survives_a_server_restart() {
    let rx = Receiver::start(Mode::Down).await;
    let tweak = |c: &mut libgo_http::Config| {
        c.webhook_allow_internal = true;
        c.webhook_retry_base_ms = 300;
    };
    let s = start(true, tweak).await;
    let hook = webhook(&s, &rx.url, json!(["instance.created"])).await;
    let id = hook["id"].as_str().unwrap().to_string();
    let name = unique("restart");
    let cid = container(&s, &name, "sleep 600").await["id"].clone();
    rx.until(30, "a refused attempt", |got| {
        got.iter().any(|r| about(r, &cid))
    })
    .await;
    let data_dir = s.data_dir.clone();
    let dir = s.stop().await;
    let refused: Vec<Received> = rx.all().into_iter().filter(|r| about(r, &cid)).collect();
    assert!(refused.iter().all(|r| r.answered == 503), "{refused:#?}");
    let delivery = refused[0].delivery.clone();

    rx.set(Mode::Up);
    let s2 = start_in(dir, &data_dir, true, tweak).await;
    rx.until(30, "the queued delivery after the restart", |got| {
        got.iter()
            .any(|r| r.delivery == delivery && r.answered == 200)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let accepted = rx
        .all()
        .iter()
        .filter(|r| about(r, &cid) && r.answered == 200)
        .count();
    assert_eq!(accepted, 1, "{:#?}", rx.all());
    let log = get(&s2, &format!("/api/v1/webhooks/{id}/deliveries")).await;
    let ours = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == delivery.as_str())
        .cloned();
    assert_eq!(
        ours.map(|d| d["status"].clone()),
        Some(json!("delivered")),
        "{log}"
    );
    s2.remove_instance(&name).await;
    s2.stop().await;
}

fn cpu_points(history: &Value) -> Vec<(i64, f64)> {
    history["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let t = chrono::DateTime::parse_from_rfc3339(p["time"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            (t, p["cpuPercent"].as_f64().unwrap())
        })
        .collect()
}

/// A container busy for 25 s then idle: its history shows the load in the buckets of those
/// seconds, and a rule `cpuPercent > 50 for 10 s` fires once and resolves once, each
/// transition reaching the rule's webhook once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_history_and_an_alert_that_fires_and_resolves() {
    let rx = Receiver::start(Mode::Up).await;
    let s = start(true, |c| {
        c.webhook_allow_internal = true;
        c.stats_interval_secs = 2;
        // Nested KVM is not on every test machine; TCG is.
        c.kvm.accelerator = "tcg".into();
    })
    .await;
    // The webhook asks for task events only: the rule's transitions reach it because the
    // rule names it.
    let hook = webhook(&s, &rx.url, json!(["task.finished"])).await;
    let name = unique("busy");
    let rule = json_of(
        post(
            &s,
            "/api/v1/alerts",
            json!({"name": unique("hot"), "metric": "cpuPercent", "op": ">", "threshold": 50,
                   "forSeconds": 10, "instance": name, "webhook": hook["id"]}),
        )
        .await,
        201,
    )
    .await;
    let rule_id = rule["id"].as_str().unwrap().to_string();
    // A VM beside it: libvirt's samples come from one bulk call.
    let vm = unique("histvm");
    json_of(
        post(
            &s,
            "/api/v1/vms",
            json!({"name": vm, "memoryBytes": 64u64 << 20, "cpus": 1,
                   "disks": [{"sizeBytes": 16u64 << 20}], "start": true}),
        )
        .await,
        201,
    )
    .await;
    let started = chrono::Utc::now().timestamp_millis();
    container(
        &s,
        &name,
        "yes > /dev/null & p=$!; sleep 25; kill $p; sleep 600",
    )
    .await;
    // The load ends 25 s after the container starts, which is after `started` and before
    // `created`.
    let created = chrono::Utc::now().timestamp_millis();
    rx.until(60, "the rule fires", |got| {
        got.iter().any(|r| r.event == "alert.firing")
    })
    .await;
    let fired_at = chrono::Utc::now().timestamp_millis();
    assert!(
        fired_at - started >= 10_000,
        "fired {} ms after the load began, before forSeconds",
        fired_at - started
    );
    let firing = get(&s, &format!("/api/v1/alerts/{rule_id}")).await;
    assert_eq!(
        firing["firing"].as_array().map(Vec::len),
        Some(1),
        "{firing}"
    );
    rx.until(60, "the rule resolves", |got| {
        got.iter().any(|r| r.event == "alert.resolved")
    })
    .await;
    // A few more rounds: no transition repeats.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let got = rx.all();
    let count = |e: &str| got.iter().filter(|r| r.event == e).count();
    assert_eq!(
        (count("alert.firing"), count("alert.resolved")),
        (1, 1),
        "{got:#?}"
    );
    for r in &got {
        assert_eq!(r.signature, sign(&r.body));
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["data"]["alert"]["rule"], rule_id.as_str(), "{body}");
        assert_eq!(
            body["data"]["alert"]["instanceName"],
            name.as_str(),
            "{body}"
        );
    }
    let history = get(&s, &format!("/api/v1/alerts/{rule_id}/history")).await;
    let states: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["resolved", "firing"], "{history}");
    assert!(
        history["items"][1]["value"].as_f64().unwrap() > 50.0,
        "{history}"
    );

    // The stats history: busy buckets during the 25 s, idle ones after.
    let h = get(
        &s,
        &format!("/api/v1/instances/{name}/stats/history?step=2"),
    )
    .await;
    let points = cpu_points(&h);
    let busy: Vec<_> = points
        .iter()
        .filter(|(t, _)| *t > started + 4_000 && *t < started + 21_000)
        .collect();
    let idle: Vec<_> = points
        .iter()
        .filter(|(t, _)| *t > created + 28_000)
        .collect();
    assert!(
        busy.len() >= 4 && busy.iter().all(|(_, c)| *c > 50.0),
        "{h}"
    );
    assert!(
        idle.len() >= 2 && idle.iter().all(|(_, c)| *c < 20.0),
        "{h}"
    );
    let vm_history = get(&s, &format!("/api/v1/instances/{vm}/stats/history?step=2")).await;
    let vm_points = vm_history["points"].as_array().unwrap();
    assert!(
        vm_points.len() >= 5
            && vm_points
                .iter()
                .all(|p| p["memoryLimitBytes"] == json!(64u64 << 20)
                    && p["memoryBytes"].as_u64() > Some(0)),
        "{vm_history}"
    );
    s.remove_instance(&vm).await;
    // The host's history sums its instances: at least this one's load.
    let host = get(&s, "/api/v1/hosts/local/stats/history?step=2").await;
    assert!(cpu_points(&host).iter().any(|(_, c)| *c > 50.0), "{host}");
    // The host's traffic is its running instances' traffic: after the container received
    // some, the host's usage counts at least what the container's interface counted.
    let out = std::process::Command::new("docker")
        .args(["exec", &name, "sh", "-c"])
        .arg(
            "ping -c 3 -s 1400 $(ip route | awk '/default/ {print $3}') >/dev/null; \
             cat /sys/class/net/eth0/statistics/rx_bytes",
        )
        .output()
        .expect("docker exec");
    let received: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("rx_bytes: {out:?}"));
    assert!(received > 3 * 1400, "the pings were answered: {received}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let local = get(&s, "/api/v1/hosts/local").await;
        if local["usage"]["rxBytes"].as_u64() >= Some(received) {
            assert!(local["usage"]["txBytes"].as_u64() > Some(0), "{local}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the host never counted its instances' traffic: {local}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // A range of more than 1,000 steps is refused; so is an unknown instance.
    let r = s
        .req(
            Method::GET,
            &format!("/api/v1/instances/{name}/stats/history?step=1&from=2026-01-01T00:00:00Z"),
            &s.admin,
        )
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "INVALID_INPUT").await;
    let r = s
        .req(
            Method::GET,
            "/api/v1/instances/no-such-thing/stats/history",
            &s.admin,
        )
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "NOT_FOUND").await;
    // Bad rules are refused with the field named.
    let e = assert_error(
        post(
            &s,
            "/api/v1/alerts",
            json!({"name": "x", "metric": "cpuPercent", "op": ">"}),
        )
        .await,
        400,
        "INVALID_INPUT",
    )
    .await;
    assert_eq!(e["field"], "threshold", "{e}");
    s.remove_instance(&name).await;
    s.stop().await;
}
