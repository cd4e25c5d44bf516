#!/usr/bin/env bash
# `herald bench` beside PostgreSQL's own single-row INSERT (and, optionally, graphile-worker and
# pg-boss), in the
# same run on this machine, with the ratios the performance targets are stated in
# (docs/performance.md).
#   bash benches/bench_vs_peers.sh
# Environment: N=20000 (notifications per phase), DUR=15 (seconds of pgbench), CLIENTS=16,
# HISTORY=0 (rows for `herald bench --history`), PGHOST/PGPORT/PGUSER (default 127.0.0.1, 5432,
# postgres: a role that may create databases and run CHECKPOINT), PEERS_SCRIPTS (see below).
#
# Order: pgbench INSERT at $CLIENTS clients (in a scratch database herald_bench_pgbench, dropped at
# the end), `herald bench` (its own scratch database), then the peers. One at a time: nothing else
# should load the machine.
#
# Peers (optional). The peers' benchmark scripts are not part of this repository, and without them
# the peer ratios are simply left out. In this organisation they are the shared peer anchors, kept in
# the shared folder beside the repository (e.g. PEERS_SCRIPTS=../shared/bench/peers: a relative
# path is taken from the repository's root). Set
# PEERS_SCRIPTS to that folder to add graphile-worker and pg-boss: this script runs
# `$PEERS_SCRIPTS/gw.sh` and `$PEERS_SCRIPTS/pgboss.sh` with the same N; they install their peer from
# npm outside the tree (node with npm, and the npm registry on their first run; graphile-worker 0.18
# asks for node >= 22.18 and runs on 20 with a warning), measure in databases bench_gw and
# bench_pgboss (dropped at the end here), and print `RESULT <peer>:<phase> <jobs/s> …` lines, of
# which enqueue_batch_1000 and process_noop_tuned (graphile-worker) and enqueue_batch_1000 and
# process_noop_batch100 (pg-boss) are read. A peer script that is missing is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
N="${N:-20000}" DUR="${DUR:-15}" CLIENTS="${CLIENTS:-16}" HISTORY="${HISTORY:-0}"
PEERS_SCRIPTS="${PEERS_SCRIPTS:-}"
if [ -n "$PEERS_SCRIPTS" ] && [ ! -f "$PEERS_SCRIPTS/gw.sh" ]; then
  echo "PEERS_SCRIPTS=$PEERS_SCRIPTS has no gw.sh (the graphile-worker peer script)" >&2
  exit 2
fi
OUT=$(mktemp -d)
SCRATCH=(herald_bench_pgbench)
if [ -n "$PEERS_SCRIPTS" ]; then SCRATCH+=(bench_gw bench_pgboss); fi
drop_scratch() {
  local db
  for db in "${SCRATCH[@]}"; do
    psql -X -q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
  done
}
trap 'rm -rf "$OUT"; drop_scratch' EXIT
cargo build -q --release
quiesce() { psql -X -q -d postgres -c "CHECKPOINT"; sleep 1; }

psql -X -q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS herald_bench_pgbench WITH (FORCE)" -c "CREATE DATABASE herald_bench_pgbench"
psql -X -q -d herald_bench_pgbench -c "CREATE TABLE ins_bench (id bigserial primary key, user_id bigint, type text, business_id bigint, payload jsonb, created_at timestamptz default now())"
cat > "$OUT/insert.sql" <<'SQ'
\set uid random(1, 1000000)
INSERT INTO ins_bench (user_id, type, business_id, payload) VALUES (:uid, 'email', :uid, '{"k":"v"}');
SQ
quiesce
j=$(( CLIENTS < 2 ? CLIENTS : 2 ))
PG=$(pgbench -n -c "$CLIENTS" -j "$j" -T "$DUR" -f "$OUT/insert.sql" herald_bench_pgbench 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
echo "pgbench single-row INSERT c$CLIENTS: $PG tps"

quiesce
ARGS=(bench --json --notifications "$N" --clients "$CLIENTS")
[ "$HISTORY" != 0 ] && ARGS+=(--history "$HISTORY")
DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/postgres" target/release/herald "${ARGS[@]}" | tee "$OUT/herald.json"

# `peer phase log`: the phase's jobs/s from a peer script's RESULT lines (empty if absent).
result_of() { sed -n "s/^RESULT $1:$2 \([0-9]*\).*/\1/p" "$3"; }
GW_BATCH="" GW_NOOP="" PB_BATCH="" PB_NOOP=""
if [ -n "$PEERS_SCRIPTS" ]; then
  quiesce
  N="$N" bash "$PEERS_SCRIPTS/gw.sh" | tee "$OUT/gw.log"
  GW_BATCH=$(result_of graphile-worker enqueue_batch_1000 "$OUT/gw.log")
  GW_NOOP=$(result_of graphile-worker process_noop_tuned "$OUT/gw.log")
  if [ -f "$PEERS_SCRIPTS/pgboss.sh" ]; then
    quiesce
    N="$N" bash "$PEERS_SCRIPTS/pgboss.sh" | tee "$OUT/pgboss.log"
    PB_BATCH=$(result_of pg-boss enqueue_batch_1000 "$OUT/pgboss.log")
    PB_NOOP=$(result_of pg-boss process_noop_batch100 "$OUT/pgboss.log")
  fi
fi

python3 - "$OUT/herald.json" "$PG" "${GW_BATCH:-0}" "${GW_NOOP:-0}" "${PB_BATCH:-0}" "${PB_NOOP:-0}" <<'PY'
import json, sys
h = json.load(open(sys.argv[1])); pg, gw_batch, gw_noop, pb_batch, pb_noop = map(float, sys.argv[2:7])
print("\nratios (same run):")
print(f"  enqueue_single / pgbench INSERT (target >= 0.8):     {h['enqueue_single_per_s'] / pg:.2f}")
if gw_batch: print(f"  enqueue_batch / graphile-worker addJobs (>= 1.5):   {h['enqueue_batch_per_s'] / gw_batch:.2f}")
if pb_batch: print(f"  enqueue_batch / pg-boss insert:                     {h['enqueue_batch_per_s'] / pb_batch:.2f}")
print(f"  enqueue_sql_batch / enqueue_batch (>= 0.8):         {h['enqueue_sql_batch_per_s'] / h['enqueue_batch_per_s']:.2f}")
print(f"  enqueue_in_tx_overhead (<= 1.25):                   {h['enqueue_in_tx_overhead']:.2f}")
if gw_noop:  print(f"  dispatch_null / graphile-worker no-op (>= 1.2):     {h['dispatch_null_per_s'] / gw_noop:.2f}")
if pb_noop:  print(f"  dispatch_null / pg-boss no-op, batch 100:           {h['dispatch_null_per_s'] / pb_noop:.2f}")
print(f"  dispatch_webhook (>= 20000/s):                      {h['dispatch_webhook_per_s']:.0f}")
print(f"  dispatch_webhook / bare HTTP client ceiling:        {h['dispatch_webhook_per_s'] / h['http_client_ceiling_per_s']:.2f}")
print(f"  latency p99 ms (<= 20):                             {h['latency_ms']['p99']:.2f}")
print(f"  rss MiB (< 64):                                     {h['rss_mb'] or 0:.1f}")
if 'history' in h:
    x = h['history']
    print(f"  history dispatch_null slowdown (<= 1.3):            {x['dispatch_null_slowdown']:.2f}")
    print(f"  sweep rows/s (>= 50000):                            {x['sweep_rows_per_s']:.0f}")
    print(f"  enqueue p99 during / before sweep (<= 1.5):         {x['enqueue_ms_during_sweep']['p99'] / x['enqueue_ms_before_sweep']['p99']:.2f}")
PY
