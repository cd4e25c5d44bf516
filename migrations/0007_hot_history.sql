-- History that costs less: an intent's terminal update is a HOT update, and the sweep finds
-- expired rows by their id.
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
-- - Every new intent's id is a UUIDv7 (checked): an id of another version carries no creation
--   time and could sit above every sweep range forever. The check is NOT VALID: herald always
--   minted UUIDv7 ids, but a plain-SQL writer that bypassed the enqueue functions may have
--   stored another kind, and such a row must not fail the upgrade. The sweep leaves those rows
--   alone (the CHANGELOG says how to find and delete them).
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
alter table herald.intents add constraint intents_id_is_uuid_v7
    check (pg_catalog.substr(id::pg_catalog.text, 15, 1) OPERATOR(pg_catalog.=) '7') not valid;

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
-- below it.
create function herald._uuid_v7_floor(at timestamptz) returns uuid
    language sql immutable parallel safe
    set search_path = pg_catalog, pg_temp
    as $$
        select (pg_catalog.lpad(pg_catalog.to_hex(pg_catalog.floor(
                    pg_catalog.extract('epoch'::pg_catalog.text, at)
                    OPERATOR(pg_catalog.*) 1000::pg_catalog.numeric)::pg_catalog.int8), 12, '0')
                OPERATOR(pg_catalog.||) '70008000000000000000')::pg_catalog.uuid
    $$;

-- New functions are executable by PUBLIC until revoked (see 0003).
revoke execute on function herald._uuid_v7_at(timestamptz) from public;
revoke execute on function herald._uuid_v7_floor(timestamptz) from public;
