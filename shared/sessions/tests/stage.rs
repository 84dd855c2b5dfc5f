//! The sessions stage (spec §18.5–§18.8) against the in-process store and stores that
//! misbehave: conflicting writers, errors, no answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use sessions::{
    Loaded, MemoryStore, Need, OUT_OF_SESSION, Saved, SessionStore, Sessionizer, State, StoreError,
};
use tokio::time::Instant;

const MIN: i64 = 60_000;
const T0: i64 = 1_700_000_000_000;
const TIMEOUT: Duration = Duration::from_secs(30 * 60);
const BUDGET: Duration = Duration::from_millis(300);

fn need(message: usize, key: &str, time: i64) -> Need {
    Need {
        message,
        key: key.into(),
        time,
    }
}

/// The time requests are received: now (the store's expiry counts from it).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn ids(assigned: &sessions::Assigned) -> Vec<(usize, i64)> {
    let mut ids: Vec<_> = assigned.ids.iter().map(|(m, id)| (*m, *id)).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn s18_5_several_messages_of_one_device_in_one_batch() {
    let store = Arc::new(MemoryStore::new());
    let stage = Sessionizer::new(store.clone(), TIMEOUT, BUDGET);
    let needs = vec![
        need(0, "d:phone", T0 + 10 * MIN),
        need(1, "d:tablet", T0),
        need(2, "d:phone", T0),
        need(3, "d:phone", T0 + 45 * MIN),
        need(4, "u:user-9", T0 + MIN),
    ];
    let assigned = stage.assign(needs, now_ms(), later()).await;
    assert_eq!(
        ids(&assigned),
        [(0, T0), (1, T0), (2, T0), (3, T0 + 45 * MIN), (4, T0 + MIN)]
    );
    assert_eq!(
        store.get("d:phone"),
        Some(State {
            start: T0 + 45 * MIN,
            last: T0 + 45 * MIN
        })
    );
    assert_eq!((assigned.reads, assigned.writes), (1, 3));
    assert!(assigned.failure.is_none() && assigned.degraded.is_empty());
}

#[tokio::test]
async fn s18_5_a_second_request_continues_the_stored_session_or_is_out_of_it() {
    let store = Arc::new(MemoryStore::new());
    let stage = Sessionizer::new(store.clone(), TIMEOUT, BUDGET);
    stage
        .assign(vec![need(0, "d:a", T0 + 60 * MIN)], now_ms(), later())
        .await;
    let assigned = stage
        .assign(
            vec![
                need(0, "d:a", T0 + 80 * MIN),
                need(1, "d:a", T0), // more than 30 min before the session's start
            ],
            now_ms(),
            later(),
        )
        .await;
    assert_eq!(ids(&assigned), [(0, T0 + 60 * MIN), (1, OUT_OF_SESSION)]);
}

#[tokio::test]
async fn s18_7_a_replayed_request_gets_the_same_ids_and_writes_nothing() {
    let stage = Sessionizer::new(Arc::new(MemoryStore::new()), TIMEOUT, BUDGET);
    let needs = vec![need(0, "d:a", T0), need(1, "d:a", T0 + 5 * MIN)];
    let first = stage.assign(needs.clone(), now_ms(), later()).await;
    let replay = stage.assign(needs, now_ms(), later()).await;
    assert_eq!(ids(&first), ids(&replay));
    assert_eq!(replay.writes, 0);
}

/// A store whose first write of each key loses a race: just before it, another instance
/// writes its own state for the key.
struct Racing {
    inner: MemoryStore,
    rival: Mutex<Vec<(String, State)>>,
}

impl SessionStore for Racing {
    fn load<'s>(&'s self, keys: &'s [String]) -> BoxFuture<'s, Result<Loaded, StoreError>> {
        self.inner.load(keys)
    }

    fn save<'s>(
        &'s self,
        key: &'s str,
        expected: Option<State>,
        new: State,
        expires_at_s: i64,
    ) -> BoxFuture<'s, Result<Saved, StoreError>> {
        let rival = {
            let mut rivals = self.rival.lock().unwrap();
            let at = rivals.iter().position(|(k, _)| k == key);
            at.map(|i| rivals.remove(i))
        };
        async move {
            if let Some((_, state)) = rival {
                let _ = self.inner.save(key, expected, state, i64::MAX).await;
            }
            self.inner.save(key, expected, new, expires_at_s).await
        }
        .boxed()
    }
}

#[tokio::test]
async fn s18_6_a_lost_race_is_assigned_again_from_the_winners_state() {
    // Another instance started the session at T0 − 5 min while this one read no state.
    let store = Arc::new(Racing {
        inner: MemoryStore::new(),
        rival: Mutex::new(vec![(
            "d:a".into(),
            State {
                start: T0 - 5 * MIN,
                last: T0 - 5 * MIN,
            },
        )]),
    });
    let stage = Sessionizer::new(store.clone(), TIMEOUT, BUDGET);
    let assigned = stage
        .assign(
            vec![need(0, "d:a", T0), need(1, "d:b", T0)],
            now_ms(),
            later(),
        )
        .await;
    assert_eq!(ids(&assigned), [(0, T0 - 5 * MIN), (1, T0)]);
    assert_eq!(assigned.conflicts, 1);
    assert_eq!(
        store.inner.get("d:a"),
        Some(State {
            start: T0 - 5 * MIN,
            last: T0
        })
    );
}

/// A store that fails every call, or answers too late.
struct Broken {
    delay: Option<Duration>,
    calls: AtomicUsize,
}

impl SessionStore for Broken {
    fn load<'s>(&'s self, _: &'s [String]) -> BoxFuture<'s, Result<Loaded, StoreError>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        async move {
            match self.delay {
                Some(d) => {
                    tokio::time::sleep(d).await;
                    Ok(Loaded::default())
                }
                None => Err(StoreError::Throttled("ThrottlingException".into())),
            }
        }
        .boxed()
    }

    fn save<'s>(
        &'s self,
        _: &'s str,
        _: Option<State>,
        _: State,
        _: i64,
    ) -> BoxFuture<'s, Result<Saved, StoreError>> {
        async { Err(StoreError::Failed("unreachable".into())) }.boxed()
    }
}

#[tokio::test]
async fn s18_8_a_failing_store_leaves_every_message_without_a_session() {
    let store = Arc::new(Broken {
        delay: None,
        calls: AtomicUsize::new(0),
    });
    let stage = Sessionizer::new(store.clone(), TIMEOUT, BUDGET);
    let assigned = stage
        .assign(
            vec![need(0, "d:a", T0), need(3, "d:b", T0)],
            now_ms(),
            later(),
        )
        .await;
    assert!(assigned.ids.is_empty());
    let mut degraded: Vec<_> = assigned.degraded.iter().copied().collect();
    degraded.sort();
    assert_eq!(degraded, [0, 3]);
    assert_eq!(
        assigned.failure.as_deref(),
        Some("the session store throttled the request: ThrottlingException")
    );
    assert_eq!(
        store.calls.load(Ordering::Relaxed),
        1,
        "no retry past a failure"
    );
}

#[tokio::test(start_paused = true)]
async fn s18_8_a_store_that_does_not_answer_is_given_up_at_the_budget() {
    let store = Arc::new(Broken {
        delay: Some(Duration::from_secs(10)),
        calls: AtomicUsize::new(0),
    });
    let stage = Sessionizer::new(store, TIMEOUT, Duration::from_millis(120));
    let started = Instant::now();
    let assigned = stage
        .assign(vec![need(0, "d:a", T0)], now_ms(), later())
        .await;
    assert_eq!(started.elapsed(), Duration::from_millis(120));
    assert_eq!(
        assigned.failure.as_deref(),
        Some("the session store failed: no answer within the sessions budget")
    );
    assert_eq!(assigned.degraded.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn s18_8_the_budget_is_at_most_300_ms_and_never_past_the_deadline() {
    let slow = || {
        Arc::new(Broken {
            delay: Some(Duration::from_secs(10)),
            calls: AtomicUsize::new(0),
        })
    };
    let started = Instant::now();
    Sessionizer::new(slow(), TIMEOUT, Duration::from_secs(5))
        .assign(vec![need(0, "d:a", T0)], now_ms(), later())
        .await;
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    let started = Instant::now();
    Sessionizer::new(slow(), TIMEOUT, BUDGET)
        .assign(
            vec![need(0, "d:a", T0)],
            now_ms(),
            started + Duration::from_millis(40),
        )
        .await;
    assert_eq!(started.elapsed(), Duration::from_millis(40));
}

/// Records the expiry each write asks for.
#[derive(Default)]
struct Expiries {
    inner: MemoryStore,
    seen: Mutex<Vec<i64>>,
}

impl SessionStore for Expiries {
    fn load<'s>(&'s self, keys: &'s [String]) -> BoxFuture<'s, Result<Loaded, StoreError>> {
        self.inner.load(keys)
    }

    fn save<'s>(
        &'s self,
        key: &'s str,
        expected: Option<State>,
        new: State,
        expires_at_s: i64,
    ) -> BoxFuture<'s, Result<Saved, StoreError>> {
        self.seen.lock().unwrap().push(expires_at_s);
        self.inner.save(key, expected, new, expires_at_s)
    }
}

#[tokio::test]
async fn s18_6_keys_expire_two_timeouts_and_a_day_after_their_last_request() {
    let store = Arc::new(Expiries::default());
    let now_ms = 1_800_000_000_000;
    Sessionizer::new(store.clone(), TIMEOUT, BUDGET)
        .assign(vec![need(0, "d:a", T0)], now_ms, later())
        .await;
    assert_eq!(
        *store.seen.lock().unwrap(),
        [1_800_000_000 + 2 * 30 * 60 + 86_400]
    );
}

/// Writes for some keys never answer.
struct HalfStalled {
    inner: MemoryStore,
}

impl SessionStore for HalfStalled {
    fn load<'s>(&'s self, keys: &'s [String]) -> BoxFuture<'s, Result<Loaded, StoreError>> {
        self.inner.load(keys)
    }

    fn save<'s>(
        &'s self,
        key: &'s str,
        expected: Option<State>,
        new: State,
        expires_at_s: i64,
    ) -> BoxFuture<'s, Result<Saved, StoreError>> {
        async move {
            if key.ends_with("stalled") {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            self.inner.save(key, expected, new, expires_at_s).await
        }
        .boxed()
    }
}

#[tokio::test(start_paused = true)]
async fn s18_8_at_the_budget_the_keys_written_keep_their_sessions() {
    let stage = Sessionizer::new(
        Arc::new(HalfStalled {
            inner: MemoryStore::new(),
        }),
        TIMEOUT,
        BUDGET,
    );
    let assigned = stage
        .assign(
            vec![need(0, "d:quick", T0), need(1, "d:stalled", T0)],
            now_ms(),
            later(),
        )
        .await;
    assert_eq!(ids(&assigned), [(0, T0)]);
    assert_eq!(assigned.degraded.iter().copied().collect::<Vec<_>>(), [1]);
    assert_eq!(
        assigned.failure.as_deref(),
        Some("the session store failed: no answer within the sessions budget")
    );
}
