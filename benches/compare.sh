#!/usr/bin/env bash
# herald's enqueue against PostgreSQL's own single-row INSERT, in the same run on this machine.
#   bash benches/compare.sh            (env: BENCH_SECONDS=15, PGHOST/PGPORT/PGUSER)
# Baselines, c1 and c16: (a) pgbench's single-row INSERT of ../shared/bench/peers/pgbench.sh (one
# autocommit INSERT into a table with only a primary key); (b) the same SQL herald sends, by pgbench:
# BEGIN; INSERT … ON CONFLICT DO NOTHING into herald.notifications; COMMIT — the cost of the schema and
# the transaction without the library. Then `cargo bench --bench enqueue`. Prints ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
SECONDS_EACH="${BENCH_SECONDS:-15}"
OUT=$(mktemp -d)
cargo bench --bench enqueue --no-run -q

quiesce() { psql -X -q -d postgres -c "CHECKPOINT"; sleep 1; }
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS herald_bench_pgbench WITH (FORCE)" -c "CREATE DATABASE herald_bench_pgbench"
psql -X -q -d herald_bench_pgbench -c "CREATE TABLE ins_bench (id bigserial primary key, user_id bigint, type text, business_id bigint, payload jsonb, created_at timestamptz default now())"
cat > "$OUT/insert.sql" <<'SQ'
\set uid random(1, 1000000)
INSERT INTO ins_bench (user_id, type, business_id, payload) VALUES (:uid, 'email', :uid, '{"k":"v"}');
SQ
cat > "$OUT/shape.sql" <<'SQ'
\set uid random(1, 100000)
\set bid random(1, 1000000000)
BEGIN;
INSERT INTO herald.notifications (id, tenant, user_id, type, business_id, fingerprint, channel, destination, payload, run_at, max_attempts) SELECT gen_random_uuid(), 'default', 'user-' || :uid, 'order_shipped', 'order-' || :bid, sha256(('x' || :bid)::bytea), 'email', 'ann@example.com', '{"order": 1, "items": [{"sku": "A-1", "qty": 2}]}', now(), 8 WHERE NULL::uuid IS NULL ON CONFLICT (tenant, user_id, type, business_id) DO NOTHING RETURNING state;
COMMIT;
SQ
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS herald_bench_shape WITH (FORCE)" -c "CREATE DATABASE herald_bench_shape"
DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/herald_bench_shape" cargo run -q --release -- migrate >/dev/null
declare -A PG SHAPE
for c in 1 16; do
  j=$(( c < 2 ? c : 2 ))
  quiesce
  PG[$c]=$(pgbench -n -c "$c" -j "$j" -T "$SECONDS_EACH" -f "$OUT/insert.sql" herald_bench_pgbench 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
  echo "pgbench:insert:c$c,${PG[$c]},tps"
  quiesce
  SHAPE[$c]=$(pgbench -n -c "$c" -j "$j" -T "$SECONDS_EACH" -f "$OUT/shape.sql" herald_bench_shape 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
  echo "pgbench:herald_sql_in_tx:c$c,${SHAPE[$c]},tps"
done
quiesce
BENCH_SECONDS="$SECONDS_EACH" cargo bench --bench enqueue -q 2>/dev/null | tee "$OUT/herald.csv"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
get() { grep "^$1," "$OUT/herald.csv" | cut -d, -f2; }
echo
echo "ratios (herald / pgbench single-row INSERT, same run):"
echo "  enqueue single c1:   $(ratio "$(get herald:enqueue_single:c1)" "${PG[1]}")"
echo "  enqueue single c16:  $(ratio "$(get herald:enqueue_single:c16)" "${PG[16]}")"
echo "  duplicate c16:       $(ratio "$(get herald:enqueue_duplicate:c16)" "${PG[16]}")"
echo "  batch of 1000 (rows/s vs c16 tps): $(ratio "$(get herald:enqueue_batch1000:c1)" "${PG[16]}")"
echo "ratios (herald / pgbench sending herald's own SQL in a transaction, same run):"
echo "  enqueue single c1:   $(ratio "$(get herald:enqueue_single:c1)" "${SHAPE[1]}")"
echo "  enqueue single c16:  $(ratio "$(get herald:enqueue_single:c16)" "${SHAPE[16]}")"
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS herald_bench_pgbench WITH (FORCE)" -c "DROP DATABASE IF EXISTS herald_bench_enqueue WITH (FORCE)" -c "DROP DATABASE IF EXISTS herald_bench_shape WITH (FORCE)"
rm -rf "$OUT"
