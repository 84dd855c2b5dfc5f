//! The in-process store: the local runner's default, and the tests'. The same compare-and-set
//! and expiry as DynamoDB, so the stage behaves alike on both.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::assign::State;
use crate::store::{Loaded, Saved, SessionStore, StoreError, now_s};

/// Sessions' state in a map, each key with its expiry (epoch seconds).
#[derive(Debug, Default)]
pub struct MemoryStore {
    keys: Mutex<HashMap<String, (State, i64)>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The state of `key`, if it has one that has not expired.
    pub fn get(&self, key: &str) -> Option<State> {
        live(&self.lock(), key)
    }

    /// How many keys are kept (expired ones included until they are overwritten).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (State, i64)>> {
        // A panic elsewhere while holding the lock leaves the map consistent (every write is
        // one insert), so a poisoned lock is used as it is.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SessionStore for MemoryStore {
    fn load<'s>(&'s self, keys: &'s [String]) -> BoxFuture<'s, Result<Loaded, StoreError>> {
        let states = keys
            .iter()
            .filter_map(|k| self.get(k).map(|s| (k.clone(), s)))
            .collect();
        async move {
            Ok(Loaded {
                states,
                calls: keys.len().div_ceil(100),
            })
        }
        .boxed()
    }

    fn save<'s>(
        &'s self,
        key: &'s str,
        expected: Option<State>,
        new: State,
        expires_at_s: i64,
    ) -> BoxFuture<'s, Result<Saved, StoreError>> {
        let saved = {
            let mut keys = self.lock();
            if live(&keys, key) == expected {
                keys.insert(key.to_owned(), (new, expires_at_s));
                Saved::Written
            } else {
                Saved::Conflict
            }
        };
        async move { Ok(saved) }.boxed()
    }
}

/// The state of `key` in `keys`, unless it has expired.
fn live(keys: &HashMap<String, (State, i64)>, key: &str) -> Option<State> {
    let now = now_s();
    keys.get(key)
        .filter(|(_, expires)| *expires > now)
        .map(|(s, _)| *s)
}
