//! `segment-amplitude map` as a whole process (reading standard input, writing standard
//! output) against an in-memory `serde_json::Value` parse + print of the same events, side by
//! side in one run: 20,000 generated corpus events (seed 42).
//!
//! Run: `cargo bench -p segment-amplitude --bench map`. Figures go to BENCHMARKS.md.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EVENTS: usize = 20_000;
const RUNS: usize = 7;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let lines = corpus::lines(42, EVENTS);
    let input = lines.join("\n") + "\n";
    let dir = std::env::temp_dir().join(format!("map-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let settings = dir.join("settings.json");
    std::fs::write(&settings, corpus::settings().to_string()).unwrap();

    let mut process = Vec::new();
    let mut in_memory = Vec::new();
    let mut out_bytes = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_segment-amplitude"))
            .args(["map", "--settings"])
            .arg(&settings)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feed = {
            let input = input.clone();
            std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap())
        };
        let out = child.wait_with_output().unwrap();
        feed.join().unwrap();
        process.push(started.elapsed());
        assert!(out.status.success());
        out_bytes = out.stdout.len();
        assert_eq!(out.stdout.iter().filter(|b| **b == b'\n').count(), EVENTS);

        let started = Instant::now();
        let mut printed = Vec::with_capacity(input.len());
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            serde_json::to_writer(&mut printed, &v).unwrap();
            printed.push(b'\n');
        }
        in_memory.push(started.elapsed());
        std::hint::black_box(printed);
    }
    let (p, m) = (median(process), median(in_memory));
    let rate = |d: Duration| EVENTS as f64 / d.as_secs_f64();
    println!(
        "map: {EVENTS} events ({:.1} MB in, {:.1} MB out), median of {RUNS}: the process {:.0} events/s ({:.3} s), \
         in-memory serde_json parse + print {:.0} events/s ({:.3} s): {:.2}x",
        input.len() as f64 / 1e6,
        out_bytes as f64 / 1e6,
        rate(p),
        p.as_secs_f64(),
        rate(m),
        m.as_secs_f64(),
        rate(p) / rate(m)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
