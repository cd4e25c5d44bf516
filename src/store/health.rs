//! SQL behind the operator's view of a running herald: the numbers the metrics gauges show,
//! and which migrations a database has applied (for `/readyz` and `herald doctor`).

use sqlx::PgConnection;

use super::admin::StateCount;

/// Counts by state and channel, and the age in seconds of the oldest due pending notification
/// (`None` when nothing is due). The count is one GROUP BY over the table; the age is read
/// from the due index (`notifications_due`). An infinite `run_at` (stored before migration
/// 0004) counts as due since 0001-01-01, as in `herald stats`.
pub async fn state_counts(
    conn: &mut PgConnection,
) -> Result<(Vec<StateCount>, Option<f64>), sqlx::Error> {
    let counts = super::admin::counts(conn).await?;
    const OLDEST: &str = "
        select extract(epoch from now() - case when min(run_at) < timestamptz '0001-01-01 00:00:00+00'
                 then timestamptz '0001-01-01 00:00:00+00' else min(run_at) end)::float8
        from herald.notifications where state = 'pending' and run_at <= now()";
    let oldest: Option<f64> = sqlx::query_scalar(OLDEST).fetch_one(conn).await?;
    Ok((counts, oldest))
}

/// The migration versions applied successfully, in order; an error with SQLSTATE 42P01 or
/// 3F000 when herald's schema or its bookkeeping table is missing.
///
/// Read through `herald.applied_migrations()`, which every herald role may call, or from the
/// table itself in a database migrated before that function existed.
pub async fn applied_migrations(conn: &mut PgConnection) -> Result<Vec<i64>, sqlx::Error> {
    const HAS_FUNCTION: &str =
        "select pg_catalog.to_regprocedure('herald.applied_migrations()') is not null";
    const BY_FUNCTION: &str = "select v from herald.applied_migrations() as v";
    const BY_TABLE: &str =
        "select version from herald._sqlx_migrations where success order by version";
    let has_function: bool = sqlx::query_scalar(HAS_FUNCTION)
        .fetch_one(&mut *conn)
        .await?;
    let sql = if has_function { BY_FUNCTION } else { BY_TABLE };
    sqlx::query_scalar(sql).fetch_all(conn).await
}

/// The server's version, e.g. `15.18 (Debian 15.18-0+deb12u1)`.
pub async fn server_version(conn: &mut PgConnection) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("select current_setting('server_version')")
        .fetch_one(conn)
        .await
}
