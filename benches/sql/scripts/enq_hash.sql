\set n random(1, 2000000000)
\set t random(0, 9)

insert into herald.notifications
    (id, tenant, user_id, type, business_id, fingerprint, channel, destination,
     payload, run_at, max_attempts)
select herald.bench_uuid7(), 'tenant-' || :t, :n, 'order.shipped', :n, '\xabababababababababababababababababababababababababababababababab'::bytea, 'email', 'user@example.com',
       '{"subject":"Your order shipped","order":12345,"body":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'::jsonb, coalesce(null::timestamptz, now()), 5
where null::uuid is null
   or exists (select 1 from herald.webhook_endpoints e
              where e.id = null::uuid and e.tenant = 'tenant-' || :t and e.enabled)
on conflict (herald.key_hash(tenant, user_id, type, business_id)) do nothing
returning state, case when false then herald.wake() else false end as woke;
