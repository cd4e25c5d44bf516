#!/usr/bin/env bash
# Generates the pgbench scripts under scripts/. Dispatch scripts = one claim of 32 (own
# transaction) + one record_outcomes of what was claimed (own transaction). The claim's rows are
# aggregated into arrays with \gset so the outcome binds them as the daemon does ($1..$8 arrays).
cd "$(dirname "$0")/scripts"
ENDPOINT_JOIN="
res as (
    select c.*, extract(epoch from now())::int8 as claimed_at_unix,
           e.url as endpoint_url, e.secret as endpoint_secret,
           case when e.previous_secret_expires_at > now() then e.previous_secret end
               as endpoint_previous_secret,
           e.enabled as endpoint_enabled, e.disabled_reason as endpoint_disabled_reason
    from claimed c
    left join herald.webhook_endpoints e
           on e.tenant = c.tenant
          and e.id = case when c.channel = 'webhook' and c.destination ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\$'
                          then c.destination::uuid end
)
select array_agg(id)::text as ids, array_agg(lease_token)::text as toks,
       array_agg('delivered'::text)::text as states, array_agg(0::float8)::text as retry,
       array_agg(null::text)::text as lerr, array_agg('delivered'::text)::text as outc,
       array_agg(200)::text as stat, array_agg(null::text)::text as err,
       count(*) as n, sum(octet_length(payload::text)) as bytes
from res \\gset"
WIDE_RET="returning n.id, n.tenant, n.user_id, n.type, n.business_id, n.channel, n.destination,
                  n.payload, n.attempts, n.max_attempts, n.created_at, n.lease_token"
INPUT="with input as (
    select * from unnest(:ids::uuid[], :toks::uuid[], :states::text[], :retry::float8[], :lerr::text[],
                         :outc::text[], :stat::int4[], :err::text[])
      as t(id, token, next_state, retry_secs, last_error, outcome, status, error)
)"
WIDE_DONE="locked as (
    select n.id from herald.notifications n
    join input i on n.id = i.id and n.lease_token = i.token
    where n.state = 'running'
    order by n.id
    for update of n
),
done as (
    update herald.notifications n
    set state = i.next_state,
        run_at = case when i.next_state = 'pending'
                      then now() + make_interval(secs => i.retry_secs) else n.run_at end,
        finished_at = case when i.next_state = 'pending' then null else now() end,
        last_error = i.last_error,
        lease_token = null, lease_owner = null, lease_expires_at = null
    from input i, locked l
    where n.id = i.id and n.lease_token = i.token and n.id = l.id
    returning n.id, i.token, n.attempts, n.attempted_at, i.outcome, i.status, i.error,
              i.next_state, i.retry_secs, n.finished_at
),
logged as (
    insert into herald.attempts
        (notification_id, attempt, started_at, finished_at, outcome, status, error, lease_token)
    select id, herald.next_attempt_number(id), coalesce(attempted_at, now()), now(),
           outcome, status, error, token
    from done
)"

# ---------- current ----------
cat > disp_cur.sql <<SQL
with due as (
    select id from herald.notifications
    where state = 'pending' and run_at <= now()
    order by run_at
    limit 32
    for update skip locked
),
claimed as (
    update herald.notifications n
    set state = 'running',
        attempts = n.attempts + 1,
        lease_token = gen_random_uuid(),
        lease_owner = 'bench-daemon',
        lease_expires_at = now() + make_interval(secs => 30),
        attempted_at = now()
    from due
    where n.id = due.id
    $WIDE_RET
),
$ENDPOINT_JOIN
$INPUT,
$WIDE_DONE
select count(*) from done;
SQL

# ---------- variant a: queue(id, run_at, lease_token, lease_expires_at), 2 partial indexes ----------
cat > disp_a.sql <<SQL
with due as (
    select id from herald.queue
    where lease_token is null and run_at <= now()
    order by run_at
    limit 32
    for update skip locked
),
leased as (
    update herald.queue q
    set lease_token = gen_random_uuid(), lease_expires_at = now() + make_interval(secs => 30)
    from due where q.id = due.id
    returning q.id, q.lease_token
),
claimed as (
    update herald.notifications n
    set state = 'running', attempts = n.attempts + 1, lease_token = l.lease_token,
        lease_owner = 'bench-daemon', lease_expires_at = now() + make_interval(secs => 30),
        attempted_at = now()
    from leased l where n.id = l.id
    $WIDE_RET
),
$ENDPOINT_JOIN
$INPUT,
$WIDE_DONE,
dequeued as (
    delete from herald.queue q using done d where q.id = d.id and d.next_state <> 'pending'
),
requeued as (
    update herald.queue q
    set run_at = now() + make_interval(secs => d.retry_secs), lease_token = null, lease_expires_at = null
    from done d where q.id = d.id and d.next_state = 'pending'
)
select count(*) from done;
SQL

# ---------- variant b: queue(id, run_at, lease_token), ONE index on run_at (= lease expiry while leased) ----------
CLAIM_B="with due as (
    select id from herald.queue
    where run_at <= now() and lease_token is null
    order by run_at
    limit 32
    for update skip locked
),
leased as (
    update herald.queue q
    set run_at = now() + make_interval(secs => 30), lease_token = gen_random_uuid()
    from due where q.id = due.id
    returning q.id, q.lease_token
),
claimed as (
    update herald.notifications n
    set state = 'running', attempts = n.attempts + 1, lease_token = l.lease_token,
        lease_owner = 'bench-daemon', lease_expires_at = now() + make_interval(secs => 30),
        attempted_at = now()
    from leased l where n.id = l.id
    $WIDE_RET
),
$ENDPOINT_JOIN"
QUEUE_DONE="dequeued as (
    delete from herald.queue q using done d where q.id = d.id and d.next_state <> 'pending'
),
requeued as (
    update herald.queue q
    set run_at = now() + make_interval(secs => d.retry_secs), lease_token = null
    from done d where q.id = d.id and d.next_state = 'pending'
)"
cat > disp_b.sql <<SQL
$CLAIM_B
$INPUT,
$WIDE_DONE,
$QUEUE_DONE
select count(*) from done;
SQL
cat > disp_blog.sql <<SQL
$CLAIM_B
$INPUT,
$WIDE_DONE,
$QUEUE_DONE,
finlog as (
    insert into herald.finished (finished_at, id) select finished_at, id from done where finished_at is not null
)
select count(*) from done;
SQL

# ---------- variant b2: the claim touches only herald.queue; the wide row is written once ----------
# b2_script ATTEMPT_NUMBER FINISHED_LOG: b2 is (the function, the log); b2opt numbers attempts with
# an inline subquery instead of herald.next_attempt_number(); b3 keeps no finished log.
b2_script() {
cat <<SQL
with due as (
    select id from herald.queue
    where run_at <= now() and lease_token is null
    order by run_at
    limit 32
    for update skip locked
),
leased as (
    update herald.queue q
    set run_at = now() + make_interval(secs => 30), lease_token = gen_random_uuid(),
        attempts = q.attempts + 1, lease_owner = 'bench-daemon', attempted_at = now()
    from due where q.id = due.id
    returning q.id, q.lease_token, q.attempts
),
claimed as (
    select n.id, n.tenant, n.user_id, n.type, n.business_id, n.channel, n.destination,
           n.payload, n.attempts + l.attempts as attempts, n.max_attempts, n.created_at, l.lease_token
    from leased l join herald.notifications n on n.id = l.id
),
$ENDPOINT_JOIN
$INPUT,
locked as (
    select q.id, q.attempts, q.attempted_at from herald.queue q
    join input i on q.id = i.id and q.lease_token = i.token
    order by q.id
    for update of q
),
done as (
    update herald.notifications n
    set state = i.next_state,
        attempts = n.attempts + l.attempts,
        attempted_at = l.attempted_at,
        run_at = case when i.next_state = 'pending'
                      then now() + make_interval(secs => i.retry_secs) else n.run_at end,
        finished_at = case when i.next_state = 'pending' then null else now() end,
        last_error = i.last_error
    from input i, locked l
    where n.id = i.id and n.id = l.id
    returning n.id, i.token, n.attempts, n.attempted_at, i.outcome, i.status, i.error,
              i.next_state, i.retry_secs, n.finished_at
),
logged as (
    insert into herald.attempts
        (notification_id, attempt, started_at, finished_at, outcome, status, error, lease_token)
    select id, $1, coalesce(attempted_at, now()), now(),
           outcome, status, error, token
    from done
),
$QUEUE_DONE$2
select count(*) from done;
SQL
}
FINISHED_LOG=",
finlog as (
    insert into herald.finished (finished_at, id) select finished_at, id from done where finished_at is not null
)"
b2_script "herald.next_attempt_number(id)" "$FINISHED_LOG" > disp_b2.sql
b2_script "(select coalesce(max(a.attempt), 0) + 1 from herald.attempts a where a.notification_id = done.id)" \
  "$FINISHED_LOG" > disp_b2opt.sql
b2_script "herald.next_attempt_number(id)" "" > disp_b3.sql
