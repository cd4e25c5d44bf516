//! herald's database roles: least privilege for applications, the daemon and operators.
//!
//! Five NOLOGIN group roles, cluster-wide and shared by every database that runs herald;
//! operators grant them to login roles:
//! - `herald_owner` owns every herald object, and with them the SECURITY DEFINER entry points.
//!   Never a superuser.
//! - `herald_enqueue` may call the enqueue functions and nothing else: no table is readable or
//!   writable to it.
//! - `herald_reader` reads notifications, attempts and endpoints, without endpoint secrets.
//! - `herald_admin` is `herald_reader` and `herald_enqueue`, plus the admin CLI's writes.
//! - `herald_daemon` is `herald_enqueue` plus what `herald run` needs, endpoint secrets included.
//!
//! Invariants: [`apply`] is idempotent and describes the whole desired state, so running it
//! after every migration keeps grants complete as objects are added; it grants only to roles
//! that exist and says which are missing; a concurrent creator of a role is not an error.

use sqlx::PgConnection;

use crate::pooling;

/// Owns every herald object.
pub const OWNER: &str = "herald_owner";
/// May only call the enqueue functions.
pub const ENQUEUE: &str = "herald_enqueue";
/// Reads without secrets.
pub const READER: &str = "herald_reader";
/// The admin CLI.
pub const ADMIN: &str = "herald_admin";
/// `herald run`.
pub const DAEMON: &str = "herald_daemon";

/// A group role: how to create it, the roles it includes, and its rights in a database. Every
/// statement is a constant (herald never builds SQL at run time).
pub struct GroupRole {
    pub name: &'static str,
    create: &'static str,
    /// `(included role, the GRANT that includes it)`.
    includes: &'static [(&'static str, &'static str)],
    grants: &'static [&'static str],
}

/// Every group role, in creation order.
pub const ROLES: [GroupRole; 5] = [
    GroupRole {
        name: OWNER,
        create: "create role herald_owner nologin nosuperuser",
        includes: &[],
        grants: &[],
    },
    GroupRole {
        name: ENQUEUE,
        create: "create role herald_enqueue nologin nosuperuser",
        includes: &[],
        grants: &[
            "grant usage on schema herald to herald_enqueue",
            "grant execute on function \
             herald.enqueue(text, text, text, text, uuid, jsonb, text, timestamptz, integer, integer), \
             herald.enqueue_many(jsonb, integer), \
             herald._enqueue_group(jsonb, integer, boolean), \
             herald._enqueue_one_in_group(text, text, text, text, text, uuid, jsonb, timestamptz, \
             integer, integer, boolean), \
             herald._enqueue_or_refuse(text, text, text, text, text, uuid, jsonb, timestamptz, integer, integer, \
             boolean), \
             herald.applied_migrations() \
             to herald_enqueue",
        ],
    },
    GroupRole {
        name: READER,
        create: "create role herald_reader nologin nosuperuser",
        includes: &[],
        grants: &[
            "grant usage on schema herald to herald_reader",
            "grant select on herald.notifications, herald.intents, herald.queue, \
             herald.destinations, herald.attempts, herald.settings to herald_reader",
            // Every column but the secrets.
            "grant select (id, tenant, url, enabled, disabled_reason, created_at, \
             previous_secret_expires_at) on herald.webhook_endpoints to herald_reader",
            // Which API tokens exist, never their hashes.
            "grant select (id, name, role, tenant, created_at, revoked_at) on herald.api_tokens \
             to herald_reader",
            "grant execute on function herald.applied_migrations(), \
             herald.fingerprint(text, text, jsonb) to herald_reader",
        ],
    },
    GroupRole {
        name: ADMIN,
        create: "create role herald_admin nologin nosuperuser",
        includes: &[
            (READER, "grant herald_reader to herald_admin"),
            (ENQUEUE, "grant herald_enqueue to herald_admin"),
        ],
        grants: &[
            // retry, cancel, sweep
            "grant update, delete on herald.intents to herald_admin",
            // retry queues again, cancel dequeues; no admin command changes a queued row, but
            // cancel locks one first (FOR UPDATE needs UPDATE on some column: the least
            // consequential one)
            "grant insert, delete, update (last_error) on herald.queue to herald_admin",
            // endpoints set and reset: limits and the breaker, never the in-flight count that
            // the daemons keep
            "grant update (rate_count, rate_unit, tokens, tokens_at, max_in_flight, breaker, \
             consecutive_failures, breaker_opened_at, next_probe_at, probe_interval, probe_lease, \
             probes_failing_since, probe_failed_at) \
             on herald.destinations to herald_admin",
            // tokens add and revoke; `herald serve` checks a presented token against its hash.
            "grant select, insert, update (revoked_at) on herald.api_tokens to herald_admin",
            // endpoints add, enable, disable, a new URL (the API's PATCH); rotate-secret through
            // its function, which reads the old secret so that this role never does.
            "grant insert, update (enabled, disabled_reason, url) on herald.webhook_endpoints \
             to herald_admin",
            "grant execute on function herald.wake(), herald.destination_key(text, text), \
             herald.rotate_endpoint_secret(uuid, text, double precision), \
             herald._uuid_v7_floor(timestamptz) to herald_admin",
        ],
    },
    GroupRole {
        name: DAEMON,
        create: "create role herald_daemon nologin nosuperuser",
        includes: &[(ENQUEUE, "grant herald_enqueue to herald_daemon")],
        grants: &[
            "grant usage on schema herald to herald_daemon",
            "grant select on herald.notifications to herald_daemon",
            "grant select, update, delete on herald.intents, herald.queue to herald_daemon",
            "grant select, update on herald.destinations to herald_daemon",
            "grant select, insert on herald.attempts to herald_daemon",
            "grant select on herald.settings to herald_daemon",
            "grant select, update on herald.webhook_endpoints to herald_daemon",
            "grant execute on function herald.applied_migrations(), herald.wake(), \
             herald.next_attempt_number(uuid), herald.fingerprint(text, text, jsonb), \
             herald.destination_key(text, text), herald._uuid_v7_floor(timestamptz), \
             herald.claim(bigint, text, double precision, text, text, uuid[]) to herald_daemon",
        ],
    },
];

/// Takes back any right on schema `herald` held by a role other than its owner and herald's
/// group roles: only those may ever create or find anything there.
const REVOKE_FROM_OTHERS: &str = "
    do $$
    declare
        grantee text;
    begin
        for grantee in
            select distinct a.grantee::pg_catalog.regrole::pg_catalog.text
            from pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
            where n.nspname operator(pg_catalog.=) 'herald'
              and a.grantee operator(pg_catalog.<>) 0
              and a.grantee operator(pg_catalog.<>) n.nspowner
              and a.grantee::pg_catalog.regrole::pg_catalog.text operator(pg_catalog.<>) all
                  (array['herald_owner', 'herald_enqueue', 'herald_reader', 'herald_admin',
                         'herald_daemon'])
        loop
            execute pg_catalog.format('revoke all on schema herald from %s', grantee);
        end loop;
    end $$";

/// What PUBLIC gets by default, taken back before the roles' grants, so that only those open
/// anything.
const REVOKE_FROM_PUBLIC: [&str; 2] = [
    "revoke all on schema herald from public",
    "revoke execute on all functions in schema herald from public",
];

/// What [`apply`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Roles this run created.
    pub created: Vec<&'static str>,
    /// Roles that do not exist and that this login may not create: nothing was granted to them.
    pub missing: Vec<&'static str>,
    /// Set when the objects stay owned by the migrating login, and why.
    pub owner_not_transferred: Option<String>,
}

/// The SQL a DBA runs once per cluster to create the roles: idempotent, safe to run again.
pub fn roles_sql() -> String {
    let mut sql = String::from(
        "-- herald's group roles (cluster-wide). Idempotent. Then run `herald migrate` in each\n\
         -- database to make herald_owner own herald's objects and grant the others their rights;\n\
         -- the login that runs it must be a member of herald_owner, e.g.:\n\
         --   grant herald_owner to <migrating login>;\n",
    );
    for role in &ROLES {
        sql.push_str(&format!(
            "do $$ begin {}; exception when duplicate_object then null; end $$;\n",
            role.create
        ));
    }
    for role in &ROLES {
        for (_, grant) in role.includes {
            sql.push_str(&format!("{grant};\n"));
        }
    }
    sql
}

/// Creates the roles when this login may, makes `herald_owner` own every herald object when
/// this login may act as it, and grants each existing role its rights in this database.
pub async fn apply(conn: &mut PgConnection) -> Result<Report, sqlx::Error> {
    let mut report = Report::default();
    let may_create: bool = pooling::query_scalar(
        "select r.rolsuper or r.rolcreaterole from pg_catalog.pg_roles r \
         where r.rolname = pg_catalog.current_user()",
    )
    .fetch_one(&mut *conn)
    .await?;
    for role in &ROLES {
        if role_exists(conn, role.name).await? {
            continue;
        }
        if may_create && create_role(conn, role).await? {
            report.created.push(role.name);
        } else if !role_exists(conn, role.name).await? {
            report.missing.push(role.name);
        }
    }
    for role in &ROLES {
        for (included, grant) in role.includes {
            if report.missing.contains(&role.name) || report.missing.contains(included) {
                continue;
            }
            if !is_member(conn, role.name, included).await? {
                tolerate_concurrent_creator(pooling::query(*grant).execute(&mut *conn).await)?;
            }
        }
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    // Concurrent GRANTs on one object fail with "tuple concurrently updated".
    pooling::query("select pg_catalog.pg_advisory_xact_lock(7522544515348191052)")
        .execute(&mut *tx)
        .await?;
    if report.missing.contains(&OWNER) {
        report.owner_not_transferred = Some(format!("{OWNER} does not exist"));
    } else {
        report.owner_not_transferred = transfer_ownership(&mut tx).await?;
    }
    for statement in grants(&report.missing) {
        pooling::query(statement).execute(&mut *tx).await?;
    }
    pooling::query(REVOKE_FROM_OTHERS).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(report)
}

async fn role_exists(conn: &mut PgConnection, role: &str) -> Result<bool, sqlx::Error> {
    pooling::query_scalar("select exists (select 1 from pg_catalog.pg_roles where rolname = $1)")
        .bind(role)
        .fetch_one(conn)
        .await
}

async fn is_member(conn: &mut PgConnection, member: &str, of: &str) -> Result<bool, sqlx::Error> {
    pooling::query_scalar(
        "select exists (select 1 from pg_catalog.pg_auth_members m \
         where m.member = $1::pg_catalog.regrole and m.roleid = $2::pg_catalog.regrole)",
    )
    .bind(member)
    .bind(of)
    .fetch_one(conn)
    .await
}

/// Creates `role`; `false` when another session created it first.
async fn create_role(conn: &mut PgConnection, role: &GroupRole) -> Result<bool, sqlx::Error> {
    tolerate_concurrent_creator(pooling::query(role.create).execute(conn).await)
}

/// `Ok(true)` when the statement ran, `Ok(false)` when another session (migrating another
/// database of the cluster, say) made the same role or membership first: duplicate_object, or
/// unique_violation when the two race in the shared catalog.
fn tolerate_concurrent_creator<T>(result: Result<T, sqlx::Error>) -> Result<bool, sqlx::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42710" | "23505")) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Makes `herald_owner` own the schema and everything in it. A login that is neither a
/// superuser nor a member of `herald_owner` becomes one when it may grant that (it created the
/// role); otherwise the objects stay its own, and the reason is returned.
async fn transfer_ownership(conn: &mut PgConnection) -> Result<Option<String>, sqlx::Error> {
    let (is_super, is_member, may_grant): (bool, bool, bool) = pooling::query_as(
        "select r.rolsuper, pg_catalog.pg_has_role(r.oid, $1::pg_catalog.name, 'MEMBER'), \
                r.rolcreaterole \
         from pg_catalog.pg_roles r where r.rolname = pg_catalog.current_user()",
    )
    .bind(OWNER)
    .fetch_one(&mut *conn)
    .await?;
    if !is_super && !is_member {
        if !may_grant {
            return Ok(Some(format!(
                "this login is not a member of {OWNER} (grant {OWNER} to it, then run herald migrate again)"
            )));
        }
        pooling::query(
            "do $$ begin execute pg_catalog.format('grant herald_owner to %I', \
             pg_catalog.current_user()); end $$",
        )
        .execute(&mut *conn)
        .await?;
    }
    // The schema first: a new owner of a function must be able to create in its schema.
    pooling::query(
        "do $$
         declare
             statement text;
         begin
             for statement in
                 select pg_catalog.format('alter %s %s owner to herald_owner', o.kind, o.name)
                 from (
                     select 0 as rank, 'schema' as kind, n.nspname::pg_catalog.text as name,
                            n.nspowner as owner
                     from pg_catalog.pg_namespace n where n.nspname = 'herald'
                     union all
                     select 1, case c.relkind when 'S' then 'sequence' when 'v' then 'view'
                                              when 'm' then 'materialized view' else 'table' end,
                            c.oid::pg_catalog.regclass::pg_catalog.text, c.relowner
                     from pg_catalog.pg_class c
                     where c.relnamespace = 'herald'::pg_catalog.regnamespace
                       and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
                     union all
                     select 2, 'function', p.oid::pg_catalog.regprocedure::pg_catalog.text,
                            p.proowner
                     from pg_catalog.pg_proc p
                     where p.pronamespace = 'herald'::pg_catalog.regnamespace
                 ) o
                 where o.owner <> 'herald_owner'::pg_catalog.regrole
                 order by o.rank
             loop
                 execute statement;
             end loop;
         end $$",
    )
    .execute(&mut *conn)
    .await?;
    Ok(None)
}

/// The statements that give each role its rights in this database, skipping roles that are
/// `missing`.
fn grants(missing: &[&str]) -> Vec<&'static str> {
    let mut statements = REVOKE_FROM_PUBLIC.to_vec();
    for role in ROLES.iter().filter(|role| !missing.contains(&role.name)) {
        statements.extend(role.grants);
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_sql_creates_every_role_idempotently_and_nests_them() {
        let sql = roles_sql();
        for role in &ROLES {
            assert!(
                sql.contains(&format!("create role {} nologin nosuperuser;", role.name)),
                "{sql}"
            );
        }
        assert_eq!(sql.matches("exception when duplicate_object").count(), 5);
        assert!(sql.contains("grant herald_reader to herald_admin;"));
        assert!(sql.contains("grant herald_enqueue to herald_admin;"));
        assert!(sql.contains("grant herald_enqueue to herald_daemon;"));
    }

    #[test]
    fn a_missing_role_gets_no_grant() {
        let all = grants(&[]);
        let without_reader = grants(&[READER]);
        assert!(all.iter().any(|g| g.ends_with("to herald_reader")));
        assert!(!without_reader.iter().any(|g| g.contains("herald_reader")));
        assert!(
            without_reader
                .iter()
                .any(|g| g.ends_with("to herald_daemon"))
        );
    }
}
