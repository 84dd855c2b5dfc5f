//! The delivery engine: batches go out concurrently; each response's [`Verdict`] decides what
//! happens to the batch's items (done, dropped with a reason, split, resent at once, retried
//! with backoff, or handed back as retryable). Nothing is dropped silently: every item ends
//! `Delivered`, `Rejected` or `Retryable`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mapping::{Endpoint, Plan, Settings};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::batch::{self, Limits};
use crate::encode::{self, Frame, Item};
use crate::outcome::{ItemState, Report, fold};
use crate::policy::{Verdict, classify_for};
use crate::{AmplitudeClient, Shared};

/// Endpoints in the order their phases run: user and group properties are set before the
/// events that follow them, and mappings and deletions come last.
const PHASES: [&[Endpoint]; 4] = [
    &[Endpoint::Identify],
    &[Endpoint::GroupIdentify],
    &[Endpoint::HttpApi, Endpoint::Batch, Endpoint::UserMap],
    &[Endpoint::Deletion],
];

/// One request to make: items of one endpoint (and requester), in order.
#[derive(Debug, Clone)]
struct Job {
    endpoint: Endpoint,
    requester: Option<String>,
    items: Vec<usize>,
}

/// How a request ended.
pub(crate) enum Resolution {
    Answered {
        verdict: Box<Verdict>,
        body: Vec<u8>,
    },
    /// Transient failures until the deadline (or the attempt cap) left no room to retry.
    GaveUp { reason: String },
}

impl AmplitudeClient {
    /// Delivers the planned requests of `plans` (one per Segment message), batching across
    /// messages, and stops retrying before `deadline`. Returns one outcome per message.
    pub async fn deliver(
        &self,
        plans: &[Plan<'_>],
        settings: &Settings,
        deadline: Instant,
    ) -> Report {
        let items: Vec<Item> = plans
            .iter()
            .enumerate()
            .flat_map(|(m, p)| encode::items(m, p))
            .collect();
        let mut states = vec![ItemState::Pending; items.len()];
        let items = Arc::new(items);
        let ctx = Arc::new(Context {
            shared: self.shared.clone(),
            items: items.clone(),
            api_key: settings.api_key().to_owned(),
            secret_key: settings.secret_key().map(str::to_owned),
            region: settings.region,
            deadline,
            sent: AtomicUsize::new(0),
        });
        let mut report = Report::default();

        for phase in PHASES {
            let mut queue: VecDeque<Job> = VecDeque::new();
            for &endpoint in phase {
                self.plan_jobs(&items, endpoint, &mut queue);
            }
            self.run_phase(&ctx, queue, &mut states, &mut report).await;
        }

        report.requests_sent = ctx.sent.load(Ordering::Relaxed);
        // Items are in message order, so each message's states are one contiguous run.
        let mut outcomes = Vec::with_capacity(plans.len());
        let mut at = 0;
        for m in 0..plans.len() {
            let end = at + items[at..].iter().take_while(|i| i.message == m).count();
            outcomes.push(fold(states[at..end].iter()));
            at = end;
        }
        report.outcomes = outcomes;
        report
    }

    fn plan_jobs(&self, items: &[Item], endpoint: Endpoint, queue: &mut VecDeque<Job>) {
        let mut requesters: Vec<Option<&str>> = Vec::new();
        for it in items.iter().filter(|i| i.endpoint == endpoint) {
            if !requesters.contains(&it.requester.as_deref()) {
                requesters.push(it.requester.as_deref());
            }
        }
        for requester in requesters {
            let indices: Vec<usize> = (0..items.len())
                .filter(|&i| {
                    items[i].endpoint == endpoint && items[i].requester.as_deref() == requester
                })
                .collect();
            let frame = Frame::new(endpoint, "", self.shared.config.min_id_length, requester);
            // The real key's length only adds a constant; leave room for it.
            let mut limits = Limits::of(endpoint);
            limits.max_bytes = limits
                .max_bytes
                .saturating_sub(self.shared.config.max_api_key_len * 3);
            if let Some(cap) = self.shared.config.max_items_per_request {
                limits.max_items = limits.max_items.min(cap.max(1));
            }
            for batch in batch::pack(items, &indices, &frame, limits) {
                queue.push_back(Job {
                    endpoint,
                    requester: requester.map(str::to_owned),
                    items: batch,
                });
            }
        }
    }

    async fn run_phase(
        &self,
        ctx: &Arc<Context>,
        mut queue: VecDeque<Job>,
        states: &mut [ItemState],
        report: &mut Report,
    ) {
        let mut running: JoinSet<(Job, Resolution)> = JoinSet::new();
        loop {
            while running.len() < self.shared.config.concurrency.max(1) {
                let Some(job) = queue.pop_front() else { break };
                if report.bad_credentials.is_some() {
                    let reason = report.bad_credentials.clone().unwrap_or_default();
                    hold(states, &job.items, &reason, false);
                    continue;
                }
                let ctx = ctx.clone();
                running.spawn(async move {
                    let resolution = ctx.send(&job).await;
                    (job, resolution)
                });
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            let (job, resolution) = match done {
                Ok(r) => r,
                Err(e) => {
                    // A panicking task cannot happen in normal operation; its items stay
                    // pending and are reported retryable, never lost.
                    tracing::error!(error = %e, "delivery task failed");
                    continue;
                }
            };
            match resolution {
                Resolution::GaveUp { reason } => hold(states, &job.items, &reason, false),
                Resolution::Answered { verdict, body } => {
                    apply(ctx, job, *verdict, &body, states, report, &mut queue)
                }
            }
        }
    }
}

/// Marks items retryable (the caller will have Segment send them again).
fn hold(states: &mut [ItemState], items: &[usize], reason: &str, throttled: bool) {
    for &i in items {
        states[i] = ItemState::Retryable {
            reason: reason.to_owned(),
            throttled,
        };
    }
}

fn reject(states: &mut [ItemState], items: &[usize], reason: &str) {
    for &i in items {
        states[i] = ItemState::Rejected(reason.to_owned());
    }
}

/// Applies a response's verdict to a job's items; follow-up requests go to the front of the
/// queue so they are sent at once.
fn apply(
    ctx: &Context,
    job: Job,
    verdict: Verdict,
    body: &[u8],
    states: &mut [ItemState],
    report: &mut Report,
    queue: &mut VecDeque<Job>,
) {
    let follow_up = |items: Vec<usize>| Job {
        endpoint: job.endpoint,
        requester: job.requester.clone(),
        items,
    };
    match verdict {
        Verdict::Delivered => {
            for &i in &job.items {
                states[i] = ItemState::Delivered;
            }
            if job.endpoint == Endpoint::Deletion
                && let Ok(jobs) = serde_json::from_slice::<serde_json::Value>(body)
            {
                match jobs {
                    serde_json::Value::Array(list) => report.deletion_jobs.extend(list),
                    other => report.deletion_jobs.push(other),
                }
            }
        }
        Verdict::BadCredentials { reason } => {
            let reason = format!("configuration: {reason}");
            hold(states, &job.items, &reason, false);
            report.bad_credentials = Some(reason);
        }
        Verdict::RejectAll { reason } | Verdict::Permanent { reason } => {
            reject(states, &job.items, &reason)
        }
        Verdict::DropListed {
            rejected,
            throttled,
        } => {
            let rest = triage(&job.items, states, |pos, _| {
                match rejected.iter().find(|(p, _)| *p == pos) {
                    Some((_, why)) => Fate::Reject(why.clone()),
                    None if throttled.contains(&pos) => Fate::Hold,
                    None => Fate::Resend,
                }
            });
            resend_or_hold(states, rest, job.items.len(), follow_up, queue);
        }
        Verdict::Isolate { reason } => split(job.items, &reason, states, follow_up, queue),
        Verdict::TooLarge => split(
            job.items,
            "Amplitude 413: larger than Amplitude accepts in one request",
            states,
            follow_up,
            queue,
        ),
        Verdict::Throttled(t) => {
            let nothing_named = t.events.is_empty()
                && t.users.is_empty()
                && t.devices.is_empty()
                && t.quota_users.is_empty()
                && t.quota_devices.is_empty();
            let named = |set: &std::collections::HashSet<String>, id: &Option<String>| {
                id.as_ref().is_some_and(|id| set.contains(id))
            };
            let rest = triage(&job.items, states, |pos, i| {
                let item = &ctx.items[i];
                if named(&t.quota_users, &item.user_id) || named(&t.quota_devices, &item.device_id)
                {
                    Fate::Reject(
                        "Amplitude 429: the user or device exceeded its daily quota".into(),
                    )
                } else if nothing_named
                    || t.events.contains(&pos)
                    || named(&t.users, &item.user_id)
                    || named(&t.devices, &item.device_id)
                {
                    Fate::Hold
                } else {
                    Fate::Resend
                }
            });
            resend_or_hold(states, rest, job.items.len(), follow_up, queue);
        }
        Verdict::Retry { reason } => hold(states, &job.items, &reason, false),
    }
}

/// What a partial answer means for one item of the request.
enum Fate {
    /// Refused for good, with Amplitude's reason.
    Reject(String),
    /// Throttled: handed back retryable, for Segment to send later.
    Hold,
    /// Fine: sent again at once.
    Resend,
}

/// Applies each item's fate (by its position in the request) and returns the items to resend.
fn triage(
    items: &[usize],
    states: &mut [ItemState],
    fate: impl Fn(usize, usize) -> Fate,
) -> Vec<usize> {
    let mut rest = Vec::new();
    for (pos, &i) in items.iter().enumerate() {
        match fate(pos, i) {
            Fate::Reject(reason) => states[i] = ItemState::Rejected(reason),
            Fate::Hold => hold(
                states,
                &[i],
                "Amplitude throttled this user or device",
                true,
            ),
            Fate::Resend => rest.push(i),
        }
    }
    rest
}

/// Resends the surviving items at once, unless the response removed none of them (then a
/// resend would get the same answer: hold them for Segment's retry instead).
fn resend_or_hold(
    states: &mut [ItemState],
    rest: Vec<usize>,
    sent: usize,
    follow_up: impl Fn(Vec<usize>) -> Job,
    queue: &mut VecDeque<Job>,
) {
    if rest.is_empty() {
        return;
    }
    if rest.len() == sent {
        hold(
            states,
            &rest,
            "Amplitude refused the request without naming an event",
            false,
        );
    } else {
        queue.push_front(follow_up(rest));
    }
}

/// Splits a batch in halves (sent at once); a single item is rejected with `reason`.
fn split(
    items: Vec<usize>,
    reason: &str,
    states: &mut [ItemState],
    follow_up: impl Fn(Vec<usize>) -> Job,
    queue: &mut VecDeque<Job>,
) {
    if items.len() == 1 {
        reject(states, &items, reason);
        return;
    }
    let mut first = items;
    let second = first.split_off(first.len() / 2);
    queue.push_front(follow_up(second));
    queue.push_front(follow_up(first));
}

/// What a send needs, shared with the spawned request tasks.
struct Context {
    shared: Arc<Shared>,
    items: Arc<Vec<Item>>,
    api_key: String,
    secret_key: Option<String>,
    region: mapping::Region,
    deadline: Instant,
    sent: AtomicUsize,
}

impl Context {
    fn url(&self, endpoint: Endpoint) -> String {
        crate::target_url(
            self.shared.config.base_url.as_deref(),
            endpoint,
            self.region,
        )
    }

    /// Sends a job, retrying transient failures with backoff while the deadline allows.
    async fn send(&self, job: &Job) -> Resolution {
        let config = &self.shared.config;
        let frame = Frame::new(
            job.endpoint,
            &self.api_key,
            config.min_id_length,
            job.requester.as_deref(),
        );
        let body = bytes::Bytes::from(
            frame.body(job.items.iter().map(|&i| self.items[i].wire.as_slice())),
        );
        let url = self.url(job.endpoint);
        self.shared
            .attempt(job.endpoint, self.deadline, |timeout| {
                self.sent.fetch_add(1, Ordering::Relaxed);
                let request = self
                    .shared
                    .http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, frame.content_type)
                    .timeout(timeout)
                    .body(body.clone());
                if job.endpoint == Endpoint::Deletion {
                    request.basic_auth(&self.api_key, self.secret_key.as_deref())
                } else {
                    request
                }
            })
            .await
    }
}

impl Shared {
    /// The one retry loop: sends the request `build` makes (given the time left for it) until
    /// Amplitude answers something other than a transient failure, waiting with backoff between
    /// attempts and never past `deadline`. Deletion requests also keep Amplitude's spacing.
    pub(crate) async fn attempt(
        &self,
        endpoint: Endpoint,
        deadline: Instant,
        build: impl Fn(Duration) -> reqwest::RequestBuilder,
    ) -> Resolution {
        let config = &self.config;
        let mut last = String::from("not sent before the deadline");
        for attempt in 0..config.max_attempts {
            if Instant::now() + config.min_request_time >= deadline {
                break;
            }
            if endpoint == Endpoint::Deletion && !self.wait_for_deletion_slot(deadline).await {
                break;
            }
            let timeout = config
                .request_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            match build(timeout).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match response.bytes().await {
                        Ok(b) => match classify_for(endpoint, status, &b) {
                            Verdict::Retry { reason } => last = reason,
                            verdict => {
                                return Resolution::Answered {
                                    verdict: Box::new(verdict),
                                    body: b.to_vec(),
                                };
                            }
                        },
                        Err(e) => last = format!("Amplitude {status}: response cut short ({e})"),
                    }
                }
                Err(e) => last = transport_reason(&e),
            }
            let delay = config.backoff.delay(attempt, &mut rand::rng());
            if Instant::now() + delay + config.min_request_time >= deadline {
                break;
            }
            tracing::debug!(endpoint = endpoint.as_str(), attempt, reason = %last, "retrying");
            tokio::time::sleep(delay).await;
        }
        Resolution::GaveUp { reason: last }
    }

    /// Amplitude allows one deletion request per second per project (amplitude-api §7.1).
    /// Returns false when the next slot is past the deadline.
    async fn wait_for_deletion_slot(&self, deadline: Instant) -> bool {
        let wait = {
            let mut next = self.next_deletion.lock().expect("lock is never poisoned");
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            if at + self.config.min_request_time >= deadline {
                return false;
            }
            *next = Some(at + self.config.deletion_interval);
            at - now
        };
        if wait > Duration::ZERO {
            tokio::time::sleep(wait).await;
        }
        true
    }
}

/// A transport failure as a reason without secrets (URLs carry none; bodies are not included).
fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "Amplitude did not answer in time".into()
    } else if e.is_connect() {
        "could not connect to Amplitude".into()
    } else {
        "the connection to Amplitude failed".into()
    }
}
