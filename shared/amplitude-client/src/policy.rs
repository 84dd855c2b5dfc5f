//! The retry policy: what each Amplitude response means for the items of a request
//! (amplitude-api §2.7), and how long to wait before retrying a transient failure.
//!
//! Pure: [`classify`] looks only at the status and body, so every row of the table is tested
//! without a network.

use std::collections::HashSet;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;

/// What a response tells the client to do with the request's items.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// 2xx: every item was accepted.
    Delivered,
    /// 400 `Invalid API key…` (or 401 on deletions): a configuration error. Not retried here.
    BadCredentials { reason: String },
    /// The request as a whole is malformed (`missing_field`, `Invalid JSON request body`, …):
    /// every item is rejected for good.
    RejectAll { reason: String },
    /// 400 listing indices: drop exactly those (each with Amplitude's reason), resend the rest at
    /// once; `throttled` (a silenced-400's `throttled_events`) are held back like a 429.
    DropListed {
        rejected: Vec<(usize, String)>,
        throttled: HashSet<usize>,
    },
    /// 400 naming no event: split the request to isolate the bad item; one item alone is
    /// rejected with this reason.
    Isolate { reason: String },
    /// 413: split in halves; one item alone is permanently too large.
    TooLarge,
    /// 429: daily-quota users/devices are rejected for good, throttled ones held back (the
    /// caller retries later), the rest resent at once.
    Throttled(Throttle),
    /// 5xx, 408, timeouts, connection errors: retry with backoff while the deadline allows.
    Retry { reason: String },
    /// 403 and other 4xx: permanent for every item.
    Permanent { reason: String },
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

/// Fields of a 400 body that list bad event indices, as `{field: [index]}` maps.
const INDEX_MAPS: [&str; 3] = [
    "events_with_invalid_fields",
    "events_with_missing_fields",
    "events_with_invalid_id_lengths",
];

/// Errors of a 400 that mean the request itself is broken, not one of its events.
const REQUEST_ERRORS: [&str; 5] = [
    "Invalid JSON request body",
    "Missing request body",
    "Invalid request path",
    "Invalid event JSON",
    "Request missing required field",
];

/// Orders statuses by how bad they are for the items: a permanent 4xx beats 413, which beats
/// 429, which beats a transient 5xx, which beats success. When the HTTP status and the body's
/// `code` disagree (amplitude-api §2.6), the more severe one is trusted.
fn severity(status: u16) -> u8 {
    match status {
        200..=299 => 0,
        408 | 500..=599 => 1,
        429 => 2,
        413 => 3,
        _ => 4,
    }
}

/// Classifies a response of this endpoint. The User Privacy API's 429 is its per-project request
/// rate (one request per second), not a throttled user: it is retried with backoff (and the
/// deletion spacing) within the deadline.
pub fn classify_for(endpoint: mapping::Endpoint, http_status: u16, body: &[u8]) -> Verdict {
    match (endpoint, classify(http_status, body)) {
        (mapping::Endpoint::Deletion, Verdict::Throttled(_)) => Verdict::Retry {
            reason: "Amplitude 429: deletion requests over the rate limit".into(),
        },
        (_, verdict) => verdict,
    }
}

/// Classifies one response. `body` may be anything: form endpoints answer plain text.
pub fn classify(http_status: u16, body: &[u8]) -> Verdict {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = json
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (100..600).contains(c));
    let status = match code {
        Some(c) if severity(c) > severity(http_status) => c,
        _ => http_status,
    };
    let error = json
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let reason = |what: &str| {
        if error.is_empty() {
            format!("Amplitude {status}: {what}")
        } else {
            format!("Amplitude {status}: {error}")
        }
    };
    match status {
        200..=299 => Verdict::Delivered,
        401 => Verdict::BadCredentials {
            reason: format!("Amplitude {status}: invalid API key or secret key"),
        },
        // Amplitude's text echoes the key ("Invalid API key: <key>"): never copy it.
        400 if error.starts_with("Invalid API key") => Verdict::BadCredentials {
            reason: "Amplitude 400: Invalid API key".into(),
        },
        400 => classify_400(&json, error, status, reason),
        413 => Verdict::TooLarge,
        429 => Verdict::Throttled(throttle(&json)),
        408 | 500..=599 => Verdict::Retry {
            reason: reason("server error"),
        },
        _ => Verdict::Permanent {
            reason: reason("request refused"),
        },
    }
}

fn classify_400(
    json: &Value,
    error: &str,
    status: u16,
    reason: impl Fn(&str) -> String,
) -> Verdict {
    if let Some(field) = json.get("missing_field").and_then(Value::as_str) {
        return Verdict::RejectAll {
            reason: format!("Amplitude {status}: {error} (missing_field: {field})"),
        };
    }
    if REQUEST_ERRORS.contains(&error) {
        return Verdict::RejectAll {
            reason: reason("bad request"),
        };
    }
    let mut rejected: Vec<(usize, String)> = Vec::new();
    for map in INDEX_MAPS {
        let Some(fields) = json.get(map).and_then(Value::as_object) else {
            continue;
        };
        for (field, indices) in fields {
            for i in indices.as_array().into_iter().flatten().filter_map(index) {
                let why = format!("Amplitude {status}: {error} ({map}: {field})");
                match rejected.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, existing)) => {
                        existing.push_str(&format!("; {map}: {field}"));
                    }
                    None => rejected.push((i, why)),
                }
            }
        }
    }
    for i in indices(json, "silenced_events") {
        if !rejected.iter().any(|(j, _)| *j == i) {
            rejected.push((i, format!("Amplitude {status}: {error} (silenced device)")));
        }
    }
    let throttled: HashSet<usize> = indices(json, "throttled_events")
        .filter(|i| !rejected.iter().any(|(j, _)| j == i))
        .collect();
    if rejected.is_empty() && throttled.is_empty() {
        return Verdict::Isolate {
            reason: reason("bad request"),
        };
    }
    rejected.sort_by_key(|(i, _)| *i);
    Verdict::DropListed {
        rejected,
        throttled,
    }
}

fn index(v: &Value) -> Option<usize> {
    v.as_u64().and_then(|i| usize::try_from(i).ok())
}

fn indices<'j>(json: &'j Value, key: &str) -> impl Iterator<Item = usize> + 'j {
    json.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(index)
}

fn keys(json: &Value, key: &str) -> HashSet<String> {
    json.get(key)
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn throttle(json: &Value) -> Throttle {
    Throttle {
        events: indices(json, "throttled_events").collect(),
        users: keys(json, "throttled_users"),
        devices: keys(json, "throttled_devices"),
        quota_users: keys(json, "exceeded_daily_quota_users"),
        quota_devices: keys(json, "exceeded_daily_quota_devices"),
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
    use serde_json::json;

    fn c(status: u16, body: Value) -> Verdict {
        classify(status, body.to_string().as_bytes())
    }

    #[test]
    fn row_200_is_delivered_and_so_is_form_success_text() {
        assert_eq!(
            c(200, json!({"code": 200, "events_ingested": 3})),
            Verdict::Delivered
        );
        assert_eq!(classify(200, b"success"), Verdict::Delivered);
    }

    #[test]
    fn row_invalid_api_key() {
        assert_eq!(
            c(400, json!({"code": 400, "error": "Invalid API key: abc"})),
            Verdict::BadCredentials {
                reason: "Amplitude 400: Invalid API key".into()
            }
        );
    }

    #[test]
    fn row_request_level_400_rejects_all() {
        assert_eq!(
            c(
                400,
                json!({"code": 400, "error": "Request missing required field", "missing_field": "events"})
            ),
            Verdict::RejectAll {
                reason: "Amplitude 400: Request missing required field (missing_field: events)"
                    .into()
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
        let Verdict::DropListed {
            rejected,
            throttled,
        } = v
        else {
            panic!("{v:?}")
        };
        assert!(throttled.is_empty());
        let ids: Vec<usize> = rejected.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, vec![0, 1, 3, 4]);
        assert_eq!(
            rejected[2].1,
            "Amplitude 400: Invalid field values on some events (events_with_invalid_fields: time); events_with_invalid_fields: user_id"
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
            classify(400, b"missing_event"),
            Verdict::Isolate {
                reason: "Amplitude 400: bad request".into()
            }
        );
    }

    #[test]
    fn rows_413_429_5xx_403() {
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
            assert!(matches!(classify(s, b""), Verdict::Retry { .. }), "{s}");
        }
        assert_eq!(
            c(403, json!({"code": 403, "error": "Forbidden"})),
            Verdict::Permanent {
                reason: "Amplitude 403: Forbidden".into()
            }
        );
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
