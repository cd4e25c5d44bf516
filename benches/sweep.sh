#!/usr/bin/env bash
# The retention sweep against one plain DELETE, in the same run: 100,000 expired finished
# notifications (each with one attempt), swept by `herald sweep` in batches of sweeper.batch_size
# (1,000: 100 short transactions), then the same rows removed by a single DELETE statement.
#   bash benches/sweep.sh            (env: ROWS=100000 RUNS=2, PGHOST/PGPORT/PGUSER)
set -euo pipefail
cd "$(dirname "$0")/.."
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
ROWS="${ROWS:-100000}" RUNS="${RUNS:-2}" DB=herald_bench_sweep
export DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB"
cargo build -q --release
HERALD=target/release/herald
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
"$HERALD" migrate >/dev/null
fill() {
  psql -X -q -d "$DB" -c "
    with made as (
      insert into herald.notifications (id, tenant, user_id, type, business_id, fingerprint, channel,
             destination, payload, max_attempts, attempts, state, finished_at)
      select gen_random_uuid(), 'default', 'u', 't', 'b' || g, decode(repeat('00', 32), 'hex'), 'email',
             'a@b.co', '{}', 3, 1, 'delivered', now() - interval '40 days'
      from generate_series(1, $ROWS) g returning id)
    insert into herald.attempts (notification_id, attempt, started_at, finished_at, outcome)
    select id, 1, now(), now(), 'delivered' from made" -c "VACUUM ANALYZE herald.notifications" -c "CHECKPOINT"
}
seconds() { local s=$(date +%s.%N); "$@" >/dev/null; echo "$(date +%s.%N) - $s" | bc; }
for run in $(seq 1 "$RUNS"); do
  fill; herald=$(seconds "$HERALD" sweep)
  fill; plain=$(seconds psql -X -q -d "$DB" -c "delete from herald.notifications where finished_at < now() - interval '30 days'")
  awk -v h="$herald" -v p="$plain" -v n="$ROWS" 'BEGIN {
    printf "run %d: herald sweep %.2f s (%.0f rows/s); one DELETE %.2f s (%.0f rows/s); ratio %.2f\n", '"$run"', h, n / h, p, n / p, p / h }'
done
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
