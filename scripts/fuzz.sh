#!/usr/bin/env bash
# Fuzzes decoding of internal messages and stored records, the key encodings and the
# request validation layer with cargo fuzz (libFuzzer), each target for a while:
#   ./scripts/fuzz.sh            # 60 s per target
#   ./scripts/fuzz.sh 600 keys   # 10 min, one target
# Installs cargo-fuzz if missing. Targets live in tests/fuzz/fuzz_targets; a crash
# leaves its input in tests/fuzz/artifacts/<target>/ (reproduce with
# `cargo fuzz run --fuzz-dir tests/fuzz <target> <file>`), and becomes a regression
# test next to the proptests of the crate it broke.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(raft_messages stored_records keys requests)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# The machine's toolchain is stable: cargo fuzz's flags need RUSTC_BOOTSTRAP. No
# sanitizer: the code under test has no unsafe; libFuzzer's coverage does the work.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$HOME/.cache/shoal/target-fuzz"
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${secs}s"
  mkdir -p "tests/fuzz/corpus/$t"
  cargo fuzz run --fuzz-dir tests/fuzz --sanitizer none "$t" -- \
    -max_total_time="$secs" -rss_limit_mb=4096 2>&1 | grep -E '^(#[0-9]+ +DONE|Done|==|SUMMARY|thread|panicked)|Test unit written' || true
  if ls "tests/fuzz/artifacts/$t"/crash-* >/dev/null 2>&1; then
    echo "fuzz $t: crash found (tests/fuzz/artifacts/$t)" >&2
    exit 1
  fi
done
echo "fuzzing done: no crash"
