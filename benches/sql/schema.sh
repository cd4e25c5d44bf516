#!/usr/bin/env bash
# schema.sh VARIANT -> prints DDL on stdout.
# VARIANT: cur | cur_c | a | b | b_fin | b_log | b_nofk | b2 | b_c | b_hash | b_best
# cur     : the 0001 migration verbatim (minus functions we re-create identically)
# a       : wide table ff75, only PK + UNIQUE key; narrow herald.queue(id, run_at, lease_token,
#           lease_expires_at) with partial due index + partial lease-expiry index
# b       : wide table ff75, only PK + UNIQUE key; narrow herald.queue(id, run_at, lease_token)
#           with ONE index on run_at (a leased row's run_at = its lease expiry)
# b_fin   : b + the partial finished_at index kept on the wide row (completion non-HOT)
# b_log   : b + herald.finished(finished_at, id) append-only log indexed on finished_at (sweep order)
# b_nofk  : b_log without the attempts FK
# b2      : b_log, but the claim touches only herald.queue (lease + attempt counter live there)
# b_c     : b_log with key columns COLLATE "C"
# b_hash  : b_log with UNIQUE on a 16-byte sha256 of the key instead of the 4 text columns
# b_best  : b_log + COLLATE "C" + no attempts FK
V="$1"
FF=""; COLL=""; KEY="constraint notifications_key unique (tenant, user_id, type, business_id),"
FK="references herald.notifications (id) on delete cascade"
case "$V" in cur|cur_c) ;; *) FF="with (fillfactor = ${FF_WIDE:-75})";; esac
case "$V" in cur_c|b_c|b_best) COLL='collate "C"';; esac
[ -n "${COLLC:-}" ] && COLL='collate "C"'
case "$V" in b_hash) KEY="";; esac
[ -n "${KEYHASH:-}" ] && KEY=""
case "$V" in b_nofk|b_best) FK="";; esac
[ -n "${NOFK:-}" ] && FK=""
cat <<SQL
create extension if not exists pgcrypto;
create schema if not exists herald;
create table herald.webhook_endpoints (
    id uuid primary key,
    tenant text not null check (char_length(tenant) between 1 and 255),
    url text not null check (char_length(url) between 1 and 2048),
    secret text not null, previous_secret text, previous_secret_expires_at timestamptz,
    enabled boolean not null default true, disabled_reason text,
    created_at timestamptz not null default now(),
    constraint webhook_endpoints_reason_iff_disabled check (enabled = (disabled_reason is null)),
    constraint webhook_endpoints_previous_secret_pair
        check ((previous_secret is null) = (previous_secret_expires_at is null))
);
create table herald.notifications (
    id                uuid primary key,
    tenant            text $COLL not null,
    user_id           text $COLL not null,
    type              text $COLL not null,
    business_id       text $COLL not null,
    fingerprint       bytea not null check (octet_length(fingerprint) = 32),
    channel           text not null check (channel in ('email', 'webhook')),
    destination       text not null,
    payload           jsonb not null,
    state             text not null default 'pending'
                      check (state in ('pending', 'running', 'delivered', 'dead', 'cancelled')),
    attempts          integer not null default 0 check (attempts >= 0),
    max_attempts      integer not null check (max_attempts between 1 and 100),
    run_at            timestamptz not null default now(),
    lease_token       uuid,
    lease_owner       text,
    lease_expires_at  timestamptz,
    attempted_at      timestamptz,
    created_at        timestamptz not null default now(),
    finished_at       timestamptz,
    last_error        text,
    $KEY
    constraint notifications_tenant_valid check (char_length(tenant) between 1 and 255 and tenant !~ '[[:cntrl:]]'),
    constraint notifications_user_id_valid check (char_length(user_id) between 1 and 255 and user_id !~ '[[:cntrl:]]'),
    constraint notifications_type_valid check (char_length(type) between 1 and 255 and type !~ '[[:cntrl:]]'),
    constraint notifications_business_id_valid check (char_length(business_id) between 1 and 255 and business_id !~ '[[:cntrl:]]'),
    constraint notifications_webhook_destination_is_an_endpoint_id
        check (channel <> 'webhook'
               or destination ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\$'),
    constraint notifications_finished_at_iff_finished
        check ((state in ('delivered', 'dead', 'cancelled')) = (finished_at is not null)),
    constraint notifications_lease_iff_running
        check ((state = 'running') = (lease_token is not null)
           and (lease_token is null) = (lease_owner is null)
           and (lease_token is null) = (lease_expires_at is null))
) $FF;
create table herald.attempts (
    notification_id  uuid not null $FK,
    attempt          integer not null check (attempt >= 1),
    started_at       timestamptz not null,
    finished_at      timestamptz not null,
    outcome          text not null check (outcome in ('delivered', 'failed', 'unknown')),
    status           integer,
    error            text,
    lease_token      uuid,
    primary key (notification_id, attempt)
);
create function herald.next_attempt_number(notification uuid) returns integer
    language sql stable
    as \$\$ select coalesce(max(attempt), 0) + 1 from herald.attempts where notification_id = notification \$\$;
create function herald.wake() returns boolean language sql volatile
    as \$\$ select pg_notify('herald_wake', ''); select true \$\$;
-- bench helper: UUIDv7-like id (48-bit ms timestamp + random), as the library generates client-side
create function herald.bench_uuid7() returns uuid language sql volatile as \$\$
  select encode(overlay(uuid_send(gen_random_uuid())
         placing substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::int8) from 3)
         from 1 for 6), 'hex')::uuid \$\$;
SQL
case "$V" in
cur|cur_c) cat <<'SQL'
create index notifications_due on herald.notifications (run_at) where state = 'pending';
create index notifications_lease_expiry on herald.notifications (lease_expires_at) where state = 'running';
create index notifications_finished on herald.notifications (finished_at) where finished_at is not null;
SQL
;;
a) cat <<'SQL'
create table herald.queue (
    id uuid primary key, run_at timestamptz not null, lease_token uuid, lease_expires_at timestamptz);
create index queue_due on herald.queue (run_at) where lease_token is null;
create index queue_lease_expiry on herald.queue (lease_expires_at) where lease_token is not null;
SQL
;;
b2) cat <<'SQL'
create table herald.queue (
    id uuid primary key, run_at timestamptz not null, lease_token uuid, attempts int not null default 0,
    lease_owner text, attempted_at timestamptz);
create index queue_run_at on herald.queue (run_at);
create table herald.finished (finished_at timestamptz not null, id uuid not null);
create index finished_at on herald.finished (finished_at);
SQL
;;
*) cat <<'SQL'
create table herald.queue (id uuid primary key, run_at timestamptz not null, lease_token uuid);
create index queue_run_at on herald.queue (run_at);
SQL
;;
esac
[ -n "${FINIDX:-}" ] && V=b_fin
case "$V" in b_fin) echo "create index notifications_finished on herald.notifications (finished_at) where finished_at is not null;";; esac
[ -n "${FINLOG:-}" ] && V=b_log
case "$V" in b_log|b_nofk|b_c|b_hash|b_best) cat <<'SQL'
create table herald.finished (finished_at timestamptz not null, id uuid not null);
create index finished_at on herald.finished (finished_at);
SQL
;; esac
[ -n "${KEYHASH:-}" ] && V=b_hash
case "$V" in b_hash) cat <<'SQL'
create function herald.key_hash(t text, u text, ty text, b text) returns bytea language sql immutable strict parallel safe
  as $$ select substring(sha256(convert_to(t || E'\x1f' || u || E'\x1f' || ty || E'\x1f' || b, 'UTF8')) from 1 for 16) $$;
create unique index notifications_key_hash on herald.notifications (herald.key_hash(tenant, user_id, type, business_id));
SQL
;; esac
