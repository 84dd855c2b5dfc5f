//! **Server-side sessions** (mapping spec §18). Sources that run on servers, and apps without
//! Amplitude's session plugin, send no session id, so their events sit outside every session
//! in Amplitude. With `sessionize` on, the mapping marks which events need one and by which key
//! (`mapping::SessionNeed`); this crate picks the ids from the events' own times and a little
//! state per key, kept in a store every instance shares.
//!
//! * [`assign`]: the rules of §18.5, pure — a key's state and its events in, their session ids
//!   and the key's next state out;
//! * [`store`]: what a store does ([`SessionStore`]: read many keys, compare-and-set one), with
//!   [`MemoryStore`] (the local runner, tests) and [`DynamoStore`] (AWS);
//! * [`stage`]: [`Sessionizer`], the step between planning and delivery — read, assign, write
//!   back conditionally, assign again on a conflict (§18.6), all within a small budget; when
//!   the store fails or is slow the events go without a synthesised session (§18.8): delivery
//!   never waits on sessions.

pub mod assign;
mod dynamodb;
mod memory;
pub mod stage;
pub mod store;

pub use assign::{OUT_OF_SESSION, State};
pub use dynamodb::DynamoStore;
pub use memory::MemoryStore;
pub use stage::{Assigned, Need, Sessionizer};
pub use store::{Loaded, Saved, SessionStore, StoreError};
