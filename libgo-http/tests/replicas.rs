//! Two `libgo-server` processes sharing one PostgreSQL (started by `scripts/postgres.sh`):
//! a token of one is good on the other, a host added through one is used by the other, a
//! task started on one is read, waited for and cancelled through the other, and a task
//! whose replica is killed is failed `INTERRUPTED` by the one left.

mod common;
mod receiver;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN_PASSWORD, json_of};
use reqwest::{Client, Method};
use serde_json::{Value, json};

const IMAGE: &str = "libgo-test/busybox:latest";

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

/// A database of this test's own, dropped at the end.
struct Database {
    name: String,
    url: String,
}

impl Database {
    fn create() -> Database {
        let name = format!("lgt_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let out = Command::new("bash")
            .arg(script("postgres.sh"))
            .args(["create", &name])
            .output()
            .expect("postgres.sh");
        assert!(
            out.status.success(),
            "postgres.sh create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Database { name, url }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script("postgres.sh"))
            .args(["drop", &self.name])
            .output();
    }
}

/// One server process.
struct Replica {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Replica {
    async fn start(db: &Database) -> Replica {
        let dir = tempfile::tempdir().expect("dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_libgo-server"))
            .args([
                "serve",
                "--no-kvm",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--database-url", &db.url])
            .env("LIBGO_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("LIBGO_RATE_LIMIT_PER_MINUTE", "0")
            .env("LIBGO_WEBHOOK_ALLOW_INTERNAL", "true")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("libgo-server");
        let base = format!("http://127.0.0.1:{port}");
        let client = Client::new();
        let started = Instant::now();
        while client.get(format!("{base}/health")).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "replica did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Replica {
            child,
            base,
            _dir: dir,
        }
    }

    fn req(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a batch of `count` running containers on `r` (seconds of work), answering the
/// task's id.
async fn batch(r: &Replica, token: &str, label: &str, count: u32) -> String {
    let t = json_of(
        r.req(Method::POST, "/api/v1/instances/batch", token)
            .json(&json!({"spec": {"name": label, "kind": "container", "image": IMAGE,
                                   "command": ["sleep", "300"], "labels": {"test.libgo.replica": label},
                                   "start": true},
                          "count": count}))
            .send()
            .await
            .expect("req"),
        202,
    )
    .await;
    t["id"].as_str().expect("task id").to_string()
}

/// Waits through `r` until task `id` has made progress.
async fn until_progress(r: &Replica, token: &str, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let t = json_of(
            r.req(Method::GET, &format!("/api/v1/tasks/{id}"), token)
                .send()
                .await
                .expect("req"),
            200,
        )
        .await;
        if t["progress"].as_f64().is_some_and(|p| p > 0.0) || t["status"] != "running" {
            return t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress: {t}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn remove_containers(label: &str) {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=test.libgo.replica={label}"),
        ])
        .output()
        .expect("docker ps");
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .arg("rm")
            .arg("-f")
            .args(&ids)
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_users_hosts_and_tasks_on_postgresql() {
    let db = Database::create();
    let mut a = Replica::start(&db).await;
    let b = Replica::start(&db).await;

    // A token from one replica is good on the other: users and the signing key are shared.
    let login = json_of(
        Client::new()
            .post(format!("{}/api/v1/login", a.base))
            .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
            .send()
            .await
            .expect("login"),
        200,
    )
    .await;
    let t = login["token"].as_str().expect("token").to_string();
    json_of(
        b.req(Method::GET, "/api/v1/users", &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;

    // A host added through A is used by B within seconds.
    json_of(
        a.req(Method::POST, "/api/v1/hosts", &t)
            .json(&json!({"name": "sim", "libvirt": "test:///default"}))
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    let added = Instant::now();
    loop {
        let r = b
            .req(Method::GET, "/api/v1/hosts/sim", &t)
            .send()
            .await
            .expect("req");
        if r.status().as_u16() == 200 {
            let h: Value = r.json().await.expect("json");
            if h["alive"] == true {
                break;
            }
        }
        assert!(
            added.elapsed() < Duration::from_secs(5),
            "B does not use the host yet"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("host seen by the other replica after {:?}", added.elapsed());
    // Removed through B (forced: libvirt's test driver comes with a domain), gone from A.
    let r = b
        .req(Method::DELETE, "/api/v1/hosts/sim?force=true", &t)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 204);
    let removed = Instant::now();
    while a
        .req(Method::GET, "/api/v1/hosts/sim", &t)
        .send()
        .await
        .expect("req")
        .status()
        .as_u16()
        != 404
    {
        assert!(
            removed.elapsed() < Duration::from_secs(5),
            "A still has the host"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A task started on A is read and cancelled through B.
    let label = format!("rpc{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let id = batch(&a, &t, &label, 100).await;
    let seen = until_progress(&b, &t, &id).await;
    assert_eq!(seen["status"], "running", "{seen}");
    let cancelled = json_of(
        b.req(Method::POST, &format!("/api/v1/tasks/{id}/cancel"), &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    remove_containers(&label);

    // A task whose replica dies is failed INTERRUPTED by the other, and waited for there.
    let label = format!("rpk{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let id = batch(&a, &t, &label, 100).await;
    until_progress(&b, &t, &id).await;
    a.kill();
    let killed = Instant::now();
    let ended = json_of(
        b.req(Method::GET, &format!("/api/v1/tasks/{id}?wait=60"), &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(ended["error"]["code"], "INTERRUPTED", "{ended}");
    eprintln!(
        "task of the killed replica failed after {:?}",
        killed.elapsed()
    );
    remove_containers(&label);
}

/// Both replicas see every Docker event; a webhook gets each one once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_send_each_webhook_delivery_once() {
    use receiver::{Mode, Receiver, SECRET, about};
    let rx = Receiver::start(Mode::Up).await;
    let db = Database::create();
    let a = Replica::start(&db).await;
    let b = Replica::start(&db).await;
    let login = json_of(
        Client::new()
            .post(format!("{}/api/v1/login", a.base))
            .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
            .send()
            .await
            .expect("login"),
        200,
    )
    .await;
    let t = login["token"].as_str().expect("token").to_string();
    json_of(
        a.req(Method::POST, "/api/v1/webhooks", &t)
            .json(
                &json!({"url": rx.url, "events": ["instance.created", "instance.deleted"],
                          "secret": SECRET}),
            )
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let name = common::unique(&format!("once{n}"));
        let c = json_of(
            b.req(Method::POST, "/api/v1/instances", &t)
                .json(&json!({"name": name, "kind": "container", "image": IMAGE,
                              "command": ["sleep", "600"]}))
                .send()
                .await
                .expect("req"),
            201,
        )
        .await;
        ids.push((name, c["id"].clone()));
    }
    for (name, _) in &ids {
        let r = a
            .req(
                Method::DELETE,
                &format!("/api/v1/instances/{name}?force=true"),
                &t,
            )
            .send()
            .await
            .expect("req");
        assert!(r.status().is_success(), "{}", r.status());
    }
    rx.until(30, "created and deleted of three containers", |got| {
        ids.iter()
            .all(|(_, id)| got.iter().filter(|r| about(r, id)).count() >= 2)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = rx.all();
    for (_, id) in &ids {
        let mine: Vec<_> = got.iter().filter(|r| about(r, id)).collect();
        let mut events: Vec<&str> = mine.iter().map(|r| r.event.as_str()).collect();
        events.sort();
        assert_eq!(events, ["instance.created", "instance.deleted"], "{got:#?}");
    }
}

/// Fifty creates at once, half through each replica, each asking the same address pool for
/// an address: fifty distinct addresses, each on its container; the fifty-first is refused
/// with the reason; deleting them frees the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_hand_out_fifty_distinct_pool_addresses_at_once() {
    let db = Database::create();
    let a = Replica::start(&db).await;
    let b = Replica::start(&db).await;
    let login = json_of(
        Client::new()
            .post(format!("{}/api/v1/login", a.base))
            .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
            .send()
            .await
            .expect("login"),
        200,
    )
    .await;
    let t = login["token"].as_str().expect("token").to_string();
    let id = uuid::Uuid::new_v4();
    let net = format!("10.{}.{}", 100 + id.as_bytes()[0] % 100, id.as_bytes()[1]);
    let pool = format!("rp-{}", &id.simple().to_string()[..8]);
    let label = format!("ap{}", &id.simple().to_string()[..8]);
    // Containers and the pool's network go even when the test fails.
    struct Cleanup(String, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            remove_containers(&self.0);
            let _ = Command::new("docker")
                .args(["network", "rm", &format!("libgo-ap-{}", self.1)])
                .output();
        }
    }
    let _cleanup = Cleanup(label.clone(), pool.clone());
    json_of(
        a.req(Method::POST, "/api/v1/address-pools", &t)
            .json(&json!({"name": pool, "gateway": format!("{net}.1"),
                          "ranges": [{"start": format!("{net}.10"), "end": format!("{net}.59"), "prefix": 24}]}))
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    let spec = |i: usize| {
        json!({"name": format!("{label}-{i}"), "kind": "container", "image": IMAGE,
               "command": ["sleep", "300"], "labels": {"test.libgo.replica": label},
               "addresses": [{"pool": pool}], "start": true})
    };
    let creates = (0..50).map(|i| {
        let r = if i % 2 == 0 { &a } else { &b };
        let req = r.req(Method::POST, "/api/v1/instances", &t).json(&spec(i));
        async move {
            let resp = req.send().await.expect("req");
            json_of(resp, 201).await
        }
    });
    let made = futures::future::join_all(creates).await;
    let mut addresses = std::collections::BTreeMap::new();
    for m in &made {
        let ips: Vec<&str> = m["ipAddresses"]
            .as_array()
            .expect("addresses")
            .iter()
            .filter_map(Value::as_str)
            .filter(|ip| ip.starts_with(&format!("{net}.")))
            .collect();
        assert_eq!(ips.len(), 1, "one pool address on the container: {m}");
        let holder = addresses.insert(ips[0].to_string(), m["id"].clone());
        assert!(holder.is_none(), "{} handed out twice", ips[0]);
    }
    assert_eq!(addresses.len(), 50);
    let status = json_of(
        b.req(Method::GET, &format!("/api/v1/address-pools/{pool}"), &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert_eq!(status["allocated"], 50, "{status}");
    for al in status["allocations"].as_array().expect("allocations") {
        let address = al["address"].as_str().expect("address");
        assert_eq!(Some(&al["instance"]), addresses.get(address), "{al}");
    }
    let r = b
        .req(Method::POST, "/api/v1/instances", &t)
        .json(&spec(50))
        .send()
        .await
        .expect("req");
    let e = json_of(r, 409).await;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("exhausted")),
        "{e}"
    );
    // Deleting frees them all (a batch, through the other replica).
    let ids: Vec<Value> = addresses.values().cloned().collect();
    let task = json_of(
        a.req(Method::POST, "/api/v1/instances/batch-delete", &t)
            .json(&json!({"ids": ids, "force": true}))
            .send()
            .await
            .expect("req"),
        202,
    )
    .await;
    let task_id = task["id"].as_str().expect("task id");
    let ended = json_of(
        a.req(
            Method::GET,
            &format!("/api/v1/tasks/{task_id}?wait=120"),
            &t,
        )
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
    assert_eq!(ended["status"], "finished", "{ended}");
    assert_eq!(ended["result"]["succeeded"], 50, "{ended}");
    let status = json_of(
        b.req(Method::GET, &format!("/api/v1/address-pools/{pool}"), &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert_eq!(status["allocated"], 0, "{status}");
    let r = a
        .req(Method::DELETE, &format!("/api/v1/address-pools/{pool}"), &t)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 204);
}
