//! Writes the fuzz targets' seed corpora, generated from `shared/corpus` (deterministic), into
//! `tests/fuzz/seeds/<target>/`. `tests/fuzz/run.sh` runs it; the seeds are committed, and the
//! `fuzz_seeds` test replays them with every input that once crashed.
//!
//! Run: `cargo run -p tests --example fuzz_seeds`

use std::path::Path;

fn write(dir: &Path, seeds: Vec<Vec<u8>>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("corpus-{i:03}")), seed)?;
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
    Ok(())
}

fn main() -> std::io::Result<()> {
    let root = tests::workspace_root().join("tests/fuzz/seeds");
    write(&root.join("map_line"), tests::fuzzing::map_line_seeds(60))?;
    write(&root.join("inbound"), tests::fuzzing::inbound_seeds(36))?;
    write(&root.join("job"), tests::fuzzing::job_seeds(40))?;
    write(&root.join("response"), tests::fuzzing::response_seeds())?;
    Ok(())
}
