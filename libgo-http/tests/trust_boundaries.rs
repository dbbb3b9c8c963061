//! The attacks of the trust-boundaries review, each against a real server and real engines:
//! every test here failed on the code before the fix it covers.

mod common;

use std::time::Duration;

use common::{ADMIN_PASSWORD, TestServer, assert_error, json_of, start, unique};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const IMAGE: &str = "libgo-test/busybox:latest";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_url(s: &TestServer, path: &str, token: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!(
        "{}{path}{sep}access_token={token}",
        s.base.replace("http://", "ws://")
    )
}

/// Opens a WebSocket, or returns the HTTP status that refused it.
async fn ws_open(s: &TestServer, path: &str, token: &str) -> Result<Ws, u16> {
    match tokio_tungstenite::connect_async(ws_url(s, path, token)).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket to {path}: {e}"),
    }
}

/// Reads the socket until the server closes it; returns the close code.
async fn wait_closed(ws: &mut Ws, secs: u64) -> Option<CloseCode> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("the socket stayed open for {secs} s"),
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// A running busybox container, created by `token`'s user.
async fn container(s: &TestServer, token: &str, extra: Value) -> String {
    let name = unique("tb");
    let mut body = json!({"name": name, "kind": "container", "image": IMAGE,
                          "command": ["sleep", "600"], "start": true});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    let r = s
        .req(Method::POST, "/api/v1/instances", token)
        .json(&body)
        .send()
        .await
        .expect("create");
    json_of(r, 201).await;
    name
}

async fn exec_status(s: &TestServer, token: &str, name: &str) -> u16 {
    s.req(
        Method::POST,
        &format!("/api/v1/instances/{name}/exec"),
        token,
    )
    .json(&json!({"command": ["id", "-u"]}))
    .send()
    .await
    .expect("exec")
    .status()
    .as_u16()
}

/// Attack 1: a viewer opened an interactive shell through the console WebSocket, and the
/// keyboard of any VM through `/vnc`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_get_no_console_or_vnc() {
    let s = start(true, |_| {}).await;
    let (_, viewer) = s.user("viewer").await;
    let (_, operator) = s.user("operator").await;
    let name = container(&s, &operator, json!({"tty": true, "command": ["sh"]})).await;

    assert_eq!(
        ws_open(&s, &format!("/api/v1/instances/{name}/console"), &viewer)
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        ws_open(&s, &format!("/api/v1/instances/{name}/vnc"), &viewer)
            .await
            .err(),
        Some(403)
    );
    // Nor a command attached (`exec -it`).
    assert_eq!(
        ws_open(
            &s,
            &format!("/api/v1/instances/{name}/exec/attach"),
            &viewer
        )
        .await
        .err(),
        Some(403)
    );
    // The operator's console is a real shell.
    let mut ws = ws_open(&s, &format!("/api/v1/instances/{name}/console"), &operator)
        .await
        .expect("operator console");
    ws.send(Message::Text("echo con-$((6*7))\n".into()))
        .await
        .expect("send");
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("con-42") {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(_))) => {}
            other => panic!("console ended before answering: {other:?} after {seen:?}"),
        }
    }
    s.remove_instance(&name).await;
    s.stop().await;
}

/// Attack 2: an operator joined the host's network namespace; host-attached networks are
/// host privileges too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_networks_are_admin_only() {
    let s = start(true, |_| {}).await;
    let (_, operator) = s.user("operator").await;
    for net in ["host", "none"] {
        let r = s
            .req(Method::POST, "/api/v1/instances", &operator)
            .json(
                &json!({"name": unique("hn"), "kind": "container", "image": IMAGE,
                          "networks": [net]}),
            )
            .send()
            .await
            .expect("req");
        assert_error(r, 403, "FORBIDDEN").await;
    }
    // A libvirt bridge network uses the host bridge of its name; macvlan sits on a host NIC.
    for (backend, driver) in [("kvm", "bridge"), ("kvm", "ovs"), ("docker", "macvlan")] {
        let r = s
            .req(Method::POST, "/api/v1/networks", &operator)
            .json(&json!({"name": unique("hb"), "backend": backend, "driver": driver}))
            .send()
            .await
            .expect("req");
        assert_error(r, 403, "FORBIDDEN").await;
    }
    // An admin may, and the container really is in the host's network namespace.
    let name = container(&s, &s.admin, json!({"networks": ["host"]})).await;
    let host_links = std::fs::read_to_string("/proc/net/dev").expect("host /proc/net/dev");
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/instances/{name}/exec"),
            &s.admin,
        )
        .json(&json!({"command": ["cat", "/proc/net/dev"]}))
        .send()
        .await
        .expect("exec");
    let out = json_of(r, 200).await;
    let first_iface = |t: &str| {
        t.lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|n| n.trim().to_string())
            .filter(|n| n != "lo")
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(
        first_iface(out["stdout"].as_str().unwrap_or_default()),
        first_iface(&host_links),
        "the admin's container shares the host's interfaces"
    );
    // And an operator may not run code in it afterwards.
    assert_eq!(exec_status(&s, &operator, &name).await, 403);
    s.remove_instance(&name).await;
    s.stop().await;
}

/// Attack 3: an operator ran `exec` in an admin's container that bind-mounts a host path.
/// Every verb that runs code in such an instance or changes it needs admin, whoever made
/// it and however (the engine is asked, not LibGo's memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_privileged_instances_need_admin_for_every_verb() {
    let s = start(true, |_| {}).await;
    let (_, operator) = s.user("operator").await;
    let dir = tempfile::tempdir().expect("dir");
    let bound = container(
        &s,
        &s.admin,
        json!({"mounts": [{"kind": "bind", "source": dir.path(), "target": "/host"}]}),
    )
    .await;
    let plain = container(&s, &operator, json!({})).await;
    // A container sharing the host's pid namespace and a host path, made with the docker
    // CLI behind LibGo's back.
    let outside = unique("tb-cli");
    let volume = format!("{}:/host", dir.path().display());
    let out = std::process::Command::new("docker")
        .args([
            "run", "-d", "--pid", "host", "-v", &volume, "--name", &outside, IMAGE, "sleep", "600",
        ])
        .output()
        .expect("docker run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for target in [&bound, &outside] {
        assert_eq!(
            exec_status(&s, &operator, target).await,
            403,
            "exec in {target}"
        );
        let calls: [(Method, String, Value); 5] = [
            (
                Method::POST,
                format!("/api/v1/instances/{target}/snapshots"),
                json!({"name": "s1"}),
            ),
            (
                Method::POST,
                format!("/api/v1/instances/{target}/snapshots/s1/revert"),
                json!(null),
            ),
            (
                Method::POST,
                format!("/api/v1/instances/{target}/export"),
                json!({"format": "tar"}),
            ),
            (
                Method::PATCH,
                format!("/api/v1/instances/{target}"),
                json!({"memoryBytes": 64 << 20}),
            ),
            (
                Method::POST,
                "/api/v1/networks/bridge/connect".to_string(),
                json!({"instance": target}),
            ),
        ];
        for (m, path, body) in calls {
            let r = s
                .req(m.clone(), &path, &operator)
                .json(&body)
                .send()
                .await
                .expect("req");
            assert_error(r, 403, "FORBIDDEN").await;
        }
        assert_eq!(
            ws_open(
                &s,
                &format!("/api/v1/instances/{target}/console"),
                &operator
            )
            .await
            .err(),
            Some(403),
            "console of {target}"
        );
        assert_eq!(
            ws_open(
                &s,
                &format!("/api/v1/instances/{target}/exec/attach"),
                &operator
            )
            .await
            .err(),
            Some(403),
            "attached exec in {target}"
        );
        // Administrators still may.
        assert_eq!(exec_status(&s, &s.admin, target).await, 200);
    }
    // The check is not a blanket refusal: an operator runs code in a plain container.
    assert_eq!(exec_status(&s, &operator, &plain).await, 200);
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/instances/{plain}/snapshots"),
            &operator,
        )
        .json(&json!({"name": "s1"}))
        .send()
        .await
        .expect("snapshot");
    json_of(r, 201).await;
    for n in [&bound, &plain, &outside] {
        s.remove_instance(n).await;
    }
    s.stop().await;
}

/// LibGo's namespaces are reserved: the snapshot repository and the `io.libgo.*` /
/// `kvm.libgo.io/*` labels. An operator could otherwise plant a "snapshot" that a revert of
/// someone else's container would run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_namespaces_are_refused() {
    let s = start(true, |_| {}).await;
    let (_, operator) = s.user("operator").await;
    let cases: Vec<(&str, Value)> = vec![
        (
            "/api/v1/instances",
            json!({"name": unique("rl"), "kind": "container", "image": IMAGE,
            "labels": {"io.libgo.snapshot.of": "victim"}}),
        ),
        (
            "/api/v1/instances",
            json!({"name": unique("rl"), "kind": "vm",
            "labels": {"kvm.libgo.io/owned": "x"}}),
        ),
        (
            "/api/v1/instances",
            json!({"name": unique("rl"), "kind": "container",
            "image": "libgo-snapshots/victim:s1"}),
        ),
        (
            "/api/v1/networks",
            json!({"name": unique("rl"), "backend": "docker",
            "labels": {"io.libgo.image": "x"}}),
        ),
        (
            "/api/v1/volumes",
            json!({"name": unique("rl"), "backend": "docker",
            "labels": {"io.libgo.x": "y"}}),
        ),
        (
            "/api/v1/images/pull",
            json!({"reference": "libgo-snapshots/victim:s1"}),
        ),
        (
            "/api/v1/images/libgo-test%2Fbusybox:latest/tag",
            json!({"target": "libgo-snapshots/victim:s1"}),
        ),
    ];
    for (path, body) in cases {
        let r = s
            .req(Method::POST, path, &operator)
            .json(&body)
            .send()
            .await
            .expect("req");
        let v = assert_error(r, 400, "INVALID_INPUT").await;
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .contains("reserved")
                || v["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("libgo-snapshots"),
            "{path}: {v}"
        );
    }
    // Nothing was tagged into the snapshot repository.
    let out = std::process::Command::new("docker")
        .args(["images", "-q", "libgo-snapshots/victim"])
        .output()
        .expect("docker images");
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
    s.stop().await;
}

/// Attack 3 (volumes): an operator gave a new VM another instance's disk or cloud-init seed
/// and so read (or wrote) that instance's data. Volumes another instance uses are the
/// administrator's to hand over; the operator's own free volumes stay the operator's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instances_volumes_are_admin_only() {
    let s = start(true, |_| {}).await;
    let (_, operator) = s.user("operator").await;
    let create = |token: &str, body: Value| {
        s.req(Method::POST, "/api/v1/instances", token)
            .json(&body)
            .send()
    };
    let victim = unique("owner");
    let r = create(
        &s.admin,
        json!({"name": victim, "kind": "vm", "backend": "kvm", "memoryBytes": 67108864,
               "disks": [{"sizeBytes": 16777216}],
               "cloudInit": {"hostname": "owner", "password": "secret-of-the-owner"}}),
    )
    .await
    .expect("create");
    json_of(r, 201).await;
    let disk = format!("{victim}-disk0.qcow2");
    let seed = format!("{victim}-cidata.img");
    for v in [&disk, &seed] {
        let r = s
            .req(
                Method::GET,
                &format!("/api/v1/volumes/{v}?backend=kvm"),
                &operator,
            )
            .send()
            .await
            .expect("inspect");
        assert_eq!(json_of(r, 200).await["usedBy"], json!([victim]), "{v}");
    }
    let mut made = vec![victim.clone()];
    let thief = unique("thief");
    for body in [
        json!({"name": thief, "kind": "vm", "backend": "kvm", "disks": [{"volume": disk}]}),
        json!({"name": thief, "kind": "vm", "backend": "kvm", "disks": [{"volume": seed}]}),
        json!({"name": thief, "kind": "vm", "backend": "kvm", "disks": [{"baseImage": disk}]}),
        json!({"name": thief, "kind": "vm", "backend": "kvm",
               "disks": [{"sizeBytes": 16777216}], "cdrom": seed}),
    ] {
        let r = create(&operator, body.clone()).await.expect("create");
        let v = assert_error(r, 403, "FORBIDDEN").await;
        assert!(
            v["message"].as_str().unwrap_or_default().contains(&victim),
            "{body}: {v}"
        );
    }
    let r = s
        .req(Method::GET, &format!("/api/v1/instances/{thief}"), &s.admin)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404, "nothing was created");
    // An operator's own free volume attaches; once in use it is that VM's.
    let own = format!("{}.qcow2", unique("own"));
    let r = s
        .req(Method::POST, "/api/v1/volumes", &operator)
        .json(&json!({"name": own, "backend": "kvm", "sizeBytes": 16777216}))
        .send()
        .await
        .expect("volume");
    json_of(r, 201).await;
    let first = unique("first");
    let r = create(
        &operator,
        json!({"name": first, "kind": "vm", "backend": "kvm", "memoryBytes": 67108864,
               "disks": [{"volume": own}]}),
    )
    .await
    .expect("create");
    json_of(r, 201).await;
    made.push(first.clone());
    let r = create(
        &operator,
        json!({"name": unique("second"), "kind": "vm", "backend": "kvm",
               "disks": [{"volume": own}]}),
    )
    .await
    .expect("create");
    assert_error(r, 403, "FORBIDDEN").await;
    // The administrator may share a disk.
    let shared = unique("shared");
    let r = create(
        &s.admin,
        json!({"name": shared, "kind": "vm", "backend": "kvm", "memoryBytes": 67108864,
               "disks": [{"volume": disk}]}),
    )
    .await
    .expect("create");
    json_of(r, 201).await;
    made.push(shared);
    // The sharer goes first: the owner's disks go with the owner.
    for name in made.into_iter().rev() {
        s.remove_instance(&name).await;
    }
    let _ = s
        .req(
            Method::DELETE,
            &format!("/api/v1/volumes/{own}?backend=kvm"),
            &s.admin,
        )
        .send()
        .await;
    s.stop().await;
}

async fn status_with(s: &TestServer, token: &str, path: &str) -> u16 {
    s.req(Method::GET, path, token)
        .send()
        .await
        .expect("req")
        .status()
        .as_u16()
}

async fn login_session(s: &TestServer, user: &str, password: &str) -> (String, String) {
    let r = s
        .client
        .post(s.url("/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .expect("login");
    let v = json_of(r, 200).await;
    (
        v["token"].as_str().expect("token").to_string(),
        v["sessionId"].as_str().expect("session id").to_string(),
    )
}

/// Attack 4: a password change left every earlier token valid, and there was no logout.
#[tokio::test]
async fn sessions_end_on_logout_password_role_change_and_deletion() {
    let s = start(false, |_| {}).await;
    let (name, first) = s.user("operator").await;
    let (second, second_id) = login_session(&s, &name, "password-123").await;
    let (third, _) = login_session(&s, &name, "password-123").await;

    // The user sees its own sessions; the admin sees everyone's.
    let mine = json_of(
        s.req(Method::GET, "/api/v1/sessions", &second)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert_eq!(mine["count"], 3, "{mine}");
    assert!(
        mine["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["username"] == name.as_str())
    );
    assert_eq!(
        mine["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|i| i["current"] == true)
            .count(),
        1
    );
    let all = json_of(
        s.req(Method::GET, "/api/v1/sessions", &s.admin)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert!(all["count"].as_u64().unwrap_or(0) >= 4, "{all}");

    // Logout ends exactly the caller's session.
    let r = s
        .req(Method::POST, "/logout", &first)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s
        .req(Method::GET, "/api/v1/users/me", &first)
        .send()
        .await
        .expect("req");
    assert_error(r, 401, "UNAUTHORIZED").await;
    assert_eq!(status_with(&s, &second, "/api/v1/users/me").await, 200);

    // Ending another of one's sessions by id.
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/sessions/{second_id}"),
            &third,
        )
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(status_with(&s, &second, "/api/v1/users/me").await, 401);
    // Another user's session is not found (not revealed, not ended).
    let (_, other) = s.user("viewer").await;
    let admin_sessions = json_of(
        s.req(Method::GET, "/api/v1/sessions", &s.admin)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    let admin_sid = admin_sessions["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["username"] == "admin")
        .and_then(|i| i["id"].as_str())
        .expect("admin session")
        .to_string();
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/sessions/{admin_sid}"),
            &other,
        )
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;
    assert_eq!(status_with(&s, &s.admin, "/api/v1/users/me").await, 200);

    // A password change ends every session of the user.
    let r = s
        .req(Method::PUT, "/api/v1/users/me/password", &third)
        .json(&json!({"currentPassword": "password-123", "newPassword": "password-456"}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(status_with(&s, &third, "/api/v1/users/me").await, 401);
    let (fresh, _) = login_session(&s, &name, "password-456").await;
    assert_eq!(status_with(&s, &fresh, "/api/v1/users/me").await, 200);

    // An API key keeps working, but only with its owner's current role.
    let key = json_of(
        s.req(Method::POST, "/api/v1/api-keys", &fresh)
            .json(&json!({"name": "automation"}))
            .send()
            .await
            .expect("req"),
        201,
    )
    .await["key"]
        .as_str()
        .expect("key")
        .to_string();
    let with_key = |m: Method, p: &str| {
        s.client
            .request(m, s.url(p))
            .header("x-api-key", key.clone())
    };
    let r = with_key(Method::POST, "/api/v1/volumes")
        .json(&json!({"name": "x", "backend": "nope"}))
        .send()
        .await
        .expect("req");
    assert_ne!(r.status().as_u16(), 403, "the operator's key may write");

    // A role change ends the sessions, and the key now carries the new role.
    let r = s
        .req(Method::PATCH, &format!("/api/v1/users/{name}"), &s.admin)
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(status_with(&s, &fresh, "/api/v1/users/me").await, 401);
    let r = with_key(Method::POST, "/api/v1/volumes")
        .json(&json!({"name": "x", "backend": "nope"}))
        .send()
        .await
        .expect("req");
    assert_error(r, 403, "FORBIDDEN").await;

    // Deleting the user ends everything.
    let (last, _) = login_session(&s, &name, "password-456").await;
    let r = s
        .req(Method::DELETE, &format!("/api/v1/users/{name}"), &s.admin)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(status_with(&s, &last, "/api/v1/users/me").await, 401);
    let r = with_key(Method::GET, "/api/v1/users/me")
        .send()
        .await
        .expect("req");
    assert_error(r, 401, "UNAUTHORIZED").await;
    s.stop().await;
}

/// Attack 5: open WebSockets and followed logs outlived the deletion or demotion of their
/// user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_close_when_their_session_ends() {
    let s = start(true, |c| c.stream_recheck_secs = 1).await;
    let (op_name, operator) = s.user("operator").await;
    let (viewer_name, viewer) = s.user("viewer").await;
    let name = container(
        &s,
        &s.admin,
        json!({"tty": true, "command": ["sh", "-c", "while true; do echo tick; sleep 1; done"]}),
    )
    .await;

    let mut events = ws_open(&s, "/api/v1/events", &viewer)
        .await
        .expect("events");
    let mut console = ws_open(&s, &format!("/api/v1/instances/{name}/console"), &operator)
        .await
        .expect("console");
    let logs = s
        .req(
            Method::GET,
            &format!("/api/v1/instances/{name}/logs?follow=true&tail=1"),
            &viewer,
        )
        .send()
        .await
        .expect("logs");
    assert_eq!(logs.status(), StatusCode::OK);
    let mut logs = logs;
    // The log stream is live before the session ends.
    tokio::time::timeout(Duration::from_secs(10), logs.chunk())
        .await
        .expect("a log line in time")
        .expect("stream open")
        .expect("bytes");

    // Demote the operator: the console closes with a policy-violation close frame.
    let r = s
        .req(Method::PATCH, &format!("/api/v1/users/{op_name}"), &s.admin)
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(wait_closed(&mut console, 10).await, Some(CloseCode::Policy));

    // Delete the viewer: its events socket and its log stream end.
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/users/{viewer_name}"),
            &s.admin,
        )
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(wait_closed(&mut events, 10).await, Some(CloseCode::Policy));
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = logs.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the followed log stream ended with the session"
    );
    s.remove_instance(&name).await;
    s.stop().await;
}

/// Attack 6: a viewer could not revoke (or make) its own API key.
#[tokio::test]
async fn viewers_manage_their_own_api_keys() {
    let s = start(false, |_| {}).await;
    let (_, viewer) = s.user("viewer").await;
    let (_, other) = s.user("viewer").await;
    let created = json_of(
        s.req(Method::POST, "/api/v1/api-keys", &viewer)
            .json(&json!({"name": "mine", "expiresInDays": 30}))
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    let id = created["apiKey"]["id"].as_str().expect("id").to_string();
    // Someone else's key is not found for a non-admin.
    let r = s
        .req(Method::DELETE, &format!("/api/v1/api-keys/{id}"), &other)
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;
    let r = s
        .req(Method::DELETE, &format!("/api/v1/api-keys/{id}"), &viewer)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Expiry is bounded (an unbounded one made an expiresAt that is not a date-time).
    let r = s
        .req(Method::POST, "/api/v1/api-keys", &viewer)
        .json(&json!({"name": "forever", "expiresInDays": 4_000_000_000u64}))
        .send()
        .await
        .expect("req");
    assert_error(r, 400, "INVALID_INPUT").await;
    s.stop().await;
}

async fn audit_count(s: &TestServer) -> u64 {
    json_of(
        s.req(Method::GET, "/api/v1/audit?pageSize=1", &s.admin)
            .send()
            .await
            .expect("audit"),
        200,
    )
    .await["count"]
        .as_u64()
        .expect("count")
}

fn db_bytes(s: &TestServer) -> u64 {
    ["libgo.db", "libgo.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(s.data_dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Attack 7: unauthenticated logins with 200 kB user names were stored one audit row each
/// with their raw input (11.5 MB for 20 requests).
#[tokio::test]
async fn unauthenticated_floods_do_not_grow_the_database() {
    let s = start(false, |_| {}).await;
    let before_rows = audit_count(&s).await;
    let before_bytes = db_bytes(&s);
    let long = "a".repeat(200_000);
    for i in 0..20 {
        let r = s
            .client
            .post(s.url("/login"))
            .json(&json!({"username": format!("{long}{i}"), "password": "x"}))
            .send()
            .await
            .expect("login");
        assert!(
            matches!(r.status().as_u16(), 401 | 413 | 429),
            "{}",
            r.status()
        );
        let r = s
            .client
            .post(s.url("/api/v1/instances"))
            .bearer_auth(format!("not-a-token-{long}"))
            .send()
            .await
            .expect("req");
        assert!(matches!(r.status().as_u16(), 401 | 431), "{}", r.status());
    }
    let after_rows = audit_count(&s).await;
    // One summary row at most (plus the admin's own audit reads, which are not mutating).
    assert!(
        after_rows <= before_rows + 1,
        "audit rows {before_rows} -> {after_rows}"
    );
    let grown = db_bytes(&s).saturating_sub(before_bytes);
    assert!(grown < 200_000, "the database grew by {grown} bytes");
    // The failures are counted.
    let metrics = s
        .req(Method::GET, "/metrics", &s.admin)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let counted: f64 = metrics
        .lines()
        .find(|l| l.starts_with("libgo_unauthenticated_failures_total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("counter");
    assert!(counted >= 40.0, "counted {counted}");
    s.stop().await;
}

/// Attack 8: 40 parallel wrong passwords for one user were all checked (argon2 without
/// bound, RSS 124 → 844 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_passwords_are_reserved_before_hashing() {
    // Enough hashing slots that no attempt is turned away as "busy" (which gives its
    // reservation back): every refusal here is the per-user limit.
    let s = start(false, |c| c.login_concurrency = 64).await;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let client = s.client.clone();
        let url = s.url("/login");
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&json!({"username": "admin", "password": "wrong-password"}))
                .send()
                .await
                .expect("login");
            (r.status().as_u16(), r.headers().contains_key("retry-after"))
        }));
    }
    let mut checked = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.expect("task") {
            (401, _) => checked += 1,
            (429, true) => limited += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    // The default limit is 5 failures per user: no more passwords were checked.
    assert_eq!(checked, 5, "passwords checked");
    assert_eq!(checked + limited, 40);
    // The right password is refused too while the user is locked: the limit is per user,
    // whatever the client.
    let r = s
        .client
        .post(s.url("/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_error(r, 429, "RATE_LIMITED").await;
    s.stop().await;
}

/// Attack 9: `exec` of `head -c 400000000 /dev/zero` answered 2.4 GB and the server grew to
/// 2.7 GiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_output_is_capped() {
    let s = start(true, |c| c.exec_output_limit_bytes = 1 << 20).await;
    let name = container(&s, &s.admin, json!({})).await;
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/instances/{name}/exec"),
            &s.admin,
        )
        .json(&json!({"command": ["head", "-c", "400000000", "/dev/zero"]}))
        .send()
        .await
        .expect("exec");
    let v = json_of(r, 200).await;
    assert_eq!(v["truncated"], true, "flagged");
    assert_eq!(v["stdout"].as_str().map(str::len), Some(1 << 20));
    // A caller may ask for less, not more.
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/instances/{name}/exec"),
            &s.admin,
        )
        .json(&json!({"command": ["head", "-c", "100", "/dev/zero"], "maxOutputBytes": 10}))
        .send()
        .await
        .expect("exec");
    let v = json_of(r, 200).await;
    assert_eq!(
        (v["truncated"].clone(), v["stdout"].as_str().map(str::len)),
        (json!(true), Some(10))
    );
    // Small output is whole and unflagged, with its exit code.
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/instances/{name}/exec"),
            &s.admin,
        )
        .json(&json!({"command": ["sh", "-c", "echo hi; exit 3"]}))
        .send()
        .await
        .expect("exec");
    let v = json_of(r, 200).await;
    assert_eq!(
        (
            v["stdout"].clone(),
            v["exitCode"].clone(),
            v["truncated"].clone()
        ),
        (json!("hi\n"), json!(3), json!(false))
    );
    s.remove_instance(&name).await;
    s.stop().await;
}

/// Attack 10: `libgo.db` (JWT secret, password hashes) and exports were world-readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = start(true, |_| {}).await;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&s.data_dir), 0o700, "data dir");
    for f in ["libgo.db", "libgo.db-wal", "libgo.db-shm"] {
        let p = s.data_dir.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    assert!(s.data_dir.join("libgo.db").exists());
    let name = container(&s, &s.admin, json!({})).await;
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/instances/{name}/export"),
            &s.admin,
        )
        .json(&json!({"format": "tar"}))
        .send()
        .await
        .expect("export");
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_string();
    let task = s.wait_task(&location, &s.admin).await;
    assert_eq!(task["status"], "finished", "{task}");
    let path = task["result"]["path"].as_str().expect("export path");
    assert_eq!(mode(std::path::Path::new(path)), 0o600, "export file");
    assert_eq!(mode(&s.data_dir.join("exports")), 0o700, "exports dir");
    s.remove_instance(&name).await;
    s.stop().await;
}

/// Attack 11: every viewer listed every task (results, export paths) and any operator
/// cancelled any task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_belong_to_their_owner() {
    let s = start(true, |_| {}).await;
    let (_, alice) = s.user("operator").await;
    let (_, bob) = s.user("operator").await;
    let (_, viewer) = s.user("viewer").await;
    let name = container(&s, &alice, json!({})).await;
    let mut task_events = ws_open(&s, "/api/v1/events?types=task", &bob)
        .await
        .expect("events");
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/instances/{name}/export"),
            &alice,
        )
        .json(&json!({"format": "tar"}))
        .send()
        .await
        .expect("export");
    let task = json_of(r, 202).await;
    let id = task["id"].as_str().expect("id").to_string();
    for token in [&bob, &viewer] {
        let list = json_of(
            s.req(Method::GET, "/api/v1/tasks", token)
                .send()
                .await
                .expect("req"),
            200,
        )
        .await;
        assert!(
            !list["items"]
                .as_array()
                .expect("items")
                .iter()
                .any(|t| t["id"] == id.as_str()),
            "another user lists the task: {list}"
        );
        let r = s
            .req(Method::GET, &format!("/api/v1/tasks/{id}"), token)
            .send()
            .await
            .expect("req");
        assert_error(r, 404, "NOT_FOUND").await;
    }
    let r = s
        .req(Method::POST, &format!("/api/v1/tasks/{id}/cancel"), &bob)
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;
    // The owner and the admin see it.
    let done = s.wait_task(&format!("/api/v1/tasks/{id}"), &alice).await;
    assert_eq!(done["status"], "finished", "{done}");
    assert_eq!(
        status_with(&s, &s.admin, &format!("/api/v1/tasks/{id}")).await,
        200
    );
    // Bob's event socket never carried it.
    let mut leaked = false;
    while let Ok(Some(Ok(m))) =
        tokio::time::timeout(Duration::from_millis(500), task_events.next()).await
    {
        if let Message::Text(t) = m {
            leaked |= t.contains(&id);
        }
    }
    assert!(!leaked, "task events went to another user");
    s.remove_instance(&name).await;
    s.stop().await;
}

/// One user cannot hold unbounded WebSockets open (each holds a task and buffers).
#[tokio::test]
async fn websockets_per_user_are_capped() {
    let s = start(false, |c| c.websockets_per_user = 2).await;
    let (_, viewer) = s.user("viewer").await;
    let first = ws_open(&s, "/api/v1/events", &viewer).await.expect("first");
    let _second = ws_open(&s, "/api/v1/events", &viewer)
        .await
        .expect("second");
    assert_eq!(
        ws_open(&s, "/api/v1/events", &viewer).await.err(),
        Some(429)
    );
    // Another user has sockets of its own.
    let _admin = ws_open(&s, "/api/v1/events", &s.admin)
        .await
        .expect("admin");
    // Closing one frees its slot.
    drop(first);
    let mut again = Err(0);
    for _ in 0..50 {
        again = ws_open(&s, "/api/v1/events", &viewer).await.map(|_| ());
        if again.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(again, Ok(()));
    s.stop().await;
}

/// A build context as a tar, made by `tar` from a Dockerfile.
fn build_context(dockerfile: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).expect("Dockerfile");
    let out = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .args(["-cf", "-", "Dockerfile"])
        .output()
        .expect("tar runs");
    assert!(out.status.success(), "tar: {out:?}");
    out.stdout
}

/// Bounded work: a user's running tasks are capped (429 past `tasks_per_user`), and a build
/// context is spooled to a file for the build's length only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_per_user_are_capped_and_build_contexts_are_spooled() {
    let s = start(true, |c| c.tasks_per_user = 1).await;
    let (_, operator) = s.user("operator").await;
    let tag = format!("libgo-test/{}:slow", unique("build"));
    let build = |tags: String| {
        s.req(
            Method::POST,
            &format!("/api/v1/images/build?tags={tags}&backend=docker"),
            &operator,
        )
        .header("content-type", "application/x-tar")
        .body(build_context(&format!(
            "FROM {IMAGE}\nRUN sleep 4\nLABEL libgo.test=slow\n"
        )))
        .send()
    };
    let r = build(tag.clone()).await.expect("build");
    assert_eq!(r.status(), 202);
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_string();
    let spooled = || {
        std::fs::read_dir(s.data_dir.join("builds"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(
        spooled(),
        1,
        "the context waits in a file while the build runs"
    );
    let r = build(format!("{tag}-2")).await.expect("build");
    let v = assert_error(r, 429, "RATE_LIMITED").await;
    assert!(
        v["message"].as_str().unwrap_or_default().contains("task"),
        "{v}"
    );
    let task = s.wait_task(&location, &operator).await;
    assert_eq!(task["status"], "finished", "{task}");
    assert_eq!(spooled(), 0, "the spooled context goes with the build");
    let out = std::process::Command::new("docker")
        .args([
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"libgo.test\"}}",
            &tag,
        ])
        .output()
        .expect("docker image inspect");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "slow");
    // With the first task ended, the user may start another.
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/images/{}", tag.replace('/', "%2F")),
            &operator,
        )
        .send()
        .await
        .expect("remove");
    assert!(r.status().is_success(), "{}", r.status());
    s.stop().await;
}

/// Bounded work: password checks beyond `login_concurrency` answer 429 with Retry-After
/// at once instead of queueing more argon2 work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_past_the_semaphore_answer_429() {
    let s = start(false, |c| c.login_concurrency = 1).await;
    let mut users = Vec::new();
    for _ in 0..4 {
        users.push(s.user("viewer").await.0);
    }
    let mut attempts = Vec::new();
    for _ in 0..3 {
        for u in &users {
            let client = s.client.clone();
            let url = s.url("/login");
            let body = json!({"username": u, "password": "password-123"});
            attempts.push(tokio::spawn(async move {
                let r = client.post(url).json(&body).send().await.expect("login");
                let retry = r.headers().get("retry-after").is_some();
                (r.status().as_u16(), retry)
            }));
        }
    }
    let (mut ok, mut busy) = (0, 0);
    for a in attempts {
        match a.await.expect("join") {
            (200, _) => ok += 1,
            (429, true) => busy += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(ok >= 1, "someone got in");
    assert!(
        busy >= 1,
        "12 parallel password checks with room for one: some were turned away"
    );
    s.stop().await;
}

/// Bounded disk: audit records and ended tasks past their configured counts are deleted
/// (at start and hourly).
#[tokio::test]
async fn audit_and_task_retention_bounds_the_tables() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().to_path_buf();
    let s = common::start_in(None, &path, false, |_| {}).await;
    for i in 0..12 {
        let r = s
            .req(Method::POST, "/api/v1/api-keys", &s.admin)
            .json(&json!({"name": format!("k{i}")}))
            .send()
            .await
            .expect("key");
        assert_eq!(r.status(), 201);
    }
    let before = audit_count(&s).await;
    assert!(before >= 12, "{before} audit records");
    s.stop().await;
    let s = common::start_in(None, &path, false, |c| c.audit_max_rows = 5).await;
    // The restart's own login may add a record after the purge.
    let after = audit_count(&s).await;
    assert!(after <= 6, "{after} audit records kept of {before}");
    s.stop().await;
    drop(dir);
}

/// Bounded connections: a client that trickles its request headers is cut off after
/// `header_read_timeout_secs` instead of holding a connection for ever.
#[tokio::test]
async fn trickled_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start(false, |c| c.header_read_timeout_secs = 1).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the connection stayed open past the header timeout"
    );
    assert!(
        !String::from_utf8_lossy(&buf).contains("200 OK"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    // A whole request still gets through.
    let r = s.client.get(s.url("/health")).send().await.expect("health");
    assert_eq!(r.status(), 200);
    s.stop().await;
}

/// Bounded sockets: a WebSocket whose client answers no pings is dropped after three
/// (`websocket_ping_secs`); a client that reads (and so answers pings) stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_websocket_clients_are_dropped() {
    let s = start(true, |c| c.websocket_ping_secs = 1).await;
    let (_, operator) = s.user("operator").await;
    let name = container(&s, &operator, json!({})).await;
    let mut silent = Vec::new();
    for path in ["stats", "console"] {
        let ws = ws_open(&s, &format!("/api/v1/instances/{name}/{path}"), &operator)
            .await
            .expect("open");
        silent.push(ws);
    }
    let mut live = ws_open(&s, &format!("/api/v1/instances/{name}/stats"), &operator)
        .await
        .expect("open");
    // The live client reads for 6 s (tungstenite answers pings as it reads).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    let mut samples = 0;
    while let Ok(m) = tokio::time::timeout_at(deadline, live.next()).await {
        match m {
            Some(Ok(Message::Text(_))) => samples += 1,
            Some(Ok(Message::Close(f))) => panic!("a live client was dropped: {f:?}"),
            Some(Ok(_)) => {}
            other => panic!("a live client lost its socket: {other:?}"),
        }
    }
    assert!(samples >= 2, "{samples} stats samples");
    for mut ws in silent {
        wait_closed(&mut ws, 10).await;
    }
    s.remove_instance(&name).await;
    s.stop().await;
}

/// Attack: one operator fetched another's export through the download route, or any host
/// file through a task whose result names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_download_only_to_their_owner() {
    let s = start(true, |_| {}).await;
    let (_, owner) = s.user("operator").await;
    let (_, other) = s.user("operator").await;
    let name = container(&s, &owner, json!({"command": ["sleep", "300"]})).await;
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/instances/{name}/export"),
            &owner,
        )
        .json(&json!({"format": "tar"}))
        .send()
        .await
        .expect("export");
    assert_eq!(r.status().as_u16(), 202);
    let task: Value = r.json().await.expect("task");
    let id = task["id"].as_str().expect("id").to_string();
    let done: Value = s
        .req(Method::GET, &format!("/api/v1/tasks/{id}?wait=120"), &owner)
        .send()
        .await
        .expect("wait")
        .json()
        .await
        .expect("json");
    assert_eq!(done["status"], "finished", "{done}");
    let download = format!("/api/v1/tasks/{id}/download");
    let r = s
        .req(Method::GET, &download, &other)
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;
    let r = s
        .req(Method::GET, &download, &owner)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 200);
    let body = r.bytes().await.expect("body");
    // A tar: the "ustar" magic at offset 257 of its first header.
    assert!(body.len() > 512 && &body[257..262] == b"ustar", "not a tar");
    // A file an administrator had written elsewhere on the host is not served back.
    let outside = tempfile::tempdir().expect("temp dir");
    let dest = outside.path().join("elsewhere.tar");
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/instances/{name}/export"),
            &s.admin,
        )
        .json(&json!({"format": "tar", "destination": dest}))
        .send()
        .await
        .expect("export");
    assert_eq!(r.status().as_u16(), 202);
    let task: Value = r.json().await.expect("task");
    let id = task["id"].as_str().expect("id").to_string();
    let done: Value = s
        .req(
            Method::GET,
            &format!("/api/v1/tasks/{id}?wait=120"),
            &s.admin,
        )
        .send()
        .await
        .expect("wait")
        .json()
        .await
        .expect("json");
    assert_eq!(done["status"], "finished", "{done}");
    assert!(dest.exists());
    let r = s
        .req(
            Method::GET,
            &format!("/api/v1/tasks/{id}/download"),
            &s.admin,
        )
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;
    s.remove_instance(&name).await;
    s.stop().await;
}

/// A host's libvirt URI is libvirt's to interpret: `ext` runs `command=`, `ssh` runs its
/// `command=` as the ssh client. Registering a host ran a program of the caller's choice on
/// the server (an administrator's call, but not a right any role should carry); the URI's
/// transport and parameters are now checked before libvirt sees them.
#[tokio::test]
async fn a_host_libvirt_uri_cannot_run_a_program_on_the_server() {
    use std::os::unix::fs::PermissionsExt;
    let s = start(true, |_| {}).await;
    let dir = std::env::temp_dir().join(unique("uri-attack"));
    std::fs::create_dir_all(&dir).expect("dir");
    let marker = dir.join("ran");
    let program = dir.join("program.sh");
    std::fs::write(
        &program,
        format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
    )
    .expect("script");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let p = program.display();
    for uri in [
        format!("qemu+ext://h9/system?command={p}"),
        format!("qemu+ssh://h9/system?command={p}"),
        format!("qemu+ssh://h9/system?comm%61nd={p}"),
    ] {
        let r = s
            .req(Method::POST, "/api/v1/hosts", &s.admin)
            .json(&json!({"name": "h9", "libvirt": uri}))
            .send()
            .await
            .expect("req");
        assert_error(r, 400, "INVALID_INPUT").await;
        assert!(!marker.exists(), "{uri} ran a program on the server");
    }
    let r = s
        .req(Method::GET, "/api/v1/hosts/h9", &s.admin)
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;
    let _ = std::fs::remove_dir_all(&dir);
    s.stop().await;
}
