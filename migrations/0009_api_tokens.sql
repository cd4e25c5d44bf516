-- API tokens for `herald serve`: who may call the HTTP API and the console, in which role, and
-- for which tenant.
--
-- Invariants:
-- - A token's secret is never stored: only its SHA-256. The token a client presents carries
--   the row's id (found by primary key) and the secret (its hash compared in constant time by
--   the server), so no lookup is keyed by anything secret.
-- - A revoked token stays, for the record, and is refused from the moment `revoked_at` is set:
--   the server reads the row on every request.
-- - `tenant` null: every tenant; set: that tenant only.

create table herald.api_tokens (
    id           uuid primary key,
    name         text not null check (length(name) between 1 and 255 and name !~ '[[:cntrl:]]'),
    role         text not null check (role in ('enqueue', 'read', 'admin')),
    tenant       text check (tenant is null
                             or (length(tenant) between 1 and 255 and tenant !~ '[[:cntrl:]]')),
    secret_hash  bytea not null check (length(secret_hash) = 32),
    created_at   timestamptz not null default now(),
    revoked_at   timestamptz
);
