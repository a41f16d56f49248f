#!/usr/bin/env bash
# Build shoal and run `shoal demo`: a real 3-node cluster on loopback and a shell on it.
#   ./scripts/demo.sh            (arguments are passed to `shoal demo`, e.g. --keep)
# Installs what is missing (libclang) and builds librocksdb.a once per machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --quiet -p shoal-cli
exec "$CARGO_TARGET_DIR/release/shoal" demo "$@"
