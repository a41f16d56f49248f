# Sourced by the repo's scripts: installs what a fresh machine lacks, builds (once)
# the cached librocksdb.a, and points cargo at it and at a target directory outside
# the checkout.
#   source scripts/env.sh
_shoal_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_shoal_need_apt=()
# RocksDB's Rust bindings are generated with libclang at build time.
# Only libclang itself counts: libclang-cpp.so (present with LLVM alone) is not it.
if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* >/dev/null 2>&1 \
  && ! ldconfig -p 2>/dev/null | grep -qE 'libclang(-[0-9.]+)?\.so'; then
  _shoal_need_apt+=(libclang-dev)
fi
# The bench's etcd client compiles etcd's protos with protoc at build time.
command -v protoc >/dev/null 2>&1 || _shoal_need_apt+=(protobuf-compiler)
command -v g++ >/dev/null 2>&1 || _shoal_need_apt+=(g++)
command -v make >/dev/null 2>&1 || _shoal_need_apt+=(make)
# The SQL tests: psql as a client, and a real PostgreSQL server whose answers the
# logic files are checked against.
command -v psql >/dev/null 2>&1 || _shoal_need_apt+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || _shoal_need_apt+=(postgresql)
# The HTTP SQL API is tested with curl.
command -v curl >/dev/null 2>&1 || _shoal_need_apt+=(curl)
if [ ${#_shoal_need_apt[@]} -gt 0 ]; then
  echo "installing ${_shoal_need_apt[*]} (Debian packages)" >&2
  _sudo=""; [ "$(id -u)" -ne 0 ] && _sudo="sudo"
  $_sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $_sudo apt-get install -y -qq "${_shoal_need_apt[@]}" >&2
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoal/target}"

# Python tools of the test suite (the Kubernetes schema validator), pinned, in a venv
# outside the checkout.
_shoal_venv="$HOME/.cache/shoal/venv"
if [ ! -x "$_shoal_venv/bin/kubernetes-validate" ]; then
  echo "installing kubernetes-validate (PyPI) into $_shoal_venv" >&2
  python3 -m venv "$_shoal_venv" >&2
  "$_shoal_venv/bin/pip" install -q "kubernetes-validate==1.31.0" >&2
fi
export SHOAL_PYTHON="$_shoal_venv/bin/python"
# A Postgres driver for Python (psycopg), which runs the SQL logic files.
_shoal_sqlvenv="$HOME/.cache/shoal/sqlvenv"
if ! "$_shoal_sqlvenv/bin/python" -c 'import psycopg' >/dev/null 2>&1; then
  echo "installing psycopg (PyPI) into $_shoal_sqlvenv" >&2
  python3 -m venv "$_shoal_sqlvenv" >&2
  "$_shoal_sqlvenv/bin/pip" install -q "psycopg[binary]==3.3.9" >&2
fi
export SHOAL_SQL_PYTHON="$_shoal_sqlvenv/bin/python"
# gRPC for Python (grpcio, and grpcio-tools to generate its stubs from proto/): a
# client of the public API in another language than the SDK's.
_shoal_grpcvenv="$HOME/.cache/shoal/grpcvenv"
if ! "$_shoal_grpcvenv/bin/python" -c 'import grpc, grpc_tools' >/dev/null 2>&1; then
  echo "installing grpcio and grpcio-tools (PyPI) into $_shoal_grpcvenv" >&2
  python3 -m venv "$_shoal_grpcvenv" >&2
  "$_shoal_grpcvenv/bin/pip" install -q "grpcio==1.68.1" "grpcio-tools==1.68.1" >&2
fi
export SHOAL_GRPC_PYTHON="$_shoal_grpcvenv/bin/python"
unset _shoal_venv _shoal_sqlvenv _shoal_grpcvenv
ROCKSDB_LIB_DIR="$("$_shoal_root/scripts/rocksdb-lib.sh")" || return 1 2>/dev/null || exit 1
export ROCKSDB_LIB_DIR
export ROCKSDB_STATIC=1
unset _shoal_need_apt _sudo
