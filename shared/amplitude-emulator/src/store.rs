//! What the emulated Amplitude holds: ingested objects, the `insert_id` dedup window, the
//! per-user/per-device rate windows, deletion jobs, and request counts.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::config::EmulatorConfig;
use crate::faults::Fault;
use crate::users::{self, Groups, Users};

/// Amplitude ignores a repeated `insert_id` for 7 days (amplitude-api §2.4).
const DEDUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Default)]
pub struct Store {
    /// Shared so request handlers can validate without holding the store's lock.
    pub config: Arc<EmulatorConfig>,
    pub faults: VecDeque<Fault>,
    pub ingested: Ingested,
    /// `api_key \0 device_id \0 insert_id` → when it was first stored.
    dedup: HashMap<String, Instant>,
    windows: HashMap<(String, bool, String), VecDeque<(Instant, u32)>>,
    daily: HashMap<(String, String), u64>,
    pub known_users: HashSet<String>,
}

/// Everything Amplitude accepted, readable in-process and over the admin route.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Ingested {
    /// Stored events (after dedup), each with `_endpoint` and `_api_key` added.
    pub events: Vec<Value>,
    pub identifies: Vec<Value>,
    pub group_identifies: Vec<Value>,
    pub mappings: Vec<Value>,
    pub deletion_jobs: Vec<DeletionJob>,
    /// User properties after every identification and stored event (see `users`).
    pub users: Users,
    /// Group properties after every `/groupidentify` identification and stored
    /// `$groupidentify` event (see `users`).
    pub groups: Groups,
    /// insert_id → times it arrived in an accepted request / times it was stored.
    pub insert_ids: HashMap<String, InsertIdCount>,
    /// Items a scripted 400 named by index (`InvalidIndices`): refused, not stored. What a
    /// client may rightly drop for good.
    pub named_invalid: Vec<Value>,
    /// Requests received per path (faults included).
    pub requests: BTreeMap<String, usize>,
    /// When each request arrived, per path, in ms since the epoch (for rate checks).
    pub requests_at: BTreeMap<String, Vec<u64>>,
    /// Requests received under `/_host/{host}/…`, per `host/path`: which Amplitude host the
    /// client meant (standard or EU).
    pub hosts: BTreeMap<String, usize>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InsertIdCount {
    pub received: usize,
    pub stored: usize,
}

/// A deletion job as Amplitude lists it, and the project it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeletionJob {
    #[serde(flatten)]
    pub job: amplitude_wire::DeletionJob,
    #[serde(skip)]
    pub api_key: String,
}

impl std::ops::Deref for DeletionJob {
    type Target = amplitude_wire::DeletionJob;

    fn deref(&self) -> &Self::Target {
        &self.job
    }
}

impl Store {
    pub fn new(config: EmulatorConfig) -> Self {
        Store {
            config: Arc::new(config),
            ..Store::default()
        }
    }

    /// The next scripted fault for `route`, if any.
    pub fn take_fault(&mut self, route: &str) -> Option<Fault> {
        let pos = self.faults.iter().position(|f| f.applies_to(route))?;
        self.faults.remove(pos)
    }

    pub fn count_request(&mut self, route: &str) {
        *self.ingested.requests.entry(route.to_owned()).or_default() += 1;
        self.ingested
            .requests_at
            .entry(route.to_owned())
            .or_default()
            .push(crate::events::now_ms());
    }

    /// Stores accepted events, skipping those whose `(api_key, device_id, insert_id)` was seen
    /// in the dedup window.
    pub fn store_events(&mut self, endpoint: &str, api_key: &str, events: Vec<Value>) {
        let now = Instant::now();
        let count_daily = self.config.daily_quota.is_some();
        for mut event in events {
            let user = event.get("user_id").and_then(Value::as_str);
            let device = event.get("device_id").and_then(Value::as_str);
            if let Some(u) = user
                && !self.known_users.contains(u)
            {
                self.known_users.insert(u.to_owned());
            }
            if count_daily {
                for id in [user, device].into_iter().flatten() {
                    *self
                        .daily
                        .entry((api_key.to_owned(), id.to_owned()))
                        .or_default() += 1;
                }
            }
            if let Some(insert_id) = event.get("insert_id").and_then(Value::as_str) {
                let key = format!("{api_key}\0{}\0{insert_id}", device.unwrap_or_default());
                let count = match self.ingested.insert_ids.get_mut(insert_id) {
                    Some(c) => c,
                    None => self
                        .ingested
                        .insert_ids
                        .entry(insert_id.to_owned())
                        .or_default(),
                };
                count.received += 1;
                match self.dedup.get(&key) {
                    Some(seen) if now.duration_since(*seen) < DEDUP_WINDOW => continue,
                    _ => {
                        self.dedup.insert(key, now);
                        count.stored += 1;
                    }
                }
            }
            // `$skip_user_properties_sync`: stored, the user's properties untouched (a backfill).
            if event.get(crate::events::SKIP_SYNC) != Some(&Value::Bool(true)) {
                users::apply(&mut self.ingested.users, &event);
            }
            users::apply_group_event(&mut self.ingested.groups, &event);
            if let Some(o) = event.as_object_mut() {
                o.insert("_endpoint".into(), Value::from(endpoint));
                o.insert("_api_key".into(), Value::from(api_key));
            }
            self.ingested.events.push(event);
        }
    }

    /// Stores identifications; Amplitude has no dedup here, so each is applied every time.
    pub fn store_identifies(&mut self, list: Vec<Value>) {
        for i in &list {
            if let Some(u) = i.get("user_id").and_then(Value::as_str) {
                self.known_users.insert(u.to_owned());
            }
            users::apply(&mut self.ingested.users, i);
        }
        self.ingested.identifies.extend(list);
    }

    /// Stores group identifications; applied every time, as identifications are.
    pub fn store_group_identifies(&mut self, list: Vec<Value>) {
        for i in &list {
            users::apply_group_identification(&mut self.ingested.groups, i);
        }
        self.ingested.group_identifies.extend(list);
    }

    /// Users and devices over `eps × window` events in the current window, counting this
    /// request's events (amplitude-api §9.2.9). Records the events when nobody is over.
    pub fn rate_check(
        &mut self,
        api_key: &str,
        eps: u32,
        counts: &HashMap<(bool, &str), u32>,
    ) -> Vec<((bool, String), u32)> {
        let window = Duration::from_secs(self.config.rate_window_secs.max(1));
        let now = Instant::now();
        let allowed = u64::from(eps) * window.as_secs();
        let mut over = Vec::new();
        for (&(is_user, id), &n) in counts {
            let key = (api_key.to_owned(), is_user, id.to_owned());
            let q = self.windows.entry(key).or_default();
            while q
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) >= window)
            {
                q.pop_front();
            }
            let current: u64 = q.iter().map(|(_, c)| u64::from(*c)).sum::<u64>() + u64::from(n);
            if current > allowed {
                let eps_now = u32::try_from(current / window.as_secs()).unwrap_or(u32::MAX);
                over.push(((is_user, id.to_owned()), eps_now));
            }
        }
        if over.is_empty() {
            for (&(is_user, id), &n) in counts {
                let key = (api_key.to_owned(), is_user, id.to_owned());
                self.windows.entry(key).or_default().push_back((now, n));
            }
        }
        over
    }

    /// Users/devices of this request over the daily quota, when one is configured.
    pub fn over_daily_quota(
        &self,
        api_key: &str,
        ids: &[(bool, &str)],
    ) -> Vec<((bool, String), u64)> {
        let Some(quota) = self.config.daily_quota else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|(u, id)| {
                let n = *self
                    .daily
                    .get(&(api_key.to_owned(), (*id).to_owned()))
                    .unwrap_or(&0);
                (n >= quota).then(|| ((*u, (*id).to_owned()), n))
            })
            .collect()
    }

    pub fn reset(&mut self) {
        let config = std::mem::take(&mut self.config);
        *self = Store {
            config,
            ..Store::default()
        };
    }
}
