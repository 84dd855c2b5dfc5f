//! **Delivery: from messages to outcomes.** Planning turns each message on its own into the
//! items Amplitude gets, or its final outcome ([`planning`]); with `sessionize` on, the events
//! that need a session get one first (`sessions`); the client delivers the items,
//! a bounded chunk at a time (`stream`), and in direct mode a deletion Amplitude accepted is not
//! sent again by the request's retries (`recent_deletions`);
//! settlement does what follows every delivery, for the ingest functions and the redeliver
//! function alike ([`settlement`]); and [`outcome`] names what became of each message and
//! counts it, once, for the reply, the logs and the metrics.
//!
//! Nothing here reads a Lambda payload or writes an answer (`ingest`); queues are reached only
//! through settlement's store step (`durable`).

mod outcome;
pub mod planning;
pub(crate) mod recent_deletions;
mod sessions;
pub(crate) mod settlement;
pub(crate) mod stream;

pub use outcome::{Counts, Entry, MessageOutcome, RejectedBy, Tally};
pub(crate) use outcome::{json_prefix, json_reason};
