//! When each part of a VM's serial log appeared: a small index next to the log, so that
//! `logs` can answer `since`/`until` and give lines a time (a serial console has none).
//!
//! While a VM runs, one thread per process (`libgo-serial-index`) looks at the size of its
//! serial log every [`POLL`] and, when the log grew, appends a record to
//! `<log>.libgo-idx`: "the bytes up to offset `end` were written after `lo` and at or
//! before `hi`" (24 bytes: `lo` and `hi` in Unix milliseconds, `end`; little endian). The
//! thread learns of running VMs from libvirt's start/stop events and, at connect, from the
//! list of active domains. One process keeps a log's index at a time (an exclusive
//! `flock` on the index); another takes over within a second when it goes away.
//!
//! Accuracy: a line's time is when its newline arrived; while a LibGo process watches, it
//! is known to within one poll (`hi - lo` ≤ about 250 ms) and [`LogEntry::timestamp`] is
//! `hi`. `logs` indexes what has arrived before it reads, so the newest lines are exact
//! too. Bytes written while no LibGo process watched (the VM ran before LibGo started, or
//! between two LibGo processes) are only known to lie between the last time someone looked
//! and the next: their lines get no timestamp, and `since`/`until` keep a line whenever its
//! possible times overlap the asked range — LibGo answers with what it knows rather than
//! refusing, and drops nothing that may belong to the range. A log without any index (e.g.
//! on a host where LibGo never watched the VM) is thus returned whole for any range, every
//! line without a timestamp.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::conn::Inner;

/// How often a running VM's log size is checked.
pub(crate) const POLL: Duration = Duration::from_millis(250);

/// An interval at most this wide gives a line a timestamp.
const EXACT_MS: i64 = 1000;

const RECORD: usize = 24;

/// Unknown lower bound (nobody looked before).
const UNKNOWN: i64 = i64::MIN;

/// One index record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub lo_ms: i64,
    pub hi_ms: i64,
    pub end: u64,
}

impl Chunk {
    fn encode(&self) -> [u8; RECORD] {
        let mut b = [0u8; RECORD];
        b[..8].copy_from_slice(&self.lo_ms.to_le_bytes());
        b[8..16].copy_from_slice(&self.hi_ms.to_le_bytes());
        b[16..].copy_from_slice(&self.end.to_le_bytes());
        b
    }
}

/// The index's path for a log.
pub(crate) fn index_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".libgo-idx");
    PathBuf::from(p)
}

/// Records of an index, in order; a torn last record and records that do not advance are
/// skipped.
pub(crate) fn parse_index(bytes: &[u8]) -> Vec<Chunk> {
    let mut out: Vec<Chunk> = Vec::with_capacity(bytes.len() / RECORD);
    for r in bytes.chunks_exact(RECORD) {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&r[i..i + 8]);
            w
        };
        let c = Chunk {
            lo_ms: i64::from_le_bytes(word(0)),
            hi_ms: i64::from_le_bytes(word(8)),
            end: u64::from_le_bytes(word(16)),
        };
        if out.last().is_none_or(|p| c.end > p.end) {
            out.push(c);
        }
    }
    out
}

fn read_index(log: &Path) -> Vec<Chunk> {
    std::fs::read(index_path(log))
        .map(|b| parse_index(&b))
        .unwrap_or_default()
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A log this process watches.
struct Watch {
    /// The index, open and locked by this process; `None` while another process holds it.
    index: Option<File>,
    /// Log size at the last look, and when that was.
    end: u64,
    seen_ms: i64,
    /// Ticks until the next try to take the lock.
    retry_in: u32,
    /// When the watch began, if the log did not exist then (all its bytes came later).
    empty_since: Option<i64>,
}

fn try_lock(f: &File) -> bool {
    // SAFETY: flock on a descriptor we own; it is released when the file is closed.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

impl Watch {
    fn new(log: &Path) -> Self {
        Watch {
            index: None,
            end: 0,
            seen_ms: UNKNOWN,
            retry_in: 0,
            empty_since: (!log.exists()).then(now_ms),
        }
    }

    /// Takes the index over when no other process keeps it.
    fn acquire(&mut self, log: &Path) -> std::io::Result<bool> {
        if self.index.is_some() {
            return Ok(true);
        }
        if self.retry_in > 0 {
            self.retry_in -= 1;
            return Ok(false);
        }
        if !log.exists() {
            return Ok(false);
        }
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(index_path(log))?;
        if !try_lock(&f) {
            self.retry_in = 3;
            return Ok(false);
        }
        let mut bytes = Vec::new();
        f.seek(SeekFrom::Start(0))?;
        f.read_to_end(&mut bytes)?;
        // A torn record from a process that died mid-write: cut it off.
        let whole = bytes.len() - bytes.len() % RECORD;
        if whole != bytes.len() {
            f.set_len(whole as u64)?;
        }
        let last = parse_index(&bytes[..whole]).last().copied();
        self.end = last.map_or(0, |c| c.end);
        self.seen_ms = match last {
            Some(c) => c.hi_ms,
            None => self.empty_since.unwrap_or(UNKNOWN),
        };
        self.index = Some(f);
        Ok(true)
    }

    /// Looks at the log once; appends a record when it grew.
    fn poll(&mut self, log: &Path) -> std::io::Result<()> {
        if !self.acquire(log)? {
            return Ok(());
        }
        let Some(f) = self.index.as_mut() else {
            return Ok(());
        };
        let size = match std::fs::metadata(log) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let now = now_ms();
        if size < self.end {
            // The log was truncated or replaced: its old index means nothing now.
            f.set_len(0)?;
            self.end = 0;
            self.seen_ms = UNKNOWN;
        }
        if size > self.end {
            let c = Chunk {
                lo_ms: self.seen_ms,
                hi_ms: now,
                end: size,
            };
            f.write_all(&c.encode())?;
            self.end = size;
        }
        self.seen_ms = now;
        Ok(())
    }
}

enum Msg {
    /// A domain of this backend started: watch its log.
    Started(Weak<Inner>, String),
    /// A domain stopped: index what it wrote last, then stop watching.
    Stopped(String),
    /// Watch this log (from the scan at connect).
    Path(String, PathBuf),
}

struct Registry {
    watches: HashMap<PathBuf, Watch>,
    by_uuid: HashMap<String, PathBuf>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| {
        Mutex::new(Registry {
            watches: HashMap::new(),
            by_uuid: HashMap::new(),
        })
    })
}

fn sender() -> Option<&'static Mutex<mpsc::Sender<Msg>>> {
    static S: OnceLock<Option<Mutex<mpsc::Sender<Msg>>>> = OnceLock::new();
    S.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        match std::thread::Builder::new()
            .name("libgo-serial-index".into())
            .spawn(move || run(rx))
        {
            Ok(_) => Some(Mutex::new(tx)),
            Err(e) => {
                tracing::warn!(error = %e, "could not start the serial log indexer");
                None
            }
        }
    })
    .as_ref()
}

fn send(m: Msg) {
    if let Some(tx) = sender()
        && let Ok(tx) = tx.lock()
    {
        let _ = tx.send(m);
    }
}

/// A domain started (called from libvirt's event loop: only queues).
pub(crate) fn started(inner: Weak<Inner>, uuid: &str) {
    send(Msg::Started(inner, uuid.to_string()));
}

/// A domain stopped or went away (called from libvirt's event loop: only queues).
pub(crate) fn stopped(uuid: &str) {
    send(Msg::Stopped(uuid.to_string()));
}

/// Watch a running domain's log (from the scan at connect).
pub(crate) fn watch(uuid: &str, log: PathBuf) {
    send(Msg::Path(uuid.to_string(), log));
}

fn add(uuid: String, log: PathBuf) {
    if let Ok(mut r) = registry().lock() {
        if !r.watches.contains_key(&log) {
            let mut w = Watch::new(&log);
            // Index what is there at once: the boot's first lines get a narrow time.
            if let Err(e) = w.poll(&log) {
                tracing::debug!(error = %e, "serial log index not updated");
            }
            r.watches.insert(log.clone(), w);
        }
        r.by_uuid.insert(uuid, log);
    }
}

fn run(rx: mpsc::Receiver<Msg>) {
    let mut last_tick = std::time::Instant::now();
    loop {
        // Logs are looked at every POLL however busy the queue is: with many backends in
        // one process each domain event arrives once per backend, and a steady stream of
        // them once kept the polls waiting for seconds (lines then got no time).
        if last_tick.elapsed() >= POLL {
            tick();
            last_tick = std::time::Instant::now();
        }
        match rx.recv_timeout(POLL.saturating_sub(last_tick.elapsed())) {
            Ok(Msg::Started(inner, uuid)) => {
                let Some(inner) = inner.upgrade() else {
                    continue;
                };
                if inner.is_test || !crate::compute::is_local(&inner) {
                    continue;
                }
                // The log's path from the domain's XML (a local libvirt call on this thread).
                let log = inner.run_blocking(|c| {
                    let d = c
                        .lookup_domain_by_uuid_string(&uuid)
                        .map_err(crate::map_error)?;
                    Ok(crate::compute::facts(&inner, &d)?.serial_log.clone())
                });
                match log {
                    Ok(Some(log)) => add(uuid, PathBuf::from(log)),
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "no serial log to index"),
                }
                continue;
            }
            Ok(Msg::Path(uuid, log)) => {
                add(uuid, log);
                continue;
            }
            Ok(Msg::Stopped(uuid)) => {
                if let Ok(mut r) = registry().lock()
                    && let Some(log) = r.by_uuid.remove(&uuid)
                    && let Some(mut w) = r.watches.remove(&log)
                    && let Err(e) = w.poll(&log)
                {
                    tracing::debug!(error = %e, "serial log index not updated");
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn tick() {
    let Ok(mut r) = registry().lock() else {
        return;
    };
    let mut gone = Vec::new();
    for (log, w) in r.watches.iter_mut() {
        if let Err(e) = w.poll(log) {
            tracing::debug!(log = %log.display(), error = %e, "serial log index not updated");
        }
        // Deleted with its VM.
        if w.index.is_some() && !log.exists() {
            gone.push(log.clone());
        }
    }
    for log in gone {
        r.watches.remove(&log);
        r.by_uuid.retain(|_, l| *l != log);
    }
}

/// Indexes what the log holds now, if this process keeps its index (so that a read right
/// after a write sees exact times).
fn catch_up(log: &Path) {
    if let Ok(mut r) = registry().lock()
        && let Some(w) = r.watches.get_mut(log)
        && w.index.is_some()
        && let Err(e) = w.poll(log)
    {
        tracing::debug!(error = %e, "serial log index not updated");
    }
}

/// A line of the serial log with what is known of its time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TimedLine {
    pub text: String,
    /// Its length in the log, in bytes.
    pub len: u64,
    /// Written after this (Unix ms; `i64::MIN` when unknown)…
    pub lo_ms: i64,
    /// …and at or before this.
    pub hi_ms: i64,
}

impl TimedLine {
    /// The time when it is known to within a second.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        (self.lo_ms != UNKNOWN && self.hi_ms.saturating_sub(self.lo_ms) <= EXACT_MS)
            .then(|| DateTime::from_timestamp_millis(self.hi_ms))
            .flatten()
    }

    /// Whether it may have been written in `[since, until)`.
    pub fn overlaps(&self, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> bool {
        since.is_none_or(|s| self.hi_ms >= s.timestamp_millis())
            && until.is_none_or(|u| self.lo_ms < u.timestamp_millis())
    }
}

/// Splits `bytes` (the log from offset `base`) into lines timed by `index`. A line's time is
/// that of its last byte; bytes past the index are between its last record and `now_ms`.
pub(crate) fn timed_lines(bytes: &[u8], base: u64, index: &[Chunk], now: i64) -> Vec<TimedLine> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let tail_lo = index.last().map_or(UNKNOWN, |c| c.hi_ms);
    let mut i = 0usize;
    while start < bytes.len() {
        let end = bytes[start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |p| start + p + 1);
        let last = base + end as u64 - 1;
        while i < index.len() && index[i].end <= last {
            i += 1;
        }
        let (lo_ms, hi_ms) = match index.get(i) {
            Some(c) => (c.lo_ms, c.hi_ms),
            None => (tail_lo, now),
        };
        out.push(TimedLine {
            text: String::from_utf8_lossy(&bytes[start..end]).into_owned(),
            len: (end - start) as u64,
            lo_ms,
            hi_ms,
        });
        start = end;
    }
    out
}

/// The log's lines from byte `from` on, with their times.
pub(crate) fn read(log: &Path, from: u64) -> std::io::Result<(Vec<TimedLine>, u64)> {
    catch_up(log);
    let index = read_index(log);
    let now = now_ms();
    let mut bytes = Vec::new();
    match File::open(log) {
        Ok(mut f) => {
            f.seek(SeekFrom::Start(from))?;
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let next = from + bytes.len() as u64;
    Ok((timed_lines(&bytes, from, &index, now), next))
}

/// Watches the logs of the running domains (at connect; on a blocking thread).
pub(crate) fn scan(inner: &Inner) {
    if inner.is_test || !crate::compute::is_local(inner) {
        return;
    }
    let found = inner.run_blocking(|c| {
        let doms = c
            .list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            .map_err(crate::map_error)?;
        let mut out = Vec::new();
        for d in doms {
            if let (Ok(uuid), Ok(f)) = (d.uuid_string(), crate::compute::facts(inner, &d))
                && let Some(log) = &f.serial_log
            {
                out.push((uuid, PathBuf::from(log)));
            }
        }
        Ok(out)
    });
    match found {
        Ok(found) => {
            for (uuid, log) in found {
                watch(&uuid, log);
            }
        }
        Err(e) => tracing::debug!(error = %e, "could not list running VMs to index their logs"),
    }
}

/// Removes a log's index (the VM is deleted).
pub(crate) fn remove_index(log: &Path) {
    let _ = std::fs::remove_file(index_path(log));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips_and_skips_torn_records() {
        let a = Chunk {
            lo_ms: UNKNOWN,
            hi_ms: 1000,
            end: 10,
        };
        let b = Chunk {
            lo_ms: 1000,
            hi_ms: 1250,
            end: 25,
        };
        let mut bytes = [a.encode(), b.encode(), a.encode()].concat();
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(parse_index(&bytes), vec![a, b]);
    }

    #[test]
    fn lines_take_the_time_of_their_newline() {
        let log = b"old\nabc\ndef\npartial";
        let index = [
            Chunk {
                lo_ms: UNKNOWN,
                hi_ms: 5_000,
                end: 4,
            },
            Chunk {
                lo_ms: 9_000,
                hi_ms: 9_250,
                end: 6,
            },
            Chunk {
                lo_ms: 9_250,
                hi_ms: 9_500,
                end: 12,
            },
        ];
        let l = timed_lines(log, 0, &index, 20_000);
        let texts: Vec<_> = l.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["old\n", "abc\n", "def\n", "partial"]);
        assert_eq!(l[0].timestamp(), None, "written before anyone looked");
        // "abc\n" ends in the third chunk (its newline came then).
        assert_eq!(l[1].hi_ms, 9_500);
        assert_eq!(l[1].timestamp().map(|t| t.timestamp_millis()), Some(9_500));
        assert_eq!((l[3].lo_ms, l[3].hi_ms), (9_500, 20_000));
        let at = |ms| DateTime::from_timestamp_millis(ms);
        assert!(!l[1].overlaps(at(9_600), None));
        assert!(l[1].overlaps(at(9_400), None));
        assert!(l[1].overlaps(None, at(9_400)));
        assert!(!l[1].overlaps(None, at(9_250)));
        // Unknown times overlap every range that may hold them.
        assert!(l[0].overlaps(at(4_000), at(4_500)));
        assert!(!l[0].overlaps(at(6_000), None));
        // From an offset.
        let l = timed_lines(&log[8..], 8, &index, 20_000);
        assert_eq!(l[0].text, "def\n");
        assert_eq!(l[0].hi_ms, 9_500);
    }

    #[test]
    fn watch_appends_only_growth_and_survives_truncation() {
        let dir = std::env::temp_dir().join(format!("libgo-serial-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("vm-serial.log");
        std::fs::write(&log, b"one\n").unwrap();
        let mut w = Watch::new(&log);
        w.poll(&log).unwrap();
        w.poll(&log).unwrap();
        let idx = read_index(&log);
        assert_eq!(idx.len(), 1);
        assert_eq!((idx[0].lo_ms, idx[0].end), (UNKNOWN, 4));
        // Another watcher in this process cannot take the lock.
        let mut other = Watch::new(&log);
        assert!(!other.acquire(&log).unwrap());
        std::fs::write(&log, b"one\ntwo\n").unwrap();
        w.poll(&log).unwrap();
        let idx = read_index(&log);
        assert_eq!(idx.len(), 2);
        assert!(idx[1].lo_ms != UNKNOWN && idx[1].hi_ms - idx[1].lo_ms < 5_000);
        std::fs::write(&log, b"x\n").unwrap();
        w.poll(&log).unwrap();
        let idx = read_index(&log);
        assert_eq!(idx.len(), 1);
        assert_eq!((idx[0].lo_ms, idx[0].end), (UNKNOWN, 2));
        drop(w);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
