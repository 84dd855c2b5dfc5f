//! Every case of `../shared/conformance/classic/` through the mapping: the Amplitude objects must
//! equal the case's `expect` exactly (rules in `../shared/conformance/README.md`).

use mapping::{Body, Settings};
use serde::Serialize;
use serde_json::{Value, json};

fn to<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("plans serialise")
}
use tests::{conformance_dir, json_eq};

/// The plan flattened to the conformance format: `{"endpoint", "event" | "identification" |
/// "mapping"}` per object, or one `{"endpoint": "none"}` when nothing is sent.
fn objects(message: &serde_json_borrow::Value<'_>, settings: &Settings) -> Vec<Value> {
    let plan = mapping::plan(message, settings).expect("conformance inputs are valid");
    let mut out = Vec::new();
    for request in &plan.requests {
        match &request.body {
            Body::Events(events) => out.extend(
                events
                    .iter()
                    .map(|e| json!({"endpoint": "httpapi", "event": to(e)})),
            ),
            Body::Identify(ids) => out.extend(
                ids.iter()
                    .map(|i| json!({"endpoint": "identify", "identification": to(i)})),
            ),
            Body::GroupIdentify(ids) => out.extend(
                ids.iter()
                    .map(|i| json!({"endpoint": "groupidentify", "identification": to(i)})),
            ),
            Body::UserMap(m) => out.push(json!({"endpoint": "usermap", "mapping": to(m)})),
            Body::Deletion(d) => out.push(json!({"endpoint": "deletion", "body": to(d)})),
        }
    }
    if out.is_empty() {
        out.push(json!({"endpoint": "none"}));
    }
    out
}

#[test]
fn classic_cases_match_expect_exactly() {
    let Some(dir) = conformance_dir() else {
        println!("skipped: ../shared/conformance is not beside this clone");
        return;
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir.join("classic"))
        .expect("classic/ is readable")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut failures = Vec::new();
    for path in &paths {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let settings = Settings::from_json(&case["settings"]).expect("case settings are valid");
        let input = case["input"].to_string();
        let mut scratch = mapping::Scratch::default();
        let message = mapping::parse(&input, &mut scratch).unwrap();
        let got = Value::Array(objects(&message, &settings));
        if !json_eq(&got, &case["expect"]) {
            failures.push(format!(
                "{}\n  expect: {}\n  got:    {}",
                case["name"], case["expect"], got
            ));
        }
    }
    println!(
        "conformance: {} cases, {} failed",
        paths.len(),
        failures.len()
    );
    assert_eq!(paths.len(), 41, "the classic set has 41 cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
