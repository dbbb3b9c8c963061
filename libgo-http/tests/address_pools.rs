//! Address pools over real HTTP, on real Docker and libvirt (QEMU with TCG): two containers
//! and a test-guest VM get addresses from one pool and answer each other on them; the
//! pool's ranges are checked; exhausting it answers 409 and makes nothing; deleting frees.
//! (50 concurrent creates through two replicas are in `replicas.rs`.)

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{TestServer, assert_error, json_of, start, unique};
use reqwest::Method;
use serde_json::{Value, json};

const IMAGE: &str = "libgo-test/busybox:latest";

fn guest() -> PathBuf {
    let cache = std::env::var("LIBGO_CACHE").unwrap_or_else(|_| "/var/cache/libgo".into());
    PathBuf::from(cache).join("guest")
}

async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let r = s.req(method, path, &s.admin);
    let r = match body {
        Some(b) => r.json(&b),
        None => r,
    };
    r.send().await.expect("request")
}

async fn exec(s: &TestServer, name: &str, cmd: &str) -> Value {
    json_of(
        call(
            s,
            Method::POST,
            &format!("/api/v1/instances/{name}/exec"),
            Some(json!({"command": ["sh", "-c", cmd]})),
        )
        .await,
        200,
    )
    .await
}

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Removes what the test made even when it fails.
struct Cleanup {
    names: Vec<String>,
    pool: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", n])
                .output();
            for a in [
                &["destroy", n.as_str()][..],
                &["undefine", n.as_str(), "--remove-all-storage"],
            ] {
                let _ = std::process::Command::new("virsh")
                    .args(["-c", "qemu:///system"])
                    .args(a)
                    .output();
            }
        }
        let net = format!("libgo-ap-{}", self.pool);
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &net])
            .output();
        for a in [
            &["net-destroy", net.as_str()][..],
            &["net-undefine", net.as_str()],
        ] {
            let _ = std::process::Command::new("virsh")
                .args(["-c", "qemu:///system"])
                .args(a)
                .output();
        }
    }
}

/// Waits until the guest (asked through its agent) has `address` on eth0.
async fn guest_has(s: &TestServer, vm: &str, address: &str) {
    let started = Instant::now();
    loop {
        let r = call(
            s,
            Method::POST,
            &format!("/api/v1/instances/{vm}/exec"),
            Some(json!({"command": ["ip", "-4", "addr", "show", "eth0"]})),
        )
        .await;
        if r.status().as_u16() == 200 {
            let x: Value = r.json().await.expect("json");
            if x["stdout"]
                .as_str()
                .is_some_and(|o| o.contains(&format!("{address}/24")))
            {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the guest never got {address}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The pool with its status, as the administrator sees it.
async fn pool_status(s: &TestServer, pool: &str) -> Value {
    json_of(
        call(
            s,
            Method::GET,
            &format!("/api/v1/address-pools/{pool}"),
            None,
        )
        .await,
        200,
    )
    .await
}

/// Waits until the pool no longer lists `address` as allocated.
async fn freed(s: &TestServer, pool: &str, address: &str) {
    let started = Instant::now();
    loop {
        let status = pool_status(s, pool).await;
        if !status["allocations"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["address"] == address))
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{address} is still allocated: {status}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_and_a_vm_share_a_pool_and_answer_each_other() {
    let s = start(true, |c| {
        // Nested KVM is not on every test machine; TCG is.
        c.kvm.accelerator = "tcg".into();
        c.address_reclaim_secs = 1;
    })
    .await;
    let pool = unique("ap");
    let mut cleanup = Cleanup {
        names: vec![],
        pool: pool.clone(),
    };
    // A subnet of its own for this run (the gateway goes on a host bridge).
    let id = uuid::Uuid::new_v4();
    let net = format!("10.{}.{}", 100 + id.as_bytes()[0] % 100, id.as_bytes()[1]);
    let gw = format!("{net}.1");
    let range = |a: u8, b: u8| json!({"start": format!("{net}.{a}"), "end": format!("{net}.{b}"), "prefix": 24});

    // The pool and the checks on its ranges.
    let created = json_of(
        call(
            &s,
            Method::POST,
            "/api/v1/address-pools",
            Some(json!({"name": pool, "gateway": gw, "dns": [gw], "ranges": [range(10, 11)]})),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(created["addresses"], 2, "{created}");
    assert_eq!(created["allocated"], 0, "{created}");
    let ranges = format!("/api/v1/address-pools/{pool}/ranges");
    assert_error(
        call(&s, Method::POST, &ranges, Some(range(11, 12))).await,
        409,
        "RESOURCE_CONFLICT",
    )
    .await;
    let outside = json!({"start": "192.0.2.10", "end": "192.0.2.20", "prefix": 24});
    let e = assert_error(
        call(&s, Method::POST, &ranges, Some(outside)).await,
        400,
        "INVALID_INPUT",
    )
    .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains("leaves the gateway's subnet"),
        "{e}"
    );
    assert_error(
        call(&s, Method::POST, &ranges, Some(json!({"start": format!("{net}.20"), "end": format!("{net}.20"), "prefix": 24, "mask": 1}))).await,
        400,
        "INVALID_INPUT",
    )
    .await;
    let grown = json_of(
        call(&s, Method::POST, &ranges, Some(range(20, 20))).await,
        201,
    )
    .await;
    assert_eq!(grown["addresses"], 3, "{grown}");
    // PATCH changes the name servers only, checked like a create's.
    let path = format!("/api/v1/address-pools/{pool}");
    let patched = json_of(
        call(
            &s,
            Method::PATCH,
            &path,
            Some(json!({"dns": [gw, "192.0.2.53"]})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(patched["dns"], json!([gw, "192.0.2.53"]), "{patched}");
    for bad in [json!({"dns": ["resolver"]}), json!({"gateway": "10.0.0.1"})] {
        assert_error(
            call(&s, Method::PATCH, &path, Some(bad)).await,
            400,
            "INVALID_INPUT",
        )
        .await;
    }
    json_of(
        call(&s, Method::PATCH, &path, Some(json!({"dns": [gw]}))).await,
        200,
    )
    .await;

    // Two containers: the first free address, and a fixed one.
    let c1 = unique("apc");
    let c2 = unique("apc");
    let vm = unique("apv");
    cleanup.names.extend([c1.clone(), c2.clone(), vm.clone()]);
    let container = |name: &str, address: Option<String>| {
        let mut want = json!({"pool": pool});
        if let Some(a) = address {
            want["address"] = json!(a);
        }
        json!({"name": name, "kind": "container", "image": IMAGE, "command": ["sleep", "600"],
               "addresses": [want], "start": true})
    };
    let one = json_of(
        call(
            &s,
            Method::POST,
            "/api/v1/instances",
            Some(container(&c1, None)),
        )
        .await,
        201,
    )
    .await;
    let two = json_of(
        call(
            &s,
            Method::POST,
            "/api/v1/instances",
            Some(container(&c2, Some(format!("{net}.20")))),
        )
        .await,
        201,
    )
    .await;
    let a1 = format!("{net}.10");
    let a2 = format!("{net}.20");
    assert!(
        one["ipAddresses"]
            .as_array()
            .is_some_and(|a| a.contains(&json!(a1))),
        "{one}"
    );
    assert!(
        two["ipAddresses"]
            .as_array()
            .is_some_and(|a| a.contains(&json!(a2))),
        "{two}"
    );
    // The engine says so too, and the container was given the pool's name server.
    let inspect = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}} {{.HostConfig.Dns}}",
        &c1,
    ]);
    assert!(inspect.contains(&a1) && inspect.contains(&gw), "{inspect}");

    // A snapshot revert and a reinstall replace the container (Docker gives it a new id):
    // its address goes with it, and the reclaim rounds leave it alone.
    json_of(
        call(
            &s,
            Method::POST,
            &format!("/api/v1/instances/{c1}/snapshots"),
            Some(json!({"name": "s1"})),
        )
        .await,
        201,
    )
    .await;
    json_of(
        call(
            &s,
            Method::POST,
            &format!("/api/v1/instances/{c1}/snapshots/s1/revert"),
            None,
        )
        .await,
        200,
    )
    .await;
    let r = call(
        &s,
        Method::POST,
        &format!("/api/v1/instances/{c1}/reinstall"),
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status().as_u16(), 202);
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let task = s.wait_task(&location, &s.admin).await;
    assert_eq!(task["status"], "finished", "{task}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = json_of(
        call(&s, Method::GET, &format!("/api/v1/instances/{c1}"), None).await,
        200,
    )
    .await;
    assert_ne!(now["id"], one["id"], "Docker made a new container");
    assert!(
        now["ipAddresses"]
            .as_array()
            .is_some_and(|a| a.contains(&json!(a1))),
        "{now}"
    );
    let status = pool_status(&s, &pool).await;
    assert!(
        status["allocations"].as_array().is_some_and(|a| a
            .iter()
            .any(|x| x["address"] == json!(a1) && x["instance"] == now["id"])),
        "{status}"
    );
    let one = now;

    // Docker itself hands out no pool address: a container that joins the network without
    // one is refused.
    let joined = docker(&[
        "run",
        "--rm",
        "--network",
        &format!("libgo-ap-{pool}"),
        IMAGE,
        "true",
    ]);
    assert!(joined.contains("no available IPv4 addresses"), "{joined}");

    // A test-guest VM: its address comes by DHCP from the pool's host entry.
    let g = guest();
    let v = json_of(
        call(
            &s,
            Method::POST,
            "/api/v1/instances",
            Some(
                json!({"name": vm, "kind": "vm", "memoryBytes": 256u64 << 20,
                        "disks": [{"sizeBytes": 16u64 << 20}],
                        "kernelBoot": {"kernel": g.join("vmlinuz"), "initrd": g.join("initrd.img"),
                                       "cmdline": "console=ttyS0 panic=-1 quiet"},
                        "addresses": [{"pool": pool}], "start": true}),
            ),
        )
        .await,
        201,
    )
    .await;
    let vm_id = v["id"].as_str().expect("id").to_string();
    let a3 = format!("{net}.11");
    let status = pool_status(&s, &pool).await;
    assert_eq!(status["allocated"], 3, "{status}");
    let holders: Vec<(String, String)> = status["allocations"]
        .as_array()
        .expect("allocations")
        .iter()
        .map(|a| {
            (
                a["address"].as_str().unwrap_or("").to_string(),
                a["instance"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        holders.contains(&(a1.clone(), one["id"].as_str().unwrap_or("").to_string())),
        "{status}"
    );
    assert!(
        holders.contains(&(a2.clone(), two["id"].as_str().unwrap_or("").to_string())),
        "{status}"
    );
    assert!(holders.contains(&(a3.clone(), vm_id.clone())), "{status}");

    // The guest (through its agent) has its address and reaches both containers; they
    // reach it and each other.
    guest_has(&s, &vm, &a3).await;
    for target in [&a1, &a2] {
        let x = exec(&s, &vm, &format!("ping -c 1 -W 5 {target}")).await;
        assert_eq!(x["exitCode"], 0, "guest → {target}: {x}");
    }
    let x = exec(
        &s,
        &c1,
        &format!("ping -c 1 -W 5 {a3} && ping -c 1 -W 5 {a2}"),
    )
    .await;
    assert_eq!(x["exitCode"], 0, "container → guest and container: {x}");

    // A pool address lives on this host's bridge: moving its holder elsewhere is refused
    // before anything changes.
    json_of(
        call(
            &s,
            Method::POST,
            "/api/v1/hosts",
            Some(json!({"name": "sim", "libvirt": "test:///default"})),
        )
        .await,
        201,
    )
    .await;
    let e = assert_error(
        call(
            &s,
            Method::POST,
            &format!("/api/v1/instances/{c1}/migrate"),
            Some(json!({"host": "sim"})),
        )
        .await,
        501,
        "UNSUPPORTED",
    )
    .await;
    assert!(e["message"].as_str().unwrap_or("").contains(&pool), "{e}");
    let r = call(&s, Method::DELETE, "/api/v1/hosts/sim?force=true", None).await;
    assert_eq!(r.status().as_u16(), 204);

    // The pool is full: the next create answers 409 with the reason and makes nothing.
    let c3 = unique("apc");
    cleanup.names.push(c3.clone());
    let e = assert_error(
        call(
            &s,
            Method::POST,
            "/api/v1/instances",
            Some(container(&c3, None)),
        )
        .await,
        409,
        "RESOURCE_CONFLICT",
    )
    .await;
    assert!(
        e["message"].as_str().unwrap_or("").contains("exhausted"),
        "{e}"
    );
    assert_error(
        call(&s, Method::GET, &format!("/api/v1/instances/{c3}"), None).await,
        404,
        "NOT_FOUND",
    )
    .await;
    assert!(
        docker(&["ps", "-a", "--filter", &format!("name=^{c3}$"), "-q"])
            .trim()
            .is_empty(),
        "nothing made"
    );
    // A taken fixed address, and one outside the ranges.
    assert_error(
        call(
            &s,
            Method::POST,
            "/api/v1/instances",
            Some(container(&c3, Some(a2.clone()))),
        )
        .await,
        409,
        "RESOURCE_CONFLICT",
    )
    .await;
    assert_error(
        call(
            &s,
            Method::POST,
            "/api/v1/instances",
            Some(container(&c3, Some(format!("{net}.99")))),
        )
        .await,
        400,
        "INVALID_INPUT",
    )
    .await;
    // A create that fails in the engine frees what it took.
    let r = call(
        &s,
        Method::DELETE,
        &format!("/api/v1/instances/{c2}?force=true"),
        None,
    )
    .await;
    assert_eq!(r.status().as_u16(), 204);
    let mut bad = container(&c3, None);
    bad["networks"] = json!(["no-such-network"]);
    assert_error(
        call(&s, Method::POST, "/api/v1/instances", Some(bad)).await,
        404,
        "NOT_FOUND",
    )
    .await;
    let status = pool_status(&s, &pool).await;
    assert_eq!(status["allocated"], 2, "{status}");
    let two = json_of(
        call(
            &s,
            Method::POST,
            "/api/v1/instances",
            Some(container(&c2, Some(a2.clone()))),
        )
        .await,
        201,
    )
    .await;
    assert!(
        two["ipAddresses"]
            .as_array()
            .is_some_and(|a| a.contains(&json!(a2))),
        "{two}"
    );

    // A range that holds allocations stays; the pool too.
    assert_error(
        call(&s, Method::DELETE, &format!("{ranges}/{net}.20"), None).await,
        409,
        "RESOURCE_CONFLICT",
    )
    .await;
    assert_error(
        call(
            &s,
            Method::DELETE,
            &format!("/api/v1/address-pools/{pool}"),
            None,
        )
        .await,
        409,
        "RESOURCE_CONFLICT",
    )
    .await;

    // Deleting an instance frees its address, which the next create gets.
    let r = call(
        &s,
        Method::DELETE,
        &format!("/api/v1/instances/{c2}?force=true"),
        None,
    )
    .await;
    assert_eq!(r.status().as_u16(), 204);
    // The compute pool of the host names the address pool (Nano's `network`): a create
    // that asks for no address gets one from it, the one just freed.
    let r = call(
        &s,
        Method::PATCH,
        "/api/v1/compute-pools/default",
        Some(json!({"network": "no-such-pool"})),
    )
    .await;
    assert_error(r, 400, "INVALID_INPUT").await;
    let patched = json_of(
        call(
            &s,
            Method::PATCH,
            "/api/v1/compute-pools/default",
            Some(json!({"network": pool})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(patched["network"], json!(pool), "{patched}");
    let mut plain = container(&c3, None);
    plain.as_object_mut().expect("spec").remove("addresses");
    let three = json_of(
        call(&s, Method::POST, "/api/v1/instances", Some(plain)).await,
        201,
    )
    .await;
    json_of(
        call(
            &s,
            Method::PATCH,
            "/api/v1/compute-pools/default",
            Some(json!({"network": ""})),
        )
        .await,
        200,
    )
    .await;
    assert!(
        three["ipAddresses"]
            .as_array()
            .is_some_and(|a| a.contains(&json!(a2))),
        "{three}"
    );

    // Instances removed behind LibGo's back free their addresses within a reclaim round;
    // a new VM then gets the address of one whose DHCP entry libvirt still has.
    docker(&["rm", "-f", &c1]);
    freed(&s, &pool, &a1).await;
    for a in [
        &["destroy", vm.as_str()][..],
        &["undefine", vm.as_str(), "--remove-all-storage"],
    ] {
        std::process::Command::new("virsh")
            .args(["-c", "qemu:///system"])
            .args(a)
            .output()
            .expect("virsh");
    }
    freed(&s, &pool, &a3).await;
    let vm2 = unique("apv");
    cleanup.names.push(vm2.clone());
    json_of(
        call(
            &s,
            Method::POST,
            "/api/v1/instances",
            Some(
                json!({"name": vm2, "kind": "vm", "memoryBytes": 256u64 << 20,
                        "disks": [{"sizeBytes": 16u64 << 20}],
                        "kernelBoot": {"kernel": g.join("vmlinuz"), "initrd": g.join("initrd.img"),
                                       "cmdline": "console=ttyS0 panic=-1 quiet"},
                        "addresses": [{"pool": pool, "address": a3}], "start": true}),
            ),
        )
        .await,
        201,
    )
    .await;
    guest_has(&s, &vm2, &a3).await;

    // The VM's delete removes its DHCP host entry; the pool, once empty, goes with its networks.
    for n in [&c3, &vm2] {
        let r = call(
            &s,
            Method::DELETE,
            &format!("/api/v1/instances/{n}?force=true"),
            None,
        )
        .await;
        assert_eq!(r.status().as_u16(), 204, "delete {n}");
    }
    let netxml = std::process::Command::new("virsh")
        .args([
            "-c",
            "qemu:///system",
            "net-dumpxml",
            &format!("libgo-ap-{pool}"),
        ])
        .output()
        .expect("virsh");
    let netxml = String::from_utf8_lossy(&netxml.stdout);
    assert!(
        netxml.contains(&gw) && !netxml.contains("<host "),
        "{netxml}"
    );
    let status = pool_status(&s, &pool).await;
    assert_eq!(status["allocated"], 0, "{status}");
    let r = call(&s, Method::DELETE, &format!("{ranges}/{net}.20"), None).await;
    assert_eq!(r.status().as_u16(), 200);
    // The pool made a /25 while its engines' networks are the /24: a create says so and
    // makes nothing, rather than give an address the bridge does not route.
    let r = call(&s, Method::DELETE, &format!("{ranges}/{net}.10"), None).await;
    assert_eq!(r.status().as_u16(), 200);
    json_of(
        call(
            &s,
            Method::POST,
            &ranges,
            Some(json!({"start": format!("{net}.10"), "end": format!("{net}.11"), "prefix": 25})),
        )
        .await,
        201,
    )
    .await;
    let c4 = unique("apc");
    cleanup.names.push(c4.clone());
    let e = assert_error(
        call(
            &s,
            Method::POST,
            "/api/v1/instances",
            Some(container(&c4, None)),
        )
        .await,
        409,
        "RESOURCE_CONFLICT",
    )
    .await;
    assert!(
        e["message"].as_str().unwrap_or("").contains("now says"),
        "{e}"
    );
    assert_eq!(pool_status(&s, &pool).await["allocated"], 0);
    let r = call(
        &s,
        Method::DELETE,
        &format!("/api/v1/address-pools/{pool}"),
        None,
    )
    .await;
    assert_eq!(r.status().as_u16(), 204);
    assert!(
        docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name=^libgo-ap-{pool}$")
        ])
        .trim()
        .is_empty(),
        "the Docker network went with the pool"
    );
    assert_error(
        call(
            &s,
            Method::GET,
            &format!("/api/v1/address-pools/{pool}"),
            None,
        )
        .await,
        404,
        "NOT_FOUND",
    )
    .await;
    s.stop().await;
}
