//! The retry policy: what each Amplitude response means for the items of a request
//! (amplitude-api §2.7), and how long to wait before retrying a transient failure.
//!
//! Pure: [`classify`] looks only at the endpoint, the status and the body, so every row of the
//! table is tested without a network.
//!
//! Two kinds of "no" are kept apart. An answer about **events** (a 400 listing indices, a lone
//! event that is too large or invalid, a user over its daily quota) is final for those events.
//! An answer about the **request or the configuration** (a bad key, 401, 403, 404, 405, 415, a
//! 400 that breaks the request as a whole, a redirect) says nothing about the events: they stay
//! retryable, so nothing valid is lost while someone fixes the key or the URL.

use std::collections::HashSet;
use std::collections::btree_map::{self, BTreeMap};
use std::time::Duration;

use amplitude_wire::ErrorBody;
use mapping::Endpoint;
use rand::Rng;

use crate::batch::Limits;

/// What a response tells the client to do with the request's items.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// 2xx: every item was accepted.
    Delivered,
    /// 400 `Invalid API key…` or 401: the credentials are refused. The items stay retryable,
    /// nothing more is sent with these credentials, and the caller refreshes its secrets.
    CredentialsRefused { reason: String },
    /// The request or the configuration is wrong, not an event (see the module docs): the
    /// items stay retryable and the request is not repeated.
    RequestRefused { reason: String },
    /// A 400 listing indices: drop exactly those (each with Amplitude's reason; sorted by
    /// index), resend the rest at once; `throttled` (a silenced-400's `throttled_events`) are
    /// held like a 429. Indices past the endpoint's largest request are left out here; the
    /// client, which knows the request's length, splits a request none of whose items is
    /// listed.
    DropListed {
        rejected: Vec<(usize, String)>,
        throttled: HashSet<usize>,
    },
    /// A 400 naming no event: split the request to isolate the bad item; one item alone is
    /// rejected with this reason.
    Isolate { reason: String },
    /// 413: split in halves; one item alone is too large only if it really exceeds the limit.
    TooLarge,
    /// 429: daily-quota users/devices are rejected, throttled ones held back (retried later,
    /// after the delay Amplitude asks for), the rest resent at once.
    Throttled(Throttle),
    /// 5xx, 408, timeouts, connection errors: retry with backoff while the deadline allows.
    Retry { reason: String },
}

/// The parts of a 429 body that decide each item's fate.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Throttle {
    pub events: HashSet<usize>,
    pub users: HashSet<String>,
    pub devices: HashSet<String>,
    pub quota_users: HashSet<String>,
    pub quota_devices: HashSet<String>,
}

impl Throttle {
    fn from_body(body: &ErrorBody) -> Throttle {
        let keys = |m: &Option<amplitude_wire::IdCounts>| {
            m.iter()
                .flat_map(|m| m.keys().cloned())
                .collect::<HashSet<_>>()
        };
        Throttle {
            events: body.throttled_events.iter().flatten().copied().collect(),
            users: keys(&body.throttled_users),
            devices: keys(&body.throttled_devices),
            quota_users: keys(&body.exceeded_daily_quota_users),
            quota_devices: keys(&body.exceeded_daily_quota_devices),
        }
    }
}

/// `error` texts of a 400 that mean the request itself is broken, not one of its events (when
/// the body lists no event).
const REQUEST_ERRORS: [&str; 5] = [
    "Invalid JSON request body",
    "Missing request body",
    "Invalid request path",
    "Invalid event JSON",
    "Request missing required field",
];

/// Orders statuses by how bad they are for the items: a refusal of the request beats 413,
/// which beats 429, which beats a transient 5xx, which beats success. When the HTTP status and
/// the body's `code` disagree (amplitude-api §2.6), the more severe one is trusted.
fn severity(status: u16) -> u8 {
    match status {
        200..=299 => 0,
        408 | 500..=599 => 1,
        429 => 2,
        413 => 3,
        _ => 4,
    }
}

/// Classifies one response of `endpoint`. `body` may be anything: form endpoints answer plain
/// text, and a misbehaving server anything at all.
pub fn classify(endpoint: Endpoint, http_status: u16, body: &[u8]) -> Verdict {
    let parsed = ErrorBody::parse(body);
    let status = match parsed.code.filter(|c| (100..600).contains(c)) {
        Some(c) if severity(c) > severity(http_status) => c,
        _ => http_status,
    };
    let error = quoted(parsed.error.as_deref().unwrap_or_default());
    let reason = |what: &str| {
        if error.is_empty() {
            format!("Amplitude {status}: {what}")
        } else {
            format!("Amplitude {status}: {error}")
        }
    };
    match status {
        200..=299 => Verdict::Delivered,
        401 => Verdict::CredentialsRefused {
            reason: format!("Amplitude {status}: invalid API key or secret key"),
        },
        // Amplitude's text echoes the key ("Invalid API key: <key>"): never copy it.
        400 if error.starts_with("Invalid API key") => Verdict::CredentialsRefused {
            reason: "Amplitude 400: Invalid API key".into(),
        },
        400 => classify_400(endpoint, &parsed, status, reason),
        413 => Verdict::TooLarge,
        // The User Privacy API's 429 is its per-project request rate (one request per second),
        // not a throttled user: it is retried with backoff and the deletion spacing.
        429 if endpoint == Endpoint::Deletion => Verdict::Retry {
            reason: "Amplitude 429: deletion requests over the rate limit".into(),
        },
        429 => Verdict::Throttled(Throttle::from_body(&parsed)),
        408 | 500..=599 => Verdict::Retry {
            reason: reason("server error"),
        },
        300..=399 => Verdict::RequestRefused {
            reason: format!(
                "Amplitude {status}: redirected (redirects are not followed; check AMPLITUDE_BASE_URL and the endpoint setting)"
            ),
        },
        _ => Verdict::RequestRefused {
            reason: reason("request refused"),
        },
    }
}

/// A 400: index lists decide whatever the `error` text says (Amplitude's own example pairs
/// `Request missing required field` with `events_with_invalid_fields`); without them,
/// `missing_field` or a request-level error refuses the request; otherwise the bad item is
/// isolated.
fn classify_400(
    endpoint: Endpoint,
    body: &ErrorBody,
    status: u16,
    reason: impl Fn(&str) -> String,
) -> Verdict {
    let error = quoted(body.error.as_deref().unwrap_or_default());
    if body.lists_events() {
        return drop_listed(endpoint, body, status, error);
    }
    if let Some(field) = &body.missing_field {
        return Verdict::RequestRefused {
            reason: format!(
                "Amplitude {status}: {error} (missing_field: {})",
                quoted(field)
            ),
        };
    }
    if REQUEST_ERRORS.contains(&error) {
        return Verdict::RequestRefused {
            reason: reason("bad request"),
        };
    }
    Verdict::Isolate {
        reason: reason("bad request"),
    }
}

/// The most bytes of a text of Amplitude's (its `error`, a field name it lists) a reason
/// quotes. Amplitude's are a few dozen bytes; a misbehaving server's can be megabytes, and
/// every rejected event of the request carries its reason.
const QUOTED_BYTES: usize = 200;

/// The most bytes one event's reason grows to as the fields listing it are added.
const REASON_BYTES: usize = 1024;

/// `text` cut to [`QUOTED_BYTES`], on a character boundary.
fn quoted(text: &str) -> &str {
    text.get(..text.floor_char_boundary(QUOTED_BYTES))
        .unwrap_or_default()
}

/// The listed events of a 400, each with every list that names it. An index past the most
/// items a request of `endpoint` holds names no event and is passed over, so a misbehaving
/// server listing millions of indices costs one look at each, not a search per index.
fn drop_listed(endpoint: Endpoint, body: &ErrorBody, status: u16, error: &str) -> Verdict {
    let max_items = Limits::of(endpoint).max_items;
    let in_request = |i: &&usize| **i < max_items;
    let mut rejected: BTreeMap<usize, String> = BTreeMap::new();
    for (map, fields) in body.index_maps() {
        for (field, indices) in fields.into_iter().flatten() {
            let field = quoted(field);
            for &i in indices.iter().filter(in_request) {
                match rejected.entry(i) {
                    btree_map::Entry::Occupied(mut e) if e.get().len() < REASON_BYTES => {
                        e.get_mut().push_str(&format!("; {map}: {field}"));
                    }
                    btree_map::Entry::Occupied(_) => {}
                    btree_map::Entry::Vacant(e) => {
                        e.insert(format!("Amplitude {status}: {error} ({map}: {field})"));
                    }
                }
            }
        }
    }
    for &i in body.silenced_events.iter().flatten().filter(in_request) {
        rejected
            .entry(i)
            .or_insert_with(|| format!("Amplitude {status}: {error} (silenced device)"));
    }
    let throttled: HashSet<usize> = body
        .throttled_events
        .iter()
        .flatten()
        .filter(in_request)
        .filter(|i| !rejected.contains_key(i))
        .copied()
        .collect();
    Verdict::DropListed {
        rejected: rejected.into_iter().collect(),
        throttled,
    }
}

/// How long Amplitude asks a throttled user or device to wait (amplitude-api §2.7, §3, §4):
/// 15 s on `/batch` and `/identify`, 30 s on HTTP V2 and the other APIs.
pub fn throttle_delay(endpoint: Endpoint) -> Duration {
    match endpoint {
        Endpoint::Batch | Endpoint::Identify => Duration::from_secs(15),
        _ => Duration::from_secs(30),
    }
}

/// Exponential backoff with jitter for transient failures: attempt *n* waits a random time
/// between half and all of `base × 2ⁿ`, capped at `max`. Half is kept fixed so that two
/// retries never fire back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let full = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        let half = full / 2;
        half + full.saturating_sub(half).mul_f64(rng.random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn c(status: u16, body: Value) -> Verdict {
        classify(Endpoint::HttpApi, status, body.to_string().as_bytes())
    }

    /// A `DropListed` verdict's rejected and held events.
    fn listed(v: Verdict) -> (Vec<(usize, String)>, HashSet<usize>) {
        match v {
            Verdict::DropListed {
                rejected,
                throttled,
            } => (rejected, throttled),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn row_200_is_delivered_and_so_is_form_success_text() {
        assert_eq!(
            c(200, json!({"code": 200, "events_ingested": 3})),
            Verdict::Delivered
        );
        assert_eq!(
            classify(Endpoint::Identify, 200, b"success"),
            Verdict::Delivered
        );
    }

    #[test]
    fn row_invalid_api_key_and_401_refuse_the_credentials() {
        assert_eq!(
            c(400, json!({"code": 400, "error": "Invalid API key: abc"})),
            Verdict::CredentialsRefused {
                reason: "Amplitude 400: Invalid API key".into()
            }
        );
        assert_eq!(
            classify(Endpoint::Deletion, 401, b""),
            Verdict::CredentialsRefused {
                reason: "Amplitude 401: invalid API key or secret key".into()
            }
        );
    }

    #[test]
    fn row_request_level_400_refuses_the_request_not_the_events() {
        assert_eq!(
            c(
                400,
                json!({"code": 400, "error": "Request missing required field", "missing_field": "events"})
            ),
            Verdict::RequestRefused {
                reason: "Amplitude 400: Request missing required field (missing_field: events)"
                    .into()
            }
        );
        assert_eq!(
            c(
                400,
                json!({"code": 400, "error": "Invalid JSON request body"})
            ),
            Verdict::RequestRefused {
                reason: "Amplitude 400: Invalid JSON request body".into()
            }
        );
    }

    #[test]
    fn row_400_with_indices_lists_each_reason() {
        let v = c(
            400,
            json!({"code": 400, "error": "Invalid field values on some events",
                "events_with_invalid_fields": {"time": [3], "user_id": [1, 3]},
                "events_with_missing_fields": {"event_type": [0]},
                "events_with_invalid_id_lengths": {"device_id": [4]}}),
        );
        let (rejected, throttled) = listed(v);
        assert!(throttled.is_empty());
        let ids: Vec<usize> = rejected.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, vec![0, 1, 3, 4]);
        assert_eq!(
            rejected[2].1,
            "Amplitude 400: Invalid field values on some events (events_with_invalid_fields: time); events_with_invalid_fields: user_id"
        );
    }

    /// A misbehaving server: 400,000 indices, most past any request's end, 3,000 fields
    /// listing one event, a megabyte of `error` text. Each event of the request is
    /// judged once, with a bounded reason; the indices past the request name nothing.
    #[test]
    fn row_400_listing_a_flood_of_indices_keeps_the_ones_in_the_request_with_bounded_reasons() {
        let error = "e".repeat(1 << 20);
        let mut fields = serde_json::Map::new();
        fields.insert("time".into(), json!((0..400_000).collect::<Vec<usize>>()));
        for f in 0..3_000 {
            fields.insert(format!("f{f}"), json!([7]));
        }
        let v = c(
            400,
            json!({"code": 400, "error": error, "events_with_invalid_fields": fields,
                "throttled_events": [1, 5_000, 4_000_000_000_u64]}),
        );
        let (rejected, throttled) = listed(v);
        // HTTP V2 requests hold at most 1,999 events.
        let ids: Vec<usize> = rejected.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, (0..1_999).collect::<Vec<_>>());
        let quoted = "e".repeat(QUOTED_BYTES);
        assert_eq!(
            rejected[0].1,
            format!("Amplitude 400: {quoted} (events_with_invalid_fields: time)")
        );
        let seven = &rejected[7].1;
        assert!(seven.starts_with(&format!(
            "Amplitude 400: {quoted} (events_with_invalid_fields: f0); events_with_invalid_fields: f1; "
        )));
        assert!(seven.len() < REASON_BYTES + 64, "{}", seven.len());
        // 1 is rejected already; 5,000 and 4,000,000,000 are past the request.
        assert!(throttled.is_empty(), "{throttled:?}");
    }

    #[test]
    fn row_400_amplitude_example_missing_field_text_with_indices_drops_only_those() {
        // Amplitude's documented example: the request-level text, with an index list.
        let v = c(
            400,
            json!({"code": 400, "error": "Request missing required field",
                "events_with_invalid_fields": {"event_type": [2]}}),
        );
        assert_eq!(
            v,
            Verdict::DropListed {
                rejected: vec![(
                    2,
                    "Amplitude 400: Request missing required field (events_with_invalid_fields: event_type)"
                        .into()
                )],
                throttled: HashSet::new()
            }
        );
    }

    #[test]
    fn row_400_silenced_devices() {
        let v = c(
            400,
            json!({"code": 400, "error": "Events silenced for device_id", "silenced_events": [1],
                "throttled_events": [2], "silenced_devices": ["d"]}),
        );
        assert_eq!(
            v,
            Verdict::DropListed {
                rejected: vec![(
                    1,
                    "Amplitude 400: Events silenced for device_id (silenced device)".into()
                )],
                throttled: [2].into()
            }
        );
    }

    #[test]
    fn row_400_without_indices_isolates() {
        assert_eq!(
            classify(Endpoint::Identify, 400, b"missing_event"),
            Verdict::Isolate {
                reason: "Amplitude 400: bad request".into()
            }
        );
    }

    #[test]
    fn rows_413_429_and_5xx() {
        assert_eq!(
            c(413, json!({"code": 413, "error": "Payload too large"})),
            Verdict::TooLarge
        );
        let v = c(
            429,
            json!({"code": 429, "error": "Too many requests for some devices and users",
                "throttled_users": {"u": 40}, "throttled_devices": {"d": 31},
                "throttled_events": [0], "exceeded_daily_quota_users": {"q": 500001}}),
        );
        assert_eq!(
            v,
            Verdict::Throttled(Throttle {
                events: [0].into(),
                users: ["u".to_string()].into(),
                devices: ["d".to_string()].into(),
                quota_users: ["q".to_string()].into(),
                quota_devices: HashSet::new(),
            })
        );
        for s in [500, 502, 503, 504, 408] {
            assert!(matches!(c(s, json!({})), Verdict::Retry { .. }), "{s}");
        }
        assert_eq!(
            classify(Endpoint::Deletion, 429, b""),
            Verdict::Retry {
                reason: "Amplitude 429: deletion requests over the rate limit".into()
            }
        );
    }

    #[test]
    fn rows_403_404_405_415_and_redirects_refuse_the_request() {
        assert_eq!(
            c(403, json!({"code": 403, "error": "Forbidden"})),
            Verdict::RequestRefused {
                reason: "Amplitude 403: Forbidden".into()
            }
        );
        for s in [404, 405, 415, 422] {
            assert_eq!(
                classify(Endpoint::UserMap, s, b"<html>"),
                Verdict::RequestRefused {
                    reason: format!("Amplitude {s}: request refused")
                },
                "{s}"
            );
        }
        assert!(matches!(
            classify(Endpoint::HttpApi, 301, b""),
            Verdict::RequestRefused { reason } if reason.contains("redirects are not followed")
        ));
    }

    #[test]
    fn body_code_more_severe_than_status_wins() {
        assert!(matches!(
            c(200, json!({"code": 429, "throttled_events": [0]})),
            Verdict::Throttled(_)
        ));
        assert!(matches!(
            c(503, json!({"code": 200})),
            Verdict::Retry { .. }
        ));
    }

    #[test]
    fn throttled_items_wait_as_amplitude_asks() {
        assert_eq!(throttle_delay(Endpoint::HttpApi), Duration::from_secs(30));
        assert_eq!(throttle_delay(Endpoint::Batch), Duration::from_secs(15));
    }

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let mut rng = rand::rng();
        for _ in 0..100 {
            let d0 = b.delay(0, &mut rng);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d2 = b.delay(2, &mut rng);
            assert!(d2 >= Duration::from_millis(200) && d2 <= Duration::from_millis(400));
            let d9 = b.delay(9, &mut rng);
            assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1000));
        }
    }
}
