-- No object outside pg_catalog and herald can change what herald's functions call, and the
-- enqueue functions are the entry points of a least-privilege role.
--
-- A function body is resolved against the search_path of whoever calls it. A role that can
-- create objects in any schema on that path could add an overload that matches a call better
-- than the built-in (convert_to(text, text) beats pg_catalog.convert_to(text, name) for a
-- string literal) and run its code as the caller (CVE-2018-1058). So:
-- - LANGUAGE sql functions name every function, operator and type with its schema. They keep
--   no SET clause: PostgreSQL inlines a SQL function only without one, and inlining
--   herald.fingerprint() and the validation helpers into their callers' plans is what makes
--   enqueue fast.
--   The validation helpers are declared STABLE, not IMMUTABLE as in 0002: their bodies call
--   format() and to_json(), which are stable, and PostgreSQL inlines a function only when its
--   body is no more volatile than declared; a SQL function that is not inlined is planned again
--   on every call.
-- - plpgsql functions fix their search_path to pg_catalog, pg_temp (pg_temp last: temporary
--   objects are never found before the built-ins).
-- - herald.enqueue and herald.enqueue_many are SECURITY DEFINER: they run as herald's owner, so
--   a role granted only EXECUTE on them can enqueue without any right on the tables (it can
--   neither read other tenants' payloads nor bypass the validation). Nothing else is
--   executable by PUBLIC; `herald migrate` grants the rest to herald's group roles.

create or replace function herald.fingerprint(channel text, destination text, payload jsonb) returns bytea
    language sql stable strict parallel safe
    as $$
        select pg_catalog.sha256(
                 pg_catalog.convert_to('herald-fingerprint-v2'::pg_catalog.text, 'UTF8'::pg_catalog.name)
                 OPERATOR(pg_catalog.||) '\x00'::pg_catalog.bytea
                 OPERATOR(pg_catalog.||) pg_catalog.convert_to(channel, 'UTF8'::pg_catalog.name)
                 OPERATOR(pg_catalog.||) '\x00'::pg_catalog.bytea
                 OPERATOR(pg_catalog.||) pg_catalog.convert_to(destination, 'UTF8'::pg_catalog.name)
                 OPERATOR(pg_catalog.||) '\x00'::pg_catalog.bytea
                 OPERATOR(pg_catalog.||) pg_catalog.convert_to(payload::pg_catalog.text, 'UTF8'::pg_catalog.name))
    $$;

create or replace function herald.uuid_v7() returns uuid
    language sql volatile parallel safe
    as $$
        select pg_catalog.encode(
                 pg_catalog.set_bit(pg_catalog.set_bit(
                   pg_catalog.overlay(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()),
                           pg_catalog.substring(
                               pg_catalog.int8send(pg_catalog.floor(
                                   pg_catalog.extract('epoch'::pg_catalog.text, pg_catalog.clock_timestamp())
                                   OPERATOR(pg_catalog.*) 1000::pg_catalog.numeric)::pg_catalog.int8),
                               3),
                           1, 6),
                   52, 1), 53, 1),
                 'hex'::pg_catalog.text)::pg_catalog.uuid
    $$;

create or replace function herald.next_attempt_number(notification uuid) returns integer
    language sql stable
    as $$
        select coalesce(pg_catalog.max(a.attempt), 0) OPERATOR(pg_catalog.+) 1
        from herald.attempts a
        where a.notification_id OPERATOR(pg_catalog.=) notification
    $$;

create or replace function herald.wake() returns boolean
    language sql volatile
    as $$ select pg_catalog.pg_notify('herald_wake'::pg_catalog.text, ''::pg_catalog.text); select true $$;

create or replace function herald._character_problem(value text, what text, class text) returns text
    language sql stable strict
    as $$
        select pg_catalog.format('must not contain %s, found U+%s at byte %s', what,
                      pg_catalog.upper(pg_catalog.lpad(pg_catalog.to_hex(pg_catalog.ascii(m[1])), 4, '0')),
                      pg_catalog.octet_length(pg_catalog.substring(value,
                          '^[^'::pg_catalog.text OPERATOR(pg_catalog.||) class OPERATOR(pg_catalog.||) ']*'::pg_catalog.text)))
        from pg_catalog.regexp_match(value,
                 '(['::pg_catalog.text OPERATOR(pg_catalog.||) class OPERATOR(pg_catalog.||) '])'::pg_catalog.text) as m
        where m is not null
    $$;

create or replace function herald._control_character_problem(value text) returns text
    language sql stable strict
    as $$
        select herald._character_problem(value, 'control characters', '\u0001-\u001f\u007f-\u009f')
    $$;

create or replace function herald._key_part_problem(value text) returns text
    language sql stable
    as $$
        select case
            when value is null or value OPERATOR(pg_catalog.=) ''::pg_catalog.text then 'must not be empty'
            when pg_catalog.char_length(value) OPERATOR(pg_catalog.>) 255
                then pg_catalog.format('must be at most 255 characters, got %s', pg_catalog.char_length(value))
            -- A constant pattern first: the message's function is not inlinable (it has a FROM)
            -- and costs a plan per call, which every valid key part would pay.
            when value OPERATOR(pg_catalog.~) '[\u0001-\u001f\u007f-\u009f]'::pg_catalog.text
                then herald._control_character_problem(value)
        end
    $$;

create or replace function herald._email_problem(address text) returns text
    language sql stable
    as $$
        select case
            when address is null or address OPERATOR(pg_catalog.=) ''::pg_catalog.text
                then pg_catalog.format('%s is not a valid email address', pg_catalog.to_json(coalesce(address, ''::pg_catalog.text)))
            when herald._control_character_problem(address) is not null
                then herald._control_character_problem(address)
            -- Rust's char::is_whitespace (the Unicode White_Space property).
            when herald._character_problem(address, 'whitespace',
                    '\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000') is not null
                then herald._character_problem(address, 'whitespace',
                    '\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000')
            when pg_catalog.octet_length(address) OPERATOR(pg_catalog.>) 254 then 'must be at most 254 bytes (RFC 5321)'
            when address OPERATOR(pg_catalog.!~) ('^([A-Za-z0-9!#$%&''*+/=?^_`{|}~-]|[^\u0001-\u007f])+'
                             '(\.([A-Za-z0-9!#$%&''*+/=?^_`{|}~-]|[^\u0001-\u007f])+)*'
                             '@(([A-Za-z0-9]|[^\u0001-\u007f])(([A-Za-z0-9!#$%&''*+/=?^_`{|}~-]|[^\u0001-\u007f])*([A-Za-z0-9]|[^\u0001-\u007f]))?'
                             '(\.([A-Za-z0-9]|[^\u0001-\u007f])(([A-Za-z0-9!#$%&''*+/=?^_`{|}~-]|[^\u0001-\u007f])*([A-Za-z0-9]|[^\u0001-\u007f]))?)*'
                             '|\[[!-Z^-~]+\])$')::pg_catalog.text
                 or pg_catalog.octet_length(pg_catalog.split_part(address, '@', 1)) OPERATOR(pg_catalog.>) 64
                 or (pg_catalog.split_part(address, '@', 2) OPERATOR(pg_catalog.!~) '^\['::pg_catalog.text
                     and exists (select 1 from pg_catalog.regexp_split_to_table(pg_catalog.split_part(address, '@', 2), '\.'::pg_catalog.text) label
                                 where pg_catalog.octet_length(label) OPERATOR(pg_catalog.>) 63))
                then pg_catalog.format('%s is not a valid email address', pg_catalog.to_json(address))
        end
    $$;

create or replace function herald._payload_problem(payload jsonb, max_bytes integer) returns text
    language sql stable
    as $$
        select case
            when payload is null or pg_catalog.jsonb_typeof(payload) OPERATOR(pg_catalog.<>) 'object'::pg_catalog.text
                then 'must be a JSON object'
            -- `.**{64 to last}` reaches every item below 64 levels; a container there is level 65.
            -- 65 levels take at least 130 bytes, so a shorter payload skips the path walk.
            when pg_catalog.octet_length(payload::pg_catalog.text) OPERATOR(pg_catalog.>) 128
             and pg_catalog.jsonb_path_exists(payload,
                    'strict $.**{64 to last} ? (@.type() == "object" || @.type() == "array")'::pg_catalog.jsonpath)
                then 'must be nested at most 64 levels deep'
            when pg_catalog.octet_length(payload::pg_catalog.text) OPERATOR(pg_catalog.>) max_bytes
                then pg_catalog.format('is %s bytes, over the limit of %s bytes',
                                       pg_catalog.octet_length(payload::pg_catalog.text), max_bytes)
        end
    $$;

create or replace function herald._key_text(tenant text, user_id text, type text, business_id text) returns text
    language sql stable
    as $$
        select pg_catalog.format('(tenant %s, user_id %s, type %s, business_id %s)',
                      pg_catalog.to_json(tenant), pg_catalog.to_json(user_id),
                      pg_catalog.to_json(type), pg_catalog.to_json(business_id))
    $$;

create or replace function herald._conflict_message(
    tenant text, user_id text, type text, business_id text, holder uuid, differs text
) returns text
    language sql stable
    as $$
        select pg_catalog.format('conflict: key %s is held by notification %s with a different %s',
                      herald._key_text(tenant, user_id, type, business_id), holder, differs)
    $$;

-- plpgsql functions: their bodies resolve names against a fixed path.
alter function herald._invalid(text, text, integer) set search_path = pg_catalog, pg_temp;
alter function herald._rfc3339(text) set search_path = pg_catalog, pg_temp;
alter function herald._check_payload_limit(integer) set search_path = pg_catalog, pg_temp;
alter function herald._validate(text, text, text, text, text, uuid, jsonb, integer, integer, integer)
    set search_path = pg_catalog, pg_temp;
alter function herald._refuse(text, text, text, uuid, integer) set search_path = pg_catalog, pg_temp;
alter function herald._enqueue_validated(text, text, text, text, text, uuid, jsonb, timestamptz, integer)
    set search_path = pg_catalog, pg_temp;
alter function herald._wake_unless_another_will() set search_path = pg_catalog, pg_temp;

-- The entry points run as herald's owner.
alter function herald.enqueue(text, text, text, text, uuid, jsonb, text, timestamptz, integer, integer)
    security definer set search_path = pg_catalog, pg_temp;
alter function herald.enqueue_many(jsonb, integer)
    security definer set search_path = pg_catalog, pg_temp;

-- The migrations this database has applied, for roles that may not read the bookkeeping
-- table: `herald run` and `herald::migrate` check it and issue DDL only when one is pending.
create function herald.applied_migrations() returns setof bigint
    language sql stable security definer set search_path = pg_catalog, pg_temp
    as $$
        select m.version from herald._sqlx_migrations m where m.success order by m.version
    $$;

-- Rotates an endpoint's secret for a role that may write secrets but not read them
-- (herald_admin): the old secret keeps signing beside the new one until the grace ends.
-- Returns the endpoint's public columns and when the old secret expires; no row when there is
-- no such endpoint.
create function herald.rotate_endpoint_secret(p_id uuid, p_new_secret text, p_grace_seconds double precision)
    returns table (id uuid, tenant text, url text, enabled boolean, disabled_reason text,
                   created_at timestamptz, previous_secret_expires_at timestamptz)
    language sql volatile security definer set search_path = pg_catalog, pg_temp
    as $$
        update herald.webhook_endpoints e
        set previous_secret = e.secret,
            previous_secret_expires_at = now() + make_interval(secs => p_grace_seconds),
            secret = p_new_secret
        where e.id = p_id
        returning e.id, e.tenant, e.url, e.enabled, e.disabled_reason, e.created_at,
                  e.previous_secret_expires_at
    $$;

-- Functions are executable by PUBLIC unless revoked; `herald migrate` grants what each group
-- role needs (src/roles.rs).
revoke execute on all functions in schema herald from public;
