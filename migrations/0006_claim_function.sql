-- The claim as a function that carries its planner settings.
--
-- The claim (fair share over lanes: see `store::dispatch::claim_from`) is one statement of many
-- small steps, each meant to be an index probe bounded by the window of lanes. Left to the
-- planner, the plan followed the queue's statistics: taken while most rows were leased, they
-- turned the lane walk's "has due work" probe into a hash join over the whole queue, and the
-- count of leased rows into another full scan, twice every queued row per claim. As a function
-- the statement is planned once per session (a generic plan: its shape never depends on the
-- arguments) with sequential and bitmap scans, hash and merge joins off, so every step is the
-- index probe it was written as whatever the statistics say; and the settings travel with the
-- function, through transaction-mode poolers too.
--
-- Invariants:
-- - `p_tokens` holds one lease token per row the claim may take (`p_limit` of them): the
--   claimer chooses them, so it can hand back what a claim whose answer was lost leased.
-- - The caller's privileges apply (not SECURITY DEFINER): herald_daemon runs it.

create function herald.claim(
    p_limit bigint,
    p_owner text,
    p_lease_secs double precision,
    p_after_destination text,
    p_after_tenant text,
    p_tokens uuid[]
) returns table (
    id uuid,
    tenant text,
    user_id text,
    "type" text,
    business_id text,
    channel text,
    destination text,
    payload jsonb,
    attempts integer,
    max_attempts integer,
    created_at timestamptz,
    lease_token uuid,
    claimed_at_unix bigint,
    endpoint_url text,
    endpoint_secret text,
    endpoint_previous_secret text,
    endpoint_enabled boolean,
    endpoint_disabled_reason text,
    probe boolean,
    last_served_destination text,
    last_served_tenant text
)
    language plpgsql volatile
    set search_path = pg_catalog, pg_temp
    set plan_cache_mode = force_generic_plan
    set enable_seqscan = off
    set enable_bitmapscan = off
    set enable_hashjoin = off
    set enable_mergejoin = off
as $$
    #variable_conflict use_column
    begin
        return query

        with recursive after_cursor(destination, tenant) as (
            -- Two branches rather than one `is null or (…) > (…)`: in a generic plan an OR
            -- cannot seek in the index, and the first lane after the cursor was found by
            -- reading the queue from its start.
            (select s.destination, s.tenant from (
                (select q.destination, q.tenant from herald.queue q
                 where p_after_destination is null
                 order by q.destination, q.tenant limit 1)
                union all
                (select q.destination, q.tenant from herald.queue q
                 where p_after_destination is not null
                   and (q.destination, q.tenant) > (p_after_destination, p_after_tenant)
                 order by q.destination, q.tenant limit 1)
             ) s limit 1)
            union all
            select nxt.destination, nxt.tenant
            from after_cursor l
            cross join lateral (
                select q.destination, q.tenant from herald.queue q
                where (q.destination, q.tenant) > (l.destination, l.tenant)
                order by q.destination, q.tenant limit 1
            ) nxt
        ),
        up_to_cursor(destination, tenant) as (
            (select q.destination, q.tenant from herald.queue q
             where p_after_destination::text is not null and (q.destination, q.tenant) <= (p_after_destination::text, p_after_tenant::text)
             order by q.destination, q.tenant limit 1)
            union all
            select nxt.destination, nxt.tenant
            from up_to_cursor l
            cross join lateral (
                select q.destination, q.tenant from herald.queue q
                where (q.destination, q.tenant) > (l.destination, l.tenant)
                  and (q.destination, q.tenant) <= (p_after_destination::text, p_after_tenant::text)
                order by q.destination, q.tenant limit 1
            ) nxt
        ),
        -- The window: the next lanes after the cursor (wrapping around) that have work a claim
        -- could take now. The walks are read lazily, so both stop as soon as the window is full.
        -- A lane has such work when it has a due, unleased row and its destination (if it has
        -- a row) is not throttled, its breaker admits work (closed, or open with a probe due),
        -- its bucket holds a token and it has room under its cap, as this statement's snapshot
        -- sees them (the destination is checked again below, under its lock).
        due_lanes as materialized (
            select w.destination, w.tenant, w.part from (
                select a.destination, a.tenant, 0 as part from after_cursor a
                union all
                select b.destination, b.tenant, 1 as part from up_to_cursor b
            ) w
            where exists (select 1 from herald.queue q
                          where q.destination = w.destination and q.tenant = w.tenant
                            and q.run_at <= now() and q.lease_token is null)
              and not exists (
                  select 1 from herald.destinations d
                  where d.key = w.destination
                    and not (coalesce(d.throttled_until <= now(), true)
                             and (d.breaker = 'closed'
                                  or (d.breaker = 'open' and d.next_probe_at <= now()))
                             and (d.rate_count is null or d.tokens is null
                                  or d.tokens + extract(epoch from now() - d.tokens_at)::float8
                                     * d.rate_count / (case d.rate_unit when 'm' then 60.0 else 1.0 end)
                                     >= 1)
                             and (d.max_in_flight is null
                                  or d.max_in_flight > (select count(*) from herald.queue x
                                                        where x.destination = d.key
                                                          and x.lease_token is not null))))
            limit greatest(2 * p_limit, 64)
        ),
        leased as materialized (
            select q.destination, q.tenant, count(*) as n from herald.queue q
            where q.lease_token is not null
            group by q.destination, q.tenant
        ),
        dest_leased as materialized (
            select l.destination, sum(l.n)::int8 as n from leased l group by l.destination
        ),
        tenant_leased as materialized (
            select l.tenant, sum(l.n)::int8 as n from leased l group by l.tenant
        ),
        -- The destinations with due work as this statement's snapshot sees them.
        seen as materialized (
            select d.key, d.claims,
                   d.rate_count is not null or d.max_in_flight is not null
                   or d.breaker <> 'closed' or coalesce(d.throttled_until > now(), false) as guarded
            from herald.destinations d
            where d.key in (select dl.destination from due_lanes dl)
        ),
        -- The others are share-locked: claims do not block one another, but one whose snapshot
        -- predates a breaker opening (an outcome statement holds the row) skips it, or sees the
        -- newest row and leaves it out.
        unguarded as materialized (
            select d.key from herald.destinations d
            where d.key in (select s.key from seen s where not s.guarded)
              and d.rate_count is null and d.max_in_flight is null and d.breaker = 'closed'
              and coalesce(d.throttled_until <= now(), true)
            for share of d skip locked
        ),
        guarded as materialized (
            select d.key, d.claims, d.breaker, d.max_in_flight,
                   case when d.rate_count is null then null
                        else least(greatest(d.rate_count / (case d.rate_unit when 'm' then 60.0 else 1.0 end), 1.0),
                                   coalesce(d.tokens, 1.0e9)
                                   + extract(epoch from now() - coalesce(d.tokens_at, now()))::float8
                                     * d.rate_count / (case d.rate_unit when 'm' then 60.0 else 1.0 end))
                   end as tokens
            from herald.destinations d
            where d.key in (select s.key from seen s where s.guarded)
              and (d.throttled_until is null or d.throttled_until <= now())
              and (d.breaker = 'closed' or (d.breaker = 'open' and d.next_probe_at <= now()))
            order by d.key
            for update of d skip locked
        ),
        serving as materialized (
            select g.key, coalesce(dl.n, 0) as in_flight,
                   least(p_limit,
                         case when g.breaker = 'open' then 1 else p_limit end,
                         coalesce(g.max_in_flight - coalesce(dl.n, 0), p_limit),
                         coalesce(floor(g.tokens)::int8, p_limit)) as allowance
            from guarded g
            join seen s on s.key = g.key and s.claims = g.claims
            left join dest_leased dl on dl.destination = g.key
            union all
            select u.key, coalesce(x.n, 0), p_limit
            from unguarded u left join dest_leased x on x.destination = u.key
            union all
            -- Webhooks whose endpoint is gone (no row, no limits): their claim finds the
            -- endpoint missing and ends them.
            select dl.destination, 0, p_limit
            from (select distinct destination from due_lanes) dl
            where not exists (select 1 from seen s where s.key = dl.destination)
        ),
        -- How many rows each lane could win: a lane's k-th row has a load of at least its base
        -- (destination and tenant in flight) + 2k, so the least level at which the lanes offer
        -- `limit` rows bounds each lane's share from above. Each lane offers that many (at
        -- least one) and no more: the least loaded may take the whole claim, without reading
        -- and locking `limit` rows of every lane.
        -- `position`: the lane's place in the rotation (after the cursor, wrapping around).
        lane_base as materialized (
            select dl.destination, dl.tenant, s.in_flight, s.allowance,
                   s.in_flight + coalesce(t.n, 0) as base,
                   row_number() over (order by dl.part, dl.destination, dl.tenant) as position
            from due_lanes dl
            join serving s on s.key = dl.destination and s.allowance > 0
            left join tenant_leased t on t.tenant = dl.tenant
        ),
        water as materialized (
            select min(v.level) as level from (
                select m.low + g.step as level
                from (select min(b.base) as low from lane_base b) m,
                     generate_series(2, 2 * p_limit + 2) as g(step)
            ) v
            where (select sum(greatest(0, floor((v.level - b.base) / 2.0))) from lane_base b) >= p_limit
        ),
        candidates as (
            select c.id, c.run_at, lb.destination, lb.tenant, lb.in_flight, lb.allowance,
                   lb.position,
                   row_number() over (partition by lb.destination, lb.tenant order by c.run_at)
                       as lane_place
            from lane_base lb
            cross join water w
            cross join lateral (
                select q.id, q.run_at from herald.queue q
                where q.destination = lb.destination and q.tenant = lb.tenant
                  and q.run_at <= now() and q.lease_token is null
                order by q.run_at
                limit least(lb.allowance,
                            greatest(1, floor((coalesce(w.level, lb.base + 2 * p_limit) - lb.base) / 2.0)::int8 + 1))
                for update of q skip locked
            ) c
        ),
        -- Ties go by the rotation, not by age: among lanes as busy as each other, the one next
        -- after the cursor goes first, so a lane whose rows are younger than its neighbours'
        -- still gets its turn.
        in_destination as (
            select c.*,
                   row_number() over (
                       partition by c.destination order by c.lane_place, c.position) as place
            from candidates c
        ),
        -- The load adds the two: a row waits behind rows whose destination and tenant are less
        -- busy together. (With the greater of the two, a tenant's slow endpoint pinned the
        -- tenant's count, and its healthy endpoint waited behind another tenant's backlog for as
        -- long as the slow deliveries lasted.)
        in_tenant as (
            select i.id, i.destination, i.tenant, i.position,
                   i.in_flight + i.place
                   + coalesce(t.n, 0) + row_number() over (
                       partition by i.tenant order by i.in_flight + i.place, i.position) as load
            from in_destination i
            left join tenant_leased t on t.tenant = i.tenant
            where i.place <= i.allowance
        ),
        -- Locked in the order of choice, skipping rows another claim holds: a concurrent claim
        -- that ranked the same rows takes the next ones instead of coming back empty.
        chosen as (
            select c.id, c.destination, c.tenant, c.position,
                   row_number() over (order by c.load, c.position) as n
            from in_tenant c
            order by c.load, c.position
            limit p_limit
        ),
        -- The cursor for the next claim: the last lane in the rotation that this one served.
        last_served as (
            select c.destination, c.tenant from chosen c order by c.position desc limit 1
        ),
        claimed as (
            update herald.queue q
            set attempts = q.attempts + 1,
                lease_token = (p_tokens::uuid[])[chosen.n],
                lease_owner = p_owner,
                run_at = now() + make_interval(secs => p_lease_secs),
                attempted_at = now()
            from chosen
            where q.id = chosen.id
            returning q.id, q.destination, q.attempts, q.lease_token
        ),
        -- Only guarded destinations, whose rows this statement holds locked.
        served as (
            update herald.destinations d
            set claims = d.claims + 1,
                tokens = case when d.rate_count is null then null
                              else g.tokens - s.n end,
                tokens_at = case when d.rate_count is null then null else now() end,
                breaker = case when d.breaker = 'open' then 'half_open' else d.breaker end,
                probe_lease = case when d.breaker = 'open' then s.lease else d.probe_lease end
            from (select c.destination, count(*)::int4 as n, min(c.lease_token::text)::uuid as lease
                  from claimed c group by c.destination) s
            join guarded g on g.key = s.destination
            where d.key = s.destination
        )
        select c.id, n.tenant, n.user_id, n.type, n.business_id, n.channel, n.destination,
               n.payload, c.attempts, n.max_attempts,
               -- created_at within what chrono reads: only a plain-SQL writer stores `infinity`
               -- or a year past 262,000, and decoding it would panic the claim.
               greatest(least(n.created_at, '9999-12-31 23:59:59.999999+00'::timestamptz),
                        '0001-01-01 00:00:00+00'::timestamptz) as created_at,
               c.lease_token, extract(epoch from now())::int8 as claimed_at_unix,
               e.url as endpoint_url, e.secret as endpoint_secret,
               case when e.previous_secret_expires_at > now() then e.previous_secret end
                   as endpoint_previous_secret,
               e.enabled as endpoint_enabled, e.disabled_reason as endpoint_disabled_reason,
               coalesce(g.breaker = 'open', false) as probe,
               (select w.destination from last_served w) as last_served_destination,
               (select w.tenant from last_served w) as last_served_tenant
        from claimed c
        join herald.intents n on n.id = c.id
        left join guarded g on g.key = c.destination
        left join herald.webhook_endpoints e
               on e.tenant = n.tenant
              and e.id = case when n.channel = 'webhook' and n.destination ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                              then n.destination::uuid end;
    end
$$;

revoke execute on function herald.claim(bigint, text, double precision, text, text, uuid[])
    from public;

-- The library's group commit (src/enqueue/group_commit.rs): herald.enqueue_many for the items
-- of several callers, which must never wait long on a key another transaction holds. A group
-- holds every key it inserted while it waits, so an application transaction that enqueues one
-- of them could deadlock with it, and every caller behind it would wait too. Past
-- `lock_timeout` (well under the default `deadlock_timeout` of 1 s) the group gives up,
-- rolled back whole, and each caller enqueues on its own. `p_wake`: the library debounces
-- wake-ups per process and passes whether this group holds the window.
create function herald._enqueue_group(notifications jsonb, max_payload_bytes integer, p_wake boolean)
    returns table (id uuid, status text, state text)
    language plpgsql volatile
    set search_path = pg_catalog, pg_temp
    set lock_timeout = '50ms'
as $$
    begin
        if not p_wake then
            perform set_config('herald.quiet', 'on', true);
        end if;
        return query select * from herald.enqueue_many(notifications, max_payload_bytes);
    end
$$;

-- As in 0002, with one more case for staying quiet: a group commit that does not hold the
-- library's wake-up window (`herald.quiet`, set for the rest of its transaction).
create or replace function herald._wake_unless_another_will() returns void
    language plpgsql volatile
    set search_path = pg_catalog, pg_temp
as $$
    begin
        if coalesce(current_setting('herald.quiet', true), '') <> 'on'
           and pg_try_advisory_xact_lock(7522544515348191051) then
            perform herald.wake();
        end if;
    end
$$;

revoke execute on function herald._enqueue_group(jsonb, integer, boolean) from public;
revoke execute on function herald._wake_unless_another_will() from public;

-- A group commit of one (most of them under light load): herald._enqueue_or_refuse with the
-- group's short lock_timeout, so that the leader never waits long on a held key either.
create function herald._enqueue_one_in_group(
    p_tenant text, p_user_id text, p_type text, p_business_id text, p_email text, p_webhook uuid,
    p_payload jsonb, p_run_at timestamptz, p_max_attempts integer, p_max_payload_bytes integer,
    p_wake boolean,
    out o_status text, out o_id uuid, out o_state text, out o_field text, out o_message text
)
    language sql volatile
    set search_path = pg_catalog, pg_temp
    set lock_timeout = '50ms'
as $$
    select e.o_status, e.o_id, e.o_state, e.o_field, e.o_message
    from herald._enqueue_or_refuse(p_tenant, p_user_id, p_type, p_business_id, p_email,
                                   p_webhook, p_payload, p_run_at, p_max_attempts,
                                   p_max_payload_bytes, p_wake) as e
$$;

revoke execute on function herald._enqueue_one_in_group(text, text, text, text, text, uuid, jsonb,
    timestamptz, integer, integer, boolean) from public;
