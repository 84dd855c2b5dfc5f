#!/usr/bin/env bash
# Runs the project's fuzz targets (cargo fuzz, libFuzzer, nightly toolchain) from the seeds
# generated from shared/corpus plus every input that once crashed them:
#
#   bash tests/fuzz/run.sh                 # every target, 10 million executions each
#   bash tests/fuzz/run.sh 1000000 inbound # one target, a million executions
#
# The targets are built without a sanitizer (`-s none`): the code under test is safe Rust, so
# AddressSanitizer finds nothing more there, and it runs about 4 times slower (2.8k against
# 12.5k executions per second for map_line on the project's machines).
#
# Prints libFuzzer's final statistics (executions, time, crashes). A crash leaves its input in
# tests/fuzz/artifacts/<target>/: copy it to tests/fuzz/regressions/<target>/ once fixed, and the
# `fuzz_seeds` test replays it from then on. Not part of CI (it takes minutes per target).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

runs=${1:-10000000}
shift || true
targets=("${@:-map_line}")
[ $# -eq 0 ] && targets=(map_line inbound job response)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo run -q -p tests --example fuzz_seeds
for target in "${targets[@]}"; do
  corpus="tests/fuzz/corpus/$target"
  mkdir -p "$corpus"
  cp -n tests/fuzz/seeds/"$target"/* tests/fuzz/regressions/"$target"/* "$corpus"/ 2>/dev/null || true
  echo "== $target: $runs executions"
  started=$(date +%s)
  cargo +nightly fuzz run -s none --fuzz-dir tests/fuzz "$target" "$corpus" -- \
    -runs="$runs" -max_len=65536 -print_final_stats=1 -close_fd_mask=3 2>&1 |
    grep -E "^(stat::|Done|==|INFO: seed corpus|.*(panicked|ERROR|SUMMARY|deadly))" || true
  echo "== $target: $(( $(date +%s) - started )) s"
done
