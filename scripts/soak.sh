#!/usr/bin/env bash
# The long version of the nemesis tests: every fault in turn and at random
# (partitions of one node and of the leader, kill -9, SIGSTOP, rolling restarts, a
# full disk) against a 3-pod cluster under checked clients, then the checks:
# linearizable histories, no acknowledged write lost, replicas converged.
#   ./scripts/soak.sh        # 30 minutes
#   ./scripts/soak.sh 120    # two hours
# Set SHOAL_NEMESIS_SEED to replay a run's choice of faults (its seed is printed).
# Needs root (blackhole routes in the pods' network namespaces, a tmpfs disk), as
# the test suite does.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
minutes="${1:-30}"
export SHOAL_TEST_IMAGE="shoal:test"
SHOAL_IMAGE_PROFILE=debug ./docker/build-image.sh "$SHOAL_TEST_IMAGE" 2>&1 | grep -v -e DEPRECATED -e 'legacy builder' -e buildx -e '^ *$' || true
cargo build -p shoal-cli --quiet
start=$(date +%s)
SHOAL_NEMESIS_SECS=$((minutes * 60)) cargo test -p shoal-tests --test nemesis --quiet \
  -- --exact nemesis_combined --nocapture 2>&1 | tee "${SHOAL_SOAK_LOG:-/dev/null}"
echo "soak of ${minutes} min passed in $(( $(date +%s) - start )) s"
