#!/usr/bin/env bash
# load.sh DB VARIANT PENDING HISTORY  -- preload pending rows (due) and finished history rows
# (each history row: state delivered, one attempt row, finished 40 days ago).
set -euo pipefail
DB=$1; V=$2; P=$3; H=$4
PSQL="psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres $DB"
row() { # $1 = g expr offset base, $2 = kind
cat <<SQL
select encode(overlay(uuid_send(gen_random_uuid()) placing substring(int8send($1 + g) from 3) from 1 for 6),'hex')::uuid as id,
 'tenant-' || (g % 10) as tenant, 'user-' || (g % 100000) as user_id, 'order.shipped' as type, 'biz-' || g as business_id,
 sha256(int8send(g)) as fingerprint, 'email' as channel, 'user' || g || '@example.com' as destination,
 jsonb_build_object('subject','Your order shipped','order', g, 'body', repeat('x', 80)) as payload
SQL
}
if [ "$H" -gt 0 ]; then
$PSQL <<SQL
insert into herald.notifications (id, tenant, user_id, type, business_id, fingerprint, channel, destination,
  payload, state, attempts, max_attempts, run_at, attempted_at, created_at, finished_at)
select r.*, 'delivered', 1, 5, ts, ts, ts, ts + interval '1 second'
from generate_series(1, $H) g, lateral ($(row 1700000000000)) r,
     lateral (select now() - interval '40 days' + g * interval '1 millisecond' as ts) t;
insert into herald.attempts (notification_id, attempt, started_at, finished_at, outcome, status, lease_token)
select id, 1, attempted_at, finished_at, 'delivered', 200, gen_random_uuid() from herald.notifications where state = 'delivered';
SQL
if [ "$(psql -XAt -h 127.0.0.1 -U postgres $DB -c "select to_regclass('herald.finished') is not null")" = t ]; then
  $PSQL -c "insert into herald.finished select finished_at, id from herald.notifications where state = 'delivered' order by finished_at"
fi
fi
$PSQL <<SQL
insert into herald.notifications (id, tenant, user_id, type, business_id, fingerprint, channel, destination,
  payload, max_attempts, run_at, created_at)
select r.*, 5, now() - interval '1 hour' + g * interval '1 microsecond', now() - interval '1 hour'
from generate_series(${POFF:-10000000} + 1, ${POFF:-10000000} + $P) g, lateral ($(row 1790000000000)) r;
SQL
case "$V" in cur|cur_c) ;; *)
  $PSQL -c "insert into herald.queue (id, run_at) select id, run_at from herald.notifications where state = 'pending' order by run_at";;
esac
$PSQL -c "vacuum analyze" 
