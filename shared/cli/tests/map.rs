//! The `segment-amplitude map` contract, driven as other tools drive it: a real process with
//! settings file, JSON Lines on stdin or in a file, one output line per input line.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_segment-amplitude"))
}

/// A file of its own per call, so tests running in parallel never share one.
fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sa-map-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn run(settings: &str, stdin: &str) -> (i32, Vec<Value>, String) {
    let settings = temp_file("settings.json", settings);
    let mut child = bin()
        .args(["map", "--settings"])
        .arg(&settings)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        out.status.code().unwrap(),
        lines,
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn one_line_out_per_line_in_with_requests_errors_and_skips() {
    let input = [
        r#"{"type":"identify","userId":"user-1","traits":{"plan":"pro"},"messageId":"m1"}"#,
        "not json",
        r#"{"type":"page","userId":"user-1","name":"Home"}"#,
        r#"{"type":"alias","previousId":"a","userId":"b"}"#,
    ]
    .join("\n");
    let (code, lines, stderr) = run(r#"{"apiKey": "KEY"}"#, &input);
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert_eq!(
        lines,
        vec![
            json!({"index": 0, "requests": [{"endpoint": "identify", "method": "POST",
                "url": "https://api2.amplitude.com/identify",
                "body": {"api_key": "KEY", "identification": [{"user_id": "user-1", "library": "segment",
                    "user_properties": {"plan": "pro", "id": "user-1"}}]}}], "error": null}),
            json!({"index": 1, "requests": [], "error": {"kind": "invalid",
                "message": "the line is not valid JSON (expected ident at line 1 column 2)"}}),
            json!({"index": 2, "requests": [], "error": null, "skipped": "page: no page setting \
                sends it: `trackAllPages` is off, `trackCategorizedPages` is off, `trackNamedPages` is off"}),
            json!({"index": 3, "requests": [], "error": {"kind": "unsupported",
                "message": "alias: the `sendAlias` (Enable Alias) setting is off"}}),
        ]
    );
}

#[test]
fn input_file_argument_and_blank_lines_keep_line_numbers() {
    let input = temp_file(
        "in.jsonl",
        "{\"type\":\"track\",\"event\":\"e\",\"userId\":\"user-1\"}\n\n{\"type\":\"track\",\"userId\":\"user-1\"}\n",
    );
    let settings = temp_file("s.json", r#"{"apiKey": "KEY"}"#);
    let out = bin()
        .args(["map", "--settings"])
        .arg(&settings)
        .arg(&input)
        .output()
        .unwrap();
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0]["requests"][0]["body"]["events"][0]["event_type"],
        "e"
    );
    assert_eq!(
        lines[1],
        json!({"index": 2, "requests": [], "error": {"kind": "invalid", "message": "track: `event` is required"}})
    );
}

/// Spec §17.5: with `minIdLength` the printed bodies carry `options.min_id_length`, as sent,
/// and the ids the mapping keeps are the ones that minimum allows.
#[test]
fn min_id_length_shows_in_the_bodies_and_in_the_ids_kept() {
    let input = [
        r#"{"type":"identify","userId":"42","traits":{"plan":"pro"}}"#,
        r#"{"type":"track","event":"e","userId":"7"}"#,
    ]
    .join("\n");
    let (code, lines, _) = run(r#"{"apiKey": "KEY", "minIdLength": 2}"#, &input);
    assert_eq!(code, 0);
    assert_eq!(
        lines,
        vec![
            json!({"index": 0, "requests": [{"endpoint": "identify", "method": "POST",
                "url": "https://api2.amplitude.com/identify",
                "body": {"api_key": "KEY", "identification": [{"user_id": "42", "library": "segment",
                    "user_properties": {"plan": "pro", "id": "42"}}],
                    "options": {"min_id_length": 2}}}], "error": null}),
            json!({"index": 1, "requests": [], "error": {"kind": "invalid",
                "message": "`userId` \"7\" is shorter than the 2 characters Amplitude accepts (minIdLength), and the message has no other id"}}),
        ]
    );
}

#[test]
fn settings_error_exits_2_with_one_line_naming_the_key() {
    for (settings, message) in [
        (
            r#"{"trackAllPages": true}"#,
            "settings: `apiKey` is required\n",
        ),
        (r#"{"apiKey": ""}"#, "settings: `apiKey` is required\n"),
        (
            r#"{"apiKey": "SECRET", "sendAlias": "yes"}"#,
            "settings: `sendAlias` must be true or false\n",
        ),
    ] {
        let (code, lines, stderr) = run(settings, "");
        assert_eq!((code, lines.len(), stderr.as_str()), (2, 0, message));
        assert!(!stderr.contains("SECRET"));
    }
}

#[test]
fn deletions_need_the_secret_key_setting_and_never_print_it() {
    // Mapping spec §12.2/§13: without `secretKey` a delete is a configuration error.
    let delete = r#"{"type":"delete","userId":"u1"}"#;
    let (code, lines, _) = run(r#"{"apiKey": "KEY"}"#, delete);
    assert_eq!(code, 0);
    assert_eq!(
        lines,
        vec![
            json!({"index": 0, "requests": [], "error": {"kind": "configuration",
            "message": "delete: Amplitude deletions need the `secretKey` setting, which is not configured"}})
        ]
    );
    let (_, lines, _) = run(r#"{"apiKey": "KEY", "secretKey": "SECRET"}"#, delete);
    assert_eq!(
        lines,
        vec![
            json!({"index": 0, "requests": [{"endpoint": "deletion", "method": "POST",
            "url": "https://amplitude.com/api/2/deletions/users",
            "body": {"user_ids": ["u1"], "requester": "segment"}}], "error": null})
        ]
    );
    assert!(!lines[0].to_string().contains("SECRET"));
}

#[test]
fn large_inputs_are_mapped_on_every_core_and_written_in_input_order() {
    // Several 1 MB blocks, with blank lines and bad lines among them: each output line must
    // still carry its input line number, in order.
    let mut input = String::new();
    let mut expected = Vec::new();
    for i in 0..12_000 {
        match i % 500 {
            7 => input.push('\n'),
            9 => {
                input.push_str("not json\n");
                expected.push((i, "invalid"));
            }
            _ => {
                let pad = "x".repeat(i % 300);
                input.push_str(&format!(
                    "{{\"type\":\"track\",\"event\":\"e{i}\",\"userId\":\"user-{i}\",\"messageId\":\"m{i}\",\"properties\":{{\"pad\":\"{pad}\"}}}}\n"
                ));
                expected.push((i, "ok"));
            }
        }
    }
    assert!(input.len() > 2 << 20, "several 1 MB blocks");
    let (code, lines, _) = run(r#"{"apiKey": "KEY"}"#, &input);
    assert_eq!(code, 0);
    assert_eq!(lines.len(), expected.len());
    for (line, (index, kind)) in lines.iter().zip(&expected) {
        assert_eq!(line["index"], json!(index));
        if *kind == "ok" {
            assert_eq!(
                line["requests"][0]["body"]["events"][0]["insert_id"],
                json!(format!("m{index}"))
            );
        } else {
            assert_eq!(line["error"]["kind"], "invalid");
        }
    }
}

#[test]
fn a_line_longer_than_a_block_and_a_last_line_without_its_end_keep_their_numbers() {
    let line = |i: usize, pad: usize| {
        format!(
            "{{\"type\":\"track\",\"event\":\"e\",\"userId\":\"user-{i}\",\"messageId\":\"m{i}\",\"properties\":{{\"pad\":\"{}\"}}}}",
            "p".repeat(pad)
        )
    };
    let input = format!(
        "{}\n{}\n{}\n{}",
        line(0, 10),
        line(1, 3 << 20),
        line(2, 10),
        line(3, 10)
    );
    let (code, lines, _) = run(r#"{"apiKey": "KEY"}"#, &input);
    assert_eq!(code, 0);
    let ids: Vec<(Value, Value)> = lines
        .iter()
        .map(|l| {
            (
                l["index"].clone(),
                l["requests"][0]["body"]["events"][0]["insert_id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        (0..4)
            .map(|i| (json!(i), json!(format!("m{i}"))))
            .collect::<Vec<_>>()
    );
}
