//! Applying herald's schema.
//!
//! herald keeps its migration bookkeeping in `herald._sqlx_migrations`, not in the
//! `public._sqlx_migrations` that a host application's own sqlx migrator uses in the same
//! database. Sharing that table would make each migrator see the other's versions as applied
//! migrations it does not know, which sqlx refuses. Both migrators take the same advisory lock,
//! so they serialise rather than interleave.

use std::sync::LazyLock;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{Connection, PgConnection, PgPool};

/// Where herald records which of its migrations ran.
pub const MIGRATIONS_TABLE: &str = "herald._sqlx_migrations";

static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.create_schema("herald");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
});

/// Applies every migration not yet applied, then grants herald's roles their rights (see
/// `herald roles`); idempotent and safe to run from several processes at once.
///
/// It reads the database's migration status first and changes nothing when the schema is
/// current, so an application or daemon whose role may not create objects can call it at every
/// start. Roles it may not create are logged as warnings; `herald migrate` reports them.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::PgPool::connect("postgres://app@127.0.0.1/app").await?;
/// herald::migrate(&pool).await?;
/// # Ok(()) }
/// ```
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    // The status is read in a transaction whose `search_path` is pinned for it alone: called at
    // every start on a pool that goes through a transaction-mode pooler, a current schema
    // leaves no session setting behind on a server connection that other clients then get.
    let mut conn = pool.acquire().await?.detach();
    let result = async {
        let mut tx = crate::pooling::begin_pinned(&mut conn).await?;
        let current = status(&mut tx).await?.is_current();
        tx.commit().await?;
        if current {
            return Ok(None);
        }
        crate::database::pin_search_path(&mut conn).await?;
        migrate_on(&mut conn).await.map(Some)
    }
    .await;
    conn.close().await.ok();
    if let Some(report) = result? {
        for role in report.missing {
            tracing::warn!(
                role,
                "herald role missing: nothing granted to it; a DBA can create every role with the SQL of `herald roles --sql`"
            );
        }
        if let Some(why) = report.owner_not_transferred {
            tracing::warn!("herald's objects stay owned by the migrating login: {why}");
        }
    }
    Ok(())
}

/// Applies pending migrations and then [`crate::roles::apply`], whatever the status.
pub async fn migrate_and_grant(pool: &PgPool) -> Result<crate::roles::Report, MigrateError> {
    let mut conn = own_connection(pool).await?;
    let result = migrate_on(&mut conn).await;
    conn.close().await.ok();
    result
}

/// A connection taken out of `pool` for good, its `search_path` pinned to `pg_catalog, pg_temp`:
/// migrations run with the rights of whoever migrates (often a superuser), so no object on the
/// caller's path may stand in for what they call. Detached, so the pool (an application's,
/// for `herald::migrate`) never gets back a connection with a changed path.
async fn own_connection(pool: &PgPool) -> Result<PgConnection, MigrateError> {
    let mut conn = pool.acquire().await?.detach();
    crate::database::pin_search_path(&mut conn).await?;
    Ok(conn)
}

async fn migrate_on(conn: &mut PgConnection) -> Result<crate::roles::Report, MigrateError> {
    if let Some(foreign) = crate::store::schema::foreign_object(conn).await? {
        return Err(MigrateError::Execute(sqlx::Error::Protocol(format!(
            "schema herald holds {foreign}, which is neither this login's nor herald_owner's: herald will not adopt objects it did not create (their code would run as herald's owner); drop them, or run herald migrate as the login that owns them"
        ))));
    }
    MIGRATOR.run_direct(None, &mut *conn, false).await?;
    Ok(crate::roles::apply(conn).await?)
}

/// How a database's applied migrations compare with the ones built into this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Migrations of this binary that the database has applied.
    pub applied: usize,
    /// Migrations of this binary not applied yet, as `version description`.
    pub pending: Vec<String>,
    /// Versions applied that this binary does not know: a newer herald migrated the database.
    pub unknown: Vec<i64>,
}

impl MigrationStatus {
    /// Every migration this binary needs is applied.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Compares the database's applied migrations with this binary's. A database without herald's
/// schema has every migration pending.
pub async fn status(conn: &mut sqlx::PgConnection) -> Result<MigrationStatus, sqlx::Error> {
    let applied = match crate::store::health::applied_migrations(conn).await {
        Ok(versions) => versions,
        // undefined_table / invalid_schema_name: never migrated.
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42P01" | "3F000")) =>
        {
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let ours: Vec<_> = MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .collect();
    Ok(MigrationStatus {
        applied: ours.iter().filter(|m| applied.contains(&m.version)).count(),
        pending: ours
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| format!("{} {}", m.version, m.description))
            .collect(),
        unknown: applied
            .iter()
            .copied()
            .filter(|v| !ours.iter().any(|m| m.version == *v))
            .collect(),
    })
}
