//! Every Amplitude API the client speaks, against the emulator: form-encoded identify, group
//! identify and user mapping, JSON deletions with Basic auth, and batching across messages.

mod common;

use amplitude_client::{Credentials, Outcome, RetryCause};
use amplitude_emulator::{Fault, FaultAction};
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn identify_group_and_alias_are_form_encoded_and_ingested_exactly() {
    let emu = emulator().await;
    let s =
        settings(json!({"sendAlias": true, "groupTypeTrait": "kind", "groupValueTrait": "name"}));
    let messages = vec![
        json!({"type": "identify", "userId": "user-1", "traits": {"plan": "pro"}}),
        json!({"type": "group", "userId": "user-1", "groupId": "g1", "traits": {"kind": "org", "name": "Acme"}}),
        json!({"type": "alias", "previousId": "anon-1", "userId": "user-1"}),
        json!({"type": "identify", "userId": "user-2", "traits": {"plan": "free"}}),
    ];
    let report = deliver(&client(&emu), &s, &messages, 5.0).await;
    assert_eq!(report.outcomes, vec![Outcome::Delivered; 4]);
    // identify (3 identifications: 2 users + the group link) + groupidentify + usermap.
    assert_eq!(report.requests_sent(), 3);
    let got = emu.state.ingested();
    assert_eq!(
        got.identifies,
        vec![
            json!({"user_id": "user-1", "library": "segment", "user_properties": {"plan": "pro", "id": "user-1"}}),
            json!({"user_id": "user-1", "groups": {"org": "Acme"}, "user_properties": {"org": "Acme"}}),
            json!({"user_id": "user-2", "library": "segment", "user_properties": {"plan": "free", "id": "user-2"}}),
        ]
    );
    assert_eq!(
        got.group_identifies,
        vec![
            json!({"group_type": "org", "group_value": "Acme", "group_properties": {"kind": "org", "name": "Acme"}})
        ]
    );
    assert_eq!(
        got.mappings,
        vec![json!({"user_id": "anon-1", "global_user_id": "user-1"})]
    );
    assert_eq!(got.requests.get("/identify"), Some(&1));
}

#[tokio::test]
async fn deletions_use_basic_auth_batches_of_100_and_return_jobs() {
    let emu = emulator().await;
    let mut config = emu.state.config();
    config.secret_keys = [(KEY.to_string(), "the-secret".to_string())].into();
    emu.state.set_config(config);
    for i in 0..150 {
        emu.state.add_known_user(&format!("user-{i}"));
    }
    let messages: Vec<Value> = (0..150)
        .map(|i| json!({"type": "delete", "userId": format!("user-{i}")}))
        .collect();
    let s = settings(json!({"secretKey": "the-secret"}));
    let keys = Credentials::new(KEY).with_secret_key("the-secret");
    let report = deliver_with(&client(&emu), &s, &keys, &messages, 5.0).await;
    assert_eq!(report.outcomes, vec![Outcome::Delivered; 150]);
    assert_eq!(report.requests_sent(), 2, "100 + 50 ids");
    let jobs = emu.state.ingested().deletion_jobs;
    assert_eq!(
        jobs.len(),
        1,
        "both requests land in the same scheduled job"
    );
    assert_eq!(jobs[0].amplitude_ids.len(), 150);
    assert_eq!(
        jobs[0].amplitude_ids[0].requester.as_deref(),
        Some("segment")
    );
    assert_eq!(report.deletion_jobs.len(), 2);
    assert_eq!(report.deletion_jobs[1].status, "staging");

    let wrong = Credentials::new(KEY).with_secret_key("not-it");
    let report = deliver_with(&client(&emu), &s, &wrong, &messages[..1], 5.0).await;
    let reason = "configuration: Amplitude 401: invalid API key or secret key";
    assert_eq!(
        report.outcomes,
        vec![Outcome::Retryable {
            reason: reason.into(),
            cause: RetryCause::Refused
        }]
    );
    assert!(!format!("{report:?}").contains("not-it"));
}

#[tokio::test]
async fn deletion_429_then_success() {
    let emu = emulator().await;
    emu.state.add_known_user("user-1");
    emu.state
        .push_faults([Fault::status("/api/2/deletions/users", 429)]);
    let s = settings(json!({"secretKey": "s"}));
    let delete = [json!({"type": "delete", "userId": "user-1"})];
    // The privacy API's 429 is its request rate: retried after the deletion spacing.
    let report = deliver(&client(&emu), &s, &delete, 5.0).await;
    assert_eq!(report.outcomes, vec![Outcome::Delivered]);
    assert_eq!(report.requests_sent(), 2);
    assert_eq!(
        emu.state.ingested().deletion_jobs[0].amplitude_ids[0]
            .user_id
            .as_deref(),
        Some("user-1")
    );
}

#[tokio::test]
async fn batching_uses_the_fewest_requests_the_limits_allow() {
    let emu = emulator().await;
    let messages = tracks(5000);
    let c = client_with(&emu, |c| c.concurrency = 4);
    let report = deliver(&c, &settings(json!({})), &messages, 20.0).await;
    assert!(report.outcomes.iter().all(|o| *o == Outcome::Delivered));
    // Each event is ~200 bytes, so the 1999-event cap binds: ceil(5000 / 1999) = 3.
    assert_eq!(report.requests_sent(), 3);
    assert_eq!(emu.state.ingested().events.len(), 5000);
}

#[tokio::test]
async fn batch_endpoint_and_min_id_length_option() {
    let emu = emulator().await;
    let c = client_with(&emu, |c| c.min_id_length = Some(1));
    let mut messages = tracks(2);
    messages[0]["userId"] = json!("ab");
    let report = deliver(
        &c,
        &settings(json!({"sendToBatchEndpoint": true, "minIdLength": 1})),
        &messages,
        5.0,
    )
    .await;
    assert_eq!(report.outcomes, vec![Outcome::Delivered; 2]);
    let got = emu.state.ingested();
    assert_eq!(got.requests.get("/batch"), Some(&1));
    assert_eq!(got.events[0]["user_id"], "ab");
    assert_eq!(got.events[0]["_endpoint"], "batch");
}

#[tokio::test]
async fn form_endpoint_throttle_holds_only_the_named_user() {
    let emu = emulator().await;
    emu.state.push_faults([Fault {
        route: Some("/identify".into()),
        delay_ms: 0,
        action: FaultAction::Throttle {
            users: vec!["user-2".into()],
            devices: vec![],
        },
    }]);
    let messages: Vec<Value> = (1..=3)
        .map(|i| json!({"type": "identify", "userId": format!("user-{i}")}))
        .collect();
    let report = deliver(&client(&emu), &settings(json!({})), &messages, 5.0).await;
    assert_eq!(report.outcomes[0], Outcome::Delivered);
    assert!(matches!(
        report.outcomes[1],
        Outcome::Retryable {
            cause: RetryCause::Throttled,
            ..
        }
    ));
    assert_eq!(report.outcomes[2], Outcome::Delivered);
    assert_eq!(emu.state.ingested().identifies.len(), 2);
}

#[tokio::test]
async fn endpoints_are_independent_a_failing_identify_holds_back_only_its_own_messages() {
    let emu = emulator().await;
    // /identify answers 503 for the whole budget.
    emu.state
        .push_faults((0..1000).map(|_| Fault::status("/identify", 503)));
    let mut messages = tracks(100);
    messages.insert(
        50,
        json!({"type": "identify", "userId": "user-x", "traits": {"plan": "pro"}}),
    );
    let c = client_with(&emu, |c| c.max_items_per_request = Some(10));
    let report = deliver(&c, &settings(json!({})), &messages, 1.0).await;
    let delivered = report
        .outcomes
        .iter()
        .filter(|o| **o == Outcome::Delivered)
        .count();
    assert_eq!(
        delivered, 100,
        "every track was sent while /identify kept failing"
    );
    assert_eq!(
        report.outcomes[50],
        Outcome::Retryable {
            reason: "Amplitude 503: server error".into(),
            cause: RetryCause::Transient
        }
    );
    assert_eq!(emu.state.ingested().events.len(), 100);
}
