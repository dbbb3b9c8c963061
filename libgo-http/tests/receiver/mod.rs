//! A webhook receiver on loopback for the tests: it records every request and answers as
//! told.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The secret the tests give their webhooks.
pub const SECRET: &str = "a-webhook-secret-for-tests";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: String,
    pub delivery: String,
    pub signature: String,
    pub body: String,
    pub answered: u16,
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// 500 to a delivery's first attempt, 200 to the next ones.
    FailFirst,
    /// 503 to everything.
    Down,
    /// 200 to everything.
    Up,
}

#[derive(Clone)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<Received>>>,
    pub mode: Arc<Mutex<Mode>>,
    pub url: String,
}

impl Receiver {
    pub async fn start(mode: Mode) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let mode = Arc::new(Mutex::new(mode));
        let (g, m) = (got.clone(), mode.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (got, mode) = (g.clone(), m.clone());
                async move {
                    let header = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let delivery = header("x-libgo-delivery");
                    let mut got = got.lock().unwrap();
                    let seen = got.iter().any(|r| r.delivery == delivery);
                    let answered = match *mode.lock().unwrap() {
                        Mode::Down => 503,
                        Mode::FailFirst if !seen => 500,
                        _ => 200,
                    };
                    got.push(Received {
                        event: header("x-libgo-event"),
                        delivery,
                        signature: header("x-libgo-signature"),
                        body,
                        answered,
                    });
                    StatusCode::from_u16(answered).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { got, mode, url }
    }

    pub fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Waits until `done` holds for what was received.
    pub async fn until(&self, secs: u64, what: &str, done: impl Fn(&[Received]) -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if done(&self.all()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what}: the receiver got {:#?}", self.all());
    }
}

/// Whether a delivery is about instance `id` (other tests' containers share the engine).
pub fn about(r: &Received, id: &Value) -> bool {
    serde_json::from_str::<Value>(&r.body).is_ok_and(|b| b["data"]["event"]["instanceId"] == *id)
}

pub fn sign(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
