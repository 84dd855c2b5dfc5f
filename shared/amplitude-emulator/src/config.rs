//! What the emulator accepts and enforces. Defaults follow amplitude-api.md; every fact the
//! contract marks [Unconfirmed] is a switch here, so tests can exercise both readings.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EmulatorConfig {
    /// Accepted API keys; empty accepts any non-empty key. Others get
    /// `400 Invalid API key: <key>`.
    pub api_keys: BTreeSet<String>,
    /// API key → secret key, for the User Privacy API's Basic auth. Empty accepts any
    /// non-empty secret for an accepted API key.
    pub secret_keys: BTreeMap<String, String>,
    /// Body limits in bytes (413 above them).
    pub httpapi_max_bytes: usize,
    pub batch_max_bytes: usize,
    pub form_max_bytes: usize,
    /// Events per request (413 above). "Fewer than 2000" vs "up to 2,000" is unconfirmed.
    pub max_events: usize,
    /// Default minimum id length; `options.min_id_length` overrides it per request.
    pub min_id_length: usize,
    /// Events per second per user and per device, averaged over `rate_window_secs`.
    pub httpapi_eps: u32,
    pub batch_eps: u32,
    pub rate_window_secs: u64,
    /// Events per user or device per day before `exceeded_daily_quota_*` (off when `None`).
    pub daily_quota: Option<u64>,
    /// Device ids Amplitude has silenced (400 silenced body).
    pub silenced_devices: BTreeSet<String>,
    /// List only the first bad index per field (one reading of the docs) instead of all.
    pub first_index_only: bool,
    /// Deletion jobs are scheduled this many days after the request.
    pub deletion_delay_days: i64,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            api_keys: BTreeSet::new(),
            secret_keys: BTreeMap::new(),
            httpapi_max_bytes: 1_000_000,
            batch_max_bytes: 20_000_000,
            form_max_bytes: 1_000_000,
            max_events: 2000,
            min_id_length: 5,
            httpapi_eps: 30,
            batch_eps: 1000,
            rate_window_secs: 30,
            daily_quota: None,
            silenced_devices: BTreeSet::new(),
            first_index_only: false,
            deletion_delay_days: 3,
        }
    }
}

impl EmulatorConfig {
    pub fn key_ok(&self, key: &str) -> bool {
        !key.is_empty() && (self.api_keys.is_empty() || self.api_keys.contains(key))
    }
}
