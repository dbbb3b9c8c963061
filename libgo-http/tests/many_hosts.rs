//! Many hosts over HTTP against real engines: a second host made by `scripts/host2.sh` (a
//! network namespace with its own dockerd over TCP+TLS and its own libvirtd over TCP) is
//! added, instances are placed on it by pool, and a running test guest is live-migrated
//! there and back, answering on its serial console after each move.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{assert_error, json_of, start, unique};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const IMAGE: &str = "libgo-test/busybox:latest";

/// The second host: started for this test, stopped (with all it ran) when dropped.
struct SecondHost {
    name: String,
    env: HashMap<String, String>,
}

/// Second hosts start one at a time (CI twice saw the second of two concurrent starts find
/// its libvirt's TLS listener presenting a certificate its CA did not sign).
static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl SecondHost {
    fn start() -> SecondHost {
        let _turn = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let name = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let out = Command::new("bash")
            .arg(script())
            .args(["start", &name])
            .output()
            .expect("run host2.sh");
        if !out.status.success() {
            // What it started is stopped: nothing outlives a failed start.
            stop_host(&name);
            panic!(
                "host2.sh start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SecondHost { name, env }
    }

    fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("host2.sh printed no {key}"))
    }
}

impl Drop for SecondHost {
    fn drop(&mut self) {
        stop_host(&self.name);
    }
}

/// Stops second host `name` and deletes it, whatever state it is in.
fn stop_host(name: &str) {
    let _ = Command::new("bash")
        .arg(script())
        .args(["stop", name])
        .output();
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/host2.sh")
}

fn virsh(uri: &str, args: &[&str]) -> String {
    let out = Command::new("virsh")
        .args(["-c", uri])
        .args(args)
        .output()
        .expect("virsh");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn guest() -> PathBuf {
    let cache = std::env::var("LIBGO_CACHE").unwrap_or_else(|_| "/var/cache/libgo".into());
    PathBuf::from(cache).join("guest")
}

/// Reads the VM's serial console over the WebSocket until it shows `marker`.
/// Asks to migrate instance `name` (`body`: host, live) and waits for the task: the
/// task as it ended.
async fn migrate_and_wait(s: &common::TestServer, name: &str, body: Value, token: &str) -> Value {
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/instances/{name}/migrate"),
            token,
        )
        .json(&body)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 202);
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    s.wait_task(&location, token).await
}

async fn console_shows(base: &str, id: &str, token: &str, marker: &str) {
    let url = format!(
        "{}/api/v1/instances/{id}/console?access_token={token}",
        base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("console websocket");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    while !seen.contains(marker) {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(Message::Text(t)))) => seen.push_str(&t),
            Ok(Some(Ok(_))) => {}
            other => panic!("console of {id} ended or was silent: {other:?}; saw {seen:?}"),
        }
    }
    let _ = ws.close(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_takes_placed_instances_and_live_migrated_vms() {
    let h2 = SecondHost::start();
    let s = start(true, |c| c.kvm.accelerator = "tcg".into()).await;
    let t = s.admin.clone();
    let (_, operator) = s.user("operator").await;
    let addr = h2.get("LIBGO_HOST2_ADDR").to_string();
    let tls = PathBuf::from(h2.get("LIBGO_HOST2_DOCKER_TLS"));
    let pem = |f: &str| std::fs::read_to_string(tls.join(f)).expect("pem");

    // The local host is there from the start.
    let hosts = json_of(
        s.req(Method::GET, "/api/v1/hosts", &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert_eq!(hosts["items"][0]["name"], "local", "{hosts}");

    // A host whose engine does not answer is refused with 503 and nothing is stored.
    let r = s
        .req(Method::POST, "/api/v1/hosts", &t)
        .json(&json!({"name": "h2", "libvirt": format!("qemu+tcp://{addr}:1/system")}))
        .send()
        .await
        .expect("req");
    assert_error(r, 503, "BACKEND_UNAVAILABLE").await;
    let r = s
        .req(Method::GET, "/api/v1/hosts/h2", &t)
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;
    // Unknown fields are refused; only an administrator adds hosts.
    let r = s
        .req(Method::POST, "/api/v1/hosts", &t)
        .json(&json!({"name": "h2", "libvirt": h2.get("LIBGO_HOST2_LIBVIRT"), "dockr": "x"}))
        .send()
        .await
        .expect("req");
    assert_error(r, 400, "INVALID_INPUT").await;
    let r = s
        .req(Method::POST, "/api/v1/hosts", &operator)
        .json(&json!({"name": "h2", "libvirt": h2.get("LIBGO_HOST2_LIBVIRT")}))
        .send()
        .await
        .expect("req");
    assert_error(r, 403, "FORBIDDEN").await;

    // Its pool first: a host cannot join a pool that does not exist.
    let r = s
        .req(Method::POST, "/api/v1/hosts", &t)
        .json(&json!({"name": "h2", "libvirt": h2.get("LIBGO_HOST2_LIBVIRT"), "pool": "p2"}))
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;
    json_of(
        s.req(Method::POST, "/api/v1/compute-pools", &t)
            .json(&json!({"name": "p2"}))
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;

    // libvirt over TLS checks the host's certificate: a client that trusts another CA is
    // refused, and nothing is stored.
    let other_ca = std::env::temp_dir().join(unique("mh-pki"));
    std::fs::create_dir_all(&other_ca).expect("pki dir");
    for f in ["clientcert.pem", "clientkey.pem"] {
        std::fs::copy(tls.join("libvirt-client").join(f), other_ca.join(f)).expect("copy");
    }
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=another-ca", "-keyout"])
        .arg(other_ca.join("cakey.pem"))
        .arg("-out")
        .arg(other_ca.join("cacert.pem"))
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{made:?}");
    let r = s
        .req(Method::POST, "/api/v1/hosts", &t)
        .json(&json!({"name": "h2", "pool": "p2",
                      "libvirt": format!("qemu+tls://{addr}/system?pkipath={}", other_ca.display())}))
        .send()
        .await
        .expect("req");
    assert_error(r, 503, "BACKEND_UNAVAILABLE").await;
    let _ = std::fs::remove_dir_all(&other_ca);
    let r = s
        .req(Method::GET, "/api/v1/hosts/h2", &t)
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;

    // Register it: Docker over TLS (PEM text), libvirt over TLS (a pki directory of
    // libvirt's), in pool p2. Every call to h2's libvirt below goes over TLS.
    let host = json_of(
        s.req(Method::POST, "/api/v1/hosts", &t)
            .json(&json!({
                "name": "h2",
                "docker": h2.get("LIBGO_HOST2_DOCKER"),
                "dockerTls": {"ca": pem("ca.pem"), "cert": pem("cert.pem"), "key": pem("key.pem")},
                "libvirt": h2.get("LIBGO_HOST2_LIBVIRT_TLS"),
                "pool": "p2",
                "labels": {"rack": "r2"},
            }))
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    assert_eq!(host["name"], "h2");
    assert_eq!(host["alive"], true, "{host}");
    let engines = host["engines"].as_array().expect("engines");
    assert_eq!(engines.len(), 2, "{host}");
    assert!(engines.iter().all(|e| e["up"] == true), "{host}");
    assert!(
        host["capacity"]["memoryBytes"]
            .as_u64()
            .is_some_and(|m| m > 0),
        "{host}"
    );
    assert!(
        host["capacity"]["cpus"].as_u64().is_some_and(|c| c > 0),
        "{host}"
    );
    // One engine is not added twice under another name.
    let r = s
        .req(Method::POST, "/api/v1/hosts", &t)
        .json(&json!({"name": "h3", "libvirt": "qemu:///system"}))
        .send()
        .await
        .expect("req");
    assert_error(r, 400, "INVALID_INPUT").await;
    let r = s
        .req(Method::POST, "/api/v1/hosts", &t)
        .json(&json!({"name": "h3", "docker": "unix:///var/run/docker.sock"}))
        .send()
        .await
        .expect("req");
    assert_error(r, 409, "RESOURCE_CONFLICT").await;
    // Stored PEM texts are private files.
    for f in ["ca", "cert", "key"] {
        use std::os::unix::fs::PermissionsExt;
        let p = s.data_dir.join("hosts/h2").join(format!("{f}.pem"));
        let mode = std::fs::metadata(&p)
            .expect("pem stored")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", p.display());
    }

    // A container placed by pool lands on h2's dockerd and answers exec there.
    let cname = unique("mh-c");
    let c = json_of(
        s.req(Method::POST, "/api/v1/instances", &operator)
            .json(
                &json!({"name": cname, "kind": "container", "image": IMAGE, "pool": "p2",
                          "command": ["sleep", "300"], "start": true}),
            )
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    assert_eq!(c["host"], "h2", "{c}");
    assert_eq!(c["backend"], "h2-docker", "{c}");
    let x = json_of(
        s.req(
            Method::POST,
            &format!("/api/v1/instances/{cname}/exec"),
            &operator,
        )
        .json(&json!({"command": ["hostname"]}))
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
    assert_eq!(x["exitCode"], 0, "{x}");
    let sock = format!("unix:///var/lib/libgo-hosts/{}/docker.sock", h2.name);
    let ps = Command::new("docker")
        .args(["-H", &sock, "ps", "--format", "{{.Names}}"])
        .output()
        .expect("docker ps");
    assert!(
        String::from_utf8_lossy(&ps.stdout).contains(&cname),
        "not on h2's dockerd"
    );
    // h2's dockerd dies: within 10 s h2 reads not alive, its container `lost`, and an
    // event says so; once it is back, the container reads its real state again.
    let mut events = {
        let url = format!(
            "{}/api/v1/events?types=host&access_token={t}",
            s.base.replace("http://", "ws://")
        );
        tokio_tungstenite::connect_async(url)
            .await
            .expect("events")
            .0
    };
    host2("docker-kill", &h2.name);
    let down_at = std::time::Instant::now();
    let state_of = |name: String| {
        let s = &s;
        let t = t.clone();
        async move {
            let page = json_of(
                s.req(Method::GET, &format!("/api/v1/instances?name={name}"), &t)
                    .send()
                    .await
                    .expect("req"),
                200,
            )
            .await;
            page["items"][0]["state"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    };
    loop {
        let h = json_of(
            s.req(Method::GET, "/api/v1/hosts/h2", &t)
                .send()
                .await
                .expect("req"),
            200,
        )
        .await;
        if h["alive"] == false && state_of(cname.clone()).await == "lost" {
            assert_eq!(h["instances"]["lost"], 1, "{h}");
            break;
        }
        assert!(
            down_at.elapsed() < Duration::from_secs(10),
            "h2 still alive: {h}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let event = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("a host event within 10 s")
        .expect("open")
        .expect("message");
    let event: serde_json::Value = match event {
        Message::Text(t) => serde_json::from_str(&t).expect("json"),
        other => panic!("{other:?}"),
    };
    assert_eq!(event["type"], "host", "{event}");
    assert_eq!(event["host"], "h2", "{event}");
    assert_eq!(event["alive"], false, "{event}");
    host2("docker-start", &h2.name);
    let up_at = std::time::Instant::now();
    loop {
        let h = json_of(
            s.req(Method::GET, "/api/v1/hosts/h2", &t)
                .send()
                .await
                .expect("req"),
            200,
        )
        .await;
        let state = state_of(cname.clone()).await;
        if h["alive"] == true && !state.is_empty() && state != "lost" {
            break;
        }
        assert!(
            up_at.elapsed() < Duration::from_secs(20),
            "h2 not back: {h} {state}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = events.close(None).await;
    // The restart stopped it; it starts again where it is.
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/instances/{cname}/start"),
            &operator,
        )
        .send()
        .await
        .expect("req");
    assert!(r.status().is_success(), "{}", r.status());

    // Pinning to a host in another pool is refused with the reason.
    let r = s
        .req(Method::POST, "/api/v1/instances", &operator)
        .json(
            &json!({"name": unique("mh-x"), "kind": "container", "image": IMAGE,
                      "host": "local", "pool": "p2"}),
        )
        .send()
        .await
        .expect("req");
    assert_error(r, 400, "INVALID_INPUT").await;
    // A disabled host takes nothing: 409 with the reason, nothing created.
    json_of(
        s.req(Method::PATCH, "/api/v1/hosts/h2", &t)
            .json(&json!({"enabled": false}))
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    let refused = unique("mh-r");
    let r = s
        .req(Method::POST, "/api/v1/instances", &operator)
        .json(&json!({"name": refused, "kind": "container", "image": IMAGE, "pool": "p2"}))
        .send()
        .await
        .expect("req");
    let e = assert_error(r, 409, "RESOURCE_CONFLICT").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("h2: disabled"),
        "{e}"
    );
    let r = s
        .req(Method::GET, &format!("/api/v1/instances/{refused}"), &t)
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;
    json_of(
        s.req(Method::PATCH, "/api/v1/hosts/h2", &t)
            .json(&json!({"enabled": true}))
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    // A pool's and the zone's status add their hosts up; a disabled pool takes nothing;
    // a pool with hosts is not deleted.
    let p2 = json_of(
        s.req(Method::GET, "/api/v1/compute-pools/p2/status", &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert_eq!(p2["hosts"], json!({"off": 0, "on": 1}), "{p2}");
    assert_eq!(p2["instances"]["running"], 1, "{p2}");
    assert!(p2["maxCpu"].as_u64().is_some_and(|c| c > 0), "{p2}");
    assert!(p2["maxMemoryBytes"].as_u64().is_some_and(|m| m > 0), "{p2}");
    let zone = json_of(
        s.req(Method::GET, "/api/v1/zone/status", &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert_eq!(zone["hosts"]["on"], 2, "{zone}");
    assert_eq!(zone["pools"], json!({"off": 0, "on": 2}), "{zone}");
    assert_eq!(
        zone["maxCpu"].as_u64(),
        Some(p2["maxCpu"].as_u64().unwrap_or(0) * 2),
        "two hosts of this machine's CPUs: {zone}"
    );
    let usage = json_of(
        s.req(Method::GET, "/api/v1/metrics/resources?host=h2", &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    for k in ["cpuUsage", "memoryUsage", "diskUsage"] {
        assert!(
            usage[k]
                .as_f64()
                .is_some_and(|v| (0.0..=100.0).contains(&v)),
            "{usage}"
        );
    }
    assert!(
        usage["memoryUsage"].as_f64().is_some_and(|v| v > 0.0),
        "{usage}"
    );
    json_of(
        s.req(Method::PATCH, "/api/v1/compute-pools/p2", &t)
            .json(&json!({"enabled": false}))
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    let r = s
        .req(Method::POST, "/api/v1/instances", &operator)
        .json(&json!({"name": unique("mh-p"), "kind": "container", "image": IMAGE, "pool": "p2"}))
        .send()
        .await
        .expect("req");
    assert_error(r, 409, "RESOURCE_CONFLICT").await;
    json_of(
        s.req(Method::PATCH, "/api/v1/compute-pools/p2", &t)
            .json(&json!({"enabled": true}))
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    let r = s
        .req(Method::DELETE, "/api/v1/compute-pools/p2", &t)
        .send()
        .await
        .expect("req");
    assert_error(r, 409, "RESOURCE_CONFLICT").await;

    // The way back: the machine as h2's QEMU reaches it.
    json_of(
        s.req(Method::PATCH, "/api/v1/hosts/local", &t)
            .json(&json!({"migrationAddress": h2.get("LIBGO_HOST2_PEER")}))
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;

    // A running test guest on the local host, migrated live to h2 and back (booting a host
    // kernel is an administrator's right).
    let vname = unique("mh-v");
    let g = guest();
    let vm = json_of(
        s.req(Method::POST, "/api/v1/instances", &t)
            .json(&json!({"name": vname, "kind": "vm", "host": "local", "memoryBytes": 256u64 << 20,
                          "disks": [{"sizeBytes": 16u64 << 20}],
                          "kernelBoot": {"kernel": g.join("vmlinuz"), "initrd": g.join("initrd.img"),
                                         "cmdline": "console=ttyS0 panic=-1 quiet libgo.noagent"},
                          "start": true}))
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    let id = vm["id"].as_str().expect("id").to_string();
    assert_eq!(vm["host"], "local");
    console_shows(&s.base, &id, &t, "LIBGO-GUEST-ALIVE").await;
    // The disk of a running VM is in use: cloning it is a conflict, not an engine fault
    // (found by the API fuzzer as a 500).
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/volumes/{vname}-disk0.qcow2/clone"),
            &t,
        )
        .json(&json!({"target": unique("mh-clone")}))
        .send()
        .await
        .expect("req");
    assert_error(r, 409, "RESOURCE_CONFLICT").await;

    // There live, back paused (offline); while it moves, its host counts it as migrating.
    for (to, from, uri, live) in [
        ("h2", "local", h2.get("LIBGO_HOST2_LIBVIRT"), true),
        ("local", "h2", "qemu:///system", false),
    ] {
        let r = s
            .req(
                Method::POST,
                &format!("/api/v1/instances/{vname}/migrate"),
                &t,
            )
            .json(&json!({"host": to, "live": live}))
            .send()
            .await
            .expect("req");
        assert_eq!(r.status().as_u16(), 202);
        let location = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        let mut seen_migrating = false;
        let task = loop {
            let task = json_of(
                s.req(Method::GET, &location, &t).send().await.expect("req"),
                200,
            )
            .await;
            let h = json_of(
                s.req(Method::GET, &format!("/api/v1/hosts/{from}"), &t)
                    .send()
                    .await
                    .expect("req"),
                200,
            )
            .await;
            seen_migrating |= h["instances"]["migrating"] == 1;
            if task["status"] != "running" {
                break task;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(seen_migrating, "{from} never counted {vname} as migrating");
        assert_eq!(task["status"], "finished", "{task}");
        let report = &task["result"];
        assert_eq!(
            report["kind"],
            if live { "live" } else { "offline" },
            "{report}"
        );
        assert_eq!(report["instance"]["host"], to, "{report}");
        assert_eq!(
            report["instance"]["id"],
            id.as_str(),
            "the id stays: {report}"
        );
        assert_eq!(report["instance"]["state"], "running", "{report}");
        eprintln!(
            "{} migration to {to}: {} ms, downtime {} ms, {} bytes",
            report["kind"].as_str().unwrap_or_default(),
            report["elapsedMs"],
            report["downtimeMs"],
            report["transferredBytes"]
        );
        // libvirt on both sides agrees: running there, gone here.
        let there = virsh(uri, &["domstate", &vname]);
        assert!(there.contains("running"), "{to}: {there}");
        let other = if to == "h2" {
            "qemu:///system"
        } else {
            h2.get("LIBGO_HOST2_LIBVIRT")
        };
        let here = virsh(other, &["domstate", &vname]);
        assert!(here.contains("failed to get domain"), "left behind: {here}");
        // Its disk went with it: no copy is left where it was.
        let vols = virsh(other, &["vol-list", "default"]);
        assert!(!vols.contains(&vname), "disk left behind: {vols}");
        // The guest still answers on its console, by the same id.
        console_shows(&s.base, &id, &t, "LIBGO-GUEST-ALIVE").await;
        let got = json_of(
            s.req(Method::GET, &format!("/api/v1/instances/{id}"), &t)
                .send()
                .await
                .expect("req"),
            200,
        )
        .await;
        assert_eq!(got["host"], to, "{got}");
    }
    // A stopped VM moves by copying its volumes through libvirt: its own disk goes with
    // what the guest wrote on it, the base image under its overlay disk is copied there and
    // stays here (others may use it), and it boots there by the same id.
    let sname = unique("mh-s");
    let base = unique("mh-base");
    json_of(
        s.req(Method::POST, "/api/v1/volumes", &t)
            .json(&json!({"name": base, "backend": "kvm", "sizeBytes": 8u64 << 20}))
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    let sv = json_of(
        s.req(Method::POST, "/api/v1/instances", &t)
            .json(&json!({"name": sname, "kind": "vm", "host": "local", "memoryBytes": 256u64 << 20,
                          "disks": [{"sizeBytes": 16u64 << 20}, {"baseImage": base}],
                          "kernelBoot": {"kernel": g.join("vmlinuz"), "initrd": g.join("initrd.img"),
                                         "cmdline": "console=ttyS0 panic=-1 quiet"},
                          "start": true}))
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    let sid = sv["id"].as_str().expect("id").to_string();
    let vm_exec = |cmd: String| {
        let s = &s;
        let t = t.clone();
        let sname = sname.clone();
        async move {
            let started = std::time::Instant::now();
            loop {
                let r = s
                    .req(Method::POST, &format!("/api/v1/instances/{sname}/exec"), &t)
                    .json(&json!({"command": ["sh", "-c", cmd]}))
                    .send()
                    .await
                    .expect("req");
                // The agent answers once the guest has booted.
                if r.status().as_u16() == 200 {
                    return r.json::<Value>().await.expect("json");
                }
                assert!(
                    started.elapsed() < Duration::from_secs(180),
                    "the guest's agent never answered"
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let w = vm_exec("echo stopped-vm-data | dd of=/dev/vda bs=512 seek=64 conv=fsync 2>/dev/null && sync && echo ok".into()).await;
    assert_eq!(w["stdout"].as_str().map(str::trim), Some("ok"), "{w}");
    json_of(
        s.req(
            Method::POST,
            &format!("/api/v1/instances/{sname}/stop?force=true"),
            &t,
        )
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
    let task = migrate_and_wait(&s, &sname, json!({"host": "h2"}), &t).await;
    assert_eq!(task["status"], "finished", "{task}");
    let report = &task["result"];
    assert_eq!(
        report["kind"], "move",
        "a stopped VM is copied, not live: {report}"
    );
    assert_eq!(report["instance"]["host"], "h2", "{report}");
    assert_eq!(report["instance"]["id"], sid.as_str(), "{report}");
    assert_eq!(report["instance"]["state"], "stopped", "{report}");
    assert!(
        report["transferredBytes"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    eprintln!(
        "stopped VM move: {} ms, {} bytes",
        report["elapsedMs"], report["transferredBytes"]
    );
    let h2_uri = h2.get("LIBGO_HOST2_LIBVIRT");
    assert!(virsh(h2_uri, &["domstate", &sname]).contains("shut off"));
    assert!(virsh("qemu:///system", &["domstate", &sname]).contains("failed to get domain"));
    let there = virsh(h2_uri, &["vol-list", "default"]);
    let here = virsh("qemu:///system", &["vol-list", "default"]);
    assert!(there.contains(&format!("{sname}-disk0")), "{there}");
    assert!(there.contains(&base), "the base went along: {there}");
    assert!(
        !here.contains(&format!("{sname}-disk")),
        "disks left behind: {here}"
    );
    assert!(here.contains(&base), "the base stays here: {here}");
    json_of(
        s.req(
            Method::POST,
            &format!("/api/v1/instances/{sname}/start"),
            &t,
        )
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
    let r = vm_exec("dd if=/dev/vda bs=512 skip=64 count=1 2>/dev/null | head -n1".into()).await;
    assert_eq!(
        r["stdout"].as_str().map(str::trim),
        Some("stopped-vm-data"),
        "the disk's data moved: {r}"
    );
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/instances/{sname}?force=true"),
            &t,
        )
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 204);
    virsh(h2_uri, &["vol-delete", &base, "--pool", "default"]);
    virsh(
        "qemu:///system",
        &["vol-delete", &base, "--pool", "default"],
    );

    // A container with a named volume moves cold to h2, with its data.
    let mname = unique("mh-m");
    let vol = unique("mh-vol");
    json_of(
        s.req(Method::POST, "/api/v1/instances", &operator)
            .json(
                &json!({"name": mname, "kind": "container", "image": IMAGE, "host": "local",
                          "command": ["sleep", "300"],
                          "mounts": [{"kind": "volume", "source": vol, "target": "/data"}],
                          "start": true}),
            )
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    let exec = |name: String, cmd: &'static str| {
        let s = &s;
        let operator = operator.clone();
        async move {
            json_of(
                s.req(
                    Method::POST,
                    &format!("/api/v1/instances/{name}/exec"),
                    &operator,
                )
                .json(&json!({"command": ["sh", "-c", cmd]}))
                .send()
                .await
                .expect("req"),
                200,
            )
            .await
        }
    };
    let x = exec(mname.clone(), "echo moved-data > /data/f && echo written").await;
    assert_eq!(x["exitCode"], 0, "{x}");
    let task = migrate_and_wait(&s, &mname, json!({"host": "h2"}), &operator).await;
    assert_eq!(task["status"], "finished", "{task}");
    let report = &task["result"];
    assert_eq!(
        report["kind"], "move",
        "a container is moved, never live: {report}"
    );
    assert_eq!(report["instance"]["host"], "h2", "{report}");
    assert_eq!(report["instance"]["name"], mname.as_str(), "{report}");
    assert_eq!(report["instance"]["state"], "running", "{report}");
    eprintln!("container move: {} ms", report["elapsedMs"]);
    let x = exec(mname.clone(), "cat /data/f").await;
    assert_eq!(
        x["stdout"].as_str().map(str::trim),
        Some("moved-data"),
        "{x}"
    );
    let local = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .output()
        .expect("docker ps");
    assert!(
        !String::from_utf8_lossy(&local.stdout).contains(&mname),
        "source left"
    );

    // A host with instances is not forgotten unless forced.
    let r = s
        .req(Method::DELETE, "/api/v1/hosts/h2", &t)
        .send()
        .await
        .expect("req");
    assert_error(r, 409, "RESOURCE_CONFLICT").await;

    // Evacuating h2 (the VM is sent there first) brings everything back to the local
    // host, the VM live; h2 is disabled.
    let task = migrate_and_wait(&s, &vname, json!({"host": "h2"}), &t).await;
    assert_eq!(task["status"], "finished", "{task}");
    let r = s
        .req(Method::POST, "/api/v1/hosts/h2/evacuate", &t)
        .json(&json!({"action": "live-migrate"}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 202);
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let task = s.wait_task(&location, &t).await;
    assert_eq!(task["status"], "finished", "{task}");
    let items = task["result"]["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 3, "{task}");
    assert!(items.iter().all(|i| i["status"] == "moved"), "{task}");
    for name in [&cname, &mname, &vname] {
        let got = json_of(
            s.req(Method::GET, &format!("/api/v1/instances/{name}"), &t)
                .send()
                .await
                .expect("req"),
            200,
        )
        .await;
        assert_eq!(got["host"], "local", "{got}");
        assert_eq!(got["state"], "running", "{got}");
    }
    console_shows(&s.base, &id, &t, "LIBGO-GUEST-ALIVE").await;
    let x = exec(mname.clone(), "cat /data/f").await;
    assert_eq!(
        x["stdout"].as_str().map(str::trim),
        Some("moved-data"),
        "{x}"
    );
    let h = json_of(
        s.req(Method::GET, "/api/v1/hosts/h2", &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert_eq!(h["enabled"], false, "{h}");
    assert_eq!(h["instances"]["running"], 0, "{h}");

    // The migration is listed.
    let migrations = json_of(
        s.req(Method::GET, "/api/v1/migrations", &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert!(
        migrations["count"].as_u64().is_some_and(|n| n >= 2),
        "{migrations}"
    );

    s.remove_instance(&cname).await;
    s.remove_instance(&vname).await;
    s.remove_instance(&mname).await;
    let _ = Command::new("docker").args(["volume", "rm", &vol]).output();
    let r = s
        .req(Method::DELETE, "/api/v1/hosts/h2", &t)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 204);
    let r = s
        .req(Method::GET, "/api/v1/hosts/h2", &t)
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;
    s.stop().await;
}

/// Runs `host2.sh VERB NAME`.
fn host2(verb: &str, name: &str) {
    let out = Command::new("bash")
        .arg(script())
        .args([verb, name])
        .output()
        .expect("host2.sh");
    assert!(
        out.status.success(),
        "host2.sh {verb}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits (60 s at most) for the `count`th failover task to end, and answers it.
async fn failover_task(s: &common::TestServer, token: &str, count: usize) -> Value {
    let started = std::time::Instant::now();
    loop {
        let page = json_of(
            s.req(Method::GET, "/api/v1/tasks?kind=host.failover", token)
                .send()
                .await
                .expect("req"),
            200,
        )
        .await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        assert!(items.len() <= count, "more failovers than deaths: {page}");
        if items.len() == count && items.iter().all(|t| t["status"] != "running") {
            let newest = items
                .iter()
                .max_by_key(|t| t["createdAt"].as_str().unwrap_or_default().to_string())
                .cloned()
                .unwrap_or_default();
            return newest;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no failover task {count} ended: {page}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A compute pool with failover. When h2 dies with its guests, its VMs (disks on storage
/// both hosts reach) are defined again on the local host by the same id, the one that ran
/// running again and answering on its console, the stopped one stopped. When only h2's
/// libvirtd dies and its QEMU runs on, the VM is not started a second time (QEMU's image
/// lock is the fence). Once h2 answers again, the copies left there are undefined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_hosts_vms_fail_over_within_their_pool() {
    let h2 = SecondHost::start();
    let s = start(true, |c| {
        c.kvm.accelerator = "tcg".into();
        c.failover_after_secs = 3;
    })
    .await;
    let t = s.admin.clone();
    let h2uri = h2.get("LIBGO_HOST2_LIBVIRT").to_string();
    let send = |method: Method, path: String, body: Option<Value>, status: u16| {
        let s = &s;
        let t = t.clone();
        async move {
            let mut r = s.req(method, &path, &t);
            if let Some(b) = body {
                r = r.json(&b);
            }
            json_of(r.send().await.expect("req"), status).await
        }
    };

    // Pool `fo` fails over; the local host and h2 (libvirt only) are in it.
    let pool = send(
        Method::POST,
        "/api/v1/compute-pools".into(),
        Some(json!({"name": "fo", "failover": true})),
        201,
    )
    .await;
    assert_eq!(pool["failover"], true, "{pool}");
    send(
        Method::PATCH,
        "/api/v1/hosts/local".into(),
        Some(json!({"pool": "fo"})),
        200,
    )
    .await;
    send(
        Method::POST,
        "/api/v1/hosts".into(),
        Some(json!({"name": "h2", "libvirt": h2uri, "pool": "fo"})),
        201,
    )
    .await;
    // Storage both hosts reach: a storage pool of the same name and path on each.
    let shared = PathBuf::from(format!("/var/lib/libgo-hosts/{}/shared", h2.name));
    std::fs::create_dir_all(&shared).expect("shared dir");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let sp = unique("fo-shared");
    for backend in ["kvm", "h2-kvm"] {
        send(
            Method::POST,
            "/api/v1/storage-pools".into(),
            Some(json!({"name": sp, "backend": backend, "path": shared})),
            201,
        )
        .await;
    }
    // A second pool of one host on the same directory is a conflict, not an engine fault.
    let r = s
        .req(Method::POST, "/api/v1/storage-pools", &t)
        .json(&json!({"name": unique("fo-again"), "backend": "kvm", "path": shared}))
        .send()
        .await
        .expect("req");
    assert_error(r, 409, "RESOURCE_CONFLICT").await;
    let g = guest();
    let vm = |name: &str, start: bool| {
        json!({"name": name, "kind": "vm", "host": "h2", "memoryBytes": 256u64 << 20,
               "disks": [{"sizeBytes": 16u64 << 20, "pool": sp}],
               "kernelBoot": {"kernel": g.join("vmlinuz"), "initrd": g.join("initrd.img"),
                              "cmdline": "console=ttyS0 panic=-1 quiet libgo.noagent"},
               "start": start})
    };
    // By the list: a lookup of one instance on a host that does not answer is 503.
    let instance = |name: String| {
        let send = &send;
        async move {
            let page = send(
                Method::GET,
                format!("/api/v1/instances?name={name}"),
                None,
                200,
            )
            .await;
            assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
            page["items"][0].clone()
        }
    };
    let v1 = unique("fo-v");
    let made = send(
        Method::POST,
        "/api/v1/instances".into(),
        Some(vm(&v1, true)),
        201,
    )
    .await;
    assert_eq!(made["host"], "h2", "{made}");
    let id1 = made["id"].as_str().expect("id").to_string();
    console_shows(&s.base, &id1, &t, "LIBGO-GUEST-ALIVE").await;

    // Only h2's libvirtd dies; its QEMU runs on and holds the disk. Failover tries, QEMU
    // refuses the locked image, and nothing is left defined here.
    host2("libvirt-kill", &h2.name);
    let task = failover_task(&s, &t, 1).await;
    assert_eq!(task["status"], "finished", "{task}");
    assert_eq!(task["target"], "h2", "{task}");
    assert_eq!(task["createdBy"], "libgo", "{task}");
    let items = task["result"]["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(items.len(), 1, "{task}");
    assert_eq!(items[0]["status"], "failed", "{task}");
    assert!(
        items[0]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("another QEMU")),
        "{task}"
    );
    let here = virsh("qemu:///system", &["domstate", &v1]);
    assert!(
        here.contains("failed to get domain"),
        "defined here: {here}"
    );
    let got = instance(v1.clone()).await;
    assert_eq!(got["state"], "lost", "{got}");
    assert_eq!(got["host"], "h2", "{got}");
    // Back: the VM never stopped there.
    host2("libvirt-start", &h2.name);
    let back = std::time::Instant::now();
    loop {
        let got = instance(v1.clone()).await;
        if got["state"] == "running" {
            assert_eq!(got["host"], "h2", "{got}");
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(30), "{got}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    console_shows(&s.base, &id1, &t, "LIBGO-GUEST-ALIVE").await;

    // A stopped VM beside it; the host watch reads its definition within two checks.
    let v2 = unique("fo-s");
    let made = send(
        Method::POST,
        "/api/v1/instances".into(),
        Some(vm(&v2, false)),
        201,
    )
    .await;
    let id2 = made["id"].as_str().expect("id").to_string();
    tokio::time::sleep(Duration::from_secs(6)).await;

    // h2 dies with its guests: both VMs are defined here by the same ids, the running one
    // running (its console answers), the stopped one stopped.
    host2("crash", &h2.name);
    let crashed = std::time::Instant::now();
    let task = failover_task(&s, &t, 2).await;
    eprintln!(
        "failover: the task ended {} ms after the crash (failover_after_secs = 3); it ran from {} to {}",
        crashed.elapsed().as_millis(),
        task["createdAt"],
        task["finishedAt"]
    );
    assert_eq!(task["status"], "finished", "{task}");
    let items = task["result"]["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(items.len(), 2, "{task}");
    assert!(items.iter().all(|i| i["status"] == "moved"), "{task}");
    for (name, id, state) in [(&v1, &id1, "running"), (&v2, &id2, "stopped")] {
        let got = instance(name.clone()).await;
        assert_eq!(got["host"], "local", "{got}");
        assert_eq!(got["id"], id.as_str(), "the id stays: {got}");
        assert_eq!(got["state"], state, "{got}");
    }
    let here = virsh("qemu:///system", &["domstate", &v1]);
    assert!(here.contains("running"), "{here}");
    console_shows(&s.base, &id1, &t, "LIBGO-GUEST-ALIVE").await;

    // h2 answers again: the copies left there are undefined, their disks (which the VMs
    // use here) kept, and each VM is listed once.
    host2("libvirt-start", &h2.name);
    let back = std::time::Instant::now();
    loop {
        let there = virsh(&h2uri, &["list", "--all", "--name"]);
        if !there.contains(&v1) && !there.contains(&v2) && !there.contains("error") {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "left on h2: {there}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for name in [&v1, &v2] {
        let got = instance(name.clone()).await;
        assert_eq!(got["host"], "local", "{got}");
        let disk = shared.join(format!("{name}-disk0.qcow2"));
        assert!(disk.exists(), "{} gone", disk.display());
    }
    let got = instance(v1.clone()).await;
    assert_eq!(got["state"], "running", "{got}");

    s.remove_instance(&v1).await;
    s.remove_instance(&v2).await;
    for backend in ["kvm", "h2-kvm"] {
        let r = s
            .req(
                Method::DELETE,
                &format!("/api/v1/storage-pools/{sp}?backend={backend}"),
                &t,
            )
            .send()
            .await
            .expect("req");
        assert_eq!(r.status().as_u16(), 204, "{backend}");
    }
    s.stop().await;
}
