//! Replays the fuzz targets' seed corpora (`tests/fuzz/seeds/`) and every input that once
//! crashed them (`tests/fuzz/regressions/`) through the same target bodies, as an ordinary
//! test: the long fuzz runs are not part of CI, their findings are.

use std::path::Path;

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read(&p).expect("readable seed"),
            )
        })
        .collect();
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let fuzz = tests::workspace_root().join("tests/fuzz");
    let seeds = inputs(&fuzz.join("seeds").join(target));
    let regressions = inputs(&fuzz.join("regressions").join(target));
    assert!(
        seeds.len() >= 30,
        "{target}: the committed seeds are missing"
    );
    for (name, data) in seeds.iter().chain(&regressions) {
        let outcome = std::panic::catch_unwind(|| run(data));
        assert!(outcome.is_ok(), "{target}: {name} panicked");
    }
    println!(
        "{target}: {} seeds and {} regressions replayed",
        seeds.len(),
        regressions.len()
    );
}

#[test]
fn map_line_seeds_and_regressions_replay() {
    replay("map_line", tests::fuzzing::map_line);
}

#[test]
fn inbound_seeds_and_regressions_replay() {
    replay("inbound", tests::fuzzing::inbound);
}

#[test]
fn job_seeds_and_regressions_replay() {
    replay("job", tests::fuzzing::job);
}

#[test]
fn response_seeds_and_regressions_replay() {
    replay("response", tests::fuzzing::response);
}
