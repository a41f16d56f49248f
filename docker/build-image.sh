#!/usr/bin/env bash
# Builds the shoal runtime image on a machine with no container registry:
#   docker/build-image.sh [TAG]        (default tag: shoal:dev)
# SHOAL_IMAGE_PROFILE=debug puts the debug binary in the image instead (the test suite
# does, to reuse the build it has made anyway).
#
# 1. A Debian bookworm base is made locally with debootstrap and imported into Docker
#    (`shoal-base:bookworm`), once: later builds reuse it.
# 2. The `shoal` binary is built here (release) against the cached librocksdb.a.
# 3. The runtime stage of docker/Dockerfile is built as it is, on that base, with the
#    binary copied in: the same image the Dockerfile gives where a registry exists.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-shoal:dev}"
base="shoal-base:bookworm"

if ! docker image inspect "$base" >/dev/null 2>&1; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    echo "installing debootstrap (Debian package)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  echo "making $base with debootstrap (once per machine)" >&2
  debootstrap --variant=minbase bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
  # Slim it as debian:bookworm-slim is: no apt lists, docs or caches.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
  tar -C "$root" -c . | docker import - "$base" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

source scripts/env.sh
profile="${SHOAL_IMAGE_PROFILE:-release}"
case "$profile" in
  release) cargo build --release --quiet -p shoal-cli; bin="$CARGO_TARGET_DIR/release/shoal" ;;
  debug) cargo build --quiet -p shoal-cli; bin="$CARGO_TARGET_DIR/debug/shoal" ;;
  *) echo "SHOAL_IMAGE_PROFILE must be release or debug" >&2; exit 2 ;;
esac
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/shoal"
# The runtime stage of docker/Dockerfile, with the binary from this build context.
{
  echo "ARG RUNTIME_BASE"
  sed -n '/^# --- runtime stage/,$p' docker/Dockerfile | sed 's#^COPY --from=builder /out/shoal #COPY shoal #'
} >"$ctx/Dockerfile"
docker build -q --build-arg RUNTIME_BASE="$base" -t "$tag" "$ctx" >/dev/null
echo "$tag"
