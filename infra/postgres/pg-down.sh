#!/usr/bin/env bash
# Stop the throwaway PostgreSQL cluster that pg-up.sh started in DIR.
#
#   infra/postgres/pg-down.sh DIR
#
# Idempotent: a cluster that is not running (or does not exist) is left as it is.
# The data stays in DIR/data (and the log in DIR/server.log); delete DIR to discard it.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
[[ -d $1 ]] || { echo "pg-down: no directory $1; nothing to stop" >&2; exit 0; }
data=$(cd "$1" && pwd)/data
say() { echo "pg-down: $*" >&2; }

if [[ ! -f $data/PG_VERSION ]]; then
    say "no cluster in $data; nothing to stop"
    exit 0
fi
version=$(<"$data/PG_VERSION")
pg_ctl=/usr/lib/postgresql/$version/bin/pg_ctl
[[ -x $pg_ctl ]] || { say "no pg_ctl for PostgreSQL $version at $pg_ctl"; exit 1; }

as_owner() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

if ! as_owner "$pg_ctl" -D "$data" status >/dev/null 2>&1; then
    say "cluster in $data is not running"
    exit 0
fi
as_owner "$pg_ctl" -D "$data" -m fast -w -t 60 stop >&2
say "stopped cluster in $data"
