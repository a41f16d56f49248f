#!/usr/bin/env bash
# A throwaway PostgreSQL server for checking the SQL logic tests.
#
#   tests/sql/postgres.sh start DIR   initdb into DIR/data (once), start the
#                                     server on 127.0.0.1 at a free port and
#                                     print its DSN on stdout
#   tests/sql/postgres.sh stop DIR    stop the server started in DIR
#   tests/sql/postgres.sh dsn DIR     print the DSN of the server in DIR
#
# The server: trust auth, fsync=on, synchronous_commit=on, TimeZone UTC,
# locale C (byte-wise text ordering), database `defaultdb`.
# Everything but the DSN goes to stderr. DIR/log is the server log.
set -euo pipefail

say() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
    cat >&2 <<'EOF'
usage: tests/sql/postgres.sh start DIR
       tests/sql/postgres.sh stop DIR
       tests/sql/postgres.sh dsn DIR
EOF
    exit 2
}

[[ $# -eq 2 ]] || usage
cmd=$1
dir=$2
[[ -n "$dir" ]] || usage

# The newest Debian-layout bin directory (/usr/lib/postgresql/N/bin, N
# compared numerically), else the directory of the initdb on PATH.
find_bindir() {
    local v
    if [[ -d /usr/lib/postgresql ]]; then
        for v in $(ls /usr/lib/postgresql | sort -rn); do
            if [[ -x "/usr/lib/postgresql/$v/bin/initdb" ]]; then
                printf '%s' "/usr/lib/postgresql/$v/bin"
                return
            fi
        done
    fi
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
    fi
}

bindir=$(find_bindir)
if [[ -z "$bindir" ]]; then
    [[ $(id -u) -eq 0 ]] || die "initdb not found and not root: install postgresql (apt-get install postgresql postgresql-client)"
    say "initdb not found: installing postgresql from apt"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client >&2
    bindir=$(find_bindir)
    [[ -n "$bindir" ]] || die "postgresql installed but initdb still not found"
fi

# As root, the server runs as the `postgres` OS user.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

data=$dir/data

free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
        return
    fi
    local p
    for _ in $(seq 1 200); do
        p=$(( 20000 + RANDOM % 40000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

running() {
    [[ -f "$data/postmaster.pid" ]] && as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1
}

dsn() {
    printf 'postgresql://postgres@127.0.0.1:%s/defaultdb\n' "$(cat "$dir/port")"
}

start() {
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "no 'postgres' OS user (install the postgresql package)"
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    data=$dir/data
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "$dir"
        as_pg test -w "$dir" -a -x "$dir" \
            || die "user postgres cannot write $dir: every parent directory must be searchable by it (use e.g. /tmp/pg)"
    fi

    if running; then
        say "already running in $dir"
        dsn
        return
    fi

    if [[ ! -f "$data/PG_VERSION" ]]; then
        [[ ! -e "$data" ]] || die "$data exists but is not a database cluster: remove it"
        say "initdb into $data ($("$bindir/postgres" --version))"
        as_pg "$bindir/initdb" -D "$data" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C --no-instructions >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    fi

    local port
    port=$(free_port)
    # Settings go on the command line so that a restart picks a new port;
    # the rest are pinned so output does not depend on the machine.
    say "starting on 127.0.0.1:$port (log: $dir/log)"
    if ! as_pg "$bindir/pg_ctl" -D "$data" -l "$dir/log" -w -t 60 -o "\
 -c port=$port\
 -c listen_addresses=127.0.0.1\
 -c unix_socket_directories='$dir'\
 -c fsync=on\
 -c synchronous_commit=on\
 -c timezone=UTC\
 -c log_timezone=UTC\
 -c datestyle='ISO, MDY'\
 -c intervalstyle=postgres\
 -c extra_float_digits=1\
 -c bytea_output=hex\
 -c lc_messages=C\
 -c max_connections=100" start >&2; then
        tail -n 30 "$dir/log" >&2 || true
        die "the server did not start"
    fi
    echo "$port" >"$dir/port"

    local exists
    exists=$(as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -XAtq \
        -c "SELECT 1 FROM pg_database WHERE datname = 'defaultdb'")
    if [[ "$exists" != 1 ]]; then
        as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -XAtq \
            -v ON_ERROR_STOP=1 -c "CREATE DATABASE defaultdb" >&2 \
            || die "CREATE DATABASE defaultdb failed"
    fi
    dsn
}

stop() {
    [[ -d "$dir" ]] || die "no such directory: $dir"
    if running; then
        as_pg "$bindir/pg_ctl" -D "$data" -m fast -w -t 60 stop >&2 || die "pg_ctl stop failed"
    else
        say "no server running in $dir"
    fi
    rm -f "$dir/port"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    dsn)
        running || die "no server running in $dir"
        dsn
        ;;
    *) usage ;;
esac
