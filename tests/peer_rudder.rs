//! RudderStack's own Amplitude test cases (`../shared/peer-rudder/cases.json`), each Segment
//! event through the mapping and the client to the Amplitude emulator: every request the
//! mapping makes of them must be one Amplitude accepts. This is the cross-check that found an
//! array `group_value` sent to `/groupidentify` (spec §9.4), which Amplitude refuses: the
//! emulator now refuses it too, so that bug fails here. Where our objects differ from
//! RudderStack's by a documented choice (`mapping.md` prefers Segment Classic), nothing is
//! compared; the cases' `peer_only` ones are skipped as the data says.

use std::time::Duration;

use amplitude_client::{AmplitudeClient, ClientConfig, Credentials, Outcome};
use amplitude_emulator::{Emulator, EmulatorConfig};
use mapping::{Body, Settings};
use serde_json::Value;
use tests::workspace_root;

fn cases() -> Option<Vec<Value>> {
    let path = std::env::var_os("PEER_RUDDER_CASES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/peer-rudder/cases.json"));
    let text = std::fs::read_to_string(path).ok()?;
    let data: Value = serde_json::from_str(&text).expect("cases.json is JSON");
    data["cases"].as_array().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_made_of_rudderstacks_cases_is_one_amplitude_accepts() {
    let Some(cases) = cases() else {
        println!("skipped: ../shared/peer-rudder is not beside this clone");
        return;
    };
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = AmplitudeClient::new(ClientConfig {
        base_url: Some(emu.url()),
        request_timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    })
    .unwrap();
    let credentials = Credentials::new("am2").with_secret_key("secret");
    let (mut sent, mut group_identifications) = (0, 0);
    let mut refused = Vec::new();
    for case in cases.iter().filter(|c| c["peer_only"].is_null()) {
        let settings = Settings::from_json(&case["settings"]).expect("case settings are valid");
        let text = case["segment_message"].to_string();
        let mut scratch = mapping::Scratch::default();
        let message = mapping::parse(&text, &mut scratch).unwrap();
        let Ok(plan) = mapping::plan(&message, &settings) else {
            continue; // rejected by the mapping, with a reason: nothing reaches Amplitude
        };
        if plan.requests.is_empty() {
            continue;
        }
        group_identifications += plan
            .requests
            .iter()
            .map(|r| match &r.body {
                Body::GroupIdentify(g) => g.len(),
                _ => 0,
            })
            .sum::<usize>();
        sent += 1;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let report = client
            .deliver(
                std::slice::from_ref(&plan),
                settings.region,
                &credentials,
                deadline,
            )
            .await;
        if report.outcomes != [Outcome::Delivered] {
            refused.push(format!("{}: {:?}", case["id"], report.outcomes));
        }
    }
    assert!(
        refused.is_empty(),
        "refused by Amplitude:\n{}",
        refused.join("\n")
    );
    assert!(sent > 50, "only {sent} cases were sent");
    assert!(group_identifications > 0, "the cases include typed groups");
}
