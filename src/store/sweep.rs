//! SQL of the retention sweeper: delete finished notifications past their retention window, in
//! small batches, one sweeper at a time.
//!
//! Invariants: only rows with `finished_at` set are candidates (a CHECK makes that exactly the
//! delivered, dead and cancelled ones), so pending and running rows are never touched; attempts
//! go with their notification (`on delete cascade`); each batch is one short transaction.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

/// Retention windows: a default, and overrides per notification type.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    pub default: Duration,
    pub by_type: Vec<(String, Duration)>,
}

impl Retention {
    fn binds(&self) -> (Vec<String>, Vec<f64>, f64, f64) {
        let types = self.by_type.iter().map(|(t, _)| t.clone()).collect();
        let secs = self.by_type.iter().map(|(_, d)| d.as_secs_f64()).collect();
        let default = self.default.as_secs_f64();
        // The shortest window bounds the index range scan; each row's own window filters it.
        let shortest = self
            .by_type
            .iter()
            .map(|(_, d)| d.as_secs_f64())
            .fold(default, f64::min);
        (types, secs, default, shortest)
    }
}

/// The advisory lock that makes one sweeper run at a time. Transaction-scoped
/// (`pg_try_advisory_xact_lock`), so it works behind a transaction-mode connection pooler, where
/// a session lock could be left on a server connection that another client then uses.
const SWEEP_LOCK: i64 = 0x6865_7261_6c64_5357; // "heraldSW"

/// Finished rows past their window, matched by type (case-insensitively: the configuration
/// loader lowercases table keys). A literal, so that `concat!` can build both queries with it.
macro_rules! expired_rows {
    () => {
        "
    from herald.intents n
    left join unnest($1::text[], $2::float8[]) as rule(type, secs) on rule.type = lower(n.type)
    where n.finished_at is not null
      and n.finished_at < now() - make_interval(secs => $4)
      and n.finished_at < now() - make_interval(secs => coalesce(rule.secs, $3))"
    };
}

/// Deletes one batch inside its own transaction. `None` when another sweeper holds the lock.
pub async fn delete_batch(
    conn: &mut PgConnection,
    retention: &Retention,
    batch_size: u32,
) -> Result<Option<u64>, sqlx::Error> {
    const SQL: &str = concat!(
        "with victims as (select n.id",
        expired_rows!(),
        "
            order by n.finished_at
            limit $5
            for update of n skip locked)
        delete from herald.intents n using victims where n.id = victims.id"
    );
    let mut tx = conn.begin().await?;
    let locked: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
        .bind(SWEEP_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        tx.rollback().await?;
        return Ok(None);
    }
    let (types, secs, default, shortest) = retention.binds();
    let deleted = sqlx::query(SQL)
        .bind(types)
        .bind(secs)
        .bind(default)
        .bind(shortest)
        .bind(batch_size as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(Some(deleted))
}

/// How many rows a sweep would delete now.
pub async fn count_expired(
    conn: &mut PgConnection,
    retention: &Retention,
) -> Result<i64, sqlx::Error> {
    const SQL: &str = concat!("select count(*)", expired_rows!());
    let (types, secs, default, shortest) = retention.binds();
    sqlx::query_scalar(SQL)
        .bind(types)
        .bind(secs)
        .bind(default)
        .bind(shortest)
        .fetch_one(conn)
        .await
}
