//! `segment-amplitude map` as a whole process (reading its input, writing standard output)
//! against an in-memory `serde_json::Value` parse + print of the same events, side by side in
//! one run: 20,000 generated corpus events (seed 42). Three times: on every core, and on one
//! (`taskset -c 0` for the process; the in-memory loop with this thread held to core 0 too,
//! while the harness's own piping runs elsewhere), once with the events on standard input and
//! once in a file named as `INPUT`, as the README runs it. Each ratio is given twice: of the
//! medians, and the median of each run's ratio to the loop run right after it.
//!
//! Run: `cargo bench -p segment-amplitude --bench map`. Figures go to BENCHMARKS.md.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EVENTS: usize = 20_000;
const RUNS: usize = 7;
/// What the harness writes or reads per system call: 128 KiB, as `cat` does. With one 30 MB
/// write the kernel holds the pipe's lock while it copies each megabyte in, and the process's
/// reads spin on that lock on its own CPU time (`perf`: 1.4–1.9% of the process in
/// `mutex_spin_on_owner`, against 0.1–0.4% behind `cat`).
const PIPE_CHUNK: usize = 128 << 10;

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
    let taskset = Command::new("taskset").arg("--version").output().is_ok();
    let input_file = dir.join("events.jsonl");
    std::fs::write(&input_file, &input).unwrap();
    for (one_core, from_file) in [(false, false), (true, false), (true, true)] {
        if one_core && !taskset {
            println!("map on one core: skipped (no taskset)");
            continue;
        }
        let file = from_file.then_some(input_file.as_path());
        let f = measure(&lines, &input, &settings, one_core, file);
        let rate = |d: Duration| EVENTS as f64 / d.as_secs_f64();
        let (p, m) = (f.process, f.in_memory);
        println!(
            "map{}{}: {EVENTS} events ({:.1} MB in, {:.1} MB out), median of {RUNS}: the process {:.0} events/s ({:.3} s), \
             in-memory serde_json parse + print {:.0} events/s ({:.3} s): {:.2}x (run by run: {:.2}x)",
            if one_core { " on one core" } else { "" },
            if from_file { ", INPUT a file" } else { "" },
            input.len() as f64 / 1e6,
            f.out_bytes as f64 / 1e6,
            rate(p),
            p.as_secs_f64(),
            rate(m),
            m.as_secs_f64(),
            rate(p) / rate(m),
            f.paired
        );
        if let (true, Some(cpu)) = (one_core, f.process_cpu) {
            println!(
                "  its CPU time on that core: {:.3} s ({:.0} events per CPU-second): {:.2}x the in-memory loop \
                 (run by run: {:.2}x); the other {:.3} s it waited on its pipes",
                cpu.as_secs_f64(),
                rate(cpu),
                rate(cpu) / rate(m),
                f.paired_cpu.unwrap_or(f64::NAN),
                p.saturating_sub(cpu).as_secs_f64()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Holds this thread to `cpus` (a `taskset` list).
fn pin(cpus: &str) {
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| std::process::id().to_string());
    let _ = Command::new("taskset")
        .args(["-p", "-c", cpus, &tid])
        .stdout(Stdio::null())
        .status();
}

/// Medians of one configuration's runs.
struct Figures {
    /// The process, start to exit, as a user waits for it.
    process: Duration,
    /// The CPU the process itself used (user + system), where the kernel says: its wall time
    /// less the time it sat blocked on a pipe, waiting for the harness on the other core.
    process_cpu: Option<Duration>,
    in_memory: Duration,
    /// The median of each run's ratio (the loop's time over the process's, each run's pair
    /// measured back to back): this VM's speed drifts by a third from minute to minute, and
    /// a pair shares the minute it ran in, so the ratio of pairs moves less than the ratio
    /// of medians taken over all runs.
    paired: f64,
    /// The same with the process's CPU time.
    paired_cpu: Option<f64>,
    out_bytes: usize,
}

/// The CPU time of child `pid` once it has exited, read before it is reaped (Linux: the
/// scheduler's nanosecond count in `/proc/PID/schedstat`). `None` elsewhere or on failure.
fn cpu_time_at_exit(pid: u32) -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
        let pid = Pid::from_raw(i32::try_from(pid).ok()?)?;
        waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        )
        .ok()?;
        let schedstat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
        let ns = schedstat.split_whitespace().next()?.parse().ok()?;
        Some(Duration::from_nanos(ns))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// The process and the in-memory loop, run in turn `RUNS` times, and the output size.
fn measure(
    lines: &[String],
    input: &str,
    settings: &std::path::Path,
    one_core: bool,
    file: Option<&std::path::Path>,
) -> Figures {
    let mut process = Vec::new();
    let mut process_cpu = Vec::new();
    let mut in_memory = Vec::new();
    let mut out_bytes = 0;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The harness's piping (feeding standard input, reading standard output) runs off core 0,
    // as `cat` upstream and downstream of a pipeline would: the threads inherit this one's cores.
    let others = format!("1-{}", cores.max(2) - 1);
    for _ in 0..RUNS {
        if one_core && cores > 1 {
            pin(&others);
        }
        let started = Instant::now();
        let mut command = if one_core {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"])
                .arg(env!("CARGO_BIN_EXE_segment-amplitude"));
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_segment-amplitude"))
        };
        command.args(["map", "--settings"]).arg(settings);
        if let Some(file) = file {
            command.arg(file).stdin(Stdio::null());
        } else {
            command.stdin(Stdio::piped());
        }
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        // Like `cat INPUT | map | wc -lc`: the input fed from memory without a copy, the
        // output read a buffer at a time and counted, so the harness's own allocation and
        // copying are not charged to the process.
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().unwrap();
        let (bytes, lines_out) = std::thread::scope(|scope| {
            if let Some(mut stdin) = stdin {
                scope.spawn(move || {
                    for chunk in input.as_bytes().chunks(PIPE_CHUNK) {
                        stdin.write_all(chunk).unwrap();
                    }
                });
            }
            let mut buffer = vec![0u8; PIPE_CHUNK];
            let (mut bytes, mut lines_out) = (0, 0);
            loop {
                let n = stdout.read(&mut buffer).unwrap();
                if n == 0 {
                    break (bytes, lines_out);
                }
                bytes += n;
                lines_out += buffer[..n].iter().filter(|b| **b == b'\n').count();
            }
        });
        let cpu = cpu_time_at_exit(child.id());
        let status = child.wait().unwrap();
        process.push(started.elapsed());
        if let Some(cpu) = cpu {
            process_cpu.push(cpu);
        }
        assert!(status.success());
        out_bytes = bytes;
        assert_eq!(lines_out, EVENTS);

        if one_core {
            pin("0");
        }
        let started = Instant::now();
        let mut printed = Vec::with_capacity(input.len());
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            serde_json::to_writer(&mut printed, &v).unwrap();
            printed.push(b'\n');
        }
        in_memory.push(started.elapsed());
        std::hint::black_box(printed);
        if one_core {
            pin(&format!("0-{}", cores - 1));
        }
    }
    let paired = |of: &[Duration]| {
        let mut ratios: Vec<f64> = of
            .iter()
            .zip(&in_memory)
            .map(|(p, m)| m.as_secs_f64() / p.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    };
    Figures {
        paired: paired(&process),
        paired_cpu: (process_cpu.len() == RUNS).then(|| paired(&process_cpu)),
        process: median(process),
        process_cpu: (process_cpu.len() == RUNS).then(|| median(process_cpu)),
        in_memory: median(in_memory),
        out_bytes,
    }
}
