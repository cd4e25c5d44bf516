-- UUIDv7-like ids (the first 48 bits are milliseconds) for the layouts of run.sh.
create or replace function v7(ts timestamptz) returns uuid language sql volatile as $$
  select encode(overlay(uuid_send(gen_random_uuid())
         placing substring(int8send((extract(epoch from ts) * 1000)::bigint) from 3) from 1 for 6), 'hex')::uuid $$;
create or replace function v7floor(ts timestamptz) returns uuid language sql immutable as $$
  select encode(substring(int8send((extract(epoch from ts) * 1000)::bigint) from 3) || '\x00000000000000000000'::bytea, 'hex')::uuid $$;
