with due as (
    select id from herald.queue where run_at <= now() and lease_token is null
    order by run_at limit 32 for update skip locked
),
leased as (
    update herald.queue q set run_at = now() + make_interval(secs => 30), lease_token = gen_random_uuid(),
        attempts = q.attempts + 1, lease_owner = 'bench-daemon', attempted_at = now()
    from due where q.id = due.id returning q.id, q.lease_token
)
select array_agg(id)::text as ids, array_agg(lease_token)::text as toks from leased \gset
with d as (delete from herald.queue q using unnest(:ids::uuid[], :toks::uuid[]) as i(id, token)
           where q.id = i.id and q.lease_token = i.token returning q.id, q.lease_token)
insert into herald.attempts (notification_id, attempt, started_at, finished_at, outcome, status, lease_token)
select id, 1, now(), now(), 'delivered', 200, lease_token from d;
