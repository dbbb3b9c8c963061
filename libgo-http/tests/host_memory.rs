//! A host's memory is a boundary: a VM the host cannot hold beside what its running
//! instances reserve is refused with 409, also on a server with one host (where nothing is
//! placed), so no caller can run the machine out of memory by starting VMs. Its own test
//! binary: it runs a VM holding half the machine's memory, which would refuse the VMs of
//! tests running beside it.

mod common;

use common::{assert_error, json_of, start, unique};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn vms_the_host_cannot_hold_are_refused() {
    let s = start(true, |_| {}).await;
    let (_, op) = s.user("operator").await;
    let host = json_of(
        s.req(Method::GET, "/api/v1/hosts/local", &s.admin)
            .send()
            .await
            .expect("host"),
        200,
    )
    .await;
    let capacity = host["capacity"]["memoryBytes"].as_u64().expect("capacity");
    // Each fits alone (libvirt itself takes a guest up to the host's size); two do not.
    let half = (capacity * 11 / 20) >> 20 << 20;
    let (a, b) = (unique("mem-a"), unique("mem-b"));
    let create = |name: &str, start: bool| {
        s.req(Method::POST, "/api/v1/instances", &op)
            .json(&json!({"name": name, "kind": "vm", "memoryBytes": half, "start": start}))
    };
    let action = |name: &str, verb: &str| {
        s.req(
            Method::POST,
            &format!("/api/v1/instances/{name}/{verb}"),
            &op,
        )
    };
    let state = |name: String| {
        let s = &s;
        async move {
            let v = json_of(
                s.req(Method::GET, &format!("/api/v1/instances/{name}"), &s.admin)
                    .send()
                    .await
                    .expect("get"),
                200,
            )
            .await;
            v["state"].as_str().unwrap_or_default().to_string()
        }
    };

    json_of(create(&a, true).send().await.expect("create a"), 201).await;
    assert_eq!(state(a.clone()).await, "running");
    // Created running: refused before anything is made.
    let e = assert_error(
        create(&b, true).send().await.expect("create b"),
        409,
        "RESOURCE_CONFLICT",
    )
    .await;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("host \"local\"")),
        "{e}"
    );
    let r = s
        .req(Method::GET, &format!("/api/v1/instances/{b}"), &s.admin)
        .send()
        .await
        .expect("get b");
    assert_eq!(r.status(), 404, "nothing of the refused VM is left");
    // Defined, it takes no memory; started, it is refused while a runs.
    json_of(create(&b, false).send().await.expect("define b"), 201).await;
    assert_error(
        action(&b, "start").send().await.expect("start b"),
        409,
        "RESOURCE_CONFLICT",
    )
    .await;
    assert_eq!(state(b.clone()).await, "stopped");
    // Once a stops, b has room.
    let r = s
        .req(Method::POST, &format!("/api/v1/instances/{a}/stop"), &op)
        .json(&json!({"force": true}))
        .send()
        .await
        .expect("stop a");
    assert!(r.status().is_success(), "{}", r.status());
    let r = action(&b, "start").send().await.expect("start b");
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(state(b.clone()).await, "running");
    s.remove_instance(&a).await;
    s.remove_instance(&b).await;
}
