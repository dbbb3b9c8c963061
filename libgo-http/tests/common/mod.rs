//! Shared helpers: a real server on an ephemeral loopback port, and a client for it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use libgo_http::{Config, Server};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// A name unique to this run.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

pub struct TestServer {
    pub base: String,
    pub client: Client,
    pub admin: String,
    pub dir: Option<tempfile::TempDir>,
    pub data_dir: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub state: Arc<libgo_http::AppState>,
}

pub fn test_config(data_dir: &std::path::Path) -> Config {
    Config {
        data_dir: data_dir.to_path_buf(),
        admin_password: Some(libgo_http::config::Secret(ADMIN_PASSWORD.into())),
        rate_limit_per_minute: 0,
        stats_interval_secs: 0,
        reconnect_secs: 1,
        ..Config::default()
    }
}

/// Starts a server. `engines` connects Docker and libvirt and waits until both are up.
pub async fn start(engines: bool, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    start_in(Some(dir), &path, engines, tweak).await
}

pub async fn start_in(
    dir: Option<tempfile::TempDir>,
    data_dir: &std::path::Path,
    engines: bool,
    tweak: impl FnOnce(&mut Config),
) -> TestServer {
    let mut config = test_config(data_dir);
    if !engines {
        config.docker.enabled = false;
        config.kvm.enabled = false;
    }
    tweak(&mut config);
    let specs = libgo_http::backends::from_config(&config).expect("backends");
    let server = Server::new(config, Arc::new(libgo_core::LibGo::new()))
        .await
        .expect("server starts");
    let state = server.state().clone();
    server.attach_backends(specs);
    server.attach_hosts().await.expect("stored hosts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(server.serve(listener, async move {
        let _ = rx.await;
    }));
    let client = Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let mut s = TestServer {
        base,
        client,
        admin: String::new(),
        dir,
        data_dir: data_dir.to_path_buf(),
        stop: Some(tx),
        handle: Some(handle),
        state,
    };
    s.admin = s.login("admin", ADMIN_PASSWORD).await;
    if engines {
        s.wait_for_backends(&["docker", "kvm"]).await;
    }
    s
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn req(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    pub async fn login(&self, user: &str, password: &str) -> String {
        let r = self
            .client
            .post(self.url("/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .expect("login request");
        assert_eq!(r.status(), StatusCode::OK, "login of {user}");
        let v: Value = r.json().await.expect("json");
        v["token"].as_str().expect("token").to_string()
    }

    /// Creates a user with `role` and returns a token for it.
    pub async fn user(&self, role: &str) -> (String, String) {
        let name = unique(role);
        let r = self
            .req(Method::POST, "/api/v1/users", &self.admin)
            .json(&json!({"username": name, "password": "password-123", "role": role}))
            .send()
            .await
            .expect("create user");
        assert_eq!(r.status(), StatusCode::CREATED);
        let token = self.login(&name, "password-123").await;
        (name, token)
    }

    pub async fn wait_for_backends(&self, names: &[&str]) {
        for _ in 0..300 {
            let v: Value = self
                .client
                .get(self.url("/health"))
                .send()
                .await
                .expect("health")
                .json()
                .await
                .expect("json");
            let up = |n: &str| {
                v["backends"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|b| b["backend"] == n && b["up"] == true))
            };
            if names.iter().all(|n| up(n))
                && names
                    .iter()
                    .all(|n| self.state.libgo.backend_names().iter().any(|b| b == n))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("backends {names:?} did not come up");
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
        }
        self.dir.take()
    }

    /// Deletes an instance (force) as the administrator, ignoring the answer: test cleanup.
    pub async fn remove_instance(&self, name: &str) {
        let _ = self
            .req(
                Method::DELETE,
                &format!("/api/v1/instances/{name}?force=true"),
                &self.admin,
            )
            .send()
            .await;
    }

    /// Waits for a task to end and returns it.
    pub async fn wait_task(&self, location: &str, token: &str) -> Value {
        for _ in 0..60 {
            let v: Value = self
                .req(Method::GET, &format!("{location}?wait=10"), token)
                .send()
                .await
                .expect("task")
                .json()
                .await
                .expect("json");
            if v["status"] != "running" {
                return v;
            }
        }
        panic!("task {location} did not end");
    }
}

/// Asserts the error shape and returns the body.
pub async fn assert_error(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "status of {}", r.url());
    assert!(
        r.headers().contains_key("x-request-id"),
        "request id on errors"
    );
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("application/json"), "JSON error, got {ct}");
    let v: Value = r.json().await.expect("json error body");
    assert_eq!(v["status"], status, "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(
        v.as_object().is_some_and(
            |o| o.len() == 3 || (o.len() == 4 && o.get("field").is_some_and(Value::is_string))
        ),
        "exactly status, code, message and perhaps field: {v}"
    );
    v
}

/// The JSON body of a response that must have `status`.
pub async fn json_of(r: Response, status: u16) -> Value {
    let code = r.status().as_u16();
    let url = r.url().to_string();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(code, status, "{url}: {body}");
    body
}

/// A concrete path for a route template, with dummy parameter values.
pub fn concrete(route: &str) -> String {
    route
        .split('/')
        .map(|seg| match seg {
            "{action}" => "start",
            s if s.starts_with('{') => "no-such-thing",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}
