//! What a session store does: read the state of many keys at once, and write one key's state
//! only if it is still what was read (compare-and-set, §18.6), with an expiry (§18.6: keys
//! expire after `2 × timeout + 1 day` without events).

use std::collections::HashMap;

use futures::future::BoxFuture;

use crate::assign::State;

/// The states found, by key (a key without state is absent), and the store calls it took.
#[derive(Debug, Default)]
pub struct Loaded {
    pub states: HashMap<String, State>,
    pub calls: usize,
}

/// The result of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Written,
    /// Another instance changed the key since it was read: read and assign it again.
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the session store throttled the request: {0}")]
    Throttled(String),
    #[error("the session store failed: {0}")]
    Failed(String),
}

/// A place every instance of a function shares for the sessions' state.
pub trait SessionStore: Send + Sync {
    /// The states of `keys` (at most a few thousand; the store splits them into calls).
    fn load<'s>(&'s self, keys: &'s [String]) -> BoxFuture<'s, Result<Loaded, StoreError>>;

    /// Writes `new` for `key` if its state is still `expected` (`None`: the key has none), to
    /// expire at `expires_at_s` (epoch seconds).
    fn save<'s>(
        &'s self,
        key: &'s str,
        expected: Option<State>,
        new: State,
        expires_at_s: i64,
    ) -> BoxFuture<'s, Result<Saved, StoreError>>;
}

/// Now, in epoch seconds: the unit of the keys' expiry.
pub(crate) fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
