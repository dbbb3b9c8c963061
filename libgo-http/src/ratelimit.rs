//! Per-client request limits: a fixed window per client address, announced in
//! `X-RateLimit-*` headers; past the limit, 429 with `Retry-After`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The request may go on.
    pub allowed: bool,
    /// Requests per window.
    pub limit: u32,
    /// Requests left in this window.
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset_secs: u64,
}

/// Counts requests per client address in fixed windows.
#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    clients: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    /// `limit` requests per `window`; a limit of 0 admits everything.
    pub fn new(limit: u32, window: Duration) -> Self {
        RateLimiter {
            limit,
            window,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request of `client`, if it is admitted. `None` when limits are off.
    pub fn check(&self, client: IpAddr) -> Option<Decision> {
        if self.limit == 0 {
            return None;
        }
        let now = Instant::now();
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = map.entry(client).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        let reset_secs = self
            .window
            .saturating_sub(now.duration_since(entry.0))
            .as_secs()
            .max(1);
        let allowed = entry.1 < self.limit;
        if allowed {
            entry.1 += 1;
        }
        Some(Decision {
            allowed,
            limit: self.limit,
            remaining: self.limit - entry.1,
            reset_secs,
        })
    }
}

fn set_headers(resp: &mut Response, d: Decision) {
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(d.reset_secs));
}

/// The client address of a request (the peer; 0.0.0.0 when unknown).
pub fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Middleware applying the limiter (not to `/health`).
pub async fn limit(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let Some(d) = state.rate_limiter.check(client_ip(&req)) else {
        return next.run(req).await;
    };
    let mut resp = if d.allowed {
        next.run(req).await
    } else {
        state.metrics.rate_limited.inc();
        ApiError::rate_limited(
            format!(
                "rate limit of {} requests per minute exceeded; retry in {} s",
                d.limit, d.reset_secs
            ),
            d.reset_secs,
        )
        .into_response()
    };
    set_headers(&mut resp, d);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_down_and_refuses() {
        let l = RateLimiter::new(2, Duration::from_secs(60));
        let ip = IpAddr::from([10, 0, 0, 1]);
        let a = l.check(ip).expect("on");
        assert!(a.allowed);
        assert_eq!(a.remaining, 1);
        assert!(l.check(ip).expect("on").allowed);
        let c = l.check(ip).expect("on");
        assert!(!c.allowed);
        assert_eq!(c.remaining, 0);
        assert!(c.reset_secs >= 1);
        assert!(l.check(IpAddr::from([10, 0, 0, 2])).expect("on").allowed);
        assert!(
            RateLimiter::new(0, Duration::from_secs(1))
                .check(ip)
                .is_none()
        );
    }
}
