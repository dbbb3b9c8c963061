//! End to end over HTTP against the real engines (dockerd and libvirt's qemu:///system):
//! a container and a VM through the same API.

mod common;

use std::time::Duration;

use common::{assert_error, start, unique};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const IMAGE: &str = "libgo-test/busybox:latest";

async fn ok_json(r: reqwest::Response, status: u16) -> Value {
    let code = r.status().as_u16();
    let url = r.url().to_string();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(code, status, "{url}: {body}");
    body
}

async fn ws_connect(
    base: &str,
    path: &str,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{path}{sep}access_token={token}",
        base.replace("http://", "ws://")
    );
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    ws
}

/// Reads text messages until `pred` holds for one, within `secs`.
async fn ws_until(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    secs: u64,
    mut pred: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("message in time")
            .expect("stream open")
            .expect("message");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).expect("json message");
            if pred(&v) {
                return v;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_and_vm_through_one_api() {
    let s = start(true, |c| c.kvm.accelerator = "tcg".into()).await;
    let t = s.admin.clone();
    let (_, operator) = s.user("operator").await;
    let tag = unique("lgh");
    let cname = format!("{tag}-c");
    let vname = format!("{tag}-v");

    // Health reports both engines.
    let h = ok_json(
        s.client.get(s.url("/health")).send().await.expect("req"),
        200,
    )
    .await;
    assert_eq!(h["status"], "ok", "{h}");

    // Events: subscribe before acting; filtered to this container.
    let mut events = ws_connect(
        &s.base,
        &format!("/api/v1/events?instance={cname}&types=instance"),
        &t,
    )
    .await;
    events
        .send(Message::Text("{\"type\":\"ping\"}".into()))
        .await
        .expect("send");
    ws_until(&mut events, 10, |v| v["type"] == "pong").await;

    // Create a container (unified shape) and a VM.
    let c = ok_json(
        s.req(Method::POST, "/api/v1/instances", &operator)
            .json(&json!({"name": cname, "kind": "container", "image": IMAGE,
                          "command": ["sleep", "600"], "labels": {"run": tag}}))
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    assert_eq!(c["kind"], "container");
    let v = ok_json(
        s.req(Method::POST, "/api/v1/vms", &operator)
            .json(
                &json!({"name": vname, "memoryBytes": 64u64 << 20, "cpus": 1,
                          "disks": [{"sizeBytes": 16u64 << 20}], "labels": {"run": tag}}),
            )
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    assert_eq!(v["kind"], "vm");
    // A duplicate name is a conflict, whatever the kind.
    let r = s
        .req(Method::POST, "/api/v1/instances", &operator)
        .json(&json!({"name": vname, "kind": "container", "image": IMAGE}))
        .send()
        .await
        .expect("req");
    assert_error(r, 409, "RESOURCE_CONFLICT").await;

    // Both in one page.
    let page = ok_json(
        s.req(
            Method::GET,
            &format!("/api/v1/instances?label=run={tag}&pageSize=10"),
            &t,
        )
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
    assert_eq!(page["count"], 2, "{page}");
    let kinds: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"vm") && kinds.contains(&"container"),
        "{page}"
    );
    // Kind views show only their kind.
    let vms = ok_json(
        s.req(Method::GET, &format!("/api/v1/vms?label=run={tag}"), &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert_eq!(vms["count"], 1);
    assert_error(
        s.req(Method::GET, &format!("/api/v1/vms/{cname}"), &t)
            .send()
            .await
            .expect("req"),
        404,
        "NOT_FOUND",
    )
    .await;

    // Act on both: start, pause, unpause.
    for name in [&cname, &vname] {
        let i = ok_json(
            s.req(
                Method::POST,
                &format!("/api/v1/instances/{name}/start"),
                &operator,
            )
            .send()
            .await
            .expect("req"),
            200,
        )
        .await;
        assert_eq!(i["state"], "running", "{i}");
        let i = ok_json(
            s.req(
                Method::POST,
                &format!("/api/v1/instances/{name}/pause"),
                &operator,
            )
            .send()
            .await
            .expect("req"),
            200,
        )
        .await;
        assert_eq!(i["state"], "paused", "{i}");
        let i = ok_json(
            s.req(
                Method::POST,
                &format!("/api/v1/instances/{name}/unpause"),
                &operator,
            )
            .send()
            .await
            .expect("req"),
            200,
        )
        .await;
        assert_eq!(i["state"], "running", "{i}");
    }
    // The start streamed as an event.
    let e = ws_until(&mut events, 30, |v| {
        v["type"] == "instance" && v["event"]["action"] == "started"
    })
    .await;
    assert_eq!(e["event"]["instanceName"], cname.as_str());

    // Stats: one sample, then a stream over a WebSocket.
    let st = ok_json(
        s.req(Method::GET, &format!("/api/v1/instances/{cname}/stats"), &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert!(st["memoryBytes"].as_u64().is_some_and(|m| m > 0), "{st}");
    let vst = ok_json(
        s.req(Method::GET, &format!("/api/v1/instances/{vname}/stats"), &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert!(vst["memoryLimitBytes"].as_u64().is_some(), "{vst}");
    let mut stream = ws_connect(&s.base, &format!("/api/v1/instances/{cname}/stats"), &t).await;
    let sample = ws_until(&mut stream, 30, |v| v.get("cpuPercent").is_some()).await;
    assert!(sample["timestamp"].is_string());
    let _ = stream.close(None).await;

    // Exec in the container; logs.
    let ex = ok_json(
        s.req(
            Method::POST,
            &format!("/api/v1/instances/{cname}/exec"),
            &operator,
        )
        .json(&json!({"command": ["sh", "-c", "echo hello-from-exec; echo oops >&2; exit 3"]}))
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
    assert_eq!(ex["exitCode"], 3, "{ex}");
    assert_eq!(ex["stdout"], "hello-from-exec\n");
    assert_eq!(ex["stderr"], "oops\n");
    let logs = ok_json(
        s.req(
            Method::GET,
            &format!("/api/v1/instances/{cname}/logs?tail=10"),
            &t,
        )
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
    assert!(logs["items"].is_array() && logs["count"].is_u64(), "{logs}");
    // Exec on a VM without a guest agent is unsupported, in the error shape.
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/instances/{vname}/exec"),
            &operator,
        )
        .json(&json!({"command": ["true"]}))
        .send()
        .await
        .expect("req");
    assert_error(r, 501, "UNSUPPORTED").await;

    // Metrics know about both.
    let m = s
        .req(Method::GET, "/metrics", &t)
        .send()
        .await
        .expect("req")
        .text()
        .await
        .expect("text");
    assert!(m.contains("libgo_backend_up{backend=\"docker\"} 1"), "{m}");
    assert!(m.contains("libgo_backend_up{backend=\"kvm\"} 1"));
    assert!(m.contains("libgo_instances{backend=\"kvm\",kind=\"vm\",state=\"running\"}"));
    assert!(m.contains("libgo_http_request_duration_seconds_bucket"));

    // Stop both, snapshot both, list, delete the snapshots.
    for name in [&cname, &vname] {
        let i = ok_json(
            s.req(
                Method::POST,
                &format!("/api/v1/instances/{name}/stop?force=true"),
                &operator,
            )
            .send()
            .await
            .expect("req"),
            200,
        )
        .await;
        assert_eq!(i["state"], "stopped", "{i}");
        let snap = ok_json(
            s.req(
                Method::POST,
                &format!("/api/v1/instances/{name}/snapshots"),
                &operator,
            )
            .json(&json!({"name": "snap1", "description": "from the http test"}))
            .send()
            .await
            .expect("req"),
            201,
        )
        .await;
        assert_eq!(snap["name"], "snap1");
        let list = ok_json(
            s.req(
                Method::GET,
                &format!("/api/v1/instances/{name}/snapshots"),
                &t,
            )
            .send()
            .await
            .expect("req"),
            200,
        )
        .await;
        assert_eq!(list["count"], 1, "{list}");
        let i = ok_json(
            s.req(
                Method::POST,
                &format!("/api/v1/instances/{name}/snapshots/snap1/revert"),
                &operator,
            )
            .send()
            .await
            .expect("req"),
            200,
        )
        .await;
        assert_eq!(i["name"], name.as_str());
    }

    // Export both as tasks: 202 + Location, progress, result kept after the end.
    for (name, format) in [(&cname, "tar"), (&vname, "qcow2")] {
        let r = s
            .req(
                Method::POST,
                &format!("/api/v1/instances/{name}/export"),
                &operator,
            )
            .json(&json!({"format": format}))
            .send()
            .await
            .expect("req");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let location = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        assert!(location.starts_with("/api/v1/tasks/"));
        let task = s.wait_task(&location, &t).await;
        assert_eq!(task["status"], "finished", "{task}");
        assert_eq!(task["progress"], 100.0);
        let path = task["result"]["path"].as_str().expect("path").to_string();
        assert!(
            path.starts_with(s.data_dir.to_str().expect("utf8")),
            "{path}"
        );
        assert!(std::fs::metadata(&path).expect("export file").len() > 0);
        let again = ok_json(
            s.req(Method::GET, &location, &t).send().await.expect("req"),
            200,
        )
        .await;
        assert_eq!(again["result"], task["result"]);
        let r = s
            .req(Method::POST, &format!("{location}/cancel"), &operator)
            .send()
            .await
            .expect("req");
        assert_error(r, 409, "RESOURCE_CONFLICT").await;
    }

    for name in [&cname, &vname] {
        let r = s
            .req(
                Method::DELETE,
                &format!("/api/v1/instances/{name}/snapshots/snap1"),
                &operator,
            )
            .send()
            .await
            .expect("req");
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }

    // Delete both; the deletion is an event too.
    for name in [&cname, &vname] {
        let r = s
            .req(
                Method::DELETE,
                &format!("/api/v1/instances/{name}?force=true"),
                &operator,
            )
            .send()
            .await
            .expect("req");
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_error(
            s.req(Method::GET, &format!("/api/v1/instances/{name}"), &t)
                .send()
                .await
                .expect("req"),
            404,
            "NOT_FOUND",
        )
        .await;
    }
    ws_until(&mut events, 30, |v| v["event"]["action"] == "deleted").await;
    let _ = events.close(None).await;

    // The audit log recorded the operator's actions on the VM.
    let audit = ok_json(
        s.req(
            Method::GET,
            &format!("/api/v1/audit?target={vname}&pageSize=100"),
            &t,
        )
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
    assert!(audit["count"].as_u64().unwrap_or(0) >= 8, "{audit}");
    assert!(
        audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["role"] == "operator")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_shapes_batches_console_and_images() {
    let s = start(true, |_| {}).await;
    let t = s.admin.clone();
    let tag = unique("lgs");

    // Seed 001's container shape.
    let name = format!("{tag}-seed");
    let c = ok_json(
        s.req(Method::POST, "/api/v1/containers", &t)
            .json(
                &json!({"name": name, "image": IMAGE, "ports": {"80/tcp": null},
                          "environment": {"GREETING": "hi"}, "command": "sleep 600",
                          "labels": {"run": tag}, "start": true}),
            )
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    assert_eq!(c["state"], "running", "{c}");
    let list = ok_json(
        s.req(
            Method::GET,
            &format!("/api/v1/containers?status=running&label=run={tag}&limit=10&offset=0"),
            &t,
        )
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
    assert_eq!(list["count"], 1, "{list}");
    let ex = ok_json(
        s.req(Method::POST, &format!("/api/v1/instances/{name}/exec"), &t)
            .json(&json!({"command": ["sh", "-c", "echo $GREETING"]}))
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert_eq!(ex["stdout"], "hi\n");
    let stopped = ok_json(
        s.req(
            Method::POST,
            &format!("/api/v1/containers/{name}/stop?timeout=1"),
            &t,
        )
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
    assert_eq!(stopped["state"], "stopped");
    let r = s
        .req(Method::DELETE, &format!("/api/v1/containers/{name}"), &t)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // A console: an interactive shell over a WebSocket.
    let cname = format!("{tag}-tty");
    ok_json(
        s.req(Method::POST, "/api/v1/instances", &t)
            .json(
                &json!({"name": cname, "kind": "container", "image": IMAGE, "command": ["sh"],
                          "tty": true, "start": true}),
            )
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    let mut console = ws_connect(&s.base, &format!("/api/v1/instances/{cname}/console"), &t).await;
    console
        .send(Message::Text("echo console-$((6*7))\n".into()))
        .await
        .expect("send");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while !seen.contains("console-42") {
        match tokio::time::timeout_at(deadline, console.next())
            .await
            .expect("console output in time")
        {
            Some(Ok(Message::Binary(b))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Some(Ok(_)) => {}
            other => panic!("console ended: {other:?}; saw {seen:?}"),
        }
    }
    let _ = console.close(None).await;
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/instances/{cname}?force=true"),
            &t,
        )
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // Batch create three containers, then batch delete them (plus one that does not exist).
    let r = s
        .req(Method::POST, "/api/v1/instances/batch", &t)
        .json(
            &json!({"spec": {"name": "x", "kind": "container", "image": IMAGE,
                               "command": ["sleep", "600"], "labels": {"run": tag}},
                      "count": 3, "namePattern": format!("{tag}-b{{n}}")}),
        )
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let task = s.wait_task(&loc, &t).await;
    assert_eq!(task["status"], "finished", "{task}");
    assert_eq!(task["result"]["succeeded"], 3, "{task}");
    let names: Vec<String> = (1..=3).map(|n| format!("{tag}-b{n}")).collect();
    let mut ids = names.clone();
    ids.push(format!("{tag}-missing"));
    let r = s
        .req(Method::POST, "/api/v1/instances/batch-delete", &t)
        .json(&json!({"ids": ids, "force": true}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let task = s.wait_task(&loc, &t).await;
    assert_eq!(task["result"]["succeeded"], 3, "{task}");
    assert_eq!(task["result"]["failed"], 1);
    assert_eq!(task["result"]["items"][3]["error"]["code"], "NOT_FOUND");
    let left = ok_json(
        s.req(
            Method::GET,
            &format!("/api/v1/instances?label=run={tag}"),
            &t,
        )
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
    assert_eq!(left["count"], 0, "{left}");

    // Images: tag, push to the local registry, remove, pull back (tasks), remove.
    let reference = format!("127.0.0.1:5000/{tag}:v1");
    let enc = |r: &str| r.replace('/', "%2F");
    let img = ok_json(
        s.req(
            Method::POST,
            &format!("/api/v1/images/{}/tag", enc(IMAGE)),
            &t,
        )
        .json(&json!({"target": reference}))
        .send()
        .await
        .expect("req"),
        201,
    )
    .await;
    assert!(
        img["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .any(|x| x == reference.as_str()),
        "{img}"
    );
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/images/{}/push", enc(&reference)),
            &t,
        )
        .json(&json!({}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let task = s
        .wait_task(r.headers()["location"].to_str().expect("loc"), &t)
        .await;
    assert_eq!(task["status"], "finished", "{task}");
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/images/{}", enc(&reference)),
            &t,
        )
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s
        .req(Method::POST, "/api/v1/images/pull", &t)
        .json(&json!({"name": format!("127.0.0.1:5000/{tag}"), "tag": "v1"}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let task = s
        .wait_task(r.headers()["location"].to_str().expect("loc"), &t)
        .await;
    assert_eq!(task["status"], "finished", "{task}");
    let images = ok_json(
        s.req(Method::GET, "/api/v1/images?pageSize=100", &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert!(images.to_string().contains(&reference));
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/images/{}", enc(&reference)),
            &t,
        )
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // A pull of something that is not there fails as a task, with the error kept.
    let r = s
        .req(Method::POST, "/api/v1/images/pull", &t)
        .json(&json!({"reference": format!("127.0.0.1:5000/{tag}-absent:v9")}))
        .send()
        .await
        .expect("req");
    let task = s
        .wait_task(r.headers()["location"].to_str().expect("loc"), &t)
        .await;
    assert_eq!(task["status"], "failed", "{task}");
    assert!(task["error"]["code"].is_string());

    // Networks and volumes of the Docker backend.
    let net = format!("{tag}-net");
    ok_json(
        s.req(Method::POST, "/api/v1/networks", &t)
            .json(&json!({"name": net, "backend": "docker"}))
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    ok_json(
        s.req(
            Method::GET,
            &format!("/api/v1/networks/{net}?backend=docker"),
            &t,
        )
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/networks/{net}?backend=docker"),
            &t,
        )
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let vol = format!("{tag}-vol");
    ok_json(
        s.req(Method::POST, "/api/v1/volumes", &t)
            .json(&json!({"name": vol, "backend": "docker"}))
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/volumes/{vol}?backend=docker"),
            &t,
        )
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let backends = ok_json(
        s.req(Method::GET, "/api/v1/backends", &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert_eq!(backends.as_array().map(Vec::len), Some(2), "{backends}");
    s.stop().await;
}

/// `[[backends]]` in the server's config: more engines under their own names, served by the
/// same API. A backend with a wrong setting is reported down with the reason (and not
/// retried); the others work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_backends_from_the_server_config() {
    let s = common::start(false, |c| {
        c.backends = toml::from_str::<libgo_http::Config>(
            "[[backends]]\nname = \"kvm-b\"\nengine = \"kvm\"\nurl = \"test:///default\"\n\
             [[backends]]\nname = \"kvm-remote\"\nengine = \"kvm\"\nurl = \"qemu+tcp://127.0.0.1/system\"\naccelerator = \"tcg\"\n\
             [[backends]]\nname = \"kvm-typo\"\nengine = \"kvm\"\nurl = \"test:///default\"\naccelerator = \"warp\"\n",
        )
        .expect("config")
        .backends;
    })
    .await;
    s.wait_for_backends(&["kvm-b", "kvm-remote"]).await;
    let health = ok_json(
        s.client.get(s.url("/health")).send().await.expect("req"),
        200,
    )
    .await;
    let typo = health["backends"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["backend"] == "kvm-typo"))
        .cloned()
        .expect("the wrong backend is listed");
    assert_eq!(typo["up"], false, "{typo}");
    assert!(
        typo["message"].as_str().unwrap_or("").contains("warp"),
        "{typo}"
    );
    // The test driver's own domain, through the API, on the named backend only.
    let page = ok_json(
        s.req(
            Method::GET,
            "/api/v1/instances?backend=kvm-b&kind=vm",
            &s.admin,
        )
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
    let items = page["items"].as_array().expect("items");
    assert!(!items.is_empty(), "{page}");
    assert!(items.iter().all(|i| i["backend"] == "kvm-b"), "{page}");
    ok_json(
        s.req(
            Method::GET,
            "/api/v1/instances?backend=kvm-remote",
            &s.admin,
        )
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
}
