//! Per-client request limits with governor's GCRA limiter keyed by client address,
//! announced in `X-RateLimit-*` headers; past the limit, 429 with `Retry-After`.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Gcra};

use crate::error::ApiError;
use crate::state::AppState;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The request may go on.
    pub allowed: bool,
    /// Requests per minute.
    pub limit: u32,
    /// Requests the client may still make at once.
    pub remaining: u32,
    /// Seconds until the client's full allowance is back (refused: until the next request
    /// is admitted).
    pub reset_secs: u64,
}

type Keyed = Gcra<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

/// `limit` requests per minute per client address, refilled evenly (GCRA).
pub struct RateLimiter {
    limiter: Option<(Keyed, Quota)>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field(
                "per_minute",
                &self.limiter.as_ref().map(|(_, q)| q.burst_size()),
            )
            .finish()
    }
}

/// Clients remembered before idle ones are forgotten.
const MAX_TRACKED_CLIENTS: usize = 100_000;

impl RateLimiter {
    /// `limit` requests per minute; a limit of 0 admits everything.
    pub fn per_minute(limit: u32) -> Self {
        let limiter = NonZeroU32::new(limit).map(|n| {
            let quota = Quota::per_minute(n);
            (
                Gcra::keyed(quota).with_middleware::<StateInformationMiddleware>(),
                quota,
            )
        });
        RateLimiter {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// Counts a request of `client`, if it is admitted. `None` when limits are off.
    pub fn check(&self, client: IpAddr) -> Option<Decision> {
        let (limiter, quota) = self.limiter.as_ref()?;
        if limiter.len() > MAX_TRACKED_CLIENTS {
            limiter.retain_recent();
        }
        let limit = quota.burst_size().get();
        let ceil_secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        Some(match limiter.check_key(&client) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let refill = quota.replenish_interval() * (limit - remaining);
                Decision {
                    allowed: true,
                    limit,
                    remaining,
                    reset_secs: ceil_secs(refill),
                }
            }
            Err(not_until) => Decision {
                allowed: false,
                limit,
                remaining: 0,
                reset_secs: ceil_secs(not_until.wait_time_from(self.clock.now())).max(1),
            },
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
        let l = RateLimiter::per_minute(2);
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
        assert!(RateLimiter::per_minute(0).check(ip).is_none());
    }
}
