-- herald's schema: notifications (intent + delivery job in one row), their attempts, and the
-- webhook endpoints they may target. Forward-only: never edit this file once released; add a
-- new migration instead. Bookkeeping lives in herald._sqlx_migrations, not the host's table.

create schema if not exists herald;

create table herald.webhook_endpoints (
    id                          uuid primary key,
    tenant                      text not null check (char_length(tenant) between 1 and 255),
    url                         text not null check (char_length(url) between 1 and 2048),
    secret                      text not null,
    -- During a rotation the old secret keeps signing until it expires.
    previous_secret             text,
    previous_secret_expires_at  timestamptz,
    enabled                     boolean not null default true,
    disabled_reason             text,
    created_at                  timestamptz not null default now(),
    constraint webhook_endpoints_reason_iff_disabled check (enabled = (disabled_reason is null)),
    constraint webhook_endpoints_previous_secret_pair
        check ((previous_secret is null) = (previous_secret_expires_at is null))
);

create table herald.notifications (
    id                uuid primary key,           -- UUIDv7, fixed at enqueue: the delivery ID
    tenant            text not null,
    user_id           text not null,
    type              text not null,
    business_id       text not null,
    fingerprint       bytea not null check (octet_length(fingerprint) = 32),
    channel           text not null check (channel in ('email', 'webhook')),
    destination       text not null,              -- email address, or webhook endpoint id
    payload           jsonb not null,
    state             text not null default 'pending'
                      check (state in ('pending', 'running', 'delivered', 'dead', 'cancelled')),
    attempts          integer not null default 0 check (attempts >= 0),
    max_attempts      integer not null check (max_attempts between 1 and 100),
    run_at            timestamptz not null default now(),
    lease_token       uuid,
    lease_owner       text,
    lease_expires_at  timestamptz,
    attempted_at      timestamptz,                -- start of the latest attempt (its claim)
    created_at        timestamptz not null default now(),
    finished_at       timestamptz,
    last_error        text,
    -- The intent's identity. Never check-then-insert: this constraint is the dedup.
    constraint notifications_key unique (tenant, user_id, type, business_id),
    -- Each key part: non-empty, at most 255 characters, no control characters. The library
    -- checks this first with a clear error; these guard writers that use plain SQL.
    constraint notifications_tenant_valid check (char_length(tenant) between 1 and 255 and tenant !~ '[[:cntrl:]]'),
    constraint notifications_user_id_valid check (char_length(user_id) between 1 and 255 and user_id !~ '[[:cntrl:]]'),
    constraint notifications_type_valid check (char_length(type) between 1 and 255 and type !~ '[[:cntrl:]]'),
    constraint notifications_business_id_valid check (char_length(business_id) between 1 and 255 and business_id !~ '[[:cntrl:]]'),
    -- A webhook's destination is the id of an endpoint (writers using plain SQL included).
    constraint notifications_webhook_destination_is_an_endpoint_id
        check (channel <> 'webhook'
               or destination ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'),
    constraint notifications_finished_at_iff_finished
        check ((state in ('delivered', 'dead', 'cancelled')) = (finished_at is not null)),
    -- A running notification always carries a complete lease; nothing else carries one.
    constraint notifications_lease_iff_running
        check ((state = 'running') = (lease_token is not null)
           and (lease_token is null) = (lease_owner is null)
           and (lease_token is null) = (lease_expires_at is null))
);

-- The claim of due work: pending rows in run_at order.
create index notifications_due on herald.notifications (run_at) where state = 'pending';
-- The claim's second half: running rows whose lease expired (a crashed daemon).
create index notifications_lease_expiry on herald.notifications (lease_expires_at) where state = 'running';
-- The sweep of finished rows past their retention window.
create index notifications_finished on herald.notifications (finished_at) where finished_at is not null;

-- One row per delivery attempt. `attempt` numbers a notification's attempts 1, 2, 3, … over its
-- whole life: a manual retry gives a fresh budget (notifications.attempts restarts at 0) but the
-- log keeps counting.
create table herald.attempts (
    notification_id  uuid not null references herald.notifications (id) on delete cascade,
    attempt          integer not null check (attempt >= 1),
    started_at       timestamptz not null,
    finished_at      timestamptz not null,
    outcome          text not null check (outcome in ('delivered', 'failed', 'unknown')),
    status           integer,                    -- HTTP or SMTP status code, when there was one
    error            text,                       -- truncated error or response snippet
    lease_token      uuid,                       -- the claim the attempt was made under
    primary key (notification_id, attempt)
);

-- The number of a notification's next attempt row. Only the holder of the notification's lease
-- (or the rescue of an expired one, which holds its row lock) writes attempts, so there is no race.
create function herald.next_attempt_number(notification uuid) returns integer
    language sql stable
    as $$ select coalesce(max(attempt), 0) + 1 from herald.attempts where notification_id = notification $$;

-- Wakes listening dispatchers when the enqueueing transaction commits. Callers send it at most
-- once per short window per process: every NOTIFY serialises commits on a global lock.
create function herald.wake() returns boolean
    language sql volatile
    as $$ select pg_notify('herald_wake', ''); select true $$;
