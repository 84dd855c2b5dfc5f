//! One test per row of amplitude-api.md §2.7 ("What the client should do"): the client against
//! the real emulator on loopback, asserting the exact per-message outcomes and exactly what the
//! emulator ingested.

mod common;

use amplitude_client::{Outcome, RetryCause};
use amplitude_emulator::{Fault, FaultAction};
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

fn fault(action: FaultAction) -> Fault {
    Fault {
        route: None,
        delay_ms: 0,
        action,
    }
}

fn retryable(reason: &str, cause: RetryCause) -> Outcome {
    Outcome::Retryable {
        reason: reason.into(),
        cause,
    }
}

fn rejected(reason: &str) -> Outcome {
    Outcome::Rejected {
        reason: reason.into(),
    }
}

#[tokio::test]
async fn row_200_delivered_in_one_request() {
    let emu = emulator().await;
    let report = deliver(&client(&emu), &settings(json!({})), &tracks(3), 5.0).await;
    assert_eq!(report.outcomes, vec![Outcome::Delivered; 3]);
    assert_eq!(report.requests_sent(), 1);
    assert_eq!(stored_ids(&emu), ["m0", "m1", "m2"]);
}

#[tokio::test]
async fn row_invalid_api_key_is_a_configuration_error_not_retried() {
    let emu = emulator().await;
    let mut config = emu.state.config();
    config.api_keys = ["the-right-key".to_string()].into();
    emu.state.set_config(config);
    let report = deliver(&client(&emu), &settings(json!({})), &tracks(2), 5.0).await;
    let reason = "configuration: Amplitude 400: Invalid API key";
    assert_eq!(
        report.outcomes,
        vec![retryable(reason, RetryCause::Refused); 2]
    );
    assert_eq!(report.credentials_refused.as_deref(), Some(reason));
    assert_eq!(report.requests_sent(), 1);
    assert!(stored_ids(&emu).is_empty());
    assert!(
        !format!("{report:?}").contains(KEY),
        "the key never appears in outcomes"
    );
}

#[tokio::test]
async fn row_400_missing_field_refuses_the_request_and_keeps_its_events() {
    let emu = emulator().await;
    emu.state.push_faults([fault(FaultAction::Status {
        status: 400,
        body: Some(json!({"code": 400, "error": "Request missing required field", "missing_field": "events"})),
    })]);
    let report = deliver(&client(&emu), &settings(json!({})), &tracks(2), 5.0).await;
    let reason = "Amplitude 400: Request missing required field (missing_field: events)";
    assert_eq!(
        report.outcomes,
        vec![retryable(reason, RetryCause::Refused); 2],
        "a request-level answer says nothing about the events: never done, never dropped"
    );
    assert_eq!(
        report.requests_sent(),
        1,
        "not repeated within the delivery"
    );
    assert_eq!(report.undelivered.len(), 2);
    assert!(stored_ids(&emu).is_empty());
}

#[tokio::test]
async fn row_400_amplitudes_own_example_with_indices_drops_only_the_listed_event() {
    // Amplitude's documented 400 pairs the request-level text with an index list: the list
    // decides, so only event 1 is dropped and the others are resent at once.
    let emu = emulator().await;
    emu.state.push_faults([fault(FaultAction::Status {
        status: 400,
        body: Some(
            json!({"code": 400, "error": "Request missing required field",
            "events_with_invalid_fields": {"time": [1]}}),
        ),
    })]);
    let report = deliver(&client(&emu), &settings(json!({})), &tracks(3), 5.0).await;
    assert_eq!(
        report.outcomes,
        vec![
            Outcome::Delivered,
            rejected(
                "Amplitude 400: Request missing required field (events_with_invalid_fields: time)"
            ),
            Outcome::Delivered
        ]
    );
    assert_eq!(report.requests_sent(), 2);
    assert_eq!(stored_ids(&emu), ["m0", "m2"]);
}

#[tokio::test]
async fn rows_401_404_405_415_and_redirects_are_configuration_errors_kept_retryable() {
    for (status, reason) in [
        (404, "Amplitude 404: request refused"),
        (405, "Amplitude 405: request refused"),
        (415, "Amplitude 415: request refused"),
        (
            302,
            "Amplitude 302: redirected (redirects are not followed; check AMPLITUDE_BASE_URL and the endpoint setting)",
        ),
    ] {
        let emu = emulator().await;
        emu.state
            .push_faults([fault(FaultAction::Status { status, body: None })]);
        let report = deliver(&client(&emu), &settings(json!({})), &tracks(2), 5.0).await;
        assert_eq!(
            report.outcomes,
            vec![retryable(reason, RetryCause::Refused); 2],
            "{status}"
        );
        assert_eq!(report.requests_sent(), 1, "{status}");
        assert!(stored_ids(&emu).is_empty());
    }
}

#[tokio::test]
async fn row_400_with_indices_drops_exactly_those_and_resends_the_rest_at_once() {
    let emu = emulator().await;
    let mut messages = tracks(4);
    // Shorter than Amplitude's minimum id length (5): the mapping, told 3 is enough, keeps it,
    // and the client (sending no `min_id_length`) must still isolate Amplitude's refusal.
    messages[1]["userId"] = json!("abc");
    // An event type Amplitude reserves (ids on its refused list no longer get this far: the
    // mapping drops them).
    messages[3]["event"] = json!("[Amplitude] Merged User");
    let settings = settings(json!({"minIdLength": 3}));
    let report = deliver(&client(&emu), &settings, &messages, 5.0).await;
    assert_eq!(
        report.outcomes,
        vec![
            Outcome::Delivered,
            rejected(
                "Amplitude 400: Invalid field values on some events (events_with_invalid_id_lengths: user_id)"
            ),
            Outcome::Delivered,
            rejected(
                "Amplitude 400: Invalid field values on some events (events_with_invalid_fields: event_type)"
            ),
        ]
    );
    assert_eq!(report.requests_sent(), 2);
    assert_eq!(stored_ids(&emu), ["m0", "m2"]);
}

/// Four tracks, with `refusal` answering the whole request, then its half [2, 3], then [3]
/// alone (the halves [0, 1] and [2] pass): checks that splitting delivers messages 0–2 in five
/// requests, and returns what became of message 3, which every refusal still held.
async fn split_down_to_message_3(refusal: impl Fn() -> Fault) -> Outcome {
    let emu = emulator().await;
    let pass = || fault(FaultAction::Pass);
    emu.state
        .push_faults([refusal(), pass(), refusal(), pass(), refusal()]);
    let mut report = deliver(&client(&emu), &settings(json!({})), &tracks(4), 5.0).await;
    assert_eq!(report.requests_sent(), 5);
    assert_eq!(stored_ids(&emu), ["m0", "m1", "m2"]);
    let last = report.outcomes.pop().unwrap();
    assert_eq!(report.outcomes, vec![Outcome::Delivered; 3]);
    last
}

#[tokio::test]
async fn row_400_without_indices_isolates_the_bad_event_by_splitting() {
    let bad = || {
        fault(FaultAction::Status {
            status: 400,
            body: Some(json!({"code": 400, "error": "Invalid event"})),
        })
    };
    assert_eq!(
        split_down_to_message_3(bad).await,
        rejected("Amplitude 400: Invalid event")
    );
}

#[tokio::test]
async fn row_400_listing_only_indices_past_the_request_isolates_and_keeps_a_lone_item() {
    // Amplitude lists events it received; a server listing none of the request's (index 9
    // of requests of four, two and one) is misbehaving, and its answer is about no item.
    let past = || {
        fault(FaultAction::Status {
            status: 400,
            body: Some(json!({
                "code": 400,
                "error": "Invalid field values on some events",
                "events_with_invalid_fields": {"time": [9]}
            })),
        })
    };
    assert_eq!(
        split_down_to_message_3(past).await,
        retryable(
            "Amplitude 400 for one item, listing only indices past the request",
            RetryCause::Transient
        )
    );
}

#[tokio::test]
async fn row_403_refuses_the_request_and_keeps_its_events() {
    let emu = emulator().await;
    emu.state.push_faults([fault(FaultAction::Status {
        status: 403,
        body: Some(json!({"code": 403, "error": "Forbidden"})),
    })]);
    let report = deliver(&client(&emu), &settings(json!({})), &tracks(2), 5.0).await;
    assert_eq!(
        report.outcomes,
        vec![retryable("Amplitude 403: Forbidden", RetryCause::Refused); 2]
    );
    assert_eq!(report.requests_sent(), 1);
}

#[tokio::test]
async fn row_timeout_is_retried_and_delivered_once() {
    let emu = emulator().await;
    emu.state.push_faults([Fault {
        route: None,
        delay_ms: 1500,
        action: FaultAction::Pass,
    }]);
    let c = client_with(&emu, |c| {
        c.request_timeout = std::time::Duration::from_millis(300)
    });
    let report = deliver(&c, &settings(json!({})), &tracks(2), 5.0).await;
    assert_eq!(report.outcomes, vec![Outcome::Delivered; 2]);
    assert_eq!(report.requests_sent(), 2);
    // The emulator abandons a request whose client hung up (the partly-processed case is
    // `row_500_after_accepting_half…`), so each event arrived once.
    let ingested = emu.state.ingested();
    assert_eq!(stored_ids(&emu), ["m0", "m1"]);
    assert_eq!(
        (
            ingested.insert_ids["m0"].received,
            ingested.insert_ids["m0"].stored
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn row_connection_reset_is_retried() {
    let emu = emulator().await;
    emu.state.push_faults([fault(FaultAction::Reset)]);
    let report = deliver(&client(&emu), &settings(json!({})), &tracks(2), 5.0).await;
    assert_eq!(report.outcomes, vec![Outcome::Delivered; 2]);
    assert_eq!(report.requests_sent(), 2);
    assert_eq!(stored_ids(&emu), ["m0", "m1"]);
}

#[tokio::test]
async fn row_413_splits_in_halves() {
    let emu = emulator().await;
    emu.state.push_faults([fault(FaultAction::Status {
        status: 413,
        body: None,
    })]);
    let report = deliver(&client(&emu), &settings(json!({})), &tracks(4), 5.0).await;
    assert_eq!(report.outcomes, vec![Outcome::Delivered; 4]);
    assert_eq!(report.requests_sent(), 3);
    assert_eq!(stored_ids(&emu), ["m0", "m1", "m2", "m3"]);
}

#[tokio::test]
async fn row_413_single_too_large_event_is_dropped_as_permanent() {
    let emu = emulator().await;
    let mut messages = tracks(3);
    // Alone in its request and still over HTTP V2's 1 MB.
    messages[1]["properties"] = json!({"blob": "x".repeat(1_000_100)});
    let report = deliver(&client(&emu), &settings(json!({})), &messages, 5.0).await;
    assert_eq!(
        report.outcomes,
        vec![
            Outcome::Delivered,
            rejected("Amplitude 413: larger than Amplitude accepts in one request"),
            Outcome::Delivered
        ]
    );
    assert_eq!(stored_ids(&emu), ["m0", "m2"]);
}

#[tokio::test]
async fn row_413_for_one_event_within_the_limits_is_not_its_fault() {
    // An Amplitude that answers 413 to everything must not cost a valid event: split down to
    // one event, a 413 for an event far below the limit keeps it retryable.
    let emu = emulator().await;
    emu.state.push_faults((0..3).map(|_| {
        fault(FaultAction::Status {
            status: 413,
            body: None,
        })
    }));
    let report = deliver(&client(&emu), &settings(json!({})), &tracks(2), 5.0).await;
    let lone = retryable(
        "Amplitude 413 for one item within its limits",
        RetryCause::Transient,
    );
    assert_eq!(report.outcomes, vec![lone.clone(), lone]);
    assert_eq!(report.requests_sent(), 3);
}

#[tokio::test]
async fn row_429_holds_throttled_users_and_resends_the_rest_at_once() {
    let emu = emulator().await;
    emu.state.push_faults([fault(FaultAction::Throttle {
        users: vec!["user-1".into()],
        devices: vec![],
    })]);
    let report = deliver(&client(&emu), &settings(json!({})), &tracks(3), 5.0).await;
    assert_eq!(
        report.outcomes,
        vec![
            Outcome::Delivered,
            retryable(
                "Amplitude throttled this user or device",
                RetryCause::Throttled
            ),
            Outcome::Delivered
        ]
    );
    assert_eq!(report.requests_sent(), 2);
    assert_eq!(stored_ids(&emu), ["m0", "m2"]);
}

#[tokio::test]
async fn row_429_naming_only_others_throttles_the_whole_request() {
    let emu = emulator().await;
    // Amplitude names users of the request itself; one naming only others is throttling the
    // request as a whole: its items wait Amplitude's delay, as for a 429 that names nobody.
    emu.state.push_faults([fault(FaultAction::Status {
        status: 429,
        body: Some(json!({
            "code": 429,
            "error": "Too many requests for some devices and users",
            "throttled_users": {"someone-else": 40},
            "throttled_events": [7]
        })),
    })]);
    let report = deliver(&client(&emu), &settings(json!({})), &tracks(3), 5.0).await;
    let held = retryable(
        "Amplitude throttled this user or device",
        RetryCause::Throttled,
    );
    assert_eq!(report.outcomes, vec![held; 3]);
    assert_eq!(report.requests_sent(), 1);
    assert!(stored_ids(&emu).is_empty());
}

#[tokio::test]
async fn row_429_daily_quota_is_permanent() {
    let emu = emulator().await;
    emu.state.push_faults([fault(FaultAction::DailyQuota {
        users: vec!["user-0".into()],
        devices: vec![],
    })]);
    let report = deliver(&client(&emu), &settings(json!({})), &tracks(2), 5.0).await;
    assert_eq!(
        report.outcomes,
        vec![
            rejected("Amplitude 429: the user or device exceeded its daily quota"),
            Outcome::Delivered
        ]
    );
    assert_eq!(stored_ids(&emu), ["m1"]);
}

#[tokio::test]
async fn row_429_from_the_emulators_rate_model() {
    let emu = emulator().await;
    let mut config = emu.state.config();
    config.httpapi_eps = 1; // 30 events per user per 30 s
    emu.state.set_config(config);
    let mut messages = tracks(1);
    for i in 0..40 {
        let mut m = messages[0].clone();
        m["messageId"] = json!(format!("busy-{i}"));
        messages.push(m);
    }
    messages.extend(tracks(3).into_iter().skip(1));
    let report = deliver(&client(&emu), &settings(json!({})), &messages, 5.0).await;
    let throttled = report
        .outcomes
        .iter()
        .filter(|o| {
            **o == retryable(
                "Amplitude throttled this user or device",
                RetryCause::Throttled,
            )
        })
        .count();
    assert_eq!(throttled, 41, "every event of the busy user is held back");
    assert_eq!(
        &report.outcomes[41..],
        &[Outcome::Delivered, Outcome::Delivered]
    );
    assert_eq!(stored_ids(&emu), ["m1", "m2"]);
}

/// A burst of one user larger than Amplitude's allowance for it (here 300 events a 1-s window;
/// Amplitude's is 900 a 30-s window): a request holding all of it was refused (429) however
/// long the sender waited, so the events were held and resent as they were until they expired.
/// Now a request holds at most 300 events of one user (`batch::MAX_PER_ID_AT_30_EPS`): each
/// delivery gets what the window allows through, holds the rest as throttled, and the held
/// events, sent again after the window (as the redeliver function does after Amplitude's
/// delay), get through in turn. Every event is stored once.
#[tokio::test]
async fn row_429_a_burst_of_one_user_goes_through_a_window_at_a_time() {
    let emu = emulator().await;
    let mut config = emu.state.config();
    (config.httpapi_eps, config.rate_window_secs) = (300, 1);
    emu.state.set_config(config);
    let burst: Vec<Value> = (0..1_000)
        .map(|i| {
            json!({"type": "track", "event": "Played", "userId": "busy-user",
            "messageId": format!("b{i}"), "timestamp": "2024-01-01T00:00:00Z"})
        })
        .collect();
    let client = client(&emu);
    let mut left = burst.clone();
    let mut rounds = 0;
    while !left.is_empty() && rounds < 10 {
        if rounds > 0 {
            tokio::time::sleep(Duration::from_millis(1_100)).await;
        }
        let report = deliver(&client, &settings(json!({})), &left, 5.0).await;
        let held = |o: &Outcome| {
            *o == retryable(
                "Amplitude throttled this user or device",
                RetryCause::Throttled,
            )
        };
        assert!(
            report
                .outcomes
                .iter()
                .all(|o| *o == Outcome::Delivered || held(o))
        );
        left = left
            .into_iter()
            .zip(&report.outcomes)
            .filter_map(|(m, o)| held(o).then_some(m))
            .collect();
        rounds += 1;
    }
    assert!(left.is_empty(), "{} events still held", left.len());
    assert_eq!(rounds, 4, "300 a window: 300, 300, 300, 100");
    let ids = emu.state.ingested().insert_ids;
    assert_eq!(ids.len(), 1_000);
    assert!(ids.values().all(|c| c.stored == 1));
}

#[tokio::test]
async fn row_5xx_retried_with_backoff_then_delivered_once() {
    for status in [500, 502, 503, 504] {
        let emu = emulator().await;
        emu.state.push_faults([
            fault(FaultAction::Status { status, body: None }),
            fault(FaultAction::Status { status, body: None }),
        ]);
        let report = deliver(&client(&emu), &settings(json!({})), &tracks(2), 5.0).await;
        assert_eq!(report.outcomes, vec![Outcome::Delivered; 2], "{status}");
        assert_eq!(report.requests_sent(), 3, "{status}");
        assert_eq!(stored_ids(&emu), ["m0", "m1"], "{status}");
    }
}

#[tokio::test]
async fn row_500_after_accepting_half_resend_is_deduplicated() {
    let emu = emulator().await;
    emu.state
        .push_faults([fault(FaultAction::AcceptHalf { status: 500 })]);
    let report = deliver(&client(&emu), &settings(json!({})), &tracks(4), 5.0).await;
    assert_eq!(report.outcomes, vec![Outcome::Delivered; 4]);
    assert_eq!(stored_ids(&emu), ["m0", "m1", "m2", "m3"]);
    let ids = emu.state.ingested().insert_ids;
    assert_eq!((ids["m0"].received, ids["m0"].stored), (2, 1));
    assert_eq!((ids["m3"].received, ids["m3"].stored), (1, 1));
}

#[tokio::test]
async fn deadline_stops_retries_and_hands_events_back() {
    let emu = emulator().await;
    emu.state.push_faults((0..100).map(|_| {
        fault(FaultAction::Status {
            status: 503,
            body: None,
        })
    }));
    // 100 attempts would take about 4 s of backoff alone (5 ms doubling to 40 ms); the 0.4 s
    // deadline ends them well before (the bound leaves a loaded machine a second of slack).
    let client = client_with(&emu, |c| c.max_attempts = 100);
    let started = std::time::Instant::now();
    let report = deliver(&client, &settings(json!({})), &tracks(2), 0.4).await;
    assert!(started.elapsed() < std::time::Duration::from_millis(1400));
    assert_eq!(
        report.outcomes,
        vec![retryable("Amplitude 503: server error", RetryCause::Transient); 2]
    );
    assert!(stored_ids(&emu).is_empty());
}

#[tokio::test]
async fn body_code_more_severe_than_http_status_is_trusted() {
    let emu = emulator().await;
    emu.state
        .push_faults([fault(FaultAction::CodeInBody { code: 429 })]);
    let report = deliver(&client(&emu), &settings(json!({})), &tracks(2), 5.0).await;
    assert_eq!(
        report.outcomes,
        vec![
            retryable(
                "Amplitude throttled this user or device",
                RetryCause::Throttled
            );
            2
        ]
    );
    assert!(stored_ids(&emu).is_empty());
}

/// Spec §17.1.3: a `clearAll` identify whose request was stored, then answered too late, is resent
/// by Segment after a later update of the same user. Its clear and its update are
/// deduplicated `$identify` events, so the resend changes nothing: the later update survives.
#[tokio::test]
async fn a_resent_clear_all_does_not_erase_later_updates() {
    let emu = emulator().await;
    let c = client(&emu);
    let s = settings(json!({}));
    let identify = |id: &str, ms: i64, traits: serde_json::Value, clear: bool| {
        json!({"type": "identify", "userId": "user-1", "messageId": id, "traits": traits,
            "timestamp": ms, "integrations": {"Amplitude": {"clearAll": clear}}})
    };
    let clear = identify("m1", 1_700_000_000_000, json!({"plan": "pro"}), true);
    let later = identify("m2", 1_700_000_060_000, json!({"seat": 3}), false);
    emu.state.push_faults([fault(FaultAction::StoreThen {
        status: 200,
        after_ms: 3_000,
    })]);
    let first = deliver(&c, &s, std::slice::from_ref(&clear), 1.0).await;
    assert!(first.outcomes[0].is_retryable(), "{:?}", first.outcomes);
    let expected = json!({"plan": "pro", "seat": 3, "id": "user-1"});
    assert_eq!(
        deliver(&c, &s, &[later], 5.0).await.outcomes,
        [Outcome::Delivered]
    );
    assert_eq!(
        serde_json::Value::Object(emu.state.ingested().users["user-1"].clone()),
        expected
    );
    assert_eq!(
        deliver(&c, &s, &[clear], 5.0).await.outcomes,
        [Outcome::Delivered]
    );
    let got = emu.state.ingested();
    assert_eq!(
        (
            got.insert_ids["m1-clear"].received,
            got.insert_ids["m1-clear"].stored
        ),
        (2, 1)
    );
    assert_eq!(
        serde_json::Value::Object(got.users["user-1"].clone()),
        expected
    );
}

/// A misbehaving Amplitude answering more than any answer holds. A 200 with 30 MB of body is
/// read up to the client's limit (1 MB) and is still a 200. A 400 with 300 KB of `error`
/// listing one event and one index far past the request rejects that event, quoting 200 bytes
/// of the text, and resends the other. A 400 of 2 MB is cut at the limit, no longer parses,
/// and is read as naming no event: the request is split and each event sent alone.
#[tokio::test]
async fn oversized_answers_are_read_up_to_a_limit() {
    let emu = emulator().await;
    let c = client(&emu);
    let s = settings(json!({}));
    emu.state.push_faults([fault(FaultAction::Status {
        status: 200,
        body: Some(json!({"code": 200, "pad": "x".repeat(30 << 20)})),
    })]);
    let report = deliver(&c, &s, &tracks(2), 10.0).await;
    assert_eq!(report.outcomes, vec![Outcome::Delivered; 2]);
    assert_eq!(report.requests_sent(), 1);

    let long = |n: usize| "e".repeat(n);
    emu.state.push_faults([fault(FaultAction::Status {
        status: 400,
        body: Some(json!({"code": 400, "error": long(300 << 10),
            "events_with_invalid_fields": {"time": [1, 1_000_000_000]}})),
    })]);
    let report = deliver(&c, &s, &tracks(2), 10.0).await;
    assert_eq!(
        report.outcomes,
        vec![
            Outcome::Delivered,
            rejected(&format!(
                "Amplitude 400: {} (events_with_invalid_fields: time)",
                long(200)
            )),
        ]
    );
    assert_eq!(report.requests_sent(), 2);
    assert_eq!(stored_ids(&emu), ["m0"]);

    emu.state.push_faults([fault(FaultAction::Status {
        status: 400,
        body: Some(json!({"code": 400, "error": long(2 << 20),
            "events_with_invalid_fields": {"time": [1]}})),
    })]);
    let report = deliver(&c, &s, &tracks(2), 10.0).await;
    assert_eq!(report.outcomes, vec![Outcome::Delivered; 2]);
    assert_eq!(report.requests_sent(), 3);
}
