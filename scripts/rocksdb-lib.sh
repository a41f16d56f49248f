#!/usr/bin/env bash
# Builds librocksdb.a once per machine (optimised) and caches it outside the checkout.
#
# RocksDB's C++ build takes ~14 minutes on 2 cores and would otherwise run again for
# every cargo profile and for `cargo check`/`clippy`. We build it once through the very
# librocksdb-sys version and features the workspace uses, copy the archive out of the
# build's OUT_DIR, and every later build links it (ROCKSDB_LIB_DIR + ROCKSDB_STATIC=1).
#
# Prints the directory holding librocksdb.a on stdout; progress goes to stderr.
set -euo pipefail

# Keep in step with the workspace Cargo.toml (`rocksdb` and its features).
SYS_VERSION="0.19.0+11.8.1"
FEATURES='"static", "bindgen-runtime", "lz4"'

cache="${SHOAL_CACHE_DIR:-$HOME/.cache/shoal}"
key="librocksdb-sys-${SYS_VERSION}-lz4"
dest="$cache/$key"
if [ -f "$dest/librocksdb.a" ]; then
  echo "$dest"
  exit 0
fi

work="$cache/build-$key"
mkdir -p "$work/src"
cat >"$work/Cargo.toml" <<TOML
[package]
name = "rocksdb-lib-build"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
librocksdb-sys = { version = "=${SYS_VERSION}", default-features = false, features = [${FEATURES}] }

[profile.release]
opt-level = 3
TOML
echo 'fn main() {}' >"$work/src/main.rs"
echo "building librocksdb.a (${SYS_VERSION}) once for this machine; this takes ~15 min on 2 cores" >&2
(cd "$work" && env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET_DIR cargo build --release --quiet 1>&2)
lib=$(find "$work/target/release/build" -path '*librocksdb-sys-*/out/librocksdb.a' | head -n 1)
[ -n "$lib" ] || { echo "librocksdb.a not found after the build" >&2; exit 1; }
mkdir -p "$dest.tmp"
cp "$lib" "$dest.tmp/"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
rm -rf "$work"
echo "$dest"
