#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for tests and CI; print its URL on the last line.
#
#   infra/postgres/pg-up.sh DIR PORT
#
# DIR holds the cluster (DIR/data) and its log (DIR/server.log). The server listens on
# 127.0.0.1:PORT only, with trust authentication: for local test use, never production.
# Installs Debian's postgresql package when no server binaries are found (needs root).
# Idempotent: if the cluster in DIR is already running, it only prints the URL.
# Progress goes to stderr; stdout is exactly one line, the SQLAlchemy URL.
set -euo pipefail

usage() { echo "usage: $0 DIR PORT" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
port=$2
[[ $port =~ ^[0-9]+$ ]] && ((port >= 1 && port <= 65535)) || usage
mkdir -p "$1"
dir=$(cd "$1" && pwd)
data=$dir/data
log=$dir/server.log
db=contactflow_test
url="postgresql+psycopg://postgres@127.0.0.1:${port}/${db}"

say() { echo "pg-up: $*" >&2; }

find_bindir() {
    local candidate
    for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x $candidate/pg_ctl && -x $candidate/initdb ]]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# Run a server binary as the cluster owner: the postgres OS user when we are root
# (initdb and pg_ctl refuse root), ourselves otherwise.
as_owner() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

if ! bindir=$(find_bindir); then
    if [[ $EUID -ne 0 ]]; then
        say "no PostgreSQL server under /usr/lib/postgresql/*/bin; install package 'postgresql' (needs root)"
        exit 1
    fi
    say "installing PostgreSQL (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y postgresql >&2
    bindir=$(find_bindir) || { say "postgresql installed but no pg_ctl/initdb found"; exit 1; }
fi

mkdir -p "$data"
touch "$log"
if [[ $EUID -eq 0 ]]; then
    chown postgres:postgres "$data" "$log"
    chmod 700 "$data"
    if ! runuser -u postgres -- test -w "$data"; then
        say "the postgres OS user cannot reach $data (a parent directory is not traversable);"
        say "choose a DIR under /tmp or another directory open to it"
        exit 1
    fi
fi

running_port() {
    # Line 4 of postmaster.pid is the port of the running server.
    if as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        sed -n 4p "$data/postmaster.pid"
    fi
}

if [[ -f $data/PG_VERSION ]]; then
    current=$(running_port)
    if [[ -n $current && $current != "$port" ]]; then
        say "the cluster in $data already runs on port $current, not $port; run pg-down.sh first"
        exit 1
    fi
else
    say "initdb $data ($bindir)"
    as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 \
        --no-locale >&2
    # Throwaway cluster: durability is traded for speed; never copy these settings.
    cat >>"$data/postgresql.conf" <<CONF

# --- contactflow test cluster (infra/postgres/pg-up.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$data'
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
    current=""
fi

if [[ -z $current ]]; then
    say "starting on 127.0.0.1:$port (log: $log)"
    if ! as_owner "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 -o "-p $port" start >&2; then
        say "server failed to start; last lines of $log:"
        tail -n 20 "$log" >&2 || true
        exit 1
    fi
fi

psql=("$bindir/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1)
exists=$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")
if [[ $exists != 1 ]]; then
    say "creating database $db"
    "${psql[@]}" -c "CREATE DATABASE $db" >&2
fi
echo "$url"
