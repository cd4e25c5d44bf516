-- Fewer writes: an intent's terminal update is a HOT update, the sweep finds expired rows by
-- their id, and a single enqueue writes its queue row without the statement trigger.
--
-- An intent is written twice: at enqueue, and once more when it finishes (delivered, dead,
-- cancelled). That second write changed `finished_at`, which the sweep's index held, so it
-- wrote a new entry into every index of the table (the primary key, the four-column key, the
-- sweep's own). Without that index, and with room left on each page for the new version, it is
-- a heap-only update: one tuple on the same page, no index entry.
--
-- The sweep walks the primary key instead. The id is a UUIDv7 whose first 48 bits are the
-- milliseconds of its creation on the database clock (`herald.uuid_v7()`), and a notification
-- finishes after it was created, so every row that finished before a cutoff has an id below
-- the smallest UUIDv7 of that cutoff. The sweep reads that range in id order, once per run (a
-- cursor carries it from batch to batch), and keeps only the rows whose own `finished_at` is
-- past their window: the range is a bound, the retention rule is unchanged.
--
-- Invariants:
-- - Every intent inserted from now on has a UUIDv7 id (a trigger refuses others): an id of
--   another version carries no creation time and could sit above every sweep range forever.
--   Inserts only: herald always minted UUIDv7 ids, but a plain-SQL writer that bypassed the
--   enqueue functions may have stored another kind, and such a row must still be delivered,
--   cancelled, retried and rescued (a CHECK, even NOT VALID, refuses every update of it). The
--   sweep never reaches those rows (the CHANGELOG says how to find and delete them).
-- - A notification finishes after it was created, so its id's time is at most its
--   `finished_at` give or take the length of one transaction (`finished_at` is the finishing
--   transaction's start, the id the clock at insert): such a row is swept that much later, never
--   earlier.
-- - No index of herald.intents covers a column that changes after enqueue (`state`,
--   `finished_at`, `attempts`, `attempted_at`, `last_error`, `run_at`), so those updates stay
--   heap-only while the page has room.

drop index herald.notifications_finished;

-- New pages keep a fifth free for the one update each row will get. Existing pages keep their
-- layout (no rewrite here): they are finished history already.
alter table herald.intents set (fillfactor = 80);

-- Ids minted by herald always were UUIDv7 (the library's, then `herald.uuid_v7()`); a plain-SQL
-- writer may now leave the id out.
alter table herald.intents alter column id set default herald.uuid_v7();

-- Raised as the check violation it is, naming the rule as a constraint would. The trigger's
-- WHEN makes it cost nothing for a UUIDv7.
create function herald._refuse_id_not_uuid_v7() returns trigger
    language plpgsql
    set search_path = pg_catalog, pg_temp
    as $$
    begin
        raise exception 'herald.intents: id % is not a UUIDv7', new.id
            using errcode = 'check_violation', constraint = 'intents_id_is_uuid_v7',
                  table = 'intents', schema = 'herald',
                  hint = 'leave the id out: it defaults to herald.uuid_v7()';
    end
    $$;
create trigger intents_id_is_uuid_v7 before insert on herald.intents
    for each row
    when (pg_catalog.substr(new.id::pg_catalog.text, 15, 1) OPERATOR(pg_catalog.<>) '7')
    execute function herald._refuse_id_not_uuid_v7();

-- A UUIDv7 at a given time, with random bits after its timestamp: for writers of history with a
-- creation time in the past (the bench's history, tests).
create function herald._uuid_v7_at(at timestamptz) returns uuid
    language sql volatile parallel safe
    set search_path = pg_catalog, pg_temp
    as $$
        select pg_catalog.encode(
                 pg_catalog.set_bit(pg_catalog.set_bit(
                   pg_catalog.overlay(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()),
                           pg_catalog.substring(
                               pg_catalog.int8send(pg_catalog.floor(
                                   pg_catalog.extract('epoch'::pg_catalog.text, at)
                                   OPERATOR(pg_catalog.*) 1000::pg_catalog.numeric)::pg_catalog.int8),
                               3),
                           1, 6),
                   52, 1), 53, 1),
                 'hex'::pg_catalog.text)::pg_catalog.uuid
    $$;

-- The smallest UUIDv7 of the millisecond of `at`: every id minted before that millisecond is
-- below it. Times before 1970 have the smallest of all (a negative count of milliseconds has
-- no 48-bit form; unclamped, its hex would put the bound near the top of the id space).
create function herald._uuid_v7_floor(at timestamptz) returns uuid
    language sql immutable parallel safe
    set search_path = pg_catalog, pg_temp
    as $$
        select (pg_catalog.lpad(pg_catalog.to_hex(greatest(0::pg_catalog.int8,
                    pg_catalog.floor(pg_catalog.extract('epoch'::pg_catalog.text, at)
                    OPERATOR(pg_catalog.*) 1000::pg_catalog.numeric)::pg_catalog.int8)), 12, '0')
                OPERATOR(pg_catalog.||) '70008000000000000000')::pg_catalog.uuid
    $$;

-- The single enqueue writes its queue row itself, in the statement after the intent's insert.
--
-- The statement trigger of 0005 (`intents_queue`) gives every new pending intent its queue
-- row, whoever inserted it; a trigger with a transition table costs a single-row insert more
-- than the row itself (its query over the transition table is planned anew at each firing).
-- It stays, for plain-SQL writers and for the batch (one firing per batch), and is skipped
-- only while `herald.queues_itself` holds the id of the current transaction: this function
-- sets it so around its own insert and to 'off' again before anything else runs (an error
-- rolls the setting back with the (sub)transaction it was made in), so no other insert is ever
-- left without its queue row. A value that names the transaction cannot be left over from a
-- session, a role's or database's defaults or a pooler's options, as 'on' could, and make a
-- batch skip its queue rows. (A function SET clause would scope it more plainly, but
-- PostgreSQL 15 lets only superusers name a custom setting there.)
drop trigger intents_queue on herald.intents;
create trigger intents_queue after insert on herald.intents
    referencing new table as added
    for each statement
    when (pg_catalog.current_setting('herald.queues_itself', true)
          is distinct from pg_catalog.pg_current_xact_id_if_assigned()::pg_catalog.text)
    execute function herald._queue_new_intents();

-- As in 0005, with the queue row inserted here and the setting above.
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
        v_run_at timestamptz;
    begin
        -- A key whose row is swept between the insert and the read is tried again; the second
        -- pass always settles it, the bound is a safeguard.
        for pass in 1..3 loop
            -- Only for this insert (an error rolls it back with the statement that made it).
            perform pg_catalog.set_config('herald.queues_itself',
                                          pg_catalog.pg_current_xact_id()::pg_catalog.text, true);
            insert into herald.intents as n
                (id, tenant, user_id, type, business_id, fingerprint, channel, destination,
                 payload, run_at, max_attempts)
            select herald.uuid_v7(), p_tenant, p_user_id, p_type, p_business_id, v_fingerprint,
                   v_channel, v_destination, p_payload, coalesce(p_run_at, now()), p_max_attempts
            where p_webhook is null
               or exists (select 1 from herald.webhook_endpoints e
                          where e.id = p_webhook and e.tenant = p_tenant and e.enabled)
            on conflict (tenant, user_id, type, business_id) do nothing
            returning n.id, n.state, n.run_at into o_id, o_state, v_run_at;
            if found then
                perform pg_catalog.set_config('herald.queues_itself', 'off', true);
                insert into herald.queue (id, destination, tenant, run_at)
                values (o_id, herald.destination_key(v_channel, v_destination), p_tenant, v_run_at);
                o_status := 'created';
                return;
            end if;
            perform pg_catalog.set_config('herald.queues_itself', 'off', true);
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

-- `herald.quiet` (0006) names the current transaction too, for the reason given above for
-- `herald.queues_itself`: set to 'on' by another client of a pooled server connection, it
-- silenced the wake-up of every enqueue that then ran there.
create or replace function herald._enqueue_group(notifications jsonb, max_payload_bytes integer, p_wake boolean)
    returns table (id uuid, status text, state text)
    language plpgsql volatile
    set search_path = pg_catalog, pg_temp
    set lock_timeout = '50ms'
as $$
    begin
        if not p_wake then
            perform set_config('herald.quiet', pg_current_xact_id()::text, true);
        end if;
        return query select * from herald.enqueue_many(notifications, max_payload_bytes);
    end
$$;

create or replace function herald._wake_unless_another_will() returns void
    language plpgsql volatile
    set search_path = pg_catalog, pg_temp
as $$
    begin
        if current_setting('herald.quiet', true) is distinct from pg_current_xact_id()::text
           and pg_try_advisory_xact_lock(7522544515348191051) then
            perform herald.wake();
        end if;
    end
$$;

-- New functions are executable by PUBLIC until revoked (see 0003).
revoke execute on function herald._uuid_v7_at(timestamptz) from public;
revoke execute on function herald._uuid_v7_floor(timestamptz) from public;
revoke execute on function herald._refuse_id_not_uuid_v7() from public;
