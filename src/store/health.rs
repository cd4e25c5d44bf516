//! SQL behind the operator's view of a running herald: the numbers the metrics gauges show,
//! and which migrations a database has applied (for `/readyz` and `herald doctor`).

use sqlx::PgConnection;

use super::admin::StateCount;
use crate::pooling;

/// What the state gauges show.
#[derive(Debug, Clone, Default)]
pub struct StateGauges {
    pub counts: Vec<StateCount>,
    /// Seconds since the oldest due pending notification became due; `None` when none is.
    pub oldest_due_age: Option<f64>,
    /// Destinations whose breaker is open or half-open.
    pub open_breakers: i64,
    /// Due notifications held back: by an open breaker, by a 429's throttle, by a limit
    /// (`max_in_flight` reached or no token in the rate's bucket).
    pub held_by_breaker: i64,
    pub held_by_throttle: i64,
    pub held_by_limit: i64,
}

/// Counts by state and channel, the age in seconds of the oldest due pending notification, and
/// what isolation holds back. The count is one GROUP BY over the notifications; the rest are
/// passes over the narrow queue and the destinations. An infinite `run_at` (stored before
/// migration 0004) counts as due since 0001-01-01, as in `herald stats`.
pub async fn state_counts(conn: &mut PgConnection) -> Result<StateGauges, sqlx::Error> {
    pooling::in_transaction(conn, read_state_counts).await
}

async fn read_state_counts(conn: &mut PgConnection) -> Result<StateGauges, sqlx::Error> {
    let counts = super::admin::counts(conn).await?;
    const OLDEST: &str = "
        select extract(epoch from now() - case when min(run_at) < timestamptz '0001-01-01 00:00:00+00'
                 then timestamptz '0001-01-01 00:00:00+00' else min(run_at) end)::float8
        from herald.queue where lease_token is null and run_at <= now()";
    let oldest_due_age: Option<f64> = pooling::query_scalar(OLDEST).fetch_one(&mut *conn).await?;
    const HELD: &str = "
        select (select count(*) from herald.destinations where breaker <> 'closed'),
               count(*) filter (where d.breaker <> 'closed'),
               count(*) filter (where d.breaker = 'closed' and d.throttled_until > now()),
               count(*) filter (
                   where d.breaker = 'closed' and not coalesce(d.throttled_until > now(), false)
                     and (d.max_in_flight <= (select count(*) from herald.queue x
                                              where x.destination = d.key
                                                and x.lease_token is not null)
                          or d.tokens + extract(epoch from now() - d.tokens_at)::float8
                             * d.rate_count / (case d.rate_unit when 'm' then 60.0 else 1.0 end) < 1))
        from herald.queue q join herald.destinations d on d.key = q.destination
        where q.lease_token is null and q.run_at <= now()";
    let (open_breakers, held_by_breaker, held_by_throttle, held_by_limit): (i64, i64, i64, i64) =
        pooling::query_as(HELD).fetch_one(conn).await?;
    Ok(StateGauges {
        counts,
        oldest_due_age,
        open_breakers,
        held_by_breaker,
        held_by_throttle,
        held_by_limit,
    })
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
    pooling::in_transaction(conn, async |conn| {
        let has_function: bool = pooling::query_scalar(HAS_FUNCTION)
            .fetch_one(&mut *conn)
            .await?;
        let sql = if has_function { BY_FUNCTION } else { BY_TABLE };
        pooling::query_scalar(sql).fetch_all(conn).await
    })
    .await
}

/// The server's version, e.g. `15.18 (Debian 15.18-0+deb12u1)`.
pub async fn server_version(conn: &mut PgConnection) -> Result<String, sqlx::Error> {
    pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar("select current_setting('server_version')")
            .fetch_one(conn)
            .await
    })
    .await
}

/// Which database a connection reached: the server's name for it (through a pooler, not the
/// alias the URL names) and when that server started, which tells two clusters apart.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DatabaseIdentity {
    pub name: String,
    pub server_started: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Display for DatabaseIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "database {:?} (server started {})",
            self.name,
            self.server_started
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        )
    }
}

pub async fn database_identity(conn: &mut PgConnection) -> Result<DatabaseIdentity, sqlx::Error> {
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(
            "select pg_catalog.current_database()::pg_catalog.text as name,
                    pg_catalog.pg_postmaster_start_time() as server_started",
        )
        .fetch_one(conn)
        .await
    })
    .await
}
