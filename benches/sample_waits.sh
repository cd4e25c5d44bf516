#!/usr/bin/env bash
# What herald's statements wait on: samples pg_stat_activity every 20 ms, N times (default 2000),
# for active backends of databases matching PATTERN (default: herald bench's scratch databases),
# and prints a count per "wait_event_type:wait_event statement", most frequent first ("CPU:-" is
# running). Start it beside a run, e.g.:
#   target/release/herald bench --notifications 60000 & bash benches/sample_waits.sh 3000
set -euo pipefail
N="${1:-2000}" PATTERN="${2:-herald_bench_%}"
export PGHOST="${PGHOST:-127.0.0.1}" PGUSER="${PGUSER:-postgres}"
for _ in $(seq 1 "$N"); do
  echo "select coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, '-') || ' '
               || left(regexp_replace(query, '\s+', ' ', 'g'), 60)
        from pg_stat_activity
        where datname like '$PATTERN' and state = 'active' and pid <> pg_backend_pid();"
  echo "select pg_sleep(0.02);"
done | psql -XAtq -d postgres | grep -v '^$' | sort | uniq -c | sort -rn | head -25
