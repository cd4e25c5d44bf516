//! Applying herald's schema.
//!
//! herald keeps its migration bookkeeping in `herald._sqlx_migrations`, not in the
//! `public._sqlx_migrations` that a host application's own sqlx migrator uses in the same
//! database. Sharing that table would make each migrator see the other's versions as applied
//! migrations it does not know, which sqlx refuses. Both migrators take the same advisory lock,
//! so they serialise rather than interleave.

use std::sync::LazyLock;

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

/// Where herald records which of its migrations ran.
pub const MIGRATIONS_TABLE: &str = "herald._sqlx_migrations";

static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.create_schema("herald");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
});

/// Applies every migration not yet applied; idempotent and safe to run from several processes
/// at once.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    MIGRATOR.run(pool).await
}
