//! The facade's inventory: each backend's instance list kept in memory and brought up to
//! date, before every answer, from the backend's change feed ([`crate::Compute::changes`]).
//!
//! A list then costs one cheap engine call (the change check) plus a read of just the
//! instances that changed, instead of the engine's full list. Nothing is answered from
//! memory without that check, so an answer is never older than the call: a change the
//! engine finished before the list began is in it, whoever made the change.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::backend::{Backend, ChangeCursor, Changes};
use crate::error::{ErrorKind, Result};
use crate::types::{Instance, InstanceFilter};

/// A full list at least this often, whatever the feed says: it bounds what a change the
/// feed cannot see (an engine bug, an unknown kind of change) could cost.
const RECONCILE_AFTER: Duration = Duration::from_secs(60);

/// Above this many changed instances one full list is cheaper than reading each again.
const MAX_PATCHED: usize = 64;

/// What the facade knows of one backend's instances.
#[derive(Default)]
pub(crate) struct Inventory(Mutex<State>);

#[derive(Default)]
enum State {
    /// Nothing held: the next list is a full one.
    #[default]
    Empty,
    /// The backend has no change feed: every list goes to the engine.
    NoFeed,
    /// The instances as of a cursor.
    Held(Held),
}

struct Held {
    cursor: ChangeCursor,
    /// By engine id.
    items: HashMap<String, Instance>,
    listed_at: Instant,
    /// When the check that brought `items` up to date began.
    checked_at: Instant,
}

impl Inventory {
    /// The backend's instances that pass `filter`, checked against the engine first.
    pub(crate) async fn list(
        &self,
        backend: &dyn Backend,
        filter: &InstanceFilter,
    ) -> Result<Vec<Instance>> {
        let called_at = Instant::now();
        // One list at a time per backend, first come first served: each brings the state
        // forward from the last.
        let mut state = self.0.lock().await;
        if matches!(*state, State::NoFeed) {
            // Nothing held to keep consistent: lists of such a backend run side by side.
            drop(state);
            return backend.list(filter).await;
        }
        let cursor = match &*state {
            // A check that began after this call did is as good as one of its own: callers
            // queued behind one check share the next.
            State::Held(held) if held.checked_at > called_at => {
                return Ok(matching(&held.items, filter));
            }
            State::Held(held) if held.listed_at.elapsed() < RECONCILE_AFTER => Some(&held.cursor),
            _ => None,
        };
        let checked_at = Instant::now();
        let changes = match backend.changes(cursor).await {
            Ok(changes) => changes,
            Err(e) => {
                *state = if e.kind() == ErrorKind::Unsupported {
                    State::NoFeed
                } else {
                    tracing::debug!(backend = backend.name(), error = %e, "change check failed");
                    State::Empty
                };
                drop(state);
                // The engine's own list gives the true answer, or its true error.
                return backend.list(filter).await;
            }
        };
        // Until this list succeeds nothing is held, so a failure leads to a full list next.
        let previous = std::mem::take(&mut *state);
        let held = match (changes, previous) {
            (Changes::Instances { cursor, ids }, State::Held(mut held))
                if ids.len() <= MAX_PATCHED =>
            {
                if !ids.is_empty() {
                    let fresh = backend.list_ids(&ids).await?;
                    for id in &ids {
                        held.items.remove(id);
                    }
                    held.items
                        .extend(fresh.into_iter().map(|i| (i.id.clone(), i)));
                }
                held.cursor = cursor;
                held.checked_at = checked_at;
                held
            }
            (Changes::Instances { cursor, .. } | Changes::Unknown { cursor }, _) => {
                full(backend, cursor, checked_at).await?
            }
        };
        let answer = matching(&held.items, filter);
        *state = State::Held(held);
        Ok(answer)
    }
}

fn matching(items: &HashMap<String, Instance>, filter: &InstanceFilter) -> Vec<Instance> {
    items
        .values()
        .filter(|i| filter.matches(i))
        .cloned()
        .collect()
}

async fn full(backend: &dyn Backend, cursor: ChangeCursor, checked_at: Instant) -> Result<Held> {
    let all = backend.list(&InstanceFilter::default()).await?;
    Ok(Held {
        cursor,
        items: all.into_iter().map(|i| (i.id.clone(), i)).collect(),
        listed_at: checked_at,
        checked_at,
    })
}
