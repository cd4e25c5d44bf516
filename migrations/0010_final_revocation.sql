-- A token's revocation is final: once `revoked_at` is set it never changes, so a role that may
-- revoke tokens (herald_admin, which `herald serve` runs as) cannot bring one back, nor rewrite
-- when it was revoked. Column grants cannot say "only from null"; this trigger does.

create function herald._revocation_is_final()
    returns trigger
    language plpgsql
    set search_path = pg_catalog, pg_temp
    as $$
    begin
        if old.revoked_at is not null and new.revoked_at is distinct from old.revoked_at then
            raise exception 'API token % was revoked at %: a revocation is final', old.id, old.revoked_at
                using errcode = 'integrity_constraint_violation';
        end if;
        return new;
    end
    $$;

create trigger api_tokens_revocation_is_final
    before update of revoked_at on herald.api_tokens
    for each row execute function herald._revocation_is_final();
