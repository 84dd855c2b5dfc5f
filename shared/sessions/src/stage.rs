//! The sessions stage (§18.5–§18.8): between planning and delivery, it gives each message that
//! needs a session its id. Read the keys' states, assign, write back what changed on
//! condition, and assign again the keys another instance changed meanwhile — all within a
//! budget. Whatever is not settled by then (store error, throttling, no answer, conflicts
//! that kept coming) goes without a synthesised session: delivery never waits on sessions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::time::{Instant, timeout_at};

use crate::assign::assign_key;
use crate::store::{Saved, SessionStore, StoreError};

/// The longest budget allowed (§18.8).
pub const MAX_BUDGET: Duration = Duration::from_millis(300);
/// Rounds of read–assign–write before a key that keeps conflicting is given up.
const MAX_ROUNDS: usize = 3;
/// Conditional writes in flight at once.
pub const WRITES_IN_FLIGHT: usize = 128;
/// Keys live this long past twice the timeout without events (§18.6).
const EXPIRY_MARGIN_S: i64 = 86_400;

/// One message that needs a session: its index in the request, its key and its time (the
/// event's, else the time the request was received).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub message: usize,
    pub key: String,
    pub time: i64,
}

/// What the stage decided.
#[derive(Debug, Default)]
pub struct Assigned {
    /// The session id of each message that got one (or `-1`, out of session).
    pub ids: HashMap<usize, i64>,
    /// Messages left without a synthesised session, because of `failure`.
    pub degraded: HashSet<usize>,
    /// Why some were left without (for the one WARN line of the invocation).
    pub failure: Option<String>,
    /// Store calls made: reads (each `BatchGetItem`) and writes.
    pub reads: usize,
    pub writes: usize,
    /// Writes refused because another instance had changed the key (each assigned again).
    pub conflicts: usize,
}

/// Picks session ids against a shared store.
#[derive(Clone)]
pub struct Sessionizer {
    store: Arc<dyn SessionStore>,
    timeout_ms: i64,
    budget: Duration,
}

impl Sessionizer {
    /// `timeout`: `sessionTimeoutMinutes`; `budget`: at most [`MAX_BUDGET`].
    pub fn new(store: Arc<dyn SessionStore>, timeout: Duration, budget: Duration) -> Self {
        Sessionizer {
            store,
            timeout_ms: timeout.as_millis() as i64,
            budget: budget.min(MAX_BUDGET),
        }
    }

    /// The session of each message in `needs`, settled within the budget (or before
    /// `deadline`, if sooner). `now_ms` dates the keys' expiry.
    pub async fn assign(&self, needs: Vec<Need>, now_ms: i64, deadline: Instant) -> Assigned {
        let deadline = deadline.min(Instant::now() + self.budget);
        let mut by_key: BTreeMap<String, Vec<(usize, i64)>> = BTreeMap::new();
        for need in needs {
            by_key
                .entry(need.key)
                .or_default()
                .push((need.message, need.time));
        }
        let expires_at_s = now_ms / 1000 + 2 * self.timeout_ms / 1000 + EXPIRY_MARGIN_S;
        let mut assigned = Assigned::default();
        for _ in 0..MAX_ROUNDS {
            if by_key.is_empty() {
                break;
            }
            match self
                .round(&mut by_key, expires_at_s, deadline, &mut assigned)
                .await
            {
                Ok(()) => {}
                Err(e) => {
                    assigned.failure = Some(e.to_string());
                    break;
                }
            }
        }
        if !by_key.is_empty() {
            assigned
                .failure
                .get_or_insert_with(|| "conflicting writes kept coming".into());
            assigned
                .degraded
                .extend(by_key.values().flatten().map(|(m, _)| *m));
        }
        assigned
    }

    /// One read–assign–write round over the keys not settled yet; settled keys leave
    /// `pending`, with their ids in `assigned`.
    async fn round(
        &self,
        pending: &mut BTreeMap<String, Vec<(usize, i64)>>,
        expires_at_s: i64,
        deadline: Instant,
        assigned: &mut Assigned,
    ) -> Result<(), StoreError> {
        let keys: Vec<String> = pending.keys().cloned().collect();
        let loaded = timeout_at(deadline, self.store.load(&keys))
            .await
            .map_err(|_| late())??;
        assigned.reads += loaded.calls;
        let mut unchanged = Vec::new();
        let mut writes = Vec::new();
        for (key, events) in pending.iter() {
            let before = loaded.states.get(key).copied();
            let (ids, after) = assign_key(before, events, self.timeout_ms);
            match after {
                Some(new) if after != before => writes.push((key.clone(), before, new, ids)),
                _ => unchanged.push((key.clone(), ids)),
            }
        }
        for (key, ids) in unchanged {
            pending.remove(&key);
            assigned.ids.extend(ids);
        }
        // In parallel, at most WRITES_IN_FLIGHT at a time (each is one HTTPS request; a
        // request of thousands of devices must not open thousands of connections). Each
        // answer counts as it comes: at the deadline, the keys written keep their ids and only
        // those still unanswered go without.
        // Boxed one by one: a stream of closures held across an await would not be `Send`
        // for every lifetime, which the functions' handlers need.
        let calls: Vec<BoxFuture<'_, (usize, Result<Saved, StoreError>)>> = writes
            .iter()
            .enumerate()
            .map(|(i, (key, before, new, _))| {
                self.store
                    .save(key, *before, *new, expires_at_s)
                    .map(move |r| (i, r))
                    .boxed()
            })
            .collect();
        let mut saves = futures::stream::iter(calls).buffer_unordered(WRITES_IN_FLIGHT);
        let mut results: Vec<Option<Result<Saved, StoreError>>> = vec![None; writes.len()];
        let mut first_error = None;
        loop {
            match timeout_at(deadline, saves.next()).await {
                Ok(Some((i, result))) => {
                    assigned.writes += 1;
                    if let Some(slot) = results.get_mut(i) {
                        *slot = Some(result);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    first_error = Some(late());
                    break;
                }
            }
        }
        drop(saves);
        for ((key, _, _, ids), result) in writes.into_iter().zip(results) {
            match result {
                Some(Ok(Saved::Written)) => {
                    pending.remove(&key);
                    assigned.ids.extend(ids);
                }
                // Assigned again next round.
                Some(Ok(Saved::Conflict)) => assigned.conflicts += 1,
                Some(Err(e)) => {
                    // Its state is unknown: its events go without a session.
                    if let Some(events) = pending.remove(&key) {
                        assigned.degraded.extend(events.iter().map(|(m, _)| *m));
                    }
                    first_error.get_or_insert(e);
                }
                // Not answered in time: left in `pending`, so degraded by the caller.
                None => {}
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn late() -> StoreError {
    StoreError::Failed("no answer within the sessions budget".into())
}
