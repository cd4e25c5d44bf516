-- Input rules that the library, herald.enqueue(...) and herald.enqueue_many(jsonb) apply alike
-- (same field, same message):
-- - run_at lies within years 1 to 9999 UTC: herald.enqueue took any timestamptz ('-infinity',
--   'infinity', '294000-01-01'), which chrono cannot read back (the admin commands panicked on
--   such a row); a CHECK now guards plain-SQL writers too;
-- - enqueue_many's run_at is RFC 3339 to the letter: hour 00-23, minute 00-59, second 00-59,
--   offset hours 00-23 and minutes 00-59 ("+99:99" escaped as SQLSTATE 22009, "T24:00:00Z"
--   and second 60 were accepted);
-- - an email address is a dot-atom local part and a host name: no quoted local parts, no
--   address literals.
--
-- Every function here is written to be safe whatever the caller's search_path (CVE-2018-1058):
-- built-in functions, operators and types are schema-qualified, and the plpgsql functions run
-- with search_path = pg_catalog, pg_temp. The SQL functions have no SET clause, which would stop
-- PostgreSQL from inlining them.

-- Rows with a run_at out of range that are still to be worked on: the CHECK below applies to
-- every row an UPDATE writes, so one such row would make each claim, cancel and attempt record
-- that touches it fail. Minus infinity and times before year 1 become 0001-01-01 (still due
-- first), the rest 9999-12-31T23:59:59.999999Z (never due in practice). Finished rows keep their
-- times: nothing updates them but `herald retry`, which sets run_at to now(). Both statements
-- read the partial indexes on pending and running rows, not the whole table.
update herald.notifications
   set run_at = greatest(
           least(run_at, '9999-12-31 23:59:59.999999+00'::pg_catalog.timestamptz),
           '0001-01-01 00:00:00+00'::pg_catalog.timestamptz)
 where state OPERATOR(pg_catalog.=) 'pending'
   and (run_at OPERATOR(pg_catalog.<) '0001-01-01 00:00:00+00'::pg_catalog.timestamptz
        or run_at OPERATOR(pg_catalog.>) '9999-12-31 23:59:59.999999+00'::pg_catalog.timestamptz);
update herald.notifications
   set run_at = greatest(
           least(run_at, '9999-12-31 23:59:59.999999+00'::pg_catalog.timestamptz),
           '0001-01-01 00:00:00+00'::pg_catalog.timestamptz)
 where state OPERATOR(pg_catalog.=) 'running'
   and (run_at OPERATOR(pg_catalog.<) '0001-01-01 00:00:00+00'::pg_catalog.timestamptz
        or run_at OPERATOR(pg_catalog.>) '9999-12-31 23:59:59.999999+00'::pg_catalog.timestamptz);

-- For writers using plain SQL. NOT VALID: the rows already stored are not checked, so a
-- database holding finished rows from before (kept as they are, see above) still migrates, and
-- adding the constraint does not scan the whole table under an exclusive lock. Every row
-- inserted or updated from now on is checked. The admin commands read any stored time
-- (src/store/timestamp.rs).
alter table herald.notifications
    add constraint notifications_run_at_in_range
    check (run_at OPERATOR(pg_catalog.>=) '0001-01-01 00:00:00+00'::pg_catalog.timestamptz
           and run_at OPERATOR(pg_catalog.<=) '9999-12-31 23:59:59.999999+00'::pg_catalog.timestamptz)
    not valid;

-- What is wrong with a run_at, or null; the library's words (src/notification.rs check_run_at).
create function herald._run_at_problem(run_at timestamptz) returns text
    language sql immutable parallel safe
    as $$
        select case
            when run_at OPERATOR(pg_catalog.<) '0001-01-01 00:00:00+00'::pg_catalog.timestamptz
              or run_at OPERATOR(pg_catalog.>) '9999-12-31 23:59:59.999999+00'::pg_catalog.timestamptz
                then 'must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z'
        end
    $$;

-- User input quoted in a message, as the library quotes it (src/notification.rs echo): a JSON
-- string of its first 64 characters, followed by "…" when cut.
create function herald._echo(value text) returns text
    language sql stable strict parallel safe
    as $$
        select pg_catalog.to_json(pg_catalog."left"(value, 64))::pg_catalog.text
               OPERATOR(pg_catalog.||)
               case when pg_catalog.char_length(value) OPERATOR(pg_catalog.>) 64
                    then '…' else '' end
    $$;

-- `value` as a timestamp when it is RFC 3339 with an offset and a real date and time, else
-- null. Hour 00-23, minute and second 00-59, offset up to ±23:59 as RFC 3339 and chrono allow:
-- the offset is applied here, since PostgreSQL's own input stops at ±15:59 (SQLSTATE 22009).
-- Fractions are cut to microseconds, as the library's are when stored. Year 0000 (valid RFC
-- 3339, 1 BC) is read as PostgreSQL's 0001 BC, so that it reaches the range check and gets its
-- message, as in the library.
create or replace function herald._rfc3339(value text) returns timestamptz
    language plpgsql stable
    set search_path = pg_catalog, pg_temp
    as $$
    declare
        m pg_catalog.text[];
        v_local pg_catalog."timestamp";
        v_offset pg_catalog.interval;
    begin
        m := pg_catalog.regexp_match(value,
            '^([0-9]{4})(-[0-9]{2}-[0-9]{2})[Tt ]([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])(\.[0-9]+)?'
            '([Zz]|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))$');
        if m is null then
            return null;
        end if;
        v_local := pg_catalog.format('%s%s %s:%s:%s%s%s',
                       case when m[1] OPERATOR(pg_catalog.=) '0000' then '0001' else m[1] end,
                       m[2], m[3], m[4], m[5], pg_catalog."left"(coalesce(m[6], ''), 7),
                       case when m[1] OPERATOR(pg_catalog.=) '0000' then ' BC' else '' end
                   )::pg_catalog."timestamp";
        v_offset := case when m[8] is null then '0'::pg_catalog.interval
                         else pg_catalog.make_interval(
                                  hours => m[9]::pg_catalog.int4, mins => m[10]::pg_catalog.int4) end;
        if m[8] OPERATOR(pg_catalog.=) '-' then
            v_offset := OPERATOR(pg_catalog.-) v_offset;
        end if;
        return pg_catalog.timezone('UTC', v_local OPERATOR(pg_catalog.-) v_offset);
    exception when datetime_field_overflow or invalid_datetime_format
                   or invalid_time_zone_displacement_value then
        return null;
    end
    $$;

-- What is wrong with an email address, or null: src/notification.rs check_email in SQL, message
-- for message. A dot-atom local part (atext, or any non-ASCII character) of at most 64 bytes,
-- then a host name: labels of letters, digits and inner hyphens, or non-ASCII characters (IDN),
-- at most 63 bytes each. The local part ends at the first @.
create function herald._email_problem_in_detail(address text) returns text
    language sql stable
    as $$
        select case
            when herald._control_character_problem(a.address) is not null
                then herald._control_character_problem(a.address)
            -- Rust's char::is_whitespace (the Unicode White_Space property).
            when herald._character_problem(a.address, 'whitespace',
                    '\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000') is not null
                then herald._character_problem(a.address, 'whitespace',
                    '\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000')
            when pg_catalog.octet_length(a.address) OPERATOR(pg_catalog.>) 254
                then 'must be at most 254 bytes (RFC 5321)'
            when r.reason is not null
                then pg_catalog.format('%s is not a valid email address: %s',
                                       herald._echo(a.address), r.reason)
        end
        from (select coalesce(address, '') as address) as a,
             lateral (select pg_catalog.strpos(a.address, '@') as at_sign) as p,
             lateral (select pg_catalog.substr(a.address, 1,
                                 greatest(p.at_sign OPERATOR(pg_catalog.-) 1, 0)) as local_part,
                             pg_catalog.substr(a.address, p.at_sign OPERATOR(pg_catalog.+) 1) as host) as s,
             lateral (select case
                 when p.at_sign OPERATOR(pg_catalog.=) 0 then 'it has no @'
                 when s.local_part OPERATOR(pg_catalog.~) '^"' then 'quoted local parts are not accepted'
                 when s.host OPERATOR(pg_catalog.~) '^\[' then 'address literals are not accepted, only host names'
                 when pg_catalog.octet_length(s.local_part) OPERATOR(pg_catalog.>) 64
                     then 'the part before the @ is over 64 bytes'
                 when s.local_part OPERATOR(pg_catalog.!~)
                         '^([A-Za-z0-9!#$%&''*+/=?^_`{|}~-]|[^\u0001-\u007f])+(\.([A-Za-z0-9!#$%&''*+/=?^_`{|}~-]|[^\u0001-\u007f])+)*$'
                     then 'the part before the @ must be dot-separated runs of letters, digits and !#$%&''*+/=?^_`{|}~-'
                 when exists (select from pg_catalog.regexp_split_to_table(s.host, '\.') as label
                              where pg_catalog.octet_length(label) OPERATOR(pg_catalog.>) 63)
                     then 'a label of the domain is over 63 bytes'
                 when s.host OPERATOR(pg_catalog.!~)
                         ('^([A-Za-z0-9]|[^\u0001-\u007f])(([A-Za-z0-9-]|[^\u0001-\u007f])*([A-Za-z0-9]|[^\u0001-\u007f]))?'
                          '(\.([A-Za-z0-9]|[^\u0001-\u007f])(([A-Za-z0-9-]|[^\u0001-\u007f])*([A-Za-z0-9]|[^\u0001-\u007f]))?)*$')
                     then 'the domain must be dot-separated labels of letters, digits and hyphens (not first or last)'
             end as reason) as r
    $$;

-- The same judgement, fast for the common address: one constant pattern that accepts only
-- addresses the detailed check accepts (ASCII atext, host labels of letters, digits and inner
-- hyphens, within the length limits). Anything else gets the detailed check and its message:
-- that function has a FROM, so it is not inlined and costs a plan per call.
create or replace function herald._email_problem(address text) returns text
    language sql stable
    as $$
        select case
            when address OPERATOR(pg_catalog.~)
                     ('^[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]+)*'
                      '@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
                      '(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$')::pg_catalog.text
                 and pg_catalog.octet_length(address) OPERATOR(pg_catalog.<=) 254
                 -- the local part (all ASCII here) is at most 64 bytes
                 and pg_catalog.strpos(address, '@') OPERATOR(pg_catalog.<=) 65
                then null
            else herald._email_problem_in_detail(address)
        end
    $$;

-- The largest payload any caller may enqueue. The enqueue functions take the caller's limit
-- (the `[limits]` of its configuration) but run as herald's owner, so a caller could name any
-- limit; this ceiling, which only herald's owner writes (`herald migrate` records the
-- configured `limits.max_payload_bytes` here), bounds them all.
create table herald.settings (
    singleton          boolean primary key default true check (singleton),
    max_payload_bytes  integer not null default 65536 check (max_payload_bytes >= 1)
);
insert into herald.settings default values;

-- The caller's payload limit, bounded by the ceiling. plpgsql, so that its query's plan is
-- kept for the session (a SQL function that reads a table is not inlined, and was planned on
-- every call).
create function herald._payload_limit(requested integer) returns integer
    language plpgsql stable set search_path = pg_catalog, pg_temp
    as $$
    begin
        return (select least(requested, s.max_payload_bytes) from herald.settings s);
    end
    $$;

-- 0002's herald.enqueue, with run_at checked after everything else, as the library orders it.
create or replace function herald.enqueue(
    user_id text,
    type text,
    business_id text,
    email text default null,
    webhook uuid default null,
    payload jsonb default '{}',
    tenant text default 'default',
    run_at timestamptz default null,
    max_attempts integer default 8,
    max_payload_bytes integer default 65536
) returns table (id uuid, status text, state text)
    language plpgsql volatile security definer
    set search_path = pg_catalog, pg_temp
    as $$
    #variable_conflict use_variable
    declare
        r record;
        problem pg_catalog.text;
    begin
        perform herald._check_payload_limit(max_payload_bytes);
        max_payload_bytes := herald._payload_limit(max_payload_bytes);
        perform herald._validate(tenant, user_id, type, business_id, email, webhook, payload,
                                 max_attempts, max_payload_bytes, null);
        problem := herald._run_at_problem(run_at);
        if problem is not null then
            perform herald._invalid('run_at', problem, null);
        end if;
        r := herald._enqueue_validated(tenant, user_id, type, business_id, email, webhook,
                                       payload, run_at, max_attempts);
        if r.o_status OPERATOR(pg_catalog.<>) 'created'
           and r.o_status OPERATOR(pg_catalog.<>) 'duplicate' then
            perform herald._refuse(r.o_status, r.o_field, r.o_message, r.o_id, null);
        end if;
        if r.o_status OPERATOR(pg_catalog.=) 'created' then
            perform herald._wake_unless_another_will();
        end if;
        return query select r.o_id, r.o_status, r.o_state;
    end
    $$;

-- 0002's herald.enqueue_many, with each item's run_at read by the stricter herald._rfc3339 and
-- checked against the range, after the item's other fields, as the library orders it.
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
            insert into herald.notifications as n
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

-- The Rust library's single enqueue: herald.enqueue's checks and insert, with a refusal
-- returned as a row (o_status 'conflict' or 'invalid', o_field, o_message, o_id the holder)
-- instead of raised. A raised error would abort the caller's transaction, and the library
-- promises that a refused enqueue leaves it usable, without a savepoint's two round trips.
-- What the library checks itself before calling still raises here, as in herald.enqueue.
-- `p_wake`: the library debounces wake-ups per process (src/wake.rs) and passes whether this
-- call holds the window; a created row then wakes listeners at commit.
create function herald._enqueue_or_refuse(
    p_tenant text, p_user_id text, p_type text, p_business_id text, p_email text, p_webhook uuid,
    p_payload jsonb, p_run_at timestamptz, p_max_attempts integer, p_max_payload_bytes integer,
    p_wake boolean,
    out o_status text, out o_id uuid, out o_state text, out o_field text, out o_message text
)
    language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
    as $$
    declare
        r record;
    begin
        perform herald._check_payload_limit(p_max_payload_bytes);
        p_max_payload_bytes := herald._payload_limit(p_max_payload_bytes);
        -- The one check the library cannot make itself: the size of jsonb's text form.
        o_message := herald._payload_problem(p_payload, p_max_payload_bytes);
        if o_message is not null then
            o_status := 'invalid';
            o_field := 'payload';
            return;
        end if;
        perform herald._validate(p_tenant, p_user_id, p_type, p_business_id, p_email, p_webhook,
                                 p_payload, p_max_attempts, p_max_payload_bytes, null);
        o_message := herald._run_at_problem(p_run_at);
        if o_message is not null then
            perform herald._invalid('run_at', o_message, null);
        end if;
        r := herald._enqueue_validated(p_tenant, p_user_id, p_type, p_business_id, p_email,
                                       p_webhook, p_payload, p_run_at, p_max_attempts);
        o_status := r.o_status; o_id := r.o_id; o_state := r.o_state;
        o_field := r.o_field; o_message := r.o_message;
        if o_status = 'created' and p_wake then
            perform herald._wake_unless_another_will();
        end if;
    end
    $$;

-- New functions are executable by PUBLIC until revoked (see 0003).
revoke execute on all functions in schema herald from public;
