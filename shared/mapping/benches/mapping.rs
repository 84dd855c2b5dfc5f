//! Mapping throughput over the generated corpus (`shared/corpus`, seed 42, 10,000 messages):
//! JSON bytes in → the Amplitude objects as JSON bytes out, set against a plain `serde_json`
//! parse to `Value` and print of the same lines, two ways: `to_string` per line, and written
//! into one reused buffer (the floor `cargo bench -p segment-amplitude --bench map` holds the
//! `map` command to: no allocation for the printed text).
//!
//! Run: `cargo bench -p mapping --bench mapping`. Figures are recorded in BENCHMARKS.md.

use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use mapping::Settings;

const MESSAGES: usize = 10_000;

fn main() {
    divan::main();
}

fn corpus() -> (Vec<String>, Settings) {
    let lines = corpus::lines(42, MESSAGES);
    let settings = Settings::from_json(&corpus::settings()).expect("corpus settings are valid");
    (lines, settings)
}

fn bytes(lines: &[String]) -> usize {
    lines.iter().map(String::len).sum()
}

/// Writes each line with `write` into one buffer reused across samples, a newline after each.
fn into_buffer(bencher: Bencher, lines: &[String], mut write: impl FnMut(&str, &mut Vec<u8>)) {
    let mut out = Vec::with_capacity(64 << 20);
    bencher
        .counter(ItemsCount::new(lines.len()))
        .counter(BytesCount::new(bytes(lines)))
        .bench_local(|| {
            out.clear();
            for line in lines {
                write(line, &mut out);
                out.push(b'\n');
            }
            black_box(out.len())
        });
}

#[divan::bench(sample_count = 20)]
fn map_to_amplitude_json(bencher: Bencher) {
    let (lines, settings) = corpus();
    into_buffer(bencher, &lines, |line, out| {
        let message: serde_json_borrow::Value = serde_json::from_str(line).unwrap();
        let plan = mapping::plan(&message, &settings).unwrap();
        for request in &plan.requests {
            serde_json::to_writer(&mut *out, &request.body).unwrap();
        }
    });
}

#[divan::bench(sample_count = 20)]
fn serde_json_parse_and_print(bencher: Bencher) {
    let (lines, _) = corpus();
    bencher
        .counter(ItemsCount::new(lines.len()))
        .counter(BytesCount::new(bytes(&lines)))
        .bench_local(|| {
            let mut total = 0;
            for line in &lines {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                total += v.to_string().len();
            }
            black_box(total)
        });
}

#[divan::bench(sample_count = 20)]
fn serde_json_parse_and_print_into_buffer(bencher: Bencher) {
    let (lines, _) = corpus();
    into_buffer(bencher, &lines, |line, out| {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        serde_json::to_writer(out, &v).unwrap();
    });
}
