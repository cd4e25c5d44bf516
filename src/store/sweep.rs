//! SQL of the retention sweeper: delete finished notifications past their retention window, in
//! small batches, one sweeper at a time.
//!
//! Invariants: only rows with `finished_at` set are candidates (a CHECK makes that exactly the
//! delivered, dead and cancelled ones), so pending and running rows are never touched; attempts
//! go with their notification (`on delete cascade`); each batch is one short transaction.
//!
//! Expired rows are found by their id, not by an index on `finished_at` (which would make every
//! terminal update rewrite the table's indexes): an id is a UUIDv7 minted at enqueue on the
//! database clock, before the row finished, so every row that finished before the cutoff of
//! the shortest window has an id below that cutoff's smallest UUIDv7 (migration 0007). A sweep
//! walks that range once, in id order, carried from batch to batch by a [`SweepCursor`].

use std::time::Duration;

use sqlx::PgConnection;

use crate::pooling;

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
        // The shortest window bounds the id range; each row's own window filters it.
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

/// Finished rows past their window, matched by type (ASCII letters case-insensitively: the
/// sweeper lowercases the configuration's keys the same way), among the ids after `$5` (null: from the start) and below
/// the smallest UUIDv7 of the shortest window's cutoff. A literal, so that `concat!` can build
/// both queries with it.
macro_rules! expired_rows {
    () => {
        "
    from herald.intents n
    left join unnest($1::text[], $2::float8[]) as rule(type, secs) on rule.type = lower(n.type collate \"C\")
    where n.id < herald._uuid_v7_floor(now() - make_interval(secs => $4))
      and n.id > coalesce($5::uuid, '00000000-0000-0000-0000-000000000000')
      and n.finished_at is not null
      and n.finished_at < now() - make_interval(secs => $4)
      and n.finished_at < now() - make_interval(secs => coalesce(rule.secs, $3))"
    };
}

/// Where a sweep has got to in the id range: the batches of one sweep read it once, in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepCursor(Option<uuid::Uuid>);

/// Deletes one batch, after `cursor`, inside its own transaction, and moves the cursor past it.
/// `None` when another sweeper holds the lock.
pub async fn delete_batch(
    conn: &mut PgConnection,
    retention: &Retention,
    batch_size: u32,
    cursor: &mut SweepCursor,
) -> Result<Option<u64>, sqlx::Error> {
    const SQL: &str = concat!(
        "with victims as (select n.id",
        expired_rows!(),
        "
            order by n.id
            limit $6
            for update of n skip locked),
        deleted as (delete from herald.intents n using victims where n.id = victims.id
                    returning n.id)
        select (select count(*) from deleted), (select id from deleted order by id desc limit 1)"
    );
    let mut tx = pooling::begin(conn).await?;
    let locked: bool = pooling::query_scalar("select pg_try_advisory_xact_lock($1)")
        .bind(SWEEP_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        tx.rollback().await?;
        return Ok(None);
    }
    let (types, secs, default, shortest) = retention.binds();
    let (deleted, last): (i64, Option<uuid::Uuid>) = pooling::query_as(SQL)
        .bind(types)
        .bind(secs)
        .bind(default)
        .bind(shortest)
        .bind(cursor.0)
        .bind(batch_size as i64)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    if last.is_some() {
        cursor.0 = last;
    }
    Ok(Some(deleted as u64))
}

/// How many rows a sweep would delete now.
pub async fn count_expired(
    conn: &mut PgConnection,
    retention: &Retention,
) -> Result<i64, sqlx::Error> {
    const SQL: &str = concat!("select count(*)", expired_rows!());
    let (types, secs, default, shortest) = retention.binds();
    pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar(SQL)
            .bind(types)
            .bind(secs)
            .bind(default)
            .bind(shortest)
            .bind(None::<uuid::Uuid>)
            .fetch_one(conn)
            .await
    })
    .await
}
