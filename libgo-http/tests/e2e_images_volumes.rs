//! End to end over HTTP against the real engines: image build (context tar in the body),
//! image save as a task, VM volume upload (admin only), and VNC over a WebSocket.

mod common;

use std::time::Duration;

use common::{assert_error, start, unique};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const IMAGE: &str = "libgo-test/busybox:latest";

async fn ok_json(r: reqwest::Response, status: u16) -> Value {
    let code = r.status().as_u16();
    let url = r.url().to_string();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(code, status, "{url}: {body}");
    body
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location header")
        .to_string()
}

/// `reference` for a path segment.
fn enc(reference: &str) -> String {
    reference.replace('/', "%2F").replace(':', "%3A")
}

/// A build context: a Dockerfile and one file, as a tar made by the system's `tar`.
fn context_tar(marker: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nCOPY hello.txt /hello.txt\nLABEL libgo.test=\"{marker}\"\n"),
    )
    .expect("Dockerfile");
    std::fs::write(dir.path().join("hello.txt"), marker).expect("file");
    let out = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .args(["-cf", "-", "Dockerfile", "hello.txt"])
        .output()
        .expect("tar runs");
    assert!(out.status.success(), "tar: {:?}", out);
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_build_and_save_as_tasks() {
    let s = start(true, |_| {}).await;
    s.wait_for_backends(&["docker"]).await;
    let t = s.admin.clone();
    let (operator_name, operator) = s.user("operator").await;
    let (_, viewer) = s.user("viewer").await;
    let tag = unique("lgh-build");
    let reference = format!("libgo-test/{tag}:1");

    // Build: the body is the context tar; 202 + Location; the task's result is the image.
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/images/build?tags={reference}&backend=docker"),
            &operator,
        )
        .header("content-type", "application/x-tar")
        .body(context_tar(&tag))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let task = s.wait_task(&location(&r), &operator).await;
    assert_eq!(task["status"], "finished", "{task}");
    assert_eq!(task["kind"], "image.build", "{task}");
    let tags = task["result"]["tags"].as_array().expect("tags");
    assert!(tags.iter().any(|t| t == &json!(reference)), "{task}");
    let image = ok_json(
        s.req(
            Method::GET,
            &format!("/api/v1/images/{}", enc(&reference)),
            &viewer,
        )
        .send()
        .await
        .expect("req"),
        200,
    )
    .await;
    assert_eq!(image["labels"]["libgo.test"], json!(tag), "{image}");
    // The image records who built it, as instances, networks and volumes do.
    assert_eq!(
        image["labels"]["io.libgo.owner"],
        json!(operator_name),
        "{image}"
    );
    // An empty context is refused in the error shape; a broken Dockerfile fails the task.
    let r = s
        .req(Method::POST, "/api/v1/images/build?tags=x:1", &operator)
        .header("content-type", "application/x-tar")
        .send()
        .await
        .expect("req");
    assert_error(r, 400, "INVALID_INPUT").await;
    // Build arguments are a JSON object of strings, refused otherwise before the body.
    let r = s
        .req(
            Method::POST,
            "/api/v1/images/build?tags=x:1&buildArgs=%5B1%5D",
            &operator,
        )
        .header("content-type", "application/x-tar")
        .body(vec![0u8; 1024])
        .send()
        .await
        .expect("req");
    let e = assert_error(r, 400, "INVALID_INPUT").await;
    assert_eq!(e["field"], "buildArgs", "{e}");

    // Save: a tar under the data dir, readable from the finished task.
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/images/{}/save", enc(&reference)),
            &operator,
        )
        .json(&json!({}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = location(&r);
    let task = s.wait_task(&loc, &operator).await;
    assert_eq!(task["status"], "finished", "{task}");
    assert_eq!(task["kind"], "image.save", "{task}");
    assert_eq!(task["result"]["format"], "imagetar", "{task}");
    let path = std::path::PathBuf::from(task["result"]["path"].as_str().expect("path"));
    assert!(
        path.starts_with(s.data_dir.join("exports")),
        "{} is under the data dir",
        path.display()
    );
    let size = std::fs::metadata(&path).expect("saved file").len();
    assert_eq!(task["result"]["sizeBytes"], json!(size), "{task}");
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&path)
        .output()
        .expect("tar runs");
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(
        names.contains("manifest.json"),
        "a docker save tar: {names}"
    );
    // The task stays readable after it ended, by its owner; other users do not see it.
    let again = ok_json(
        s.req(Method::GET, &loc, &operator)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    let r = s.req(Method::GET, &loc, &viewer).send().await.expect("req");
    assert_error(r, 404, "NOT_FOUND").await;
    assert_eq!(again["result"]["path"], task["result"]["path"]);
    std::fs::remove_file(&path).expect("remove saved tar");

    // Choosing the destination is for administrators; a viewer may not save at all.
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/images/{}/save", enc(&reference)),
            &operator,
        )
        .json(&json!({"destination": "/tmp/x.tar"}))
        .send()
        .await
        .expect("req");
    assert_error(r, 403, "FORBIDDEN").await;
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/images/{}/save", enc(&reference)),
            &viewer,
        )
        .json(&json!({}))
        .send()
        .await
        .expect("req");
    assert_error(r, 403, "FORBIDDEN").await;
    let dest = s.data_dir.join(format!("{tag}-admin.tar"));
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/images/{}/save", enc(&reference)),
            &t,
        )
        .json(&json!({"destination": dest}))
        .send()
        .await
        .expect("req");
    let task = s.wait_task(&location(&r), &t).await;
    assert_eq!(task["status"], "finished", "{task}");
    assert!(dest.is_file());
    // Unknown images are 404 before any task exists.
    let r = s
        .req(Method::POST, "/api/v1/images/no-such-image-xyz:1/save", &t)
        .json(&json!({}))
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;

    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/images/{}?force=true", enc(&reference)),
            &t,
        )
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_volume_upload_is_admin_only() {
    let s = start(true, |c| c.kvm.accelerator = "tcg".into()).await;
    s.wait_for_backends(&["kvm"]).await;
    let t = s.admin.clone();
    let (_, operator) = s.user("operator").await;
    let vol = format!("{}.raw", unique("lgh-up"));
    let v = ok_json(
        s.req(Method::POST, "/api/v1/volumes", &t)
            .json(&json!({"name": vol, "backend": "kvm", "sizeBytes": 1u64 << 20, "format": "raw"}))
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    let host_path = v["path"].as_str().expect("volume path").to_string();
    let url = format!("/api/v1/volumes/{vol}/upload?backend=kvm");

    // Operators may not: the body would overwrite a disk.
    let r = s
        .req(Method::POST, &url, &operator)
        .header("content-type", "application/octet-stream")
        .body(vec![1u8; 16])
        .send()
        .await
        .expect("req");
    assert_error(r, 403, "FORBIDDEN").await;

    // Bytes in the body: the volume holds them, and grows to fit.
    let content: Vec<u8> = (0..(3u32 << 19)).map(|i| (i % 251) as u8).collect();
    let up = ok_json(
        s.req(Method::POST, &url, &t)
            .header("content-type", "application/octet-stream")
            .body(content.clone())
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert_eq!(up["name"], json!(vol), "{up}");
    assert!(up["capacityBytes"].as_u64().expect("capacity") >= content.len() as u64);
    let on_disk = std::fs::read(&host_path).expect("volume file");
    assert_eq!(&on_disk[..content.len()], &content[..]);
    let spooled = std::fs::read_dir(s.data_dir.join("uploads"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(spooled, 0, "the spooled upload is removed");

    // Or a file on the server's host, named in JSON.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("disk.img");
    std::fs::write(&file, vec![7u8; 4096]).expect("write");
    ok_json(
        s.req(Method::POST, &url, &t)
            .json(&json!({"path": file}))
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    assert_eq!(
        &std::fs::read(&host_path).expect("volume")[..4096],
        &[7u8; 4096][..]
    );
    // Errors keep the shape: empty body, relative path, unknown volume.
    let r = s
        .req(Method::POST, &url, &t)
        .header("content-type", "application/octet-stream")
        .send()
        .await
        .expect("req");
    assert_error(r, 400, "INVALID_INPUT").await;
    let r = s
        .req(Method::POST, &url, &t)
        .json(&json!({"path": "relative/disk.img"}))
        .send()
        .await
        .expect("req");
    assert_error(r, 400, "INVALID_INPUT").await;
    let r = s
        .req(
            Method::POST,
            "/api/v1/volumes/no-such-volume.raw/upload?backend=kvm",
            &t,
        )
        .header("content-type", "application/octet-stream")
        .body(vec![0u8; 8])
        .send()
        .await
        .expect("req");
    assert_error(r, 404, "NOT_FOUND").await;

    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/volumes/{vol}?backend=kvm"),
            &t,
        )
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vnc_websocket_carries_the_rfb_banner() {
    let s = start(true, |c| c.kvm.accelerator = "tcg".into()).await;
    s.wait_for_backends(&["kvm"]).await;
    let t = s.admin.clone();
    let vname = unique("lgh-vnc");
    // A VM with a blank disk: QEMU's VNC server answers whatever the guest does.
    ok_json(
        s.req(Method::POST, "/api/v1/vms", &t)
            .json(
                &json!({"name": vname, "memoryBytes": 64u64 << 20, "cpus": 1,
                          "disks": [{"sizeBytes": 16u64 << 20}], "start": true}),
            )
            .send()
            .await
            .expect("req"),
        201,
    )
    .await;
    let got = ok_json(
        s.req(Method::GET, &format!("/api/v1/instances/{vname}"), &t)
            .send()
            .await
            .expect("req"),
        200,
    )
    .await;
    if got["state"] != "running" {
        let r = s
            .req(
                Method::POST,
                &format!("/api/v1/instances/{vname}/start"),
                &t,
            )
            .send()
            .await
            .expect("req");
        assert_eq!(r.status(), StatusCode::OK);
    }

    // As noVNC connects: subprotocol `binary`, token in the query (browsers cannot set
    // headers on a WebSocket).
    let url = format!(
        "{}/api/v1/instances/{vname}/vnc?access_token={t}",
        s.base.replace("http://", "ws://")
    );
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "binary".parse().expect("header value"),
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("binary")
    );
    let mut banner = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while banner.len() < 12 {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("RFB data in time")
        {
            Some(Ok(Message::Binary(b))) => banner.extend_from_slice(&b),
            Some(Ok(Message::Text(t))) => panic!("VNC data must be binary frames, got {t:?}"),
            Some(Ok(_)) => {}
            other => panic!("VNC stream ended: {other:?}"),
        }
    }
    let text = String::from_utf8_lossy(&banner[..12]);
    assert!(
        text.starts_with("RFB 003.00") && text.ends_with('\n'),
        "RFB version banner, got {text:?}"
    );
    let _ = ws.close(None).await;

    // Without a WebSocket upgrade it is an error in the error shape, not a stream.
    let r = s
        .req(Method::GET, &format!("/api/v1/instances/{vname}/vnc"), &t)
        .send()
        .await
        .expect("req");
    assert!(r.status().is_client_error(), "{}", r.status());
    assert!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
    );

    let r = s
        .req(
            Method::DELETE,
            &format!("/api/v1/instances/{vname}?force=true"),
            &t,
        )
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    s.stop().await;
}
