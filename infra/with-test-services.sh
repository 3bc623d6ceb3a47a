#!/usr/bin/env bash
# Runs a command with the services the integration tests need, then stops them:
#   - a throwaway PostgreSQL cluster (infra/postgres/pg-up.sh), unless
#     CONTACTFLOW_TEST_POSTGRES_URL is already set;
#   - a real Apache Kafka broker (`contactflow broker up`) on free ports, unless
#     CONTACTFLOW_TEST_BOOTSTRAP is already set.
# Everything lives in one temporary directory, removed on exit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d -t contactflow-test-XXXXXX)"
chmod 755 "$work"
pg_started=""
broker_started=""

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cleanup() {
  status=$?
  if [ -n "$broker_started" ]; then
    CONTACTFLOW_DATA_DIR="$work/broker" CONTACTFLOW_BROKER_PORT="$kafka_port" \
      CONTACTFLOW_CONTROLLER_PORT="$controller_port" contactflow broker down >/dev/null || true
  fi
  if [ -n "$pg_started" ]; then
    "$here/postgres/pg-down.sh" "$work/pg" >/dev/null || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT INT TERM

if [ -z "${CONTACTFLOW_TEST_POSTGRES_URL:-}" ]; then
  echo "with-test-services: starting PostgreSQL" >&2
  pg_port="$(free_port)"
  CONTACTFLOW_TEST_POSTGRES_URL="$("$here/postgres/pg-up.sh" "$work/pg" "$pg_port" | tail -n 1)"
  export CONTACTFLOW_TEST_POSTGRES_URL
  pg_started=1
fi

if [ -z "${CONTACTFLOW_TEST_BOOTSTRAP:-}" ]; then
  echo "with-test-services: starting Apache Kafka" >&2
  kafka_port="$(free_port)"
  controller_port="$(free_port)"
  CONTACTFLOW_DATA_DIR="$work/broker" CONTACTFLOW_BROKER_PORT="$kafka_port" \
    CONTACTFLOW_CONTROLLER_PORT="$controller_port" CONTACTFLOW_BROKER_HEAP=768m \
    contactflow broker up
  broker_started=1
  export CONTACTFLOW_TEST_BOOTSTRAP="127.0.0.1:$kafka_port"
fi

"$@"
