#!/usr/bin/env bash
# run_dispatch.sh PREFIX CLIENTS DUR "variant:script ..."  -> one line per run: variant clients tps notif/s
set -uo pipefail
export PGHOST=127.0.0.1 PGUSER=postgres
P=$1; C=$2; T=$3; shift 3
cd "$(dirname "$0")" && bash gen_scripts.sh   # scripts/disp_{cur,a,b,blog,b2,b2opt,b3}.sql
for pair in $@; do
  v=${pair%%:*}; s=${pair#*:}; db=${P}_$v
  psql -XqAt -d $db -c "vacuum herald.notifications" -c "checkpoint" >/dev/null 2>&1
  psql -XqAt -d $db -c "vacuum herald.queue" >/dev/null 2>&1
  before=$(psql -XAt -d $db -c "select count(*) from herald.attempts")
  out=$(pgbench -n -M prepared -c $C -j $(( C < 2 ? C : 2 )) -T $T -f scripts/$s.sql $db 2>&1)
  after=$(psql -XAt -d $db -c "select count(*) from herald.attempts")
  tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
  lat=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
  err=$(echo "$out" | grep -c -i "error")
  printf '%s c=%s T=%s tps=%s lat_ms=%s notif_per_s=%s errors=%s load=%s\n' "$v" "$C" "$T" "$tps" "$lat" \
    "$(( (after - before) / T ))" "$err" "$(cut -d' ' -f1 /proc/loadavg)"
done
