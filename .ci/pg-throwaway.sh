#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 cluster on 127.0.0.1:$1 in a temp dir (fsync off: test
# data only) and prints its directory. Stop it with: .ci/pg-throwaway.sh stop DIR
set -euo pipefail
PGBIN=/usr/lib/postgresql/15/bin
if [ "${1:-}" = stop ]; then
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$2/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$2"
  exit 0
fi
PORT=${1:-55432}
if [ ! -x "$PGBIN/initdb" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
D=$(mktemp -d /tmp/atrest-pg.XXXXXX)
chown postgres:postgres "$D"
runuser -u postgres -- "$PGBIN/initdb" -D "$D/data" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$D/data" -l "$D/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $D -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null
psql -q -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE ROLE atrest LOGIN PASSWORD 'atrest'" -c "CREATE DATABASE atrest OWNER atrest" >/dev/null
echo "$D"
