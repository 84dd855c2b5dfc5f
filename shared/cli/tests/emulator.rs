//! `segment-amplitude emulator`: a person can run the Amplitude emulator by hand.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn emulator_command_serves_amplitude_on_loopback() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_segment-amplitude"))
        .args(["emulator", "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("Amplitude emulator listening on ")
        .expect("prints its URL first")
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (status, ingested) = runtime.block_on(async {
        amplitude_client::install_crypto_provider();
        let c = reqwest::Client::new();
        let body = r#"{"api_key":"k","events":[{"user_id":"user-1","event_type":"Played"}]}"#;
        let status = c
            .post(format!("{url}/2/httpapi"))
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        let ingested = c
            .get(format!("{url}/_emulator/ingested"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (status, ingested)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 200);
    let ingested: serde_json::Value = serde_json::from_str(&ingested).unwrap();
    assert_eq!(ingested["events"][0]["event_type"], "Played");
}
