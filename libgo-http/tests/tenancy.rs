//! Custom roles, groups and ownership, over real HTTP (and real Docker for the instances).

mod common;

use std::collections::BTreeSet;

use common::{TestServer, assert_error, concrete, json_of, start, unique};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

const IMAGE: &str = "libgo-test/busybox:latest";

/// The permission each operation declares, derived here from its tag and access level the
/// way the documentation states it (`<tag>.read|write|admin`).
fn operations() -> Vec<(Method, String, Option<String>)> {
    let doc = serde_json::to_value(libgo_http::openapi()).expect("doc");
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in ["get", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(m) else { continue };
            let tag = op["tags"][0].as_str().expect("tag");
            let permission = match op["x-libgo-access"].as_str().expect("access") {
                "viewer" => Some(format!("{tag}.read")),
                "operator" => Some(format!("{tag}.write")),
                "admin" => Some(format!("{tag}.admin")),
                _ => None,
            };
            ops.push((
                Method::from_bytes(m.to_uppercase().as_bytes()).expect("method"),
                path.clone(),
                permission,
            ));
        }
    }
    ops
}

async fn status(s: &TestServer, method: Method, path: &str, token: &str) -> u16 {
    s.req(method, path, token)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// A custom role admits exactly the operations whose permission it holds: every operation
/// of the document × a role of some permissions, and the role's life cycle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_roles_grant_exactly_their_permissions() {
    let s = start(false, |_| {}).await;

    // The permissions are those the routes declare.
    let perms = json_of(
        s.req(Method::GET, "/api/v1/permissions", &s.admin)
            .send()
            .await
            .expect("permissions"),
        200,
    )
    .await;
    let names: BTreeSet<String> = perms
        .as_array()
        .expect("list")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect();
    for p in [
        "instances.read",
        "instances.write",
        "audit.admin",
        "users.admin",
    ] {
        assert!(names.contains(p), "{p} in {names:?}");
    }
    let audit = perms
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["name"] == "audit.admin")
        .expect("audit.admin");
    assert_eq!(audit["role"], "admin");
    assert_eq!(audit["routes"], json!(["GET /api/v1/audit"]));

    // Bad roles change nothing.
    for (body, code, status) in [
        (
            json!({"name": "x1", "permissions": ["instances.read", "nope.read"]}),
            "INVALID_INPUT",
            400,
        ),
        (
            json!({"name": "viewer", "permissions": []}),
            "RESOURCE_CONFLICT",
            409,
        ),
        (
            json!({"name": "x2", "permissions": [], "extra": 1}),
            "INVALID_INPUT",
            400,
        ),
        (
            json!({"name": "Bad Name", "permissions": []}),
            "INVALID_INPUT",
            400,
        ),
    ] {
        let r = s
            .req(Method::POST, "/api/v1/roles", &s.admin)
            .json(&body)
            .send()
            .await
            .expect("role");
        assert_error(r, status, code).await;
    }
    let r = s
        .req(Method::POST, "/api/v1/users", &s.admin)
        .json(&json!({"username": unique("u"), "password": "password-123", "role": "no-such-role"}))
        .send()
        .await
        .expect("user");
    let v = assert_error(r, 400, "INVALID_INPUT").await;
    assert_eq!(v["field"], "role");

    // The matrix: every read, plus instance writes and the audit log.
    let granted: BTreeSet<String> = names
        .iter()
        .filter(|p| p.ends_with(".read"))
        .cloned()
        .chain(["instances.write".to_string(), "audit.admin".to_string()])
        .collect();
    let role = unique("mix");
    let r = s
        .req(Method::POST, "/api/v1/roles", &s.admin)
        .json(&json!({"name": role, "permissions": granted}))
        .send()
        .await
        .expect("role");
    let created = json_of(r, 201).await;
    assert_eq!(created["builtin"], false);
    // A role is a set: duplicates collapse.
    assert_eq!(
        created["permissions"].as_array().map(Vec::len),
        Some(granted.len())
    );
    let (holder, token) = s.user(&role).await;
    let (mut refused, mut admitted) = (0, 0);
    for (method, route, permission) in operations() {
        let Some(permission) = permission else {
            continue;
        };
        let r = s
            .req(method.clone(), &concrete(&route), &token)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .expect("request");
        let code = r.status().as_u16();
        if granted.contains(&permission) {
            assert!(
                code != 401 && code != 403,
                "{role} holds {permission}: {method} {route} answered {code}"
            );
            admitted += 1;
        } else {
            let v = assert_error(r, 403, "FORBIDDEN").await;
            assert!(
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&permission)),
                "{v}"
            );
            refused += 1;
        }
    }
    assert!(
        refused > 40 && admitted > 30,
        "{refused} refused, {admitted} admitted"
    );
    // Its own account needs no permission.
    assert_eq!(
        status(&s, Method::GET, "/api/v1/users/me", &token).await,
        200
    );

    // A change applies at the next request; the audit records the role's name.
    let r = s
        .req(Method::PATCH, &format!("/api/v1/roles/{role}"), &s.admin)
        .json(&json!({"permissions": ["instances.read"]}))
        .send()
        .await
        .expect("patch");
    json_of(r, 200).await;
    assert_eq!(status(&s, Method::GET, "/api/v1/audit", &token).await, 403);
    assert_eq!(status(&s, Method::GET, "/api/v1/tasks", &token).await, 403);
    let r = s
        .req(Method::POST, "/api/v1/instances", &token)
        .json(&json!({"name": "x", "kind": "container", "image": IMAGE}))
        .send()
        .await
        .expect("create");
    assert_error(r, 403, "FORBIDDEN").await;
    let audit = json_of(
        s.req(
            Method::GET,
            &format!("/api/v1/audit?username={holder}"),
            &s.admin,
        )
        .send()
        .await
        .expect("audit"),
        200,
    )
    .await;
    assert!(
        audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|a| a["role"] == role.as_str() && a["status"] == 403),
        "{audit}"
    );

    // Built-in roles stay; a held role stays.
    let r = s
        .req(Method::PATCH, "/api/v1/roles/operator", &s.admin)
        .json(&json!({"permissions": []}))
        .send()
        .await
        .expect("patch");
    assert_error(r, 409, "RESOURCE_CONFLICT").await;
    let r = s
        .req(Method::DELETE, &format!("/api/v1/roles/{role}"), &s.admin)
        .send()
        .await
        .expect("delete");
    assert_error(r, 409, "RESOURCE_CONFLICT").await;
    let roles = json_of(
        s.req(Method::GET, "/api/v1/roles", &s.admin)
            .send()
            .await
            .expect("roles"),
        200,
    )
    .await;
    let listed: Vec<&str> = roles["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        listed.starts_with(&["admin", "operator", "viewer"]) && listed.contains(&role.as_str()),
        "{listed:?}"
    );
    s.stop().await;
}

/// A user kept to its groups, with its token.
async fn scoped_user(s: &TestServer, role: &str, groups: &[&str]) -> (String, String) {
    let name = unique("member");
    let r = s
        .req(Method::POST, "/api/v1/users", &s.admin)
        .json(
            &json!({"username": name, "password": "password-123", "role": role,
                      "scope": "groups"}),
        )
        .send()
        .await
        .expect("user");
    let u = json_of(r, 201).await;
    assert_eq!(u["scope"], "groups");
    for g in groups {
        let r = s
            .req(
                Method::PUT,
                &format!("/api/v1/groups/{g}/members/{name}"),
                &s.admin,
            )
            .send()
            .await
            .expect("member");
        json_of(r, 200).await;
    }
    let token = s.login(&name, "password-123").await;
    (name, token)
}

async fn group(s: &TestServer) -> String {
    let name = unique("grp");
    let r = s
        .req(Method::POST, "/api/v1/groups", &s.admin)
        .json(&json!({"name": name, "description": "a test group"}))
        .send()
        .await
        .expect("group");
    json_of(r, 201).await;
    name
}

async fn container(s: &TestServer, token: &str, query: &str) -> Value {
    let name = unique("owned");
    let r = s
        .req(Method::POST, &format!("/api/v1/instances{query}"), token)
        .json(&json!({"name": name, "kind": "container", "image": IMAGE,
                      "command": ["sleep", "600"], "start": true}))
        .send()
        .await
        .expect("create");
    json_of(r, 201).await
}

async fn names(s: &TestServer, path: &str, token: &str) -> Vec<String> {
    let v = json_of(
        s.req(Method::GET, path, token).send().await.expect("list"),
        200,
    )
    .await;
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect()
}

/// A member of group A lists and touches only A's instances: another group's instance
/// answers the same 404 as a missing one, on every kind of route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_see_and_touch_only_their_groups_instances() {
    let s = start(true, |c| c.stats_interval_secs = 1).await;
    s.wait_for_backends(&["docker"]).await;
    let (ga, gb) = (group(&s).await, group(&s).await);
    let (alice, alice_t) = scoped_user(&s, "operator", &[&ga]).await;
    let (bob, bob_t) = scoped_user(&s, "operator", &[&gb]).await;
    let (_, everyone_t) = s.user("operator").await;

    let a1 = container(&s, &alice_t, "").await;
    let b1 = container(&s, &bob_t, "").await;
    let (a1n, b1n) = (
        a1["name"].as_str().expect("name").to_string(),
        b1["name"].as_str().expect("name").to_string(),
    );
    // The owner and group are recorded on the instance.
    assert_eq!(a1["labels"]["io.libgo.owner"], alice.as_str(), "{a1}");
    assert_eq!(a1["labels"]["io.libgo.group"], ga.as_str(), "{a1}");
    assert_eq!(b1["labels"]["io.libgo.group"], gb.as_str(), "{b1}");
    // An unscoped caller's instance has an owner and no group.
    let free = container(&s, &everyone_t, "").await;
    let freen = free["name"].as_str().expect("name").to_string();
    assert!(free["labels"]["io.libgo.owner"].is_string(), "{free}");
    assert!(free["labels"].get("io.libgo.group").is_none(), "{free}");

    // Lists: each member sees its group's; the unscoped operator and the admin see all.
    for path in [
        "/api/v1/instances?pageSize=100",
        "/api/v1/containers?pageSize=100",
    ] {
        let seen = names(&s, path, &alice_t).await;
        assert!(seen.contains(&a1n), "{path}: {seen:?}");
        assert!(
            !seen.contains(&b1n) && !seen.contains(&freen),
            "{path}: {seen:?}"
        );
        let seen = names(&s, path, &bob_t).await;
        assert!(
            seen.contains(&b1n) && !seen.contains(&a1n),
            "{path}: {seen:?}"
        );
        let seen = names(&s, path, &everyone_t).await;
        assert!(
            seen.contains(&a1n) && seen.contains(&b1n),
            "{path}: {seen:?}"
        );
    }

    // Alice's event stream carries her group's instances only: Bob's stop comes first,
    // hers after it, and only hers arrives.
    let url = format!(
        "{}/api/v1/events?types=instance&access_token={alice_t}",
        s.base.replace("http://", "ws://")
    );
    let (mut events, _) = tokio_tungstenite::connect_async(url).await.expect("events");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for (who, token) in [(&b1n, &bob_t), (&a1n, &alice_t)] {
        let r = s
            .req(
                Method::POST,
                &format!("/api/v1/instances/{who}/stop?force=true"),
                token,
            )
            .send()
            .await
            .expect("stop");
        assert!(r.status().is_success(), "stop {who}: {}", r.status());
    }
    let b1id = b1["id"].as_str().expect("id").to_string();
    let a1id = a1["id"].as_str().expect("id").to_string();
    let mut got: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !got.iter().any(|t| t.contains(&a1id)) {
        let next = tokio::time::timeout_at(deadline, events.next()).await;
        match next {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) => {
                got.push(t.to_string())
            }
            Ok(Some(Ok(_))) => {}
            _ => panic!("alice's stop did not reach her stream; she got {got:?}"),
        }
    }
    assert!(
        got.iter().all(|t| !t.contains(&b1id) && !t.contains(&b1n)),
        "{got:?}"
    );
    for (who, token) in [(&b1n, &bob_t), (&a1n, &alice_t)] {
        let r = s
            .req(
                Method::POST,
                &format!("/api/v1/instances/{who}/start"),
                token,
            )
            .send()
            .await
            .expect("start");
        assert!(r.status().is_success(), "start {who}: {}", r.status());
    }

    // Alert transitions and /metrics name instances: Alice reads her group's only.
    let rule = json_of(
        s.req(Method::POST, "/api/v1/alerts", &s.admin)
            .json(&json!({"name": unique("up"), "metric": "state", "op": "==",
                          "state": "running"}))
            .send()
            .await
            .expect("rule"),
        201,
    )
    .await;
    let history = format!(
        "/api/v1/alerts/{}/history?pageSize=100",
        rule["id"].as_str().expect("id")
    );
    let names_in = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["instanceName"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut fired = Vec::new();
    for _ in 0..60 {
        fired = names_in(
            &json_of(
                s.req(Method::GET, &history, &s.admin)
                    .send()
                    .await
                    .expect("history"),
                200,
            )
            .await,
        );
        if fired.contains(&a1n) && fired.contains(&b1n) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(fired.contains(&a1n) && fired.contains(&b1n), "{fired:?}");
    let hers = names_in(
        &json_of(
            s.req(Method::GET, &history, &alice_t)
                .send()
                .await
                .expect("history"),
            200,
        )
        .await,
    );
    assert!(hers.contains(&a1n) && !hers.contains(&b1n), "{hers:?}");
    assert_error(
        s.req(Method::GET, "/metrics", &alice_t)
            .send()
            .await
            .expect("metrics"),
        403,
        "FORBIDDEN",
    )
    .await;
    assert_eq!(status(&s, Method::GET, "/metrics", &everyone_t).await, 200);

    // Networks and volumes record their owner and group too.
    let net = json_of(
        s.req(Method::POST, "/api/v1/networks", &alice_t)
            .json(&json!({"name": unique("alnet"), "backend": "docker"}))
            .send()
            .await
            .expect("network"),
        201,
    )
    .await;
    assert_eq!(net["labels"]["io.libgo.owner"], alice.as_str(), "{net}");
    assert_eq!(net["labels"]["io.libgo.group"], ga.as_str(), "{net}");
    let vol = json_of(
        s.req(Method::POST, "/api/v1/volumes", &alice_t)
            .json(&json!({"name": unique("alvol"), "backend": "docker"}))
            .send()
            .await
            .expect("volume"),
        201,
    )
    .await;
    assert_eq!(vol["labels"]["io.libgo.owner"], alice.as_str(), "{vol}");
    assert_eq!(vol["labels"]["io.libgo.group"], ga.as_str(), "{vol}");
    // Bob's container on Alice's volume and network: she sees they are used, not by whom.
    let bobs = unique("bobvol");
    let bobc = json_of(
        s.req(Method::POST, "/api/v1/instances", &bob_t)
            .json(&json!({"name": bobs, "kind": "container", "image": IMAGE,
                          "command": ["sleep", "600"], "start": true,
                          "networks": [net["name"]],
                          "mounts": [{"kind": "volume", "source": vol["name"], "target": "/v"}]}))
            .send()
            .await
            .expect("create"),
        201,
    )
    .await;
    let vol_path = format!("/api/v1/volumes/{}", vol["name"].as_str().expect("name"));
    let net_path = format!("/api/v1/networks/{}", net["name"].as_str().expect("name"));
    let bobs_id = bobc["id"].as_str().expect("id").to_string();
    let mentions = |v: &Value| v.to_string().contains(&bobs) || v.to_string().contains(&bobs_id);
    for (path, list) in [
        (vol_path.as_str(), "/api/v1/volumes?pageSize=100"),
        (net_path.as_str(), "/api/v1/networks?pageSize=100"),
    ] {
        let seen = json_of(
            s.req(Method::GET, path, &alice_t)
                .send()
                .await
                .expect("get"),
            200,
        )
        .await;
        let listed = json_of(
            s.req(Method::GET, list, &alice_t)
                .send()
                .await
                .expect("list"),
            200,
        )
        .await;
        assert!(!mentions(&seen) && !mentions(&listed), "{seen} {listed}");
        let full = json_of(
            s.req(Method::GET, path, &s.admin)
                .send()
                .await
                .expect("get"),
            200,
        )
        .await;
        assert!(mentions(&full), "the admin sees who uses it: {full}");
    }
    s.remove_instance(&bobs).await;

    // An address pool both use: Alice sees how many addresses are taken, and only which
    // her group's instances hold.
    let id = uuid::Uuid::new_v4();
    let subnet = format!("10.{}.{}", 100 + id.as_bytes()[0] % 100, id.as_bytes()[1]);
    let pool = unique("tp");
    json_of(
        s.req(Method::POST, "/api/v1/address-pools", &s.admin)
            .json(&json!({"name": pool, "gateway": format!("{subnet}.1"),
                          "ranges": [{"start": format!("{subnet}.10"), "end": format!("{subnet}.20"), "prefix": 24}]}))
            .send()
            .await
            .expect("pool"),
        201,
    )
    .await;
    let mut held = vec![];
    for token in [&alice_t, &bob_t] {
        let made = json_of(
            s.req(Method::POST, "/api/v1/instances", token)
                .json(
                    &json!({"name": unique("pooled"), "kind": "container", "image": IMAGE,
                              "command": ["sleep", "600"], "addresses": [{"pool": pool}]}),
                )
                .send()
                .await
                .expect("create"),
            201,
        )
        .await;
        held.push(made["id"].as_str().expect("id").to_string());
    }
    for path in [
        format!("/api/v1/address-pools/{pool}"),
        "/api/v1/address-pools?pageSize=100".to_string(),
    ] {
        let seen = json_of(
            s.req(Method::GET, &path, &alice_t)
                .send()
                .await
                .expect("get"),
            200,
        )
        .await;
        let text = seen.to_string();
        assert!(
            text.contains(&held[0]) && !text.contains(&held[1]),
            "{seen}"
        );
        assert!(text.contains("\"allocated\":2"), "{seen}");
    }
    let full = json_of(
        s.req(
            Method::GET,
            &format!("/api/v1/address-pools/{pool}"),
            &s.admin,
        )
        .send()
        .await
        .expect("get"),
        200,
    )
    .await;
    assert!(full.to_string().contains(&held[1]), "{full}");
    for id in &held {
        s.remove_instance(id).await;
    }
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/address-pools/{pool}"),
            &s.admin,
        )
        .send()
        .await
        .expect("delete pool");
    assert_eq!(r.status().as_u16(), 204);

    for (path, name) in [("networks", &net["name"]), ("volumes", &vol["name"])] {
        let name = name.as_str().expect("name");
        let r = s
            .req(Method::DELETE, &format!("/api/v1/{path}/{name}"), &s.admin)
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status().as_u16(), 204, "delete {path}/{name}");
    }

    // Alice works on her own instance.
    let ex = json_of(
        s.req(
            Method::POST,
            &format!("/api/v1/instances/{a1n}/exec"),
            &alice_t,
        )
        .json(&json!({"command": ["echo", "mine"]}))
        .send()
        .await
        .expect("exec"),
        200,
    )
    .await;
    assert_eq!(ex["stdout"], "mine\n");

    // Bob's instance, by name and by id, on every kind of route, is a 404 shaped like a
    // missing instance's.
    let missing = assert_error(
        s.req(Method::GET, "/api/v1/instances/no-such-one", &alice_t)
            .send()
            .await
            .expect("get"),
        404,
        "NOT_FOUND",
    )
    .await;
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/instances/{b1n}"), None),
        (Method::GET, format!("/api/v1/instances/{b1id}"), None),
        (Method::GET, format!("/api/v1/containers/{b1n}"), None),
        (Method::GET, format!("/api/v1/instances/{b1n}/logs"), None),
        (Method::GET, format!("/api/v1/instances/{b1n}/stats"), None),
        (
            Method::DELETE,
            format!("/api/v1/instances/{b1n}?force=true"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/instances/{b1n}/stop"),
            Some(json!({})),
        ),
        (Method::POST, format!("/api/v1/containers/{b1n}/stop"), None),
        (
            Method::POST,
            format!("/api/v1/instances/{b1n}/exec"),
            Some(json!({"command": ["true"]})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/instances/{b1n}"),
            Some(json!({"name": "stolen"})),
        ),
        (
            Method::POST,
            format!("/api/v1/instances/{b1n}/snapshots"),
            Some(json!({"name": "s1"})),
        ),
        (
            Method::POST,
            "/api/v1/instances/batch-delete".to_string(),
            Some(json!({"ids": [a1n, b1n], "force": true})),
        ),
    ] {
        let mut req = s.req(method.clone(), &path, &alice_t);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v = assert_error(req.send().await.expect("req"), 404, "NOT_FOUND").await;
        let said = v["message"].as_str().unwrap_or_default();
        let as_missing = said
            .replace(&b1n, "no-such-one")
            .replace(&b1id, "no-such-one");
        assert_eq!(as_missing, missing["message"], "{method} {path}");
    }
    // Every operation on an instance of the document, whatever its body: the same 404.
    let mut checked = 0;
    for (method, route, _) in operations() {
        let on_instance = [
            "/api/v1/instances/{id}",
            "/api/v1/containers/{id}",
            "/api/v1/vms/{id}",
        ]
        .iter()
        .any(|p| route == *p || route.starts_with(&format!("{p}/")));
        if !on_instance {
            continue;
        }
        let path = concrete(&route.replace("{id}", &b1n));
        let r = s
            .req(method.clone(), &path, &alice_t)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .expect("request");
        let v = assert_error(r, 404, "NOT_FOUND").await;
        assert_eq!(
            v["message"]
                .as_str()
                .map(|m| m.replace(&b1n, "no-such-one")),
            missing["message"].as_str().map(str::to_string),
            "{method} {route}"
        );
        checked += 1;
    }
    assert!(checked >= 30, "{checked} instance operations checked");
    // The console is refused before the upgrade, the same way.
    let r = s
        .req(
            Method::GET,
            &format!("/api/v1/instances/{b1n}/console"),
            &alice_t,
        )
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("ws");
    assert_error(r, 404, "NOT_FOUND").await;
    // Nothing happened to Bob's instance.
    let still = json_of(
        s.req(Method::GET, &format!("/api/v1/instances/{b1n}"), &bob_t)
            .send()
            .await
            .expect("get"),
        200,
    )
    .await;
    assert_eq!(still["state"], "running", "{still}");

    // Alice may not make instances in Bob's group, nor forge the labels.
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/instances?group={gb}"),
            &alice_t,
        )
        .json(&json!({"name": unique("x"), "kind": "container", "image": IMAGE}))
        .send()
        .await
        .expect("create");
    assert_error(r, 403, "FORBIDDEN").await;
    let r = s
        .req(Method::POST, "/api/v1/instances", &alice_t)
        .json(
            &json!({"name": unique("x"), "kind": "container", "image": IMAGE,
                      "labels": {"io.libgo.group": gb}}),
        )
        .send()
        .await
        .expect("create");
    assert_error(r, 400, "INVALID_INPUT").await;
    // An unscoped operator may place one in a group, which must exist (a missing one is
    // NOT_FOUND, like any missing object a spec names).
    let r = s
        .req(
            Method::POST,
            "/api/v1/instances?group=no-such-group",
            &everyone_t,
        )
        .json(&json!({"name": unique("x"), "kind": "container", "image": IMAGE}))
        .send()
        .await
        .expect("create");
    assert_error(r, 404, "NOT_FOUND").await;
    let placed = container(&s, &everyone_t, &format!("?group={ga}")).await;
    let placedn = placed["name"].as_str().expect("name").to_string();
    assert!(
        names(&s, "/api/v1/instances?pageSize=100", &alice_t)
            .await
            .contains(&placedn)
    );

    // The group lists its members; leaving it leaves its instances.
    let g = json_of(
        s.req(Method::GET, &format!("/api/v1/groups/{ga}"), &s.admin)
            .send()
            .await
            .expect("group"),
        200,
    )
    .await;
    assert_eq!(g["members"], json!([alice]));
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/groups/{ga}/members/{alice}"),
            &s.admin,
        )
        .send()
        .await
        .expect("leave");
    assert_eq!(r.status().as_u16(), 204);
    assert!(
        names(&s, "/api/v1/instances?pageSize=100", &alice_t)
            .await
            .is_empty()
    );
    assert_eq!(
        status(
            &s,
            Method::GET,
            &format!("/api/v1/instances/{a1n}"),
            &alice_t
        )
        .await,
        404
    );
    // A scoped user in no group makes nothing.
    let r = s
        .req(Method::POST, "/api/v1/instances", &alice_t)
        .json(&json!({"name": unique("x"), "kind": "container", "image": IMAGE}))
        .send()
        .await
        .expect("create");
    assert_error(r, 403, "FORBIDDEN").await;

    // A group with instances stays (made again under its name, it would get them back);
    // once they are gone it can be deleted.
    let r = s
        .req(Method::DELETE, &format!("/api/v1/groups/{ga}"), &s.admin)
        .send()
        .await
        .expect("delete group");
    let e = assert_error(r, 409, "RESOURCE_CONFLICT").await;
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains(&a1n)),
        "{e}"
    );
    for n in [&a1n, &b1n, &freen, &placedn] {
        s.remove_instance(n).await;
    }
    let r = s
        .req(Method::DELETE, &format!("/api/v1/groups/{ga}"), &s.admin)
        .send()
        .await
        .expect("delete group");
    assert_eq!(r.status().as_u16(), 204);
    let _ = bob;
    s.stop().await;
}
