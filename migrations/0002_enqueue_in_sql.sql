-- Enqueue from any language: herald.enqueue(...) and herald.enqueue_many(jsonb), with the
-- library's semantics, and herald.fingerprint(), the one implementation of the intent's
-- fingerprint that the Rust library now uses too.
--
-- Errors: SQLSTATE HR001 for invalid input (COLUMN names the field, DETAIL is a JSON object
-- {"field": …, "item": …}), HR002 for a conflict (COLUMN names what differs, DETAIL is
-- {"existing_id": …, "differs": …}). The messages are the library's.

-- The fingerprint of an intent: SHA-256 over a scheme tag, the channel, the destination and the
-- payload in jsonb's normalised text form (keys sorted and deduplicated, fixed spacing, numbers
-- as written). NUL separates the parts; no part can hold one (text and jsonb refuse NUL), so no
-- two different triples hash the same bytes. Computed here, and only here, so that a row
-- enqueued by any client is recognised by any other: canonicalising JSON in two languages
-- cannot agree on numbers (1e2, 1.50, integers past 2^53).
--
-- STABLE, not IMMUTABLE, on purpose: convert_to() is stable, and PostgreSQL inlines a SQL
-- function only when its body is no more volatile than declared. Not inlined, the body was
-- planned again on every single-row insert: 15-20 % of single-enqueue throughput (measured).
create function herald.fingerprint(channel text, destination text, payload jsonb) returns bytea
    language sql stable strict parallel safe
    as $$
        select sha256(convert_to('herald-fingerprint-v2', 'UTF8') || '\x00'::bytea
                      || convert_to(channel, 'UTF8') || '\x00'::bytea
                      || convert_to(destination, 'UTF8') || '\x00'::bytea
                      || convert_to(payload::text, 'UTF8'))
    $$;

-- v1 fingerprints were computed by the library over its own canonical JSON.
update herald.notifications set fingerprint = herald.fingerprint(channel, destination, payload);

-- A UUIDv7 (PostgreSQL 15 has no uuidv7()): a random v4 with the Unix time in milliseconds in
-- its first 48 bits and the version nibble turned from 4 into 7.
create function herald.uuid_v7() returns uuid
    language sql volatile parallel safe
    as $$
        select encode(
                 set_bit(set_bit(
                   overlay(uuid_send(gen_random_uuid())
                           placing substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::int8) from 3)
                           from 1 for 6),
                   52, 1), 53, 1),
                 'hex')::uuid
    $$;

-- Raises HR001 for `field`. `item` is the batch index, or null for a single enqueue.
create function herald._invalid(field text, message text, item integer) returns void
    language plpgsql immutable
    as $$
    begin
        raise exception using
            errcode = 'HR001',
            message = format('invalid %s: %s%s', field, message,
                             case when item is null then '' else format(' (item %s)', item) end),
            column = field,
            detail = json_build_object('field', field, 'item', item)::text;
    end
    $$;

-- The first character of `value` in the regex bracket-expression `class`, as the library words
-- it ("must not contain <what>, found U+000A at byte 5"), or null.
create function herald._character_problem(value text, what text, class text) returns text
    language sql immutable strict
    as $$
        select format('must not contain %s, found U+%s at byte %s', what,
                      upper(lpad(to_hex(ascii(m[1])), 4, '0')),
                      octet_length(substring(value from '^[^' || class || ']*')))
        from regexp_match(value, '([' || class || '])') as m
        where m is not null
    $$;

-- Control characters as Rust's char::is_control sees them: U+0000–U+001F and U+007F–U+009F.
create function herald._control_character_problem(value text) returns text
    language sql immutable strict
    as $$
        select herald._character_problem(value, 'control characters', '\u0001-\u001f\u007f-\u009f')
    $$;

-- What is wrong with a key part (1..=255 characters, no control characters), or null.
create function herald._key_part_problem(value text) returns text
    language sql immutable
    as $$
        select case
            when value is null or value = '' then 'must not be empty'
            when char_length(value) > 255
                then format('must be at most 255 characters, got %s', char_length(value))
            else herald._control_character_problem(value)
        end
    $$;

-- What is wrong with an email address, or null. The library parses addresses with lettre (the
-- email_address crate's grammar); this is that grammar as a regular expression: a dot-atom local
-- part of at most 64 bytes, and a domain of dot-separated labels of at most 63 bytes that start
-- and end with a letter or digit, or an address literal in brackets. Any non-ASCII character
-- counts as a letter. Quoted local parts are refused (the library refuses those with
-- whitespace; the rest are too rare to be worth a second grammar).
create function herald._email_problem(address text) returns text
    language sql immutable
    as $$
        select case
            when address is null or address = ''
                then format('%s is not a valid email address', to_json(coalesce(address, '')))
            when herald._control_character_problem(address) is not null
                then herald._control_character_problem(address)
            -- Rust's char::is_whitespace (the Unicode White_Space property).
            when herald._character_problem(address, 'whitespace',
                    '\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000') is not null
                then herald._character_problem(address, 'whitespace',
                    '\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000')
            when octet_length(address) > 254 then 'must be at most 254 bytes (RFC 5321)'
            when address !~ ('^([A-Za-z0-9!#$%&''*+/=?^_`{|}~-]|[^\u0001-\u007f])+'
                             '(\.([A-Za-z0-9!#$%&''*+/=?^_`{|}~-]|[^\u0001-\u007f])+)*'
                             '@(([A-Za-z0-9]|[^\u0001-\u007f])(([A-Za-z0-9!#$%&''*+/=?^_`{|}~-]|[^\u0001-\u007f])*([A-Za-z0-9]|[^\u0001-\u007f]))?'
                             '(\.([A-Za-z0-9]|[^\u0001-\u007f])(([A-Za-z0-9!#$%&''*+/=?^_`{|}~-]|[^\u0001-\u007f])*([A-Za-z0-9]|[^\u0001-\u007f]))?)*'
                             '|\[[!-Z^-~]+\])$')
                 or octet_length(split_part(address, '@', 1)) > 64
                 or (split_part(address, '@', 2) !~ '^\['
                     and exists (select 1 from regexp_split_to_table(split_part(address, '@', 2), '\.') label
                                 where octet_length(label) > 63))
                then format('%s is not a valid email address', to_json(address))
        end
    $$;

-- What is wrong with a payload, or null: a JSON object, at most 64 levels deep, at most
-- `max_bytes` bytes in jsonb's text form. (NUL cannot reach here: jsonb refuses \u0000.)
create function herald._payload_problem(payload jsonb, max_bytes integer) returns text
    language sql immutable
    as $$
        select case
            when payload is null or jsonb_typeof(payload) <> 'object' then 'must be a JSON object'
            -- `.**{64 to last}` reaches every item below 64 levels; a container there is level 65.
            when jsonb_path_exists(payload,
                    'strict $.**{64 to last} ? (@.type() == "object" || @.type() == "array")')
                then 'must be nested at most 64 levels deep'
            when octet_length(payload::text) > max_bytes
                then format('is %s bytes, over the limit of %s bytes', octet_length(payload::text), max_bytes)
        end
    $$;

-- `value` as a timestamp when it is RFC 3339 with an offset and a real date and time, else null
-- (the shape alone lets "2026-13-45T00:00:00Z" through to the cast, which would fail with a
-- generic error instead of naming the field). The exception block runs only for batch items
-- that carry a run_at.
create function herald._rfc3339(value text) returns timestamptz
    language plpgsql stable
    as $$
    begin
        if value !~ '^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$' then
            return null;
        end if;
        return value::timestamptz;
    exception when datetime_field_overflow or invalid_datetime_format then
        return null;
    end
    $$;

-- The caller's payload limit, checked as the configuration checks `limits.max_payload_bytes`:
-- a null would otherwise compare as no limit at all.
create function herald._check_payload_limit(max_payload_bytes integer) returns void
    language plpgsql immutable
    as $$
    begin
        if max_payload_bytes is null or max_payload_bytes < 1 then
            perform herald._invalid('max_payload_bytes',
                format('must be at least 1, got %s', coalesce(max_payload_bytes::text, 'null')), null);
        end if;
    end
    $$;

-- Validates one notification; raises HR001 naming the first bad field, in the library's order.
create function herald._validate(
    tenant text, user_id text, type text, business_id text, email text, webhook uuid,
    payload jsonb, max_attempts integer, max_payload_bytes integer, item integer
) returns void
    language plpgsql immutable
    as $$
    declare
        problem text;
    begin
        problem := herald._key_part_problem(tenant);
        if problem is not null then perform herald._invalid('tenant', problem, item); end if;
        problem := herald._key_part_problem(user_id);
        if problem is not null then perform herald._invalid('user_id', problem, item); end if;
        problem := herald._key_part_problem(type);
        if problem is not null then perform herald._invalid('type', problem, item); end if;
        problem := herald._key_part_problem(business_id);
        if problem is not null then perform herald._invalid('business_id', problem, item); end if;
        if (email is null) = (webhook is null) then
            perform herald._invalid('destination', 'give exactly one of email and webhook', item);
        end if;
        if email is not null then
            problem := herald._email_problem(email);
            if problem is not null then perform herald._invalid('email', problem, item); end if;
        end if;
        problem := herald._payload_problem(payload, max_payload_bytes);
        if problem is not null then perform herald._invalid('payload', problem, item); end if;
        if max_attempts is null or max_attempts not between 1 and 100 then
            perform herald._invalid('max_attempts',
                format('must be between 1 and 100, got %s', coalesce(max_attempts::text, 'null')), item);
        end if;
    end
    $$;

-- The key as the library prints it: (tenant "…", user_id "…", type "…", business_id "…").
create function herald._key_text(tenant text, user_id text, type text, business_id text) returns text
    language sql immutable
    as $$
        select format('(tenant %s, user_id %s, type %s, business_id %s)',
                      to_json(tenant), to_json(user_id), to_json(type), to_json(business_id))
    $$;

-- Raises what `_enqueue_validated` refused: HR002 for a conflict (field holds what differs, id
-- the existing notification), HR001 for anything else.
create function herald._refuse(status text, field text, message text, existing_id uuid, item integer)
    returns void
    language plpgsql immutable
    as $$
    begin
        if status = 'conflict' then
            raise exception using
                errcode = 'HR002',
                message = message,
                column = field,
                detail = json_build_object('existing_id', existing_id, 'differs', field, 'item', item)::text;
        end if;
        perform herald._invalid(field, message, item);
    end
    $$;

-- The library's conflict message.
create function herald._conflict_message(
    tenant text, user_id text, type text, business_id text, holder uuid, differs text
) returns text
    language sql immutable
    as $$
        select format('conflict: key %s is held by notification %s with a different %s',
                      herald._key_text(tenant, user_id, type, business_id), holder, differs)
    $$;

-- Inserts one validated notification unless its key is held, and decides a held key. Never
-- checks and then inserts: the UNIQUE key decides. o_status is 'created' or 'duplicate' (o_id
-- and o_state are the row's), 'conflict' (o_id is the holder, o_field what differs, o_message
-- the library's message) or 'invalid' (an unknown or disabled endpoint; o_field, o_message).
-- Refusals are returned, not raised, so that a batch can report the first in input order.
create function herald._enqueue_validated(
    p_tenant text, p_user_id text, p_type text, p_business_id text, p_email text, p_webhook uuid,
    p_payload jsonb, p_run_at timestamptz, p_max_attempts integer,
    out o_status text, out o_id uuid, out o_state text, out o_field text, out o_message text
)
    language plpgsql volatile
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
            insert into herald.notifications as n
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

-- Wakes listening dispatchers at commit, unless a concurrent transaction already will: every
-- notifying commit takes PostgreSQL's global NOTIFY lock, so sixteen sessions that each notify
-- queue on it (measured: 1.1k against 1.7k enqueues/s at 16 clients). The first transaction to
-- take this transaction-scoped advisory lock ("heraldWK") notifies; the others, committing
-- around the same time, do not, and the dispatcher's second look shortly after every wake-up
-- (and its polling) finds their rows. The library debounces per process instead (src/wake.rs).
create function herald._wake_unless_another_will() returns void
    language plpgsql volatile
    as $$
    begin
        if pg_try_advisory_xact_lock(7522544515348191051) then
            perform herald.wake();
        end if;
    end
    $$;

-- Enqueues one notification inside the caller's transaction. Exactly one of `email` and
-- `webhook` (an endpoint id of the same tenant). Returns the notification's id, 'created' or
-- 'duplicate', and its state; a created row wakes listening dispatchers when the transaction
-- commits. `max_payload_bytes` is the `[limits]` setting of the daemon's configuration.
create function herald.enqueue(
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
    language plpgsql volatile
    as $$
    #variable_conflict use_variable
    declare
        r record;
    begin
        perform herald._check_payload_limit(max_payload_bytes);
        perform herald._validate(tenant, user_id, type, business_id, email, webhook, payload,
                                 max_attempts, max_payload_bytes, null);
        r := herald._enqueue_validated(tenant, user_id, type, business_id, email, webhook,
                                       payload, run_at, max_attempts);
        if r.o_status not in ('created', 'duplicate') then
            perform herald._refuse(r.o_status, r.o_field, r.o_message, r.o_id, null);
        end if;
        if r.o_status = 'created' then
            perform herald._wake_unless_another_will();
        end if;
        return query select r.o_id, r.o_status, r.o_state;
    end
    $$;

-- Enqueues a JSON array of notifications, all or nothing, one result row per item in input
-- order. Each item is an object with "user_id", "type", "business_id", one of "email" and
-- "webhook", and optionally "tenant", "payload", "run_at" (RFC 3339) and "max_attempts".
-- Repeats of a key within the array resolve to one notification (a different intent under a
-- repeated key is invalid input, field "batch"). Rows are inserted in key order, so concurrent
-- batches that share keys cannot deadlock. The first refusal in input order fails the call.
create function herald.enqueue_many(notifications jsonb, max_payload_bytes integer default 65536)
    returns table (id uuid, status text, state text)
    language plpgsql volatile
    as $$
    #variable_conflict use_variable
    declare
        v_count integer;
        v_item jsonb;
        v_key text;
        v_tenant text[]; v_user_id text[]; v_type text[]; v_business_id text[];
        v_email text[]; v_webhook uuid[]; v_payload jsonb[]; v_run_at timestamptz[];
        v_channel text[]; v_destination text[];
        v_max_attempts integer[];
        v_id uuid[]; v_status text[]; v_state text[]; v_field text[]; v_message text[];
        v_rep integer;
        v_differs text;
        v_created boolean := false;
        v_result record;
        r record;
        i integer;
    begin
        perform herald._check_payload_limit(max_payload_bytes);
        if notifications is null or jsonb_typeof(notifications) <> 'array' then
            perform herald._invalid('notifications', 'must be a JSON array of objects', null);
        end if;
        v_count := jsonb_array_length(notifications);
        -- Parse and validate every item first, in input order.
        for i in 0 .. v_count - 1 loop
            v_item := notifications -> i;
            if jsonb_typeof(v_item) <> 'object' then
                perform herald._invalid('notifications', 'each item must be a JSON object', i);
            end if;
            select k into v_key from jsonb_object_keys(v_item) k
            where k not in ('tenant', 'user_id', 'type', 'business_id', 'email', 'webhook',
                            'payload', 'run_at', 'max_attempts')
            order by k limit 1;
            if found then
                perform herald._invalid(v_key, 'is not a notification field', i);
            end if;
            foreach v_key in array array['tenant', 'user_id', 'type', 'business_id', 'email',
                                         'webhook', 'run_at'] loop
                if jsonb_typeof(v_item -> v_key) not in ('string', 'null') then
                    perform herald._invalid(v_key, 'must be a string', i);
                end if;
            end loop;
            v_tenant[i] := coalesce(v_item ->> 'tenant', 'default');
            v_user_id[i] := v_item ->> 'user_id';
            v_type[i] := v_item ->> 'type';
            v_business_id[i] := v_item ->> 'business_id';
            v_email[i] := v_item ->> 'email';
            v_payload[i] := coalesce(v_item -> 'payload', '{}');
            if v_item ->> 'webhook' is not null
               and v_item ->> 'webhook' !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
                perform herald._invalid('webhook',
                    format('%s is not an endpoint id (a UUID)', v_item -> 'webhook'), i);
            end if;
            v_webhook[i] := (v_item ->> 'webhook')::uuid;
            v_channel[i] := case when v_webhook[i] is null then 'email' else 'webhook' end;
            v_destination[i] := coalesce(v_email[i], v_webhook[i]::text);
            if v_item ->> 'max_attempts' is null then
                v_max_attempts[i] := 8;
            elsif (v_item ->> 'max_attempts') ~ '^-?[0-9]{1,9}$' then
                v_max_attempts[i] := (v_item ->> 'max_attempts')::integer;
            else
                perform herald._invalid('max_attempts',
                    format('must be between 1 and 100, got %s', v_item ->> 'max_attempts'), i);
            end if;
            perform herald._validate(v_tenant[i], v_user_id[i], v_type[i], v_business_id[i],
                                     v_email[i], v_webhook[i], v_payload[i], v_max_attempts[i],
                                     max_payload_bytes, i);
            if v_item ->> 'run_at' is not null then
                v_run_at[i] := herald._rfc3339(v_item ->> 'run_at');
                if v_run_at[i] is null then
                    perform herald._invalid('run_at',
                        format('%s is not an RFC 3339 timestamp with an offset', v_item -> 'run_at'), i);
                end if;
            end if;
        end loop;
        -- Insert in key order (ties in input order), so the first occurrence of a key comes
        -- first and represents it; a repeat is decided against it.
        v_rep := null;
        for r in
            select g.i as ord
            from generate_series(0, v_count - 1) as g(i)
            order by v_tenant[g.i], v_user_id[g.i], v_type[g.i], v_business_id[g.i], g.i
        loop
            i := r.ord;
            if v_rep is null or (v_tenant[i], v_user_id[i], v_type[i], v_business_id[i])
                    is distinct from (v_tenant[v_rep], v_user_id[v_rep], v_type[v_rep], v_business_id[v_rep]) then
                v_rep := i;
                v_result := herald._enqueue_validated(
                    v_tenant[i], v_user_id[i], v_type[i], v_business_id[i], v_email[i],
                    v_webhook[i], v_payload[i], v_run_at[i], v_max_attempts[i]);
                v_id[i] := v_result.o_id; v_status[i] := v_result.o_status;
                v_state[i] := v_result.o_state; v_field[i] := v_result.o_field;
                v_message[i] := v_result.o_message;
                v_created := v_created or v_result.o_status = 'created';
            elsif v_status[v_rep] not in ('created', 'duplicate') then
                -- The representative's own refusal is reported, earlier in input order.
                continue;
            elsif herald.fingerprint(v_channel[i], v_destination[i], v_payload[i])
                  = herald.fingerprint(v_channel[v_rep], v_destination[v_rep], v_payload[v_rep]) then
                v_id[i] := v_id[v_rep]; v_status[i] := 'duplicate'; v_state[i] := v_state[v_rep];
            else
                v_differs := case when v_channel[i] <> v_channel[v_rep] then 'channel'
                                  when v_destination[i] <> v_destination[v_rep] then 'destination'
                                  else 'payload' end;
                v_field[i] := v_differs;
                v_id[i] := v_id[v_rep];
                if v_status[v_rep] = 'created' then
                    -- Both intents are new: there is no existing notification to name.
                    v_status[i] := 'invalid';
                    v_field[i] := 'batch';
                    v_message[i] := format('items %s and %s share the key %s but differ in %s',
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
        for i in 0 .. v_count - 1 loop
            if v_status[i] not in ('created', 'duplicate') then
                if v_status[i] = 'invalid' and v_field[i] = 'batch' then
                    perform herald._invalid('batch', v_message[i], null);
                elsif v_status[i] = 'invalid' then
                    -- The library's message with the item's index.
                    perform herald._invalid(v_field[i], v_message[i], i);
                end if;
                perform herald._refuse(v_status[i], v_field[i], v_message[i], v_id[i], i);
            end if;
        end loop;
        if v_created then
            perform herald._wake_unless_another_will();
        end if;
        return query
            select v_id[g.i], v_status[g.i], v_state[g.i] from generate_series(0, v_count - 1) as g(i);
    end
    $$;
