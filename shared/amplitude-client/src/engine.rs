//! The delivery engine. Items are grouped into one **lane per endpoint**, and the lanes run
//! concurrently, so a failing or slow endpoint holds back only its own items: an `/identify`
//! that answers 503 for the whole budget does not keep the events of the same batch from
//! being sent. Within a lane, batches go out concurrently; each response's [`Verdict`] decides
//! what happens to the batch's items (done, dropped with a reason, split, resent at once, or
//! kept retryable). Nothing is dropped silently: every item ends `Delivered`, `Rejected` or
//! `Retryable`.
//!
//! Ordering: identifications and events of one batch may reach Amplitude in any order. Segment
//! itself does not guarantee ordering, and the operations that must not be applied twice go as
//! `$identify` events, in order with the events of the same endpoint (mapping spec §8.1.4).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use amplitude_wire::DeletionJob;
use mapping::{Endpoint, Plan, Region};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::batch::{self, Limits};
use crate::encode::{self, Frame, Item};
use crate::outcome::{
    ItemRejection, ItemState, Report, RequestRecord, RetryCause, Undelivered, fold,
};
use crate::policy::{Throttle, Verdict};
use crate::send::Resolution;
use crate::{AmplitudeClient, Credentials, Shared};

/// A 413 for one item within the endpoint's limits is not about that item.
const LONE_ITEM_413: &str = "Amplitude 413 for one item within its limits";

/// An item Amplitude throttled (429), or every item of a 429 that names none of them.
const THROTTLED: &str = "Amplitude throttled this user or device";

/// A 400 for one item whose index lists name only indices past the request: Amplitude lists
/// events it received, so the answer is not about this item.
const LONE_ITEM_UNLISTED_400: &str =
    "Amplitude 400 for one item, listing only indices past the request";

impl AmplitudeClient {
    /// Delivers the planned requests of `plans` (one per Segment message) with `credentials`
    /// to `region`'s hosts, batching across messages, and stops retrying before `deadline`.
    /// Returns one outcome per message.
    pub async fn deliver(
        &self,
        plans: &[Plan<'_>],
        region: Region,
        credentials: &Credentials,
        deadline: Instant,
    ) -> Report {
        let items: Vec<Item> = plans
            .iter()
            .enumerate()
            .flat_map(|(m, p)| encode::items(m, p))
            .collect();
        self.deliver_items(items, plans.len(), region, credentials, deadline)
            .await
    }

    /// Delivers items already in wire form (e.g. taken back from a durable queue). Their
    /// `message` fields index `0..messages`; the report has one outcome per message.
    pub async fn deliver_items(
        &self,
        items: Vec<Item>,
        messages: usize,
        region: Region,
        credentials: &Credentials,
        deadline: Instant,
    ) -> Report {
        let delivery = Arc::new(Delivery {
            shared: self.shared.clone(),
            items,
            region,
            credentials: credentials.clone(),
            deadline,
            refused: OnceLock::new(),
        });
        let mut lanes = JoinSet::new();
        // Every endpoint, one lane each.
        for endpoint in Endpoint::ALL {
            let lane = delivery.lane(endpoint);
            if !lane.queue.is_empty() {
                lanes.spawn(delivery.clone().run(lane));
            }
        }
        let mut states = vec![ItemState::Pending; delivery.items.len()];
        let mut report = Report::default();
        while let Some(done) = lanes.join_next().await {
            // A lane that failed leaves its items pending: they are reported retryable below.
            let Ok(lane) =
                done.inspect_err(|e| tracing::error!(error = %e, "delivery lane failed"))
            else {
                continue;
            };
            for (i, state) in lane.states {
                if let Some(slot) = states.get_mut(i) {
                    *slot = state;
                }
            }
            report.requests.extend(lane.records);
            report.deletion_jobs.extend(lane.deletion_jobs);
        }
        report.credentials_refused = delivery.refused.get().cloned();
        let items = Arc::into_inner(delivery).map_or_else(Vec::new, |d| d.items);
        let states: Vec<ItemState> = states.into_iter().map(ItemState::settled).collect();
        let mut by_message: Vec<Vec<&ItemState>> = vec![Vec::new(); messages];
        for (item, state) in items.iter().zip(&states) {
            if let Some(list) = by_message.get_mut(item.message) {
                list.push(state);
            }
        }
        report.outcomes = by_message
            .into_iter()
            .map(|list| fold(list.into_iter()))
            .collect();
        for (item, state) in items.into_iter().zip(states) {
            match state {
                ItemState::Retryable { reason, cause } => report.undelivered.push(Undelivered {
                    item,
                    reason,
                    cause,
                }),
                ItemState::Rejected(reason) => report.rejections.push(ItemRejection {
                    message: item.message,
                    endpoint: item.endpoint,
                    reason,
                }),
                ItemState::Delivered | ItemState::Pending => {}
            }
        }
        report
    }
}

/// One delivery: what every lane shares.
struct Delivery {
    shared: Arc<Shared>,
    items: Vec<Item>,
    region: Region,
    credentials: Credentials,
    deadline: Instant,
    /// Set once Amplitude refuses the credentials: no lane starts another request with them.
    refused: OnceLock<String>,
}

/// The requests of one endpoint and what became of its items.
struct Lane {
    endpoint: Endpoint,
    /// Batches to send (item indices); follow-ups go to the front so they are sent at once.
    queue: VecDeque<Vec<usize>>,
    states: HashMap<usize, ItemState>,
    records: Vec<RequestRecord>,
    deletion_jobs: Vec<DeletionJob>,
}

/// What a partial answer means for one item of the request.
enum Triage {
    /// Refused for good, with Amplitude's reason.
    Reject(String),
    /// Throttled: kept retryable, to be sent after Amplitude's delay.
    Hold,
    /// Fine: sent again at once.
    Resend,
}

/// What becomes of an item left alone by splitting a request that was refused as a whole.
enum Lone {
    /// The refusal was about it: refused for good, with Amplitude's reason.
    Reject(String),
    /// The refusal cannot be about it: kept retryable, with this reason.
    Keep(&'static str),
}

impl Delivery {
    /// This endpoint's items packed into as few requests as its limits allow.
    fn lane(&self, endpoint: Endpoint) -> Lane {
        let config = &self.shared.config;
        let indices: Vec<usize> = (0..self.items.len())
            .filter(|&i| self.items.get(i).is_some_and(|it| it.endpoint == endpoint))
            .collect();
        let frame = Frame::new(
            endpoint,
            "",
            config.min_id_length,
            &config.deletion_requester,
        );
        // The real key's length only adds a constant; leave room for it.
        let mut limits = Limits::of(endpoint);
        limits.max_bytes = limits.max_bytes.saturating_sub(config.max_api_key_len * 3);
        if let Some(cap) = config.max_items_per_request {
            limits.max_items = limits.max_items.min(cap.max(1));
        }
        Lane {
            endpoint,
            queue: batch::pack(&self.items, &indices, &frame, limits).into(),
            states: HashMap::new(),
            records: Vec::new(),
            deletion_jobs: Vec::new(),
        }
    }

    /// Runs one lane to the end: every batch answered, split, resent or given up.
    async fn run(self: Arc<Self>, mut lane: Lane) -> Lane {
        let concurrency = self.shared.config.concurrency.max(1);
        let mut running = JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, Vec<usize>> = HashMap::new();
        loop {
            while running.len() < concurrency {
                let Some(batch) = lane.queue.pop_front() else {
                    break;
                };
                if let Some(reason) = self.refused.get() {
                    lane.hold(&batch, reason, RetryCause::Refused);
                    continue;
                }
                let delivery = self.clone();
                let (endpoint, sent) = (lane.endpoint, batch.clone());
                let task = running.spawn(async move {
                    let mut records = Vec::new();
                    let resolution = delivery.send(endpoint, &sent, &mut records).await;
                    (resolution, records)
                });
                in_flight.insert(task.id(), batch);
            }
            match running.join_next_with_id().await {
                None => break,
                Some(Ok((id, (resolution, records)))) => {
                    let batch = in_flight.remove(&id).unwrap_or_default();
                    lane.records.extend(records);
                    lane.apply(&self, batch, resolution);
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "delivery task failed");
                    let batch = in_flight.remove(&e.id()).unwrap_or_default();
                    lane.hold(&batch, "the delivery task failed", RetryCause::Transient);
                }
            }
        }
        lane
    }

    /// How this delivery's requests to `endpoint` are framed.
    fn frame(&self, endpoint: Endpoint) -> Frame {
        let config = &self.shared.config;
        Frame::new(
            endpoint,
            self.credentials.api_key(),
            config.min_id_length,
            &config.deletion_requester,
        )
    }

    /// Sends one batch through the retry loop.
    async fn send(
        &self,
        endpoint: Endpoint,
        batch: &[usize],
        records: &mut Vec<RequestRecord>,
    ) -> Resolution {
        let config = &self.shared.config;
        let frame = self.frame(endpoint);
        let wires = batch
            .iter()
            .filter_map(|&i| self.items.get(i))
            .map(|it| it.wire.as_str());
        let body = bytes::Bytes::from(frame.body(wires));
        let url = crate::target_url(config.base_url.as_deref(), endpoint, self.region);
        self.shared
            .send_with_retries(endpoint, batch.len(), self.deadline, records, |timeout| {
                let request = self
                    .shared
                    .http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, frame.content_type)
                    .timeout(timeout)
                    .body(body.clone());
                if endpoint == Endpoint::Deletion {
                    request.basic_auth(self.credentials.api_key(), self.credentials.secret_key())
                } else {
                    request
                }
            })
            .await
    }

    fn item(&self, i: usize) -> Option<&Item> {
        self.items.get(i)
    }

    /// True when one item alone is larger than its endpoint accepts in a request.
    fn exceeds_limit(&self, endpoint: Endpoint, item: usize) -> bool {
        let frame = self.frame(endpoint);
        let size = self.item(item).map_or(0, |it| it.wire.len());
        frame.size(std::iter::once(size)) > Limits::of(endpoint).max_bytes
    }
}

impl Lane {
    /// Applies how a batch ended to its items.
    fn apply(&mut self, delivery: &Delivery, batch: Vec<usize>, resolution: Resolution) {
        let (verdict, body) = match resolution {
            Resolution::GaveUp { reason } => {
                return self.hold(&batch, &reason, RetryCause::Transient);
            }
            Resolution::Answered { verdict, body } => (*verdict, body),
        };
        match verdict {
            Verdict::Delivered => self.delivered(&batch, &body),
            Verdict::CredentialsRefused { reason } => {
                self.credentials_refused(delivery, &batch, reason)
            }
            Verdict::RequestRefused { reason } => self.hold(&batch, &reason, RetryCause::Refused),
            Verdict::DropListed {
                rejected,
                throttled,
            } => self.drop_listed(batch, &rejected, &throttled),
            Verdict::Isolate { reason } => self.split(batch, |_| Lone::Reject(reason.clone())),
            Verdict::TooLarge => self.too_large(delivery, batch),
            Verdict::Throttled(t) => self.throttled(delivery, batch, &t),
            Verdict::Retry { reason } => self.hold(&batch, &reason, RetryCause::Transient),
        }
    }

    fn delivered(&mut self, batch: &[usize], body: &[u8]) {
        self.settle(batch, ItemState::Delivered);
        if self.endpoint == Endpoint::Deletion {
            self.deletion_jobs
                .extend(amplitude_wire::parse_deletion_jobs(body).unwrap_or_default());
        }
    }

    /// The key is refused: these items and every batch not sent yet, on every lane, stay
    /// retryable, and the caller is told to refresh its secrets.
    fn credentials_refused(&mut self, delivery: &Delivery, batch: &[usize], reason: String) {
        let reason = format!("configuration: {reason}");
        let _ = delivery.refused.set(reason.clone());
        self.hold(batch, &reason, RetryCause::Refused);
    }

    /// A 400 listing indices: the listed items are rejected, throttled ones held, the rest
    /// resent at once. When every index listed is past the request (a misbehaving server),
    /// the answer names none of its items: the request is split, as a 400 naming no event is, so the
    /// items Amplitude takes are delivered, and an item left alone with such an answer is kept
    /// retryable, not rejected.
    fn drop_listed(
        &mut self,
        batch: Vec<usize>,
        rejected: &[(usize, String)],
        throttled: &std::collections::HashSet<usize>,
    ) {
        self.triage(
            batch,
            |pos, _| {
                let listed = rejected.binary_search_by_key(&pos, |(p, _)| *p).ok();
                match listed.and_then(|k| rejected.get(k)) {
                    Some((_, why)) => Triage::Reject(why.clone()),
                    None if throttled.contains(&pos) => Triage::Hold,
                    None => Triage::Resend,
                }
            },
            |lane, batch| lane.split(batch, |_| Lone::Keep(LONE_ITEM_UNLISTED_400)),
        );
    }

    /// A 429: users or devices over their daily quota are rejected, throttled ones held for
    /// Amplitude's delay, the others resent at once. A body that names none of the request's
    /// items (nobody at all, or only users, devices or indices not in it) throttles the
    /// request as a whole: every item is held.
    fn throttled(&mut self, delivery: &Delivery, batch: Vec<usize>, t: &Throttle) {
        let named = |set: &std::collections::HashSet<String>, id: Option<&String>| {
            id.is_some_and(|id| set.contains(id))
        };
        let fate = |pos: usize, i: usize| {
            let Some(item) = delivery.item(i) else {
                return Triage::Hold;
            };
            let (user, device) = (item.user_id.as_ref(), item.device_id.as_ref());
            if named(&t.quota_users, user) || named(&t.quota_devices, device) {
                Triage::Reject("Amplitude 429: the user or device exceeded its daily quota".into())
            } else if t.events.contains(&pos) || named(&t.users, user) || named(&t.devices, device)
            {
                Triage::Hold
            } else {
                Triage::Resend
            }
        };
        self.triage(batch, fate, |lane, batch| {
            lane.hold(&batch, THROTTLED, RetryCause::Throttled)
        });
    }

    /// A 413: halves are sent at once. One item alone is rejected only when it really is
    /// larger than the endpoint accepts; otherwise the 413 is not about it and it stays
    /// retryable (a misbehaving server must not cost a valid event).
    fn too_large(&mut self, delivery: &Delivery, batch: Vec<usize>) {
        let endpoint = self.endpoint;
        self.split(batch, |i| {
            if delivery.exceeds_limit(endpoint, i) {
                Lone::Reject("Amplitude 413: larger than Amplitude accepts in one request".into())
            } else {
                Lone::Keep(LONE_ITEM_413)
            }
        });
    }

    /// Splits a batch in halves (sent at once); a single item gets `lone`'s fate.
    fn split(&mut self, mut batch: Vec<usize>, lone: impl Fn(usize) -> Lone) {
        if let [only] = batch[..] {
            return match lone(only) {
                Lone::Reject(reason) => self.settle(&batch, ItemState::Rejected(reason)),
                Lone::Keep(reason) => self.hold(&batch, reason, RetryCause::Transient),
            };
        }
        let second = batch.split_off(batch.len() / 2);
        self.queue.push_front(second);
        self.queue.push_front(batch);
    }

    /// Applies each item's fate (`fate` of its position in the request and its index). The
    /// survivors are resent at once. An answer that names none of the items (every fate a
    /// resend) would get the same answer again: `unnamed` decides what becomes of the request.
    fn triage(
        &mut self,
        batch: Vec<usize>,
        fate: impl Fn(usize, usize) -> Triage,
        unnamed: impl FnOnce(&mut Self, Vec<usize>),
    ) {
        let fates: Vec<Triage> = batch
            .iter()
            .enumerate()
            .map(|(pos, &i)| fate(pos, i))
            .collect();
        if !fates.is_empty() && fates.iter().all(|f| matches!(f, Triage::Resend)) {
            return unnamed(self, batch);
        }
        let mut rest = Vec::new();
        for (fate, i) in fates.into_iter().zip(batch) {
            match fate {
                Triage::Reject(reason) => self.settle(&[i], ItemState::Rejected(reason)),
                Triage::Hold => self.hold(&[i], THROTTLED, RetryCause::Throttled),
                Triage::Resend => rest.push(i),
            }
        }
        if !rest.is_empty() {
            self.queue.push_front(rest);
        }
    }

    /// Keeps items retryable.
    fn hold(&mut self, items: &[usize], reason: &str, cause: RetryCause) {
        self.settle(
            items,
            ItemState::Retryable {
                reason: reason.to_owned(),
                cause,
            },
        );
    }

    fn settle(&mut self, items: &[usize], state: ItemState) {
        for &i in items {
            self.states.insert(i, state.clone());
        }
    }
}
