//! Stats history: the sampler's readings of every running instance, and their sums per
//! host, kept in memory for a bounded time.
//!
//! Each series keeps every sample for `full` (default 1 h) and 5-minute averages up to
//! `keep` (default 24 h): at the default 15 s interval that is at most 240 + 288 points of
//! 64 bytes, about 34 KiB per instance, 34 MiB for 1,000 instances. A replica keeps what
//! it sampled itself: a replica started later has a shorter history.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::to_time;
use crate::error::{ApiError, ApiResult};

/// The width of a downsampled bucket.
pub const BUCKET_MS: i64 = 300_000;
/// The most points one answer holds.
pub const MAX_POINTS: i64 = 1000;

/// One reading (or the average of several).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsPoint {
    /// Start of the bucket (or the sample's time).
    pub time: DateTime<Utc>,
    /// CPU use in percent of one core (summed over a host's instances).
    pub cpu_percent: f64,
    /// Memory in use.
    pub memory_bytes: u64,
    /// Memory limit (summed over a host's instances).
    pub memory_limit_bytes: u64,
    /// Bytes received so far (a counter).
    pub net_rx_bytes: u64,
    /// Bytes sent so far (a counter).
    pub net_tx_bytes: u64,
    /// Bytes read from disk so far (a counter).
    pub block_read_bytes: u64,
    /// Bytes written to disk so far (a counter).
    pub block_write_bytes: u64,
    /// How many samples the point averages.
    pub samples: u32,
}

/// What `…/stats/history` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsHistoryAnswer {
    /// Start of the range.
    pub from: DateTime<Utc>,
    /// End of the range.
    pub to: DateTime<Utc>,
    /// Width of each point's bucket, in seconds.
    pub step: u64,
    /// Buckets that hold samples, oldest first.
    pub points: Vec<StatsPoint>,
}

/// `?from=&to=&step=`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Start (RFC 3339); default one hour before `to` (less if `step` makes that more than
    /// 1,000 points).
    pub from: Option<DateTime<Utc>>,
    /// End (RFC 3339); default now.
    pub to: Option<DateTime<Utc>>,
    /// Seconds per point; default the range over 300, at least the sampling interval.
    pub step: Option<u64>,
}

#[derive(Debug, Default)]
struct Series {
    /// Every sample, for `full`.
    recent: VecDeque<(i64, StatsPoint)>,
    /// 5-minute averages, up to `keep`.
    older: VecDeque<(i64, StatsPoint)>,
}

/// Adds `p` into the running average `acc` (of `acc.samples` points).
fn fold(acc: &mut StatsPoint, p: &StatsPoint) {
    let n = f64::from(acc.samples);
    let m = f64::from(p.samples.max(1));
    let avg = |a: u64, b: u64| ((a as f64 * n + b as f64 * m) / (n + m)) as u64;
    acc.cpu_percent = (acc.cpu_percent * n + p.cpu_percent * m) / (n + m);
    acc.memory_bytes = avg(acc.memory_bytes, p.memory_bytes);
    acc.memory_limit_bytes = avg(acc.memory_limit_bytes, p.memory_limit_bytes);
    // Counters: the latest value is the bucket's.
    acc.net_rx_bytes = acc.net_rx_bytes.max(p.net_rx_bytes);
    acc.net_tx_bytes = acc.net_tx_bytes.max(p.net_tx_bytes);
    acc.block_read_bytes = acc.block_read_bytes.max(p.block_read_bytes);
    acc.block_write_bytes = acc.block_write_bytes.max(p.block_write_bytes);
    acc.samples = acc.samples.saturating_add(p.samples.max(1));
}

/// The samples of every instance and host.
#[derive(Debug)]
pub struct StatsHistory {
    series: Mutex<HashMap<String, Series>>,
    full_ms: i64,
    keep_ms: i64,
}

impl StatsHistory {
    /// Keeps every sample for `full` and 5-minute averages for `keep`.
    pub fn new(full: Duration, keep: Duration) -> Self {
        StatsHistory {
            series: Mutex::new(HashMap::new()),
            full_ms: full.as_millis().min(i64::MAX as u128) as i64,
            keep_ms: keep.as_millis().min(i64::MAX as u128) as i64,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Series>> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `point` under `key` (`instance:<id>`, `host:<name>`) at `now_ms`.
    pub fn record(&self, key: &str, now_ms: i64, mut point: StatsPoint) {
        point.samples = 1;
        point.time = to_time(now_ms);
        let mut all = self.lock();
        let s = all.entry(key.to_string()).or_default();
        s.recent.push_back((now_ms, point));
        while let Some((t, p)) = s.recent.front().copied() {
            if t > now_ms - self.full_ms {
                break;
            }
            s.recent.pop_front();
            let bucket = t - t.rem_euclid(BUCKET_MS);
            match s.older.back_mut() {
                Some((b, acc)) if *b == bucket => fold(acc, &p),
                _ => {
                    let mut acc = p;
                    acc.time = to_time(bucket);
                    s.older.push_back((bucket, acc));
                }
            }
        }
        while s
            .older
            .front()
            .is_some_and(|(t, _)| *t < now_ms - self.keep_ms)
        {
            s.older.pop_front();
        }
    }

    /// Forgets every series whose key `keep` refuses (deleted instances, removed hosts).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.lock().retain(|k, _| keep(k));
    }

    /// The points of `key` in `[from, to)`, averaged per `step_ms`.
    pub fn query(&self, key: &str, from_ms: i64, to_ms: i64, step_ms: i64) -> Vec<StatsPoint> {
        let all = self.lock();
        let Some(s) = all.get(key) else {
            return Vec::new();
        };
        let mut out: Vec<(i64, StatsPoint)> = Vec::new();
        for (t, p) in s.older.iter().chain(s.recent.iter()) {
            if *t < from_ms || *t >= to_ms {
                continue;
            }
            let bucket = from_ms + (t - from_ms) / step_ms * step_ms;
            match out.last_mut() {
                Some((b, acc)) if *b == bucket => fold(acc, p),
                _ => {
                    let mut acc = *p;
                    acc.time = to_time(bucket);
                    out.push((bucket, acc));
                }
            }
        }
        out.into_iter().map(|(_, p)| p).collect()
    }

    /// Points (and bytes) held, for the memory statement in `/metrics`.
    pub fn points(&self) -> usize {
        self.lock()
            .values()
            .map(|s| s.recent.len() + s.older.len())
            .sum()
    }

    /// Answers a history query for `key`, checking its range and step.
    pub fn answer(
        &self,
        key: &str,
        q: &HistoryQuery,
        interval: Duration,
    ) -> ApiResult<StatsHistoryAnswer> {
        let to = q.to.unwrap_or_else(Utc::now);
        // Without `from`: the last hour, or as much of it as `step` allows.
        let from = q.from.unwrap_or_else(|| {
            let most = q
                .step
                .map_or(3_600, |s| s.saturating_mul(MAX_POINTS as u64).min(3_600));
            to - chrono::Duration::seconds(most as i64)
        });
        if from >= to {
            return Err(ApiError::invalid("`from` must be before `to`"));
        }
        let range_ms = (to - from).num_milliseconds();
        let interval_s = interval.as_secs().max(1);
        let step = match q.step {
            Some(0) => return Err(ApiError::invalid("`step` must be at least 1 second")),
            Some(s) => s,
            None => ((range_ms / 1000) as u64).div_ceil(300).max(interval_s),
        };
        let step_ms = step.saturating_mul(1000).min(i64::MAX as u64) as i64;
        if range_ms / step_ms > MAX_POINTS {
            return Err(ApiError::invalid(format!(
                "a step of {step} s makes more than {MAX_POINTS} points over this range: \
                 use a larger step or a shorter range"
            )));
        }
        Ok(StatsHistoryAnswer {
            from,
            to,
            step,
            points: self.query(key, from.timestamp_millis(), to.timestamp_millis(), step_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(c: f64) -> StatsPoint {
        StatsPoint {
            cpu_percent: c,
            ..Default::default()
        }
    }

    #[test]
    fn old_samples_become_five_minute_averages_and_expire() {
        let h = StatsHistory::new(Duration::from_secs(600), Duration::from_secs(3600));
        let start = 1_000 * BUCKET_MS;
        for i in 0..240 {
            // One sample every 15 s for an hour: 10 at first, 30 later.
            let c = if i < 120 { 10.0 } else { 30.0 };
            h.record("i", start + i * 15_000, cpu(c));
        }
        let now = start + 239 * 15_000;
        let all = h.query("i", start - 1, now + 1, 1000);
        // 10 minutes of samples (40) and the 50 minutes before as 5-minute buckets.
        let recent = all.iter().filter(|p| p.samples == 1).count();
        let buckets: Vec<_> = all.iter().filter(|p| p.samples > 1).collect();
        assert_eq!(recent, 40);
        assert_eq!(buckets.len(), 10);
        assert!(buckets.iter().all(|p| p.samples == 20));
        assert!((buckets[0].cpu_percent - 10.0).abs() < 1e-9);
        assert!((buckets[9].cpu_percent - 30.0).abs() < 1e-9);
        // Two hours on, everything is older than `keep`.
        h.record("i", now + 2 * 3_600_000, cpu(1.0));
        assert_eq!(h.points(), 1);
    }

    #[test]
    fn a_query_averages_per_step() {
        let h = StatsHistory::new(Duration::from_secs(3600), Duration::from_secs(7200));
        for i in 0..6 {
            h.record("i", i * 10_000, cpu(i as f64));
        }
        let p = h.query("i", 0, 60_000, 30_000);
        assert_eq!(p.len(), 2);
        assert!((p[0].cpu_percent - 1.0).abs() < 1e-9 && p[0].samples == 3);
        assert!((p[1].cpu_percent - 4.0).abs() < 1e-9);
        assert!(h.query("other", 0, 60_000, 30_000).is_empty());
    }
}
