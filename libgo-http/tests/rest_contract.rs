//! The REST contract where it leaked: unknown fields, partial answers, log pages, audit
//! targets and engine errors that are the caller's, against a real server and engines.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestServer, assert_error, json_of, start, unique};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::{TcpListener, UnixStream};
use tokio::task::JoinHandle;

const IMAGE: &str = "libgo-test/busybox:latest";

async fn post(s: &TestServer, path: &str, body: Value) -> reqwest::Response {
    s.req(Method::POST, path, &s.admin)
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// Unknown fields were silently dropped: `memory_mb` made a VM with the default memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_refused_by_name() {
    let s = start(true, |_| {}).await;
    let name = unique("uf");
    let cases = [
        (
            "/api/v1/instances",
            json!({"name": name, "kind": "vm", "memory_mb": 128,
                   "disks": [{"sizeBytes": 16u64 << 20}]}),
            "memory_mb",
        ),
        (
            "/api/v1/instances",
            json!({"name": name, "kind": "container", "image": IMAGE,
                   "mounts": [{"kind": "volume", "source": "v", "target": "/d", "readonly": true}]}),
            "readonly",
        ),
        (
            "/api/v1/networks",
            json!({"name": name, "driverName": "bridge"}),
            "driverName",
        ),
        ("/api/v1/volumes", json!({"name": name, "size": 1}), "size"),
        (
            "/api/v1/users",
            json!({"username": name, "password": "password-123",
                                 "role": "viewer", "admin": true}),
            "admin",
        ),
        (
            "/api/v1/api-keys",
            json!({"name": "k", "scope": "all"}),
            "scope",
        ),
    ];
    for (path, body, field) in cases {
        let v = assert_error(post(&s, path, body).await, 400, "INVALID_INPUT").await;
        assert!(
            v["message"].as_str().unwrap_or_default().contains(field),
            "{path}: the error names {field}: {v}"
        );
    }
    // Nothing was made.
    let r = s
        .req(Method::GET, &format!("/api/v1/instances/{name}"), &s.admin)
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;
    // A body of the wrong type is refused, not taken as "no change".
    let c = unique("uf-c");
    json_of(
        post(
            &s,
            "/api/v1/instances",
            json!({"name": c, "kind": "container", "image": IMAGE}),
        )
        .await,
        201,
    )
    .await;
    let r = s
        .req(Method::PATCH, &format!("/api/v1/instances/{c}"), &s.admin)
        .json(&json!([]))
        .send()
        .await
        .expect("req");
    assert_error(r, 400, "INVALID_INPUT").await;
    s.remove_instance(&c).await;
    s.stop().await;
}

/// A form shows each refusal next to its field: the error names it (`field`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_name_their_field() {
    let s = start(true, |_| {}).await;
    let name = unique("vf");
    let cases = [
        (
            json!({"name": "Not_Valid", "kind": "container", "image": IMAGE}),
            "name",
        ),
        (
            json!({"name": name, "kind": "vm", "memoryBytes": 1, "disks": [{"sizeBytes": 16u64 << 20}]}),
            "memoryBytes",
        ),
        (
            json!({"name": name, "kind": "container", "image": IMAGE, "ports": [{"containerPort": 0}]}),
            "ports",
        ),
        (json!({"name": name, "kind": "container"}), "image"),
        (
            json!({"name": name, "kind": "vm", "disks": [{"sizeGB": 1}]}),
            "disks[0].sizeGB",
        ),
        (
            json!({"name": name, "kind": "vm", "memory_mb": 128}),
            "memory_mb",
        ),
    ];
    for (body, field) in cases {
        let v = assert_error(
            post(&s, "/api/v1/instances", body.clone()).await,
            400,
            "INVALID_INPUT",
        )
        .await;
        assert_eq!(v["field"], field, "{body}: {v}");
    }
    // An error about no field in particular carries none.
    let r = s
        .req(Method::GET, "/api/v1/instances/no-such-instance", &s.admin)
        .send()
        .await
        .expect("req");
    let v = assert_error(r, 404, "NOT_FOUND").await;
    assert!(v.get("field").is_none(), "{v}");
    // An image id Docker cannot parse (found by schemathesis as a 400 from Docker's parser)
    // names no image on any backend: 404, as for any image nobody has.
    for path in ["/api/v1/images/Not+An_Image", "/api/v1/images/UPPER:case"] {
        let r = s
            .req(Method::GET, path, &s.admin)
            .send()
            .await
            .expect("req");
        assert_error(r, 404, "NOT_FOUND").await;
        let r = s
            .req(Method::DELETE, path, &s.admin)
            .send()
            .await
            .expect("req");
        assert_error(r, 404, "NOT_FOUND").await;
    }
    // A group that does not exist is a missing object, like a missing image.
    let v = assert_error(
        post(
            &s,
            "/api/v1/instances?group=no-such-group",
            json!({"name": name, "kind": "container", "image": IMAGE}),
        )
        .await,
        404,
        "NOT_FOUND",
    )
    .await;
    assert_eq!(v["field"], "group", "{v}");
    // A tag beside a full reference was dropped without a word; it is refused now.
    let v = assert_error(
        post(
            &s,
            "/api/v1/images/pull",
            json!({"reference": "busybox:latest", "tag": "other"}),
        )
        .await,
        400,
        "INVALID_INPUT",
    )
    .await;
    assert_eq!(v["field"], "tag", "{v}");
    s.stop().await;
}

/// A VM's disks through REST: attach, resize, detach and media, each bad input with its
/// documented error; a container's disks are UNSUPPORTED with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_routes_keep_the_contract() {
    let s = start(true, |_| {}).await;
    let vm = unique("dk");
    let vdb = format!("{vm}-vdb.qcow2");
    json_of(
        post(
            &s,
            "/api/v1/instances",
            json!({"name": vm, "kind": "vm", "memoryBytes": 64u64 << 20,
                   "disks": [{"sizeBytes": 16u64 << 20}]}),
        )
        .await,
        201,
    )
    .await;
    let disks = format!("/api/v1/instances/{vm}/disks");
    let r = post(&s, &disks, json!({"sizeBytes": 16u64 << 20})).await;
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let d = json_of(r, 201).await;
    assert_eq!(d["target"], "vdb", "{d}");
    assert_eq!(d["volume"], vdb.as_str(), "{d}");
    assert!(location.ends_with("/disks/vdb"), "{location}");
    for (body, field) in [
        (json!({}), "volume"),
        (json!({"volume": vdb, "sizeBytes": 1}), "volume"),
        (json!({"sizeBytes": 1}), "sizeBytes"),
        (json!({"sizeBytes": 16u64 << 20, "bogus": 1}), "bogus"),
    ] {
        let v = assert_error(post(&s, &disks, body.clone()).await, 400, "INVALID_INPUT").await;
        assert_eq!(v["field"], field, "{body}: {v}");
    }
    let v = assert_error(
        post(&s, &disks, json!({"volume": vdb})).await,
        409,
        "RESOURCE_CONFLICT",
    )
    .await;
    assert_eq!(v["field"], "volume", "{v}");
    let resize = format!("{disks}/vdb/resize");
    let v = assert_error(
        post(&s, &resize, json!({"sizeBytes": 8u64 << 20})).await,
        400,
        "INVALID_INPUT",
    )
    .await;
    assert_eq!(v["field"], "allowShrink", "{v}");
    let d = json_of(
        post(&s, &resize, json!({"sizeBytes": 32u64 << 20})).await,
        200,
    )
    .await;
    assert_eq!(d["sizeBytes"], 32u64 << 20, "{d}");
    let del = |target: &str| {
        s.req(Method::DELETE, &format!("{disks}/{target}"), &s.admin)
            .send()
    };
    assert_error(del("vdz").await.expect("req"), 404, "NOT_FOUND").await;
    let v = assert_error(del("zz9").await.expect("req"), 400, "INVALID_INPUT").await;
    assert_eq!(v["field"], "target", "{v}");
    assert_eq!(del("vdb").await.expect("req").status().as_u16(), 204);
    let listed = json_of(
        s.req(Method::GET, &disks, &s.admin)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    let targets: Vec<&str> = listed
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["target"].as_str())
        .collect();
    assert_eq!(targets, ["vda"]);
    let media = format!("/api/v1/instances/{vm}/media");
    let v = assert_error(
        post(&s, &media, json!({"image": "no-such-media.iso"})).await,
        404,
        "NOT_FOUND",
    )
    .await;
    assert_eq!(v["field"], "image", "{v}");
    let r = s
        .req(Method::DELETE, &media, &s.admin)
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;
    // Docker says why not.
    let c = unique("dk-c");
    json_of(
        post(
            &s,
            "/api/v1/instances",
            json!({"name": c, "kind": "container", "image": IMAGE}),
        )
        .await,
        201,
    )
    .await;
    let v = assert_error(
        post(
            &s,
            &format!("/api/v1/instances/{c}/disks"),
            json!({"sizeBytes": 16u64 << 20}),
        )
        .await,
        501,
        "UNSUPPORTED",
    )
    .await;
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Docker cannot add mounts"),
        "{v}"
    );
    // The snapshot tree through REST: one snapshot, its parent and the current mark.
    let snaps = format!("/api/v1/instances/{vm}/snapshots");
    json_of(post(&s, &snaps, json!({"name": "t1"})).await, 201).await;
    json_of(post(&s, &snaps, json!({"name": "t2"})).await, 201).await;
    let t2 = json_of(
        s.req(Method::GET, &format!("{snaps}/t2"), &s.admin)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert_eq!(
        (t2["parent"].as_str(), t2["current"].as_bool()),
        (Some("t1"), Some(true)),
        "{t2}"
    );
    let r = s
        .req(Method::GET, &format!("{snaps}/nope"), &s.admin)
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;
    // Capabilities say so before anyone tries.
    let caps = json_of(
        s.req(Method::GET, "/api/v1/capabilities", &s.admin)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    let of = |backend: &str| {
        caps.as_array()
            .and_then(|a| a.iter().find(|c| c["backend"] == backend))
            .map(|c| c["capabilities"].clone())
            .unwrap_or_default()
    };
    assert_eq!(of("kvm")["disks"], true, "{caps}");
    assert_eq!(of("docker")["disks"], false, "{caps}");
    assert_eq!(of("kvm")["guestPassword"], true, "{caps}");
    s.remove_instance(&c).await;
    s.remove_instance(&vm).await;
    let r = s
        .req(Method::DELETE, &format!("/api/v1/volumes/{vdb}"), &s.admin)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 204);
    s.stop().await;
}

/// A guest password reaches no error, log line or audit record; bad requests name their
/// field; a container has no agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_passwords_stay_secret() {
    let s = start(true, |_| {}).await;
    let c = unique("gp-c");
    json_of(
        post(
            &s,
            "/api/v1/instances",
            json!({"name": c, "kind": "container", "image": IMAGE}),
        )
        .await,
        201,
    )
    .await;
    let path = format!("/api/v1/instances/{c}/guest/password");
    let put = |body: Value| s.req(Method::PUT, &path, &s.admin).json(&body).send();
    let secret = "Sekrit-Not-Logged-42";
    let v = assert_error(
        put(json!({"user": "root", "password": secret}))
            .await
            .expect("req"),
        501,
        "UNSUPPORTED",
    )
    .await;
    assert!(!v.to_string().contains(secret), "{v}");
    for (body, field) in [
        (json!({"user": "Root Bad", "password": secret}), "user"),
        (json!({"user": "root", "password": ""}), "password"),
        (
            json!({"user": "root", "password": "two\nlines"}),
            "password",
        ),
        (
            json!({"user": "root", "password": secret, "extra": 1}),
            "extra",
        ),
    ] {
        let v = assert_error(put(body.clone()).await.expect("req"), 400, "INVALID_INPUT").await;
        assert_eq!(v["field"], field, "{body}: {v}");
        assert!(!v.to_string().contains(secret), "{v}");
    }
    let audit = s
        .req(Method::GET, "/api/v1/audit?pageSize=100", &s.admin)
        .send()
        .await
        .expect("req")
        .text()
        .await
        .expect("audit");
    assert!(audit.contains("/guest/password"), "audited: {audit}");
    assert!(!audit.contains(secret), "the audit log holds no password");
    // Reinstall is a task whose result is the instance; a bad image is refused before it.
    let reinstall = format!("/api/v1/instances/{c}/reinstall");
    let v = assert_error(
        post(&s, &reinstall, json!({"image": "Not An Image"})).await,
        400,
        "INVALID_INPUT",
    )
    .await;
    assert_eq!(v["field"], "image", "{v}");
    let task = json_of(post(&s, &reinstall, json!({})).await, 202).await;
    let id = task["id"].as_str().expect("task id").to_string();
    let done = json_of(
        s.req(
            Method::GET,
            &format!("/api/v1/tasks/{id}?wait=60"),
            &s.admin,
        )
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
    assert_eq!(done["status"], "finished", "{done}");
    assert_eq!(done["result"]["name"], c.as_str(), "{done}");
    s.remove_instance(&c).await;
    s.stop().await;
}

/// A loopback TCP port that forwards to dockerd's socket until it is cut.
struct Forwarder {
    port: u16,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
    /// When set, new connections are accepted and never answered: an engine that hangs.
    hang: Arc<std::sync::atomic::AtomicBool>,
}

impl Forwarder {
    async fn start() -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let hang: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (t, h) = (tasks.clone(), hang.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let hang = h.load(std::sync::atomic::Ordering::SeqCst);
                let task = tokio::spawn(async move {
                    if hang {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        drop(client);
                    } else if let Ok(mut engine) = UnixStream::connect("/var/run/docker.sock").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
                t.lock().expect("lock").push(task);
            }
        });
        Forwarder {
            port,
            tasks,
            accept,
            hang,
        }
    }

    /// From now on, new connections hang.
    fn hang(&self) {
        self.hang.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Cuts every connection and stops accepting: the engine is gone for the server.
    fn cut(&self) {
        self.accept.abort();
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }
}

/// With dockerd unreachable, the instance list answered 200 with the VMs alone and no word
/// that Docker was missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_say_which_backends_are_missing() {
    let fwd = Forwarder::start().await;
    let port = fwd.port;
    let s = start(true, move |c| {
        c.docker.host = Some(format!("tcp://127.0.0.1:{port}"))
    })
    .await;
    let tag = unique("pa");
    let c = format!("{tag}-c");
    let v = format!("{tag}-v");
    json_of(
        post(
            &s,
            "/api/v1/instances",
            json!({"name": c, "kind": "container", "image": IMAGE,
                                             "labels": {"run": tag}}),
        )
        .await,
        201,
    )
    .await;
    json_of(
        post(
            &s,
            "/api/v1/vms",
            json!({"name": v, "memoryBytes": 64u64 << 20, "cpus": 1,
                                       "disks": [{"sizeBytes": 16u64 << 20}],
                                       "labels": {"run": tag}}),
        )
        .await,
        201,
    )
    .await;
    let list = |s: &TestServer| {
        let url = format!("/api/v1/instances?label=run={tag}");
        let r = s.req(Method::GET, &url, &s.admin).send();
        async move { json_of(r.await.expect("list"), 200).await }
    };
    let whole = list(&s).await;
    assert_eq!(whole["count"], 2, "{whole}");
    assert!(whole.get("unavailable").is_none(), "{whole}");

    fwd.cut();
    let partial = list(&s).await;
    assert_eq!(partial["count"], 1, "{partial}");
    assert_eq!(partial["items"][0]["name"], v.as_str(), "{partial}");
    let missing = partial["unavailable"]
        .as_array()
        .expect("unavailable listed");
    assert_eq!(missing.len(), 1, "{partial}");
    assert_eq!(missing[0]["backend"], "docker", "{partial}");
    assert!(
        missing[0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    // Every other list says so too: libvirt's part comes back, Docker is named as missing.
    for path in ["/api/v1/images", "/api/v1/networks", "/api/v1/volumes"] {
        let r = s.req(Method::GET, path, &s.admin).send().await.expect(path);
        let page = json_of(r, 200).await;
        assert!(
            page["items"]
                .as_array()
                .is_some_and(|i| i.iter().all(|x| x["backend"] == "kvm")),
            "{path}: {page}"
        );
        assert_eq!(
            page["unavailable"][0]["backend"], "docker",
            "{path}: {page}"
        );
    }

    s.remove_instance(&v).await;
    s.stop().await;
    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", &c])
        .output();
}

/// `tail=200` answered the 50 oldest of those 200 lines, and without `tail` the whole log
/// was read and its oldest 50 lines came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_pages_count_from_the_end() {
    let s = start(true, |c| c.logs_default_tail = 250).await;
    let name = unique("logs");
    json_of(
        post(
            &s,
            "/api/v1/instances",
            json!({"name": name, "kind": "container", "image": IMAGE,
            "command": ["sh", "-c", "for i in $(seq 1 300); do echo line-$i; done; sleep 600"],
            "start": true}),
        )
        .await,
        201,
    )
    .await;
    let read = |q: &str| {
        let r = s
            .req(
                Method::GET,
                &format!("/api/v1/instances/{name}/logs?{q}"),
                &s.admin,
            )
            .send();
        async move { json_of(r.await.expect("logs"), 200).await }
    };
    let lines = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| e["message"].as_str().unwrap_or_default().trim().to_string())
            .collect()
    };
    let mut all = Value::Null;
    for _ in 0..50 {
        all = read("tail=200").await;
        if all["count"] == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(all["count"], 200, "{all}");
    let first_page = lines(&all);
    let want: Vec<String> = (251..=300).map(|i| format!("line-{i}")).collect();
    assert_eq!(
        first_page, want,
        "page 1 holds the newest lines, oldest first"
    );
    let fourth = lines(&read("tail=200&page=4").await);
    let want: Vec<String> = (101..=150).map(|i| format!("line-{i}")).collect();
    assert_eq!(fourth, want);
    // Without tail: the server's bounded default, still from the end.
    let default = read("pageSize=10").await;
    assert_eq!(default["count"], 250, "{default}");
    let want: Vec<String> = (291..=300).map(|i| format!("line-{i}")).collect();
    assert_eq!(lines(&default), want);
    s.remove_instance(&name).await;
    s.stop().await;
}

/// The audit record of a create said nothing of what was created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_name_what_was_created() {
    let s = start(true, |_| {}).await;
    let name = unique("au");
    let created = json_of(
        post(
            &s,
            "/api/v1/instances",
            json!({"name": name, "kind": "container", "image": IMAGE}),
        )
        .await,
        201,
    )
    .await;
    let id = created["id"].as_str().expect("id");
    let audit = json_of(
        s.req(
            Method::GET,
            "/api/v1/audit?method=POST&path=/api/v1/instances",
            &s.admin,
        )
        .send()
        .await
        .expect("audit"),
        200,
    )
    .await;
    let record = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|r| r["path"] == "/api/v1/instances" && r["status"] == 201)
        .cloned()
        .expect("the create is audited");
    let target = record["target"].as_str().expect("target");
    assert!(target.contains(&name) && target.contains(id), "{record}");
    // Other creates name the new object's id from their Location.
    let user = json_of(
        post(
            &s,
            "/api/v1/users",
            json!({"username": unique("au-u"), "password": "password-123",
                                         "role": "viewer"}),
        )
        .await,
        201,
    )
    .await;
    let audit = json_of(
        s.req(
            Method::GET,
            "/api/v1/audit?method=POST&path=/api/v1/users",
            &s.admin,
        )
        .send()
        .await
        .expect("audit"),
        200,
    )
    .await;
    assert_eq!(audit["items"][0]["target"], user["id"], "{audit}");
    s.remove_instance(&name).await;
    s.stop().await;
}

/// Bad input that reached an engine came back as 500 or 501; it is the caller's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_refusals_of_bad_input_are_client_errors() {
    let s = start(true, |_| {}).await;
    // dockerd refuses a 64-hex repository name with a 500 of its own.
    let r = post(
        &s,
        "/api/v1/images/libgo-test%2Fbusybox:latest/tag",
        json!({"target": "a".repeat(64)}),
    )
    .await;
    assert_error(r, 400, "INVALID_INPUT").await;
    // Names dockerd refuses with a 500 (found by the API fuzzer): too long, a tag too long,
    // separators its grammar does not allow.
    for target in [
        "0".repeat(512),
        format!("x:{}", "a".repeat(200)),
        "a__-b".to_string(),
    ] {
        let r = post(
            &s,
            "/api/v1/images/libgo-test%2Fbusybox:latest/tag",
            json!({ "target": target }),
        )
        .await;
        assert_error(r, 400, "INVALID_INPUT").await;
    }
    // A network driver the backend does not have is bad input, not a missing capability.
    let r = post(
        &s,
        "/api/v1/networks",
        json!({"name": unique("nd"), "backend": "kvm",
                                                "driver": "bogus"}),
    )
    .await;
    assert_error(r, 400, "INVALID_INPUT").await;
    // A VM takes no signal but SIGKILL.
    let vm = unique("sig");
    json_of(
        post(
            &s,
            "/api/v1/vms",
            json!({"name": vm, "memoryBytes": 64u64 << 20, "cpus": 1,
                                       "disks": [{"sizeBytes": 16u64 << 20}]}),
        )
        .await,
        201,
    )
    .await;
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/instances/{vm}/kill?signal=%C2%B6%C3%B3y"),
            &s.admin,
        )
        .send()
        .await
        .expect("req");
    assert_error(r, 400, "INVALID_INPUT").await;
    // Odd ids are not found (or bad), never a server error.
    for path in [
        "/api/v1/networks/%09",
        "/api/v1/instances/%20",
        "/api/v1/volumes/..%2Fetc",
    ] {
        let r = s
            .req(Method::DELETE, path, &s.admin)
            .send()
            .await
            .expect("req");
        let status = r.status().as_u16();
        assert!(matches!(status, 400 | 404), "{path}: {status}");
        assert_error(
            r,
            status,
            if status == 404 {
                "NOT_FOUND"
            } else {
                "INVALID_INPUT"
            },
        )
        .await;
    }
    s.remove_instance(&vm).await;
    s.stop().await;
}

/// A handler waiting on an engine that never answers hung past 20 s; it answers 504.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_engine_gets_a_timeout_not_a_hang() {
    let fwd = Forwarder::start().await;
    let port = fwd.port;
    let s = start(true, move |c| {
        c.docker.host = Some(format!("tcp://127.0.0.1:{port}"));
        c.request_timeout_secs = 10;
    })
    .await;
    fwd.hang();
    let started = std::time::Instant::now();
    let r = s
        .req(Method::GET, "/api/v1/instances?backend=docker", &s.admin)
        .send()
        .await
        .expect("req");
    assert_error(r, 504, "TIMEOUT").await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // The server still answers what does not need that engine.
    let r = s
        .req(Method::GET, "/api/v1/users/me", &s.admin)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 200);
    fwd.cut();
    s.stop().await;
}
