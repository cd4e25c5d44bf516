//! What schema `herald` holds that herald did not create.

use sqlx::PgConnection;

use crate::pooling;

/// The first object in schema `herald` (the schema itself included) owned by neither this
/// login nor `herald_owner`, as `function herald._invalid(text,text,text) (owned by mallory)`.
///
/// Migrations run `create schema if not exists herald` and replace functions by name, so a
/// schema someone prepared before the first `herald migrate`, with an overload that wins a
/// loosely typed call or a grant of CREATE to a role of theirs, would be adopted, handed to
/// `herald_owner`, and run by herald's SECURITY DEFINER functions as herald's owner.
pub async fn foreign_object(conn: &mut PgConnection) -> Result<Option<String>, sqlx::Error> {
    const SQL: &str = "
        with herald as (select pg_catalog.to_regnamespace('herald') as oid),
        trusted as (
            select r.oid from pg_catalog.pg_roles r
            where r.rolname operator(pg_catalog.=) pg_catalog.current_user()
               or r.rolname operator(pg_catalog.=) 'herald_owner'
        ),
        objects as (
            select 0 as rank, 'schema' as kind, n.nspname::pg_catalog.text as name, n.nspowner as owner
            from pg_catalog.pg_namespace n, herald h where n.oid operator(pg_catalog.=) h.oid
            union all
            select 1, 'relation', c.oid::pg_catalog.regclass::pg_catalog.text, c.relowner
            from pg_catalog.pg_class c, herald h where c.relnamespace operator(pg_catalog.=) h.oid
            union all
            select 2, 'function', p.oid::pg_catalog.regprocedure::pg_catalog.text, p.proowner
            from pg_catalog.pg_proc p, herald h where p.pronamespace operator(pg_catalog.=) h.oid
            union all
            select 3, 'operator', o.oid::pg_catalog.regoperator::pg_catalog.text, o.oprowner
            from pg_catalog.pg_operator o, herald h where o.oprnamespace operator(pg_catalog.=) h.oid
            union all
            select 4, 'type', t.oid::pg_catalog.regtype::pg_catalog.text, t.typowner
            from pg_catalog.pg_type t, herald h
            where t.typnamespace operator(pg_catalog.=) h.oid
              and t.typrelid operator(pg_catalog.=) 0 and t.typelem operator(pg_catalog.=) 0
        )
        select pg_catalog.format('%s %s (owned by %s)', o.kind, o.name, o.owner::pg_catalog.regrole)
        from objects o
        where o.owner operator(pg_catalog.<>) all (select t.oid from trusted t)
        order by o.rank, o.name
        limit 1";
    pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar(SQL).fetch_optional(conn).await
    })
    .await
}
