//! The change feed behind the facade's inventory ([`libgo_core::Compute::changes`]).
//!
//! dockerd keeps its last 256 events in memory and answers `GET /events?since=…&until=…`
//! from them in about half a millisecond, against ~14 ms for a full list of 200 containers.
//! It logs a change's event before the API call that made it returns, so a check at time
//! `U` sees every change finished before `U`; the containers named by events of the last
//! 100 ms are read again at each check, since an event can be stamped a moment before its
//! change is visible (see [`SETTLE_NANOS`]). Three things could still hide a change, and
//! each one makes the feed answer `Unknown` (a full list):
//! - more than the buffer holds since the last check (256 or more events returned);
//! - dockerd restarted (its buffer starts empty): the process behind the socket (pid and
//!   start time, from the kernel) differs, or a long-lived event stream, the restart watch,
//!   broke with the old daemon (this also covers a socket proxy in between); cursors from
//!   an earlier daemon run are refused;
//! - an image was tagged, untagged, pulled or removed: a container made outside LibGo lists
//!   its image by name only while the name still points at its image, so such a change can
//!   touch any container.
//!
//! Only for a local socket: `until` is read from this host's clock, which must be dockerd's.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bollard::Docker;
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::EventsOptions;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use libgo_core::{ChangeCursor, Changes, Result};

/// dockerd's event buffer (`eventsLimit` in moby's daemon/events): an answer this long may
/// have lost older events.
const EVENT_BUFFER: usize = 256;

/// How long the effects of an event may lag behind its timestamp: dockerd stamps an event
/// before it enters the buffer, and for some (pause, network connect) before the container's
/// listed state is saved, in the same goroutine microseconds later. Each check looks this far
/// back again and reads the containers of those events once more, so the last read of every
/// change comes after it settled. Longer costs more reads right after a burst of changes.
const SETTLE_NANOS: i64 = 100_000_000;

/// Where a feed stands: events from `since_nanos` on are news.
#[derive(Debug)]
struct Position {
    since_nanos: i64,
    /// When the last full list began: a change to every container (an image event, logged
    /// after the change) stamped before it is in that list already.
    listed_nanos: i64,
    /// The daemon run the position belongs to.
    run: DaemonRun,
}

/// The restart watch's generation, and dockerd's pid and start time where known.
type DaemonRun = (u64, Option<(i32, u64)>);

/// Notices dockerd restarts: a long-lived event stream that breaks with the daemon.
#[derive(Debug, Default)]
pub(crate) struct RestartWatch {
    current: std::sync::Mutex<Option<Watch>>,
}

#[derive(Debug)]
struct Watch {
    generation: u64,
    alive: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

/// Marks the watch dead however its task ends: stream closed, error, abort, runtime gone.
struct AliveWhileHeld(Arc<AtomicBool>);

impl Drop for AliveWhileHeld {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl RestartWatch {
    /// The generation of the watch now running, starting a new one when the last has ended.
    fn generation(&self, docker: &Docker) -> u64 {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = current.as_ref()
            && w.alive.load(Ordering::SeqCst)
        {
            return w.generation;
        }
        let generation = current.as_ref().map_or(1, |w| w.generation + 1);
        let alive = Arc::new(AtomicBool::new(true));
        let guard = AliveWhileHeld(alive.clone());
        // Daemon events are rare: the stream stays quiet until dockerd goes away.
        let mut stream = docker.events(Some(EventsOptions {
            since: None,
            until: None,
            filters: Some(std::collections::HashMap::from([(
                "type".to_string(),
                vec!["daemon".to_string()],
            )])),
        }));
        let task = tokio::spawn(async move {
            let _guard = guard;
            while let Some(Ok(_)) = stream.next().await {}
        });
        *current = Some(Watch {
            generation,
            alive,
            task: task.abort_handle(),
        });
        generation
    }
}

impl Drop for RestartWatch {
    fn drop(&mut self) {
        if let Some(w) = self.current.get_mut().ok().and_then(|w| w.take()) {
            w.task.abort();
        }
    }
}

fn timestamp(nanos: i64) -> String {
    format!(
        "{}.{:09}",
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000)
    )
}

fn unknown(now: i64, run: DaemonRun) -> Changes {
    Changes::Unknown {
        cursor: ChangeCursor::new(Position {
            since_nanos: now - SETTLE_NANOS,
            listed_nanos: now,
            run,
        }),
    }
}

/// What an event says about the list: these containers changed, or anything may have.
enum Effect {
    Container(String),
    Everything,
    Nothing,
}

fn effect(event: &EventMessage) -> Effect {
    let actor = event.actor.as_ref();
    match event.typ {
        Some(EventMessageTypeEnum::CONTAINER) => match actor.and_then(|a| a.id.clone()) {
            Some(id) => Effect::Container(id),
            None => Effect::Everything,
        },
        // connect / disconnect change a container's networks and addresses.
        Some(EventMessageTypeEnum::NETWORK) => match actor
            .and_then(|a| a.attributes.as_ref())
            .and_then(|a| a.get("container"))
        {
            Some(id) => Effect::Container(id.clone()),
            None => Effect::Nothing,
        },
        Some(EventMessageTypeEnum::IMAGE | EventMessageTypeEnum::DAEMON) => Effect::Everything,
        _ => Effect::Nothing,
    }
}

/// Which dockerd process answers on `socket`: its pid and start time, so that a restart,
/// even under the same pid, is told apart. `None` where the kernel does not say (a daemon
/// in another pid namespace).
async fn daemon_process(socket: &str) -> Option<(i32, u64)> {
    let stream = tokio::net::UnixStream::connect(socket).await.ok()?;
    let pid = stream.peer_cred().ok()?.pid().filter(|p| *p > 0)?;
    let stat = tokio::fs::read_to_string(format!("/proc/{pid}/stat"))
        .await
        .ok()?;
    // Field 22, `starttime`; the fields after the parenthesised name start at field 3.
    let started = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?;
    Some((pid, started.parse().ok()?))
}

/// Where dockerd is, and the watch on it: what tells one daemon run from the next.
pub(crate) struct Daemon<'a> {
    pub(crate) docker: &'a Docker,
    /// Path of its Unix socket.
    pub(crate) socket: &'a str,
    pub(crate) watch: &'a RestartWatch,
}

impl Daemon<'_> {
    /// The daemon run now answering: the restart watch's generation and, where known, the
    /// process behind the socket.
    async fn run(&self) -> DaemonRun {
        let generation = self.watch.generation(self.docker);
        (generation, daemon_process(self.socket).await)
    }
}

/// The feed's answer for `cursor`, from one `GET /events` (none when there is no cursor).
pub(crate) async fn changes(daemon: &Daemon<'_>, cursor: Option<&ChangeCursor>) -> Result<Changes> {
    let now = Utc::now()
        .timestamp_nanos_opt()
        .ok_or_else(|| libgo_core::Error::internal("the clock is past 2262"))?;
    let Some(position) = cursor
        .and_then(|c| c.get::<Position>())
        .filter(|p| p.since_nanos <= now)
    else {
        return Ok(unknown(now, daemon.run().await));
    };
    let events: Vec<EventMessage> = daemon
        .docker
        .events(Some(EventsOptions {
            since: Some(timestamp(position.since_nanos)),
            until: Some(timestamp(now)),
            filters: None,
        }))
        .try_collect()
        .await
        .map_err(crate::map_error)?;
    // Checked after the events were read: had dockerd restarted before they were, its run
    // differs from the cursor's now.
    let run = daemon.run().await;
    if run != position.run {
        return Ok(unknown(now, run));
    }
    if events.len() >= EVENT_BUFFER {
        return Ok(unknown(now, run));
    }
    let mut ids = BTreeSet::new();
    for event in &events {
        match effect(event) {
            Effect::Container(id) => {
                ids.insert(id);
            }
            Effect::Everything if event.time_nano.is_some_and(|t| t < position.listed_nanos) => {}
            Effect::Everything => return Ok(unknown(now, run)),
            Effect::Nothing => {}
        }
    }
    Ok(Changes::Instances {
        cursor: ChangeCursor::new(Position {
            since_nanos: now - SETTLE_NANOS,
            listed_nanos: position.listed_nanos,
            run,
        }),
        ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_seconds_and_nanoseconds() {
        assert_eq!(timestamp(1_700_000_000_000_000_001), "1700000000.000000001");
        assert_eq!(timestamp(999_999_999), "0.999999999");
    }
}
