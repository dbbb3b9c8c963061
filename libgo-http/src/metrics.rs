//! Prometheus metrics: requests and latency per route, instances by kind and state, backend
//! up/down, tasks by status, and CPU and memory per instance.

use std::sync::Arc;
use std::time::Duration;

use libgo_core::InstanceFilter;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::history::StatsPoint;
use crate::state::AppState;

/// The collectors.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by method, route and status.
    pub requests: IntCounterVec,
    /// Latency by method and route.
    pub latency: HistogramVec,
    /// Instances by backend, kind and state.
    pub instances: IntGaugeVec,
    /// 1 when a backend answers.
    pub backend_up: IntGaugeVec,
    /// Tasks by status.
    pub tasks: IntGaugeVec,
    /// CPU percent per instance.
    pub instance_cpu: GaugeVec,
    /// Memory bytes per instance.
    pub instance_memory: GaugeVec,
    /// Requests refused by the rate limiter.
    pub rate_limited: IntCounter,
    /// Failed logins.
    pub login_failures: IntCounter,
    /// Requests refused for lack of valid credentials (bad logins included).
    pub unauthenticated_failures: IntCounter,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // The metric definitions below are static and valid; a failure is a programming error.
    r.unwrap_or_else(|e| panic!("invalid metric definition: {e}"))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every collector.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = must(IntCounterVec::new(
            Opts::new(
                "libgo_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["method", "route", "status"],
        ));
        let latency = must(HistogramVec::new(
            HistogramOpts::new(
                "libgo_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["method", "route"],
        ));
        let instances = must(IntGaugeVec::new(
            Opts::new("libgo_instances", "Instances by backend, kind and state"),
            &["backend", "kind", "state"],
        ));
        let backend_up = must(IntGaugeVec::new(
            Opts::new("libgo_backend_up", "1 when the backend's engine answers"),
            &["backend"],
        ));
        let tasks = must(IntGaugeVec::new(
            Opts::new("libgo_tasks", "Tasks by status"),
            &["status"],
        ));
        let instance_cpu = must(GaugeVec::new(
            Opts::new(
                "libgo_instance_cpu_percent",
                "CPU use per instance, percent of one CPU",
            ),
            &["backend", "kind", "name"],
        ));
        let instance_memory = must(GaugeVec::new(
            Opts::new("libgo_instance_memory_bytes", "Memory use per instance"),
            &["backend", "kind", "name"],
        ));
        let rate_limited = must(IntCounter::new(
            "libgo_http_rate_limited_total",
            "Requests refused by the rate limiter",
        ));
        let login_failures = must(IntCounter::new(
            "libgo_login_failures_total",
            "Failed login attempts",
        ));
        let unauthenticated_failures = must(IntCounter::new(
            "libgo_unauthenticated_failures_total",
            "Requests refused for lack of valid credentials, failed logins included",
        ));
        for c in [
            Box::new(unauthenticated_failures.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(requests.clone()),
            Box::new(latency.clone()),
            Box::new(instances.clone()),
            Box::new(backend_up.clone()),
            Box::new(tasks.clone()),
            Box::new(instance_cpu.clone()),
            Box::new(instance_memory.clone()),
            Box::new(rate_limited.clone()),
            Box::new(login_failures.clone()),
        ] {
            must(registry.register(c));
        }
        Metrics {
            registry,
            requests,
            latency,
            instances,
            backend_up,
            tasks,
            instance_cpu,
            instance_memory,
            rate_limited,
            login_failures,
            unauthenticated_failures,
        }
    }

    /// Records one request.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(seconds);
    }

    /// Refreshes the gauges that are read at scrape time from what they measure — the
    /// backends' health, the facade's instances, the stored tasks — and renders the text
    /// format.
    pub async fn render(
        &self,
        health: &[libgo_core::Health],
        libgo: &libgo_core::LibGo,
        db: &crate::db::Db,
    ) -> String {
        for h in health {
            self.backend_up
                .with_label_values(&[&h.backend])
                .set(i64::from(h.up));
        }
        let list = tokio::time::timeout(
            Duration::from_secs(5),
            libgo.list_all(&InstanceFilter::default()),
        )
        .await;
        if let Ok(Ok(list)) = list {
            self.instances.reset();
            for i in &list {
                self.instances
                    .with_label_values(&[&i.backend, i.kind.as_str(), i.state.as_str()])
                    .inc();
            }
        }
        if let Ok(counts) = db.task_counts().await {
            self.tasks.reset();
            for (status, n) in counts {
                self.tasks.with_label_values(&[&status]).set(n);
            }
        }
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Samples CPU and memory of running instances every `interval`, four at a time.
pub fn spawn_sampler(state: Arc<AppState>, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            sample(&state).await;
        }
    });
}

/// One round: every running instance's stats to `/metrics`, the stats history (per
/// instance and summed per host) and the alert rules.
async fn sample(state: &Arc<AppState>) {
    let Ok(list) = state.libgo.list_all(&InstanceFilter::default()).await else {
        return;
    };
    let by_id = state.libgo.stats_of_running(&list).await;
    state.libgo.note_traffic(&list, &by_id);
    let m = &state.metrics;
    m.instance_cpu.reset();
    m.instance_memory.reset();
    let now = crate::db::now_ms();
    let mut hosts: std::collections::HashMap<String, StatsPoint> = Default::default();
    for i in &list {
        let Some(s) = by_id.get(&i.id) else { continue };
        let labels = [i.backend.as_str(), i.kind.as_str(), i.name.as_str()];
        m.instance_cpu.with_label_values(&labels).set(s.cpu_percent);
        m.instance_memory
            .with_label_values(&labels)
            .set(s.memory_bytes as f64);
        let point = StatsPoint {
            cpu_percent: s.cpu_percent,
            memory_bytes: s.memory_bytes,
            memory_limit_bytes: s.memory_limit_bytes,
            net_rx_bytes: s.net_rx_bytes,
            net_tx_bytes: s.net_tx_bytes,
            block_read_bytes: s.block_read_bytes,
            block_write_bytes: s.block_write_bytes,
            ..Default::default()
        };
        state
            .history
            .record(&format!("instance:{}", i.id), now, point);
        let host = hosts.entry(i.host.clone()).or_default();
        host.cpu_percent += point.cpu_percent;
        host.memory_bytes += point.memory_bytes;
        host.memory_limit_bytes += point.memory_limit_bytes;
        host.net_rx_bytes += point.net_rx_bytes;
        host.net_tx_bytes += point.net_tx_bytes;
        host.block_read_bytes += point.block_read_bytes;
        host.block_write_bytes += point.block_write_bytes;
    }
    for host in host_names(state) {
        let point = hosts.remove(&host).unwrap_or_default();
        state.history.record(&format!("host:{host}"), now, point);
    }
    let known: std::collections::HashSet<String> = list
        .iter()
        .map(|i| format!("instance:{}", i.id))
        .chain(host_names(state).into_iter().map(|h| format!("host:{h}")))
        .collect();
    state.history.retain(|k| known.contains(k));
    // One replica evaluates the alert rules.
    if state.db.is_shared() {
        match crate::webhooks::lease(state, "alerts", interval_lease(state)).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the alerts lease");
                return;
            }
        }
    }
    if let Err(e) = crate::alerts::evaluate(state, &list, &by_id).await {
        tracing::warn!(error = %e, "cannot evaluate the alert rules");
    }
}

fn host_names(state: &AppState) -> Vec<String> {
    state
        .libgo
        .host_memberships()
        .into_iter()
        .map(|h| h.name)
        .collect()
}

/// The alerts lease outlives three sampling rounds.
fn interval_lease(state: &AppState) -> i64 {
    (state.config.stats_interval_secs.max(1) as i64) * 3000 + 5000
}
