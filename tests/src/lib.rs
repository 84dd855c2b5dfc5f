//! Helpers shared by the project-level tests: the conformance data, a Lambda Runtime API
//! emulator that drives the real function binaries, and moto as Secrets Manager.

pub mod function;
pub mod fuzzing;
pub mod moto;
pub mod runtime_api;
pub mod sqs;

use std::path::PathBuf;

use serde_json::Value;

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The third-party conformance cases, read at test time from `../shared/conformance` beside the
/// repository (or `$CONFORMANCE_DIR`). `None` when this clone has no such folder.
pub fn conformance_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/conformance"));
    dir.is_dir().then_some(dir)
}

/// JSON equality as the conformance rules define it: key order does not matter and numbers
/// compare by value (`20.50` equals `20.5`, `1` equals `1.0`). Otherwise exact.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_eq(v, w))
        }
        _ => a == b,
    }
}

/// A built binary of the workspace (`cargo build --workspace --bins` builds them; the test
/// command does so before the tests).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` (tests/run.sh does)",
        path.display()
    );
    path
}
