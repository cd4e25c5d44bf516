-- The narrow due queue and delivery isolation.
--
-- A notification's intent (key, payload, destination, outcome) is written once at enqueue and
-- once when it finishes, in herald.intents (the table that was herald.notifications). While it
-- is unfinished it also has a small row in herald.queue, which every claim, retry, rescue and
-- release touches instead of the wide row. herald.notifications is now a view of the two with
-- the columns and states it always had: `running` is a queue row under a lease.
--
-- herald.destinations holds what several daemons must agree on about each place herald
-- delivers to (one row per webhook endpoint, and `smtp` for the relay): its limits (the rate's
-- token bucket, the concurrency cap), a 429's throttle and the circuit breaker. Deliveries in
-- flight are not counted there: they are the leased rows of herald.queue.
--
-- Invariants:
-- - An intent is `pending` exactly when it has a queue row (finished intents have none).
-- - A queue row's `run_at` is when it is due; while leased, when its lease expires.
-- - A claim that takes work from a destination with a limit or a breaker that is not closed
--   locks its row and bumps `claims`; one that finds `claims` changed since its snapshot leaves
--   that destination to the next claim, so every limit holds across daemons. Destinations
--   without either are never written on the way of a delivery.

alter table herald.notifications rename to intents;

-- Leases leave the wide row; `running` rows carry theirs into the queue below.
create table herald.queue (
    id            uuid primary key references herald.intents (id) on delete cascade,
    -- Where it goes: `smtp`, or the webhook endpoint's id.
    destination   text not null,
    tenant        text not null,
    run_at        timestamptz not null,
    -- Attempts spent of the current budget (a manual retry starts a new one).
    attempts      integer not null default 0 check (attempts >= 0),
    lease_token   uuid,
    lease_owner   text,
    -- Start of the latest attempt (its claim).
    attempted_at  timestamptz,
    last_error    text,
    constraint queue_lease_complete check ((lease_token is null) = (lease_owner is null))
) with (fillfactor = 50);

-- The claim's index: due rows per (destination, tenant) lane, oldest first. A leased row's
-- run_at is its lease expiry, later than the lane's due rows.
create index queue_lanes on herald.queue (destination, tenant, run_at);
-- Leased rows only: the rescue of expired leases, and what is in flight where.
create index queue_leased on herald.queue (destination, tenant) where lease_token is not null;

create table herald.destinations (
    -- `smtp`, or the endpoint id as text (what herald.queue.destination holds).
    key                   text primary key,
    endpoint_id           uuid unique references herald.webhook_endpoints (id) on delete cascade,
    -- The endpoint's tenant; null for the relay, which every tenant shares.
    tenant                text,
    -- Rate limit: `rate_count` per `rate_unit` ('s' or 'm'), a token bucket holding one
    -- second's worth. Null: no limit.
    rate_count            integer,
    rate_unit             text,
    max_in_flight         integer check (max_in_flight between 1 and 10000),
    -- Claims that took work from this destination under its lock (see the header).
    claims                bigint not null default 0,
    -- The bucket's level at `tokens_at`; it refills continuously up to its capacity.
    tokens                double precision,
    tokens_at             timestamptz,
    -- A 429's Retry-After: nothing is sent to this destination before it.
    throttled_until       timestamptz,
    breaker               text not null default 'closed'
                          check (breaker in ('closed', 'open', 'half_open')),
    consecutive_failures  integer not null default 0 check (consecutive_failures >= 0),
    breaker_opened_at     timestamptz,
    next_probe_at         timestamptz,
    -- Seconds to the next probe; doubles while probes fail.
    probe_interval        double precision,
    -- While half-open: the lease of the one notification sent as a probe. Only its end (a
    -- verdict, a rescue, a release) moves the breaker on; other leases ending say nothing.
    probe_lease           uuid,
    constraint destinations_key_names_endpoint
        check ((key = 'smtp') = (endpoint_id is null)
               and (endpoint_id is null or key = endpoint_id::text)),
    constraint destinations_rate_complete
        check ((rate_count is null) = (rate_unit is null)
               and (rate_unit is null or rate_unit in ('s', 'm'))
               and (rate_count is null
                    or rate_count between 1 and case rate_unit when 's' then 100000 else 6000000 end)),
    constraint destinations_breaker_times
        check ((breaker = 'closed') = (breaker_opened_at is null)
               and (breaker = 'closed') = (next_probe_at is null))
) with (fillfactor = 50);

insert into herald.destinations (key) values ('smtp');
insert into herald.destinations (key, endpoint_id, tenant)
select e.id::text, e.id, e.tenant from herald.webhook_endpoints e;

-- Every endpoint is a destination, however it was added.
create function herald._add_endpoint_destination() returns trigger
    language plpgsql volatile security definer
    set search_path = pg_catalog, pg_temp
    as $$
    begin
        insert into herald.destinations (key, endpoint_id, tenant)
        values (new.id::text, new.id, new.tenant);
        return null;
    end
    $$;
create trigger webhook_endpoints_destination after insert on herald.webhook_endpoints
    for each row execute function herald._add_endpoint_destination();

-- Where a notification goes, as herald.queue and herald.destinations name it.
create function herald.destination_key(channel text, destination text) returns text
    language sql immutable
    set search_path = pg_catalog, pg_temp
    as $$ select case when channel = 'email' then 'smtp' else lower(destination) end $$;

-- Today's unfinished work moves into the queue, leases and all: a delivery in progress when the
-- migration ran keeps its token, so a daemon of this version records its outcome under it. A
-- daemon of an older version cannot (it writes herald.notifications, now a view): its lease
-- expires and is rescued as before, and the notification is sent again with the same id.
insert into herald.queue
    (id, destination, tenant, run_at, attempts, lease_token, lease_owner, attempted_at, last_error)
select n.id, herald.destination_key(n.channel, n.destination), n.tenant,
       case when n.state = 'running' then n.lease_expires_at else n.run_at end,
       n.attempts, n.lease_token, n.lease_owner, n.attempted_at, n.last_error
from herald.intents n
where n.state in ('pending', 'running');

alter table herald.intents drop constraint notifications_lease_iff_running;
update herald.intents set state = 'pending' where state = 'running';
alter table herald.intents drop constraint notifications_state_check;
-- NOT VALID: the rows were checked by the constraint it replaces, and `running` was just
-- rewritten; validating would scan the whole history under the rename's exclusive lock.
alter table herald.intents add constraint intents_state_check
    check (state in ('pending', 'delivered', 'dead', 'cancelled')) not valid;
drop index herald.notifications_due;
drop index herald.notifications_lease_expiry;
alter table herald.intents drop column lease_token, drop column lease_owner,
    drop column lease_expires_at;

-- Every new pending intent gets its queue row in the statement that inserted it, whoever
-- inserted it (the enqueue functions, or a plain-SQL writer holding herald_owner's rights).
create function herald._queue_new_intents() returns trigger
    language plpgsql volatile security definer
    set search_path = pg_catalog, pg_temp
    as $$
    begin
        insert into herald.queue (id, destination, tenant, run_at, attempts, last_error)
        select a.id, herald.destination_key(a.channel, a.destination), a.tenant, a.run_at,
               a.attempts, a.last_error
        from added a
        where a.state = 'pending';
        return null;
    end
    $$;
create trigger intents_queue after insert on herald.intents
    referencing new table as added
    for each statement execute function herald._queue_new_intents();

-- What readers always saw: one row per notification, `running` while a lease is held.
create view herald.notifications as
select i.id, i.tenant, i.user_id, i.type, i.business_id, i.fingerprint, i.channel,
       i.destination, i.payload,
       case when q.lease_token is not null then 'running' else i.state end as state,
       coalesce(q.attempts, i.attempts) as attempts,
       i.max_attempts,
       case when q.id is null then i.run_at
            when q.lease_token is null then q.run_at
            else q.attempted_at end as run_at,
       q.lease_token, q.lease_owner,
       case when q.lease_token is not null then q.run_at end as lease_expires_at,
       coalesce(q.attempted_at, i.attempted_at) as attempted_at,
       i.created_at, i.finished_at,
       case when q.id is null then i.last_error else q.last_error end as last_error
from herald.intents i
left join herald.queue q on q.id = i.id;

-- The enqueue functions insert the intent; its queue row follows from the trigger above. They
-- are those of migrations 0002 and 0004 with that one change: duplicates and conflicts still
-- read the holder through herald.notifications, so a duplicate reports `running` as before.
create or replace function herald._enqueue_validated(
    p_tenant text, p_user_id text, p_type text, p_business_id text, p_email text, p_webhook uuid,
    p_payload jsonb, p_run_at timestamptz, p_max_attempts integer,
    out o_status text, out o_id uuid, out o_state text, out o_field text, out o_message text
)
    language plpgsql volatile
    set search_path = pg_catalog, pg_temp
    as $$
    declare
        v_channel text := case when p_webhook is null then 'email' else 'webhook' end;
        v_destination text := coalesce(p_email, p_webhook::text);
        v_fingerprint bytea := herald.fingerprint(v_channel, v_destination, p_payload);
        v_held record;
        v_endpoint record;
    begin
        -- A key whose row is swept between the insert and the read is tried again; the second
        -- pass always settles it, the bound is a safeguard.
        for pass in 1..3 loop
            insert into herald.intents as n
                (id, tenant, user_id, type, business_id, fingerprint, channel, destination,
                 payload, run_at, max_attempts)
            select herald.uuid_v7(), p_tenant, p_user_id, p_type, p_business_id, v_fingerprint,
                   v_channel, v_destination, p_payload, coalesce(p_run_at, now()), p_max_attempts
            where p_webhook is null
               or exists (select 1 from herald.webhook_endpoints e
                          where e.id = p_webhook and e.tenant = p_tenant and e.enabled)
            on conflict (tenant, user_id, type, business_id) do nothing
            returning n.id, n.state into o_id, o_state;
            if found then
                o_status := 'created';
                return;
            end if;
            -- A new statement: under READ COMMITTED it sees a row committed after the insert's
            -- snapshot was taken.
            select n.id, n.state, n.fingerprint, n.channel, n.destination into v_held
            from herald.notifications n
            where n.tenant = p_tenant and n.user_id = p_user_id
              and n.type = p_type and n.business_id = p_business_id;
            if found then
                o_id := v_held.id;
                o_state := v_held.state;
                if v_held.fingerprint = v_fingerprint then
                    o_status := 'duplicate';
                    return;
                end if;
                o_status := 'conflict';
                o_field := case when v_held.channel <> v_channel then 'channel'
                                when v_held.destination <> v_destination then 'destination'
                                else 'payload' end;
                o_message := herald._conflict_message(p_tenant, p_user_id, p_type, p_business_id,
                                                      v_held.id, o_field);
                return;
            end if;
            select e.enabled, e.disabled_reason into v_endpoint
            from herald.webhook_endpoints e where e.id = p_webhook and e.tenant = p_tenant;
            if not found then
                o_status := 'invalid';
                o_field := 'endpoint';
                o_message := format('webhook endpoint %s does not exist for tenant %s',
                                    p_webhook, to_json(p_tenant));
                return;
            elsif not v_endpoint.enabled then
                o_status := 'invalid';
                o_field := 'endpoint';
                o_message := format('webhook endpoint %s is disabled: %s', p_webhook,
                                    coalesce(v_endpoint.disabled_reason, 'no reason given'));
                return;
            end if;
        end loop;
        raise exception 'enqueue of key % did not settle after 3 attempts',
            herald._key_text(p_tenant, p_user_id, p_type, p_business_id);
    end
    $$;

create or replace function herald.enqueue_many(notifications jsonb, max_payload_bytes integer default 65536)
    returns table (id uuid, status text, state text)
    language plpgsql volatile security definer
    set search_path = pg_catalog, pg_temp
    as $$
    #variable_conflict use_variable
    declare
        v_count pg_catalog.int4;
        v_item pg_catalog.jsonb;
        v_key pg_catalog.text;
        v_tenant pg_catalog.text[]; v_user_id pg_catalog.text[]; v_type pg_catalog.text[];
        v_business_id pg_catalog.text[]; v_email pg_catalog.text[]; v_webhook pg_catalog.uuid[];
        v_payload pg_catalog.jsonb[]; v_run_at pg_catalog.timestamptz[];
        v_channel pg_catalog.text[]; v_destination pg_catalog.text[];
        v_max_attempts pg_catalog.int4[];
        v_id pg_catalog.uuid[]; v_status pg_catalog.text[]; v_state pg_catalog.text[];
        v_field pg_catalog.text[]; v_message pg_catalog.text[];
        v_rep pg_catalog.int4;
        v_differs pg_catalog.text;
        v_problem pg_catalog.text;
        v_created boolean := false;
        v_result record;
        r record;
        i pg_catalog.int4;
        v_one_id pg_catalog.uuid; v_one_state pg_catalog.text; v_one_same boolean;
        v_one_channel pg_catalog.text; v_one_destination pg_catalog.text;
        v_ords pg_catalog.int4[]; v_ids pg_catalog.uuid[]; v_states pg_catalog.text[];
        v_pending pg_catalog.int4[]; v_same boolean[];
        v_held_channel pg_catalog.text[]; v_held_destination pg_catalog.text[];
    begin
        perform herald._check_payload_limit(max_payload_bytes);
        max_payload_bytes := herald._payload_limit(max_payload_bytes);
        if notifications is null
           or pg_catalog.jsonb_typeof(notifications) OPERATOR(pg_catalog.<>) 'array' then
            perform herald._invalid('notifications', 'must be a JSON array of objects', null);
        end if;
        v_count := pg_catalog.jsonb_array_length(notifications);
        -- Parse and validate every item first, in input order.
        -- One pass over the elements: `notifications -> i` would read (and detoast) the whole
        -- array for each item.
        for v_item, i in
            select e.value, (e.ord OPERATOR(pg_catalog.-) 1)::pg_catalog.int4
            from pg_catalog.jsonb_array_elements(notifications) with ordinality as e(value, ord)
        loop
            -- Every array gets every index, so that unnest lines them up.
            v_run_at[i] := null;
            if pg_catalog.jsonb_typeof(v_item) OPERATOR(pg_catalog.<>) 'object' then
                perform herald._invalid('notifications', 'each item must be a JSON object', i);
            end if;
            -- An expression first: the query that names the unknown key runs only when there is one.
            if v_item OPERATOR(pg_catalog.-) array['tenant', 'user_id', 'type', 'business_id',
                      'email', 'webhook', 'payload', 'run_at', 'max_attempts']::pg_catalog.text[]
               OPERATOR(pg_catalog.<>) '{}'::pg_catalog.jsonb then
                select k into v_key from pg_catalog.jsonb_object_keys(v_item) as k
                where k OPERATOR(pg_catalog.<>) all (array['tenant', 'user_id', 'type', 'business_id',
                          'email', 'webhook', 'payload', 'run_at', 'max_attempts']::pg_catalog.text[])
                order by k limit 1;
                perform herald._invalid(v_key, 'is not a notification field', i);
            end if;
            foreach v_key in array array['tenant', 'user_id', 'type', 'business_id', 'email',
                                         'webhook', 'run_at']::pg_catalog.text[] loop
                if pg_catalog.jsonb_typeof(v_item OPERATOR(pg_catalog.->) v_key)
                       OPERATOR(pg_catalog.<>) all (array['string', 'null']::pg_catalog.text[]) then
                    perform herald._invalid(v_key, 'must be a string', i);
                end if;
            end loop;
            v_tenant[i] := coalesce(v_item OPERATOR(pg_catalog.->>) 'tenant', 'default');
            v_user_id[i] := v_item OPERATOR(pg_catalog.->>) 'user_id';
            v_type[i] := v_item OPERATOR(pg_catalog.->>) 'type';
            v_business_id[i] := v_item OPERATOR(pg_catalog.->>) 'business_id';
            v_email[i] := v_item OPERATOR(pg_catalog.->>) 'email';
            v_payload[i] := coalesce(v_item OPERATOR(pg_catalog.->) 'payload', '{}'::pg_catalog.jsonb);
            if v_item OPERATOR(pg_catalog.->>) 'webhook' is not null
               and (v_item OPERATOR(pg_catalog.->>) 'webhook') OPERATOR(pg_catalog.!~*)
                       '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
                perform herald._invalid('webhook',
                    pg_catalog.format('%s is not an endpoint id (a UUID)',
                                      v_item OPERATOR(pg_catalog.->) 'webhook'), i);
            end if;
            v_webhook[i] := (v_item OPERATOR(pg_catalog.->>) 'webhook')::pg_catalog.uuid;
            v_channel[i] := case when v_webhook[i] is null then 'email' else 'webhook' end;
            v_destination[i] := coalesce(v_email[i], v_webhook[i]::pg_catalog.text);
            if v_item OPERATOR(pg_catalog.->>) 'max_attempts' is null then
                v_max_attempts[i] := 8;
            -- A JSON number, as the library sends it: the string "5" is refused too.
            elsif pg_catalog.jsonb_typeof(v_item OPERATOR(pg_catalog.->) 'max_attempts')
                      OPERATOR(pg_catalog.=) 'number'
                  and (v_item OPERATOR(pg_catalog.->>) 'max_attempts') OPERATOR(pg_catalog.~) '^-?[0-9]{1,9}$' then
                v_max_attempts[i] := (v_item OPERATOR(pg_catalog.->>) 'max_attempts')::pg_catalog.int4;
            else
                perform herald._invalid('max_attempts',
                    pg_catalog.format('must be between 1 and 100, got %s',
                        pg_catalog."left"((v_item OPERATOR(pg_catalog.->) 'max_attempts')::pg_catalog.text, 64)), i);
            end if;
            perform herald._validate(v_tenant[i], v_user_id[i], v_type[i], v_business_id[i],
                                     v_email[i], v_webhook[i], v_payload[i], v_max_attempts[i],
                                     max_payload_bytes, i);
            if v_item OPERATOR(pg_catalog.->>) 'run_at' is not null then
                v_run_at[i] := herald._rfc3339(v_item OPERATOR(pg_catalog.->>) 'run_at');
                if v_run_at[i] is null then
                    perform herald._invalid('run_at',
                        pg_catalog.format('%s is not an RFC 3339 timestamp with an offset',
                                          v_item OPERATOR(pg_catalog.->) 'run_at'), i);
                end if;
                v_problem := herald._run_at_problem(v_run_at[i]);
                if v_problem is not null then
                    perform herald._invalid('run_at', v_problem, i);
                end if;
            end if;
        end loop;
        -- The first occurrence of each key (in input order) represents it; the representatives
        -- are inserted in one statement, in key order, so concurrent batches that share keys
        -- take their row locks in the same order and cannot deadlock. Key parts are never null
        -- here (validated above).
        -- The items as rows, through unnest: a subscript of a flat array of text walks it from
        -- its start, so reading the arrays by index would be quadratic in the batch.
        with items as (
            select (t.ord OPERATOR(pg_catalog.-) 1)::pg_catalog.int4 as ord, t.tenant, t.user_id,
                   t.type, t.business_id, t.channel, t.destination, t.payload, t.run_at,
                   t.max_attempts, t.webhook
            from rows from (pg_catalog.unnest(v_tenant), pg_catalog.unnest(v_user_id),
                           pg_catalog.unnest(v_type), pg_catalog.unnest(v_business_id),
                           pg_catalog.unnest(v_channel), pg_catalog.unnest(v_destination),
                           pg_catalog.unnest(v_payload), pg_catalog.unnest(v_run_at),
                           pg_catalog.unnest(v_max_attempts), pg_catalog.unnest(v_webhook))
                 with ordinality as t(tenant, user_id, type, business_id, channel, destination,
                                      payload, run_at, max_attempts, webhook, ord)
        ),
        reps as (
            select distinct on (it.tenant, it.user_id, it.type, it.business_id) it.*
            from items as it
            order by it.tenant, it.user_id, it.type, it.business_id, it.ord
        ),
        inserted as (
            insert into herald.intents as n
                (id, tenant, user_id, type, business_id, fingerprint, channel, destination,
                 payload, run_at, max_attempts)
            select herald.uuid_v7(), rp.tenant, rp.user_id, rp.type, rp.business_id,
                   herald.fingerprint(rp.channel, rp.destination, rp.payload),
                   rp.channel, rp.destination, rp.payload,
                   coalesce(rp.run_at, pg_catalog.now()), rp.max_attempts
            from reps as rp
            where rp.webhook is null
               or exists (select from herald.webhook_endpoints e
                          where e.id OPERATOR(pg_catalog.=) rp.webhook
                            and e.tenant OPERATOR(pg_catalog.=) rp.tenant and e.enabled)
            order by rp.tenant, rp.user_id, rp.type, rp.business_id
            on conflict (tenant, user_id, type, business_id) do nothing
            returning n.id, n.state, n.tenant, n.user_id, n.type, n.business_id
        )
        select pg_catalog.array_agg(rp.ord), pg_catalog.array_agg(ins.id),
               pg_catalog.array_agg(ins.state),
               pg_catalog.array_agg(rp.ord) filter (where ins.id is null)
          into v_ords, v_ids, v_states, v_pending
        from reps as rp
        left join inserted ins
               on ins.tenant OPERATOR(pg_catalog.=) rp.tenant
              and ins.user_id OPERATOR(pg_catalog.=) rp.user_id
              and ins.type OPERATOR(pg_catalog.=) rp.type
              and ins.business_id OPERATOR(pg_catalog.=) rp.business_id;
        -- Read back through unnest: a subscript of these (flat, nullable, text) arrays walks each
        -- from its start.
        for i, v_one_id, v_one_state in
            select a.ord, a.id, a.state
            from rows from (pg_catalog.unnest(v_ords), pg_catalog.unnest(v_ids),
                            pg_catalog.unnest(v_states)) as a(ord, id, state)
            where a.id is not null
        loop
            v_id[i] := v_one_id; v_status[i] := 'created'; v_state[i] := v_one_state;
            v_created := true;
        end loop;
        -- Keys that were held: a new statement, which under READ COMMITTED sees rows committed
        -- after the insert's snapshot, reads their holders.
        if v_pending is not null then
            with items as (
                select (t.ord OPERATOR(pg_catalog.-) 1)::pg_catalog.int4 as ord, t.tenant, t.user_id,
                       t.type, t.business_id, t.channel, t.destination, t.payload, t.run_at,
                       t.max_attempts, t.webhook
                from rows from (pg_catalog.unnest(v_tenant), pg_catalog.unnest(v_user_id),
                           pg_catalog.unnest(v_type), pg_catalog.unnest(v_business_id),
                           pg_catalog.unnest(v_channel), pg_catalog.unnest(v_destination),
                           pg_catalog.unnest(v_payload), pg_catalog.unnest(v_run_at),
                           pg_catalog.unnest(v_max_attempts), pg_catalog.unnest(v_webhook))
                     with ordinality as t(tenant, user_id, type, business_id, channel, destination,
                                          payload, run_at, max_attempts, webhook, ord)
            )
            select pg_catalog.array_agg(it.ord), pg_catalog.array_agg(n.id),
                   pg_catalog.array_agg(n.state),
                   pg_catalog.array_agg(n.fingerprint OPERATOR(pg_catalog.=)
                       herald.fingerprint(it.channel, it.destination, it.payload)),
                   pg_catalog.array_agg(n.channel), pg_catalog.array_agg(n.destination)
              into v_ords, v_ids, v_states, v_same, v_held_channel, v_held_destination
            from items as it
            -- One index lookup a key: as a plain join, a planner that guesses many items hashes a
            -- scan of the whole table. `limit 1` (the key is unique) keeps it a lookup.
            cross join lateral (
                select h.id, h.state, h.fingerprint, h.channel, h.destination
                from herald.notifications h
                where h.tenant OPERATOR(pg_catalog.=) it.tenant
                  and h.user_id OPERATOR(pg_catalog.=) it.user_id
                  and h.type OPERATOR(pg_catalog.=) it.type
                  and h.business_id OPERATOR(pg_catalog.=) it.business_id
                limit 1
            ) as n
            join pg_catalog.unnest(v_pending) as p(ord) on p.ord OPERATOR(pg_catalog.=) it.ord;
            for i, v_one_id, v_one_state, v_one_same, v_one_channel, v_one_destination in
                select a.ord, a.id, a.state, a.same, a.channel, a.destination
                from rows from (pg_catalog.unnest(v_ords), pg_catalog.unnest(v_ids),
                                pg_catalog.unnest(v_states), pg_catalog.unnest(v_same),
                                pg_catalog.unnest(v_held_channel),
                                pg_catalog.unnest(v_held_destination))
                     as a(ord, id, state, same, channel, destination)
            loop
                v_id[i] := v_one_id; v_state[i] := v_one_state;
                if v_one_same then
                    v_status[i] := 'duplicate';
                else
                    v_status[i] := 'conflict';
                    v_field[i] := case
                        when v_one_channel OPERATOR(pg_catalog.<>) v_channel[i] then 'channel'
                        when v_one_destination OPERATOR(pg_catalog.<>) v_destination[i] then 'destination'
                        else 'payload' end;
                    v_message[i] := herald._conflict_message(v_tenant[i], v_user_id[i], v_type[i],
                                                             v_business_id[i], v_id[i], v_field[i]);
                end if;
            end loop;
            -- Neither inserted nor held: an unknown or disabled endpoint, or a holder swept in
            -- between. The single enqueue decides those, one at a time (they are rare).
            foreach i in array v_pending loop
                if v_status[i] is null then
                    v_result := herald._enqueue_validated(
                        v_tenant[i], v_user_id[i], v_type[i], v_business_id[i], v_email[i],
                        v_webhook[i], v_payload[i], v_run_at[i], v_max_attempts[i]);
                    v_id[i] := v_result.o_id; v_status[i] := v_result.o_status;
                    v_state[i] := v_result.o_state; v_field[i] := v_result.o_field;
                    v_message[i] := v_result.o_message;
                    v_created := v_created or v_result.o_status OPERATOR(pg_catalog.=) 'created';
                end if;
            end loop;
        end if;
        -- Repeats of a key inside the batch: the same intent is a duplicate of its
        -- representative; a different one conflicts with it.
        v_rep := null;
        for r in
            with items as (
                select (t.ord OPERATOR(pg_catalog.-) 1)::pg_catalog.int4 as ord, t.tenant, t.user_id,
                       t.type, t.business_id, t.channel, t.destination, t.payload, t.run_at,
                       t.max_attempts, t.webhook
                from rows from (pg_catalog.unnest(v_tenant), pg_catalog.unnest(v_user_id),
                           pg_catalog.unnest(v_type), pg_catalog.unnest(v_business_id),
                           pg_catalog.unnest(v_channel), pg_catalog.unnest(v_destination),
                           pg_catalog.unnest(v_payload), pg_catalog.unnest(v_run_at),
                           pg_catalog.unnest(v_max_attempts), pg_catalog.unnest(v_webhook))
                     with ordinality as t(tenant, user_id, type, business_id, channel, destination,
                                          payload, run_at, max_attempts, webhook, ord)
            )
            select it.ord from items as it
            order by it.tenant, it.user_id, it.type, it.business_id, it.ord
        loop
            i := r.ord;
            if v_rep is null
               or not (v_tenant[i] OPERATOR(pg_catalog.=) v_tenant[v_rep]
                       and v_user_id[i] OPERATOR(pg_catalog.=) v_user_id[v_rep]
                       and v_type[i] OPERATOR(pg_catalog.=) v_type[v_rep]
                       and v_business_id[i] OPERATOR(pg_catalog.=) v_business_id[v_rep]) then
                v_rep := i;
            elsif v_status[v_rep] OPERATOR(pg_catalog.<>) all (array['created', 'duplicate']::pg_catalog.text[]) then
                -- The representative's own refusal is reported, earlier in input order.
                continue;
            elsif herald.fingerprint(v_channel[i], v_destination[i], v_payload[i])
                  OPERATOR(pg_catalog.=) herald.fingerprint(v_channel[v_rep], v_destination[v_rep], v_payload[v_rep]) then
                v_id[i] := v_id[v_rep]; v_status[i] := 'duplicate'; v_state[i] := v_state[v_rep];
            else
                v_differs := case when v_channel[i] OPERATOR(pg_catalog.<>) v_channel[v_rep] then 'channel'
                                  when v_destination[i] OPERATOR(pg_catalog.<>) v_destination[v_rep] then 'destination'
                                  else 'payload' end;
                v_field[i] := v_differs;
                v_id[i] := v_id[v_rep];
                if v_status[v_rep] OPERATOR(pg_catalog.=) 'created' then
                    -- Both intents are new: there is no existing notification to name.
                    v_status[i] := 'invalid';
                    v_field[i] := 'batch';
                    v_message[i] := pg_catalog.format('items %s and %s share the key %s but differ in %s',
                        v_rep, i, herald._key_text(v_tenant[i], v_user_id[i], v_type[i], v_business_id[i]),
                        v_differs);
                else
                    v_status[i] := 'conflict';
                    v_message[i] := herald._conflict_message(v_tenant[i], v_user_id[i], v_type[i],
                                                             v_business_id[i], v_id[v_rep], v_differs);
                end if;
            end if;
        end loop;
        -- The first refusal in input order fails the whole call.
        for i in 0 .. v_count OPERATOR(pg_catalog.-) 1 loop
            if v_status[i] OPERATOR(pg_catalog.<>) all (array['created', 'duplicate']::pg_catalog.text[]) then
                if v_status[i] OPERATOR(pg_catalog.=) 'invalid' and v_field[i] OPERATOR(pg_catalog.=) 'batch' then
                    perform herald._invalid('batch', v_message[i], null);
                elsif v_status[i] OPERATOR(pg_catalog.=) 'invalid' then
                    -- The library's message with the item's index.
                    perform herald._invalid(v_field[i], v_message[i], i);
                end if;
                perform herald._refuse(v_status[i], v_field[i], v_message[i], v_id[i], i);
            end if;
        end loop;
        if v_created then
            perform herald._wake_unless_another_will();
        end if;
        -- Through unnest, in index order: a subscript walks a text array from its start.
        return query
            select a.id, a.status, a.state
            from rows from (pg_catalog.unnest(v_id), pg_catalog.unnest(v_status),
                            pg_catalog.unnest(v_state)) with ordinality as a(id, status, state, ord)
            order by a.ord;
    end
    $$;

-- New functions are executable by PUBLIC until revoked (see 0003).
revoke execute on all functions in schema herald from public;
