//! Tasks: wait, cancel, results kept after the end, and tasks cut off by a shutdown or a
//! restart shown as failed; server state surviving a restart.

mod common;

use std::time::Duration;

use common::{assert_error, start, start_in};
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn tasks_survive_and_fail_across_restarts() {
    let s = start(false, |_| {}).await;
    let t = s.admin.clone();
    // A task that never ends by itself.
    let spawn_pending = |kind: &'static str| {
        let tasks = s.state.tasks.clone();
        async move {
            tasks
                .spawn(kind, Some("x".into()), "admin", |ctx| async move {
                    ctx.progress(Some(10.0), "working");
                    futures::future::pending::<()>().await;
                    Ok(Value::Null)
                })
                .await
                .expect("spawn")
        }
    };
    let a = spawn_pending("test.cancel").await;
    // ?wait returns when the time is up, still running, with progress.
    let started = std::time::Instant::now();
    let v: Value = s
        .req(Method::GET, &format!("/api/v1/tasks/{}?wait=1", a.id), &t)
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(v["status"], "running");
    assert_eq!(v["progress"], 10.0);
    assert_eq!(v["message"], "working");
    // Cancel.
    let v: Value = s
        .req(Method::POST, &format!("/api/v1/tasks/{}/cancel", a.id), &t)
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(v["status"], "cancelled", "{v}");
    let r = s
        .req(Method::POST, &format!("/api/v1/tasks/{}/cancel", a.id), &t)
        .send()
        .await
        .expect("req");
    assert_error(r, 409, "RESOURCE_CONFLICT").await;
    // A task running at shutdown is stored as failed (interrupted).
    let b = spawn_pending("test.shutdown").await;
    // A task row left running by a server that died (no graceful shutdown).
    let mut orphan = s.state.tasks.get(&b.id, None).await.expect("task");
    orphan.id = uuid::Uuid::new_v4().to_string();
    orphan.kind = "test.crash".into();
    let data_dir = s.data_dir.clone();
    let dir = s.stop().await;
    let db = libgo_http::db::Db::connect(&format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("libgo.db").display()
    ))
    .await
    .expect("db");
    db.task_upsert(&libgo_http::db::TaskRow {
        id: orphan.id.clone(),
        kind: orphan.kind.clone(),
        target: None,
        status: "running".into(),
        progress: 50.0,
        message: "half way".into(),
        result: None,
        error: None,
        created_by: Some("admin".into()),
        created_at: 0,
        updated_at: 0,
        finished_at: None,
    })
    .await
    .expect("insert");
    drop(db);

    // A new server on the same data dir: users, tasks and audit are still there.
    let s2 = start_in(dir, &data_dir, false, |_| {}).await;
    let t2 = s2.admin.clone();
    let v: Value = s2
        .req(Method::GET, &format!("/api/v1/tasks/{}", b.id), &t2)
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["code"], "INTERRUPTED");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("shut down"),
        "{v}"
    );
    let v: Value = s2
        .req(Method::GET, &format!("/api/v1/tasks/{}", orphan.id), &t2)
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(v["status"], "failed", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("restarted"),
        "{v}"
    );
    let v: Value = s2
        .req(Method::GET, &format!("/api/v1/tasks/{}", a.id), &t2)
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(v["status"], "cancelled");
    let list: Value = s2
        .req(Method::GET, "/api/v1/tasks?status=failed", &t2)
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(list["count"], 2, "{list}");
    let r = s2
        .req(Method::GET, "/api/v1/audit?path=/login", &t2)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    let audit: Value = r.json().await.expect("json");
    assert!(
        audit["count"].as_u64().unwrap_or(0) >= 2,
        "logins of both runs: {audit}"
    );
    s2.stop().await;
}

#[tokio::test]
async fn starts_with_an_engine_down_and_reconnects() {
    // Docker at a socket that does not exist yet: the server starts, /health says so, and
    // it keeps trying until the engine appears there.
    let sock_dir = tempfile::tempdir().expect("dir");
    let sock = sock_dir.path().join("docker.sock");
    let host = format!("unix://{}", sock.display());
    let s = start(false, |c| {
        c.docker.enabled = true;
        c.docker.host = Some(host);
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h: Value = s
        .client
        .get(s.url("/health"))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(h["status"], "degraded", "{h}");
    let docker = h["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .find(|b| b["backend"] == "docker")
        .cloned()
        .expect("docker listed");
    assert_eq!(docker["up"], false);
    // Calls that need it answer 503 in the error shape.
    let r = s
        .req(Method::POST, "/api/v1/instances", &s.admin)
        .json(&serde_json::json!({"name": common::unique("c"), "kind": "container", "image": "x"}))
        .send()
        .await
        .expect("req");
    assert_error(r, 503, "BACKEND_UNAVAILABLE").await;

    // The engine "returns": a proxy to the real dockerd appears at the socket path.
    let listener = tokio::net::UnixListener::bind(&sock).expect("bind socket");
    let proxy = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut engine) =
                    tokio::net::UnixStream::connect("/var/run/docker.sock").await
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                }
            });
        }
    });
    s.wait_for_backends(&["docker"]).await;
    let h: Value = s
        .client
        .get(s.url("/health"))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(h["status"], "ok", "{h}");
    let r = s
        .req(Method::GET, "/api/v1/containers?pageSize=1", &s.admin)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
    proxy.abort();
}
