-- One enqueue in layout b: the key first (a replay stops there), then the row.
\set k random(1, 1000000000)
with k as (insert into b_keys values ('default', 'u' || :k::text, 'order_shipped', 'new-' || :k::text || '-' || :client_id::text, v7(now())) on conflict do nothing returning *)
insert into b_intents (id, tenant, user_id, type, business_id, fingerprint, channel, destination, payload, max_attempts, state, run_at)
select id, tenant, user_id, type, business_id, sha256(('x'||:k::text)::bytea), 'email', 'ann@example.com', jsonb_build_object('order', :k::int8), 8, 'pending', now() from k;
