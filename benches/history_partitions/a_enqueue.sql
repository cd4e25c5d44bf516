-- One enqueue in layout a: the row, its UNIQUE key deciding a replay.
\set k random(1, 1000000000)
insert into a_intents (id, tenant, user_id, type, business_id, fingerprint, channel, destination, payload, max_attempts, state, run_at)
values (v7(now()), 'default', 'u' || :k::text, 'order_shipped', 'new-' || :k::text || '-' || :client_id::text, sha256(('x'||:k::text)::bytea), 'email', 'ann@example.com', jsonb_build_object('order', :k::int8), 8, 'pending', now())
on conflict do nothing;
