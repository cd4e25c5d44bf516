-- Layout a (see run.sh): the row and its UNIQUE key in one table, 1,000,000 expired rows with
-- an attempt each; sweep_a deletes them by id range as herald sweep does, sweep_ap pauses 50 ms
-- between batches.
drop table if exists a_attempts, a_intents cascade;
create table a_intents (
  id uuid primary key, tenant text not null, user_id text not null, type text not null,
  business_id text not null, fingerprint bytea not null, channel text not null, destination text not null,
  payload jsonb not null, max_attempts int not null, attempts int not null default 0, state text not null,
  run_at timestamptz not null, created_at timestamptz not null default now(), finished_at timestamptz,
  last_error text, attempted_at timestamptz,
  unique (tenant, user_id, type, business_id)) with (fillfactor = 80);
create table a_attempts (notification_id uuid not null references a_intents(id) on delete cascade,
  attempt int not null, started_at timestamptz not null, finished_at timestamptz not null,
  outcome text not null, status int, error text, lease_token uuid, primary key (notification_id, attempt));
insert into a_intents (id, tenant, user_id, type, business_id, fingerprint, channel, destination, payload,
   max_attempts, attempts, state, run_at, created_at, finished_at)
select v7(now() - interval '1 day'), 'default', 'user-' || (g % 100000), 'order_shipped', 'history-' || g,
   sha256(('history-' || g)::bytea), 'email', 'ann@example.com', jsonb_build_object('order', g), 8, 1,
   'delivered', now() - interval '1 day', now() - interval '1 day', now() - interval '1 day'
from generate_series(1, 1000000) g;
insert into a_attempts select id, 1, finished_at, finished_at, 'delivered', 204 from a_intents;
vacuum analyze a_intents; vacuum analyze a_attempts; checkpoint;
create or replace procedure sweep_a() language plpgsql as $$
declare cur uuid := '00000000-0000-0000-0000-000000000000'; n int; last uuid;
begin loop
  with victims as (select id from a_intents where id < v7floor(now() - interval '1 hour') and id > cur
     and finished_at < now() - interval '1 hour' order by id limit 1000 for update skip locked),
  deleted as (delete from a_intents i using victims v where i.id = v.id returning i.id)
  select count(*), (select d2.id from deleted d2 order by d2.id desc limit 1) into n, last from deleted;
  commit;
  exit when n < 1000; cur := last;
end loop; end $$;

create or replace procedure sweep_ap() language plpgsql as $$
declare cur uuid := '00000000-0000-0000-0000-000000000000'; n int; last uuid;
begin loop
  with victims as (select id from a_intents where id < v7floor(now() - interval '1 hour') and id > cur
     and finished_at < now() - interval '1 hour' order by id limit 1000 for update skip locked),
  deleted as (delete from a_intents i using victims v where i.id = v.id returning i.id)
  select count(*), (select d2.id from deleted d2 order by d2.id desc limit 1) into n, last from deleted;
  commit;
  exit when n < 1000; cur := last; perform pg_sleep(0.05);
end loop; end $$;
