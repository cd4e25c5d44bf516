-- Layout b (see run.sh): the UNIQUE key in a narrow table; intents and attempts partitioned by
-- id range, the 1,000,000 expired rows in the old partitions; sweep_b deletes their keys in
-- batches of 1,000, then detaches and drops the old partitions.
drop table if exists b_attempts_old, b_intents_old cascade;
drop table if exists b_attempts, b_intents, b_keys cascade;
create table b_keys (tenant text not null, user_id text not null, type text not null, business_id text not null,
  id uuid not null, primary key (tenant, user_id, type, business_id));
create table b_intents (
  id uuid primary key, tenant text not null, user_id text not null, type text not null,
  business_id text not null, fingerprint bytea not null, channel text not null, destination text not null,
  payload jsonb not null, max_attempts int not null, attempts int not null default 0, state text not null,
  run_at timestamptz not null, created_at timestamptz not null default now(), finished_at timestamptz,
  last_error text, attempted_at timestamptz) partition by range (id);
create table b_attempts (notification_id uuid not null references b_intents(id) on delete cascade,
  attempt int not null, started_at timestamptz not null, finished_at timestamptz not null,
  outcome text not null, status int, error text, lease_token uuid, primary key (notification_id, attempt))
  partition by range (notification_id);
create table b_intents_old partition of b_intents for values from (v7floor(now() - interval '3 days')) to (v7floor(now() - interval '2 hours')) with (fillfactor = 80);
create table b_intents_new partition of b_intents for values from (v7floor(now() - interval '2 hours')) to (v7floor(now() + interval '1 day')) with (fillfactor = 80);
create table b_attempts_old partition of b_attempts for values from (v7floor(now() - interval '3 days')) to (v7floor(now() - interval '2 hours'));
create table b_attempts_new partition of b_attempts for values from (v7floor(now() - interval '2 hours')) to (v7floor(now() + interval '1 day'));
insert into b_intents (id, tenant, user_id, type, business_id, fingerprint, channel, destination, payload,
   max_attempts, attempts, state, run_at, created_at, finished_at)
select v7(now() - interval '1 day'), 'default', 'user-' || (g % 100000), 'order_shipped', 'history-' || g,
   sha256(('history-' || g)::bytea), 'email', 'ann@example.com', jsonb_build_object('order', g), 8, 1,
   'delivered', now() - interval '1 day', now() - interval '1 day', now() - interval '1 day'
from generate_series(1, 1000000) g;
insert into b_keys select tenant, user_id, type, business_id, id from b_intents;
insert into b_attempts select id, 1, finished_at, finished_at, 'delivered', 204 from b_intents;
vacuum analyze b_keys; vacuum analyze b_intents; vacuum analyze b_attempts; checkpoint;
-- The key sweep walks the old partition by id, deletes the keys of its expired rows, then the
-- partition goes whole.
create or replace procedure sweep_b() language plpgsql as $$
declare cur uuid := '00000000-0000-0000-0000-000000000000'; n int; last uuid;
begin loop
  with victims as (select id, tenant, user_id, type, business_id from b_intents_old where id > cur
     and finished_at < now() - interval '1 hour' order by id limit 1000),
  deleted as (delete from b_keys k using victims v where (k.tenant, k.user_id, k.type, k.business_id)
     = (v.tenant, v.user_id, v.type, v.business_id) and k.id = v.id returning v.id)
  select count(*), (select d2.id from deleted d2 order by d2.id desc limit 1) into n, last from deleted;
  commit;
  exit when n < 1000; cur := last;
end loop;
alter table b_attempts detach partition b_attempts_old; commit;
drop table b_attempts_old; commit;
alter table b_intents detach partition b_intents_old; commit;
drop table b_intents_old; commit;
end $$;
