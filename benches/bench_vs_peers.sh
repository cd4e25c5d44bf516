#!/usr/bin/env bash
# `herald bench` beside PostgreSQL's own single-row INSERT (and, with PEERS=1, graphile-worker),
# in the same run on this machine, with the ratios the issue's targets are stated in.
#   bash benches/bench_vs_peers.sh      (env: N=20000 DUR=15 CLIENTS=16 HISTORY=0 PEERS=0,
#                                         PGHOST/PGPORT/PGUSER)
# Order: pgbench INSERT at $CLIENTS clients, herald bench, then (PEERS=1) graphile-worker through
# ../shared/bench/peers/gw.sh with the same N. One at a time: nothing else should load the box.
set -euo pipefail
cd "$(dirname "$0")/.."
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
N="${N:-20000}" DUR="${DUR:-15}" CLIENTS="${CLIENTS:-16}" HISTORY="${HISTORY:-0}" PEERS="${PEERS:-0}"
PEERS_SCRIPTS="${PEERS_SCRIPTS:-../shared/bench/peers}"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS herald_bench_pgbench WITH (FORCE)"' EXIT
cargo build -q --release
quiesce() { psql -X -q -d postgres -c "CHECKPOINT"; sleep 1; }

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS herald_bench_pgbench WITH (FORCE)" -c "CREATE DATABASE herald_bench_pgbench"
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

GW_BATCH="" GW_NOOP=""
if [ "$PEERS" = 1 ]; then
  quiesce
  N="$N" bash "$PEERS_SCRIPTS/gw.sh" | tee "$OUT/gw.log"
  GW_BATCH=$(sed -n 's/^RESULT graphile-worker:enqueue_batch_1000 \([0-9]*\).*/\1/p' "$OUT/gw.log")
  GW_NOOP=$(sed -n 's/^RESULT graphile-worker:process_noop_tuned \([0-9]*\).*/\1/p' "$OUT/gw.log")
fi

python3 - "$OUT/herald.json" "$PG" "${GW_BATCH:-0}" "${GW_NOOP:-0}" <<'PY'
import json, sys
h = json.load(open(sys.argv[1])); pg, gw_batch, gw_noop = map(float, sys.argv[2:5])
print("\nratios (same run):")
print(f"  enqueue_single / pgbench INSERT (target >= 0.8):     {h['enqueue_single_per_s'] / pg:.2f}")
if gw_batch: print(f"  enqueue_batch / graphile-worker addJobs (>= 1.5):   {h['enqueue_batch_per_s'] / gw_batch:.2f}")
if gw_noop:  print(f"  dispatch_null / graphile-worker no-op (>= 1.2):     {h['dispatch_null_per_s'] / gw_noop:.2f}")
print(f"  dispatch_webhook (>= 10000/s):                      {h['dispatch_webhook_per_s']:.0f}")
print(f"  latency p99 ms (<= 20):                             {h['latency_ms']['p99']:.2f}")
print(f"  rss MiB (< 64):                                     {h['rss_mb']}")
if 'history' in h:
    x = h['history']
    print(f"  history dispatch_null slowdown (<= 1.3):            {x['dispatch_null_slowdown']:.2f}")
    print(f"  sweep rows/s (>= 50000):                            {x['sweep_rows_per_s']:.0f}")
    print(f"  enqueue p99 during / before sweep (<= 2):           {x['enqueue_ms_during_sweep']['p99'] / x['enqueue_ms_before_sweep']['p99']:.2f}")
PY
