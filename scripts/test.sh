#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one:
#   ./scripts/test.sh
# Installs what is missing (libclang, debootstrap, the schema validator), builds
# librocksdb.a once per machine (cached under ~/.cache/shoal), then checks formatting
# and lints and runs every test: unit tests, openraft's storage suite against the
# RocksDB stores, cluster tests with real node processes on loopback, manifest checks,
# pods simulated as Docker containers of the image built from this tree, nemeses
# (partitions, kill -9, pauses, restarts, membership changes, a full disk) under
# checked clients, and crashes at failpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The failpoints build (crash and error injection compiled in) has a target
# directory of its own, so the two builds never invalidate each other.
fp_target="$CARGO_TARGET_DIR-failpoints"
CARGO_TARGET_DIR="$fp_target" cargo clippy -p shoal-raft -p shoal-tests --all-targets --quiet \
  --features shoal-raft/failpoints,shoal-tests/failpoints -- -D warnings
echo "== image for the pod tests"
# Pods are simulated as containers of this image, built here from the current code
# (the debug binary, which the tests build anyway) on a locally made Debian base.
export SHOAL_TEST_IMAGE="shoal:test"
SHOAL_IMAGE_PROFILE=debug ./docker/build-image.sh "$SHOAL_TEST_IMAGE" 2>&1 | grep -v -e DEPRECATED -e 'legacy builder' -e buildx -e '^ *$' || true
docker image inspect "$SHOAL_TEST_IMAGE" >/dev/null
echo "== cargo test"
# Cluster tests start three node processes each: two at a time on a small machine.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --all-targets --no-fail-fast --quiet -- --test-threads="${SHOAL_TEST_THREADS:-2}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
echo "== failpoint tests (shoal built with --features failpoints)"
CARGO_TARGET_DIR="$fp_target" cargo build -p shoal-cli --features failpoints --quiet 2>&1 | tee -a "$log"
CARGO_TARGET_DIR="$fp_target" cargo test -p shoal-tests --features failpoints --test failpoints --quiet \
  -- --test-threads="${SHOAL_TEST_THREADS:-2}" 2>&1 | tee -a "$log"
fp_rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] && rc=$fp_rc
set -e
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
echo
echo "$passed passed, $failed failed"
exit "$rc"
