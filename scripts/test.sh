#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one:
#   ./scripts/test.sh
# Installs what is missing (libclang), builds librocksdb.a once per machine (cached
# under ~/.cache/shoal), then checks formatting and lints and runs every test:
# unit tests, openraft's storage suite against the RocksDB stores, and the cluster
# tests that start real node processes on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
# Cluster tests start three node processes each: two at a time on a small machine.
cargo test --workspace --quiet -- --test-threads="${SHOAL_TEST_THREADS:-2}"
