//! Enqueue throughput: `single` (`herald::enqueue(&pool, …)` of one notification per call,
//! `clients` callers at once, which the library groups into shared commits as any application's
//! concurrent calls are) and `batch` (`enqueue_many` of 1,000 per call).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::json;
use sqlx::PgPool;
use tokio_util::task::AbortOnDropHandle;

use super::BenchError;
use crate::Notification;
use crate::pooling;

/// Notifications per `enqueue_many` call.
pub const BATCH: u64 = 1000;

/// A typical notification: an email with a small payload; `phase` keeps keys apart.
pub fn email(phase: &str, i: u64) -> Notification {
    Notification::email(
        format!("user-{}", i % 100_000),
        "order_shipped",
        format!("{phase}-{i}"),
        "ann@example.com",
    )
    .payload(json!({"order": i, "items": [{"sku": "A-1", "qty": 2}]}))
}

/// `total` single enqueues from `clients` concurrent tasks; notifications per second.
pub async fn single(
    pool: &PgPool,
    phase: &str,
    clients: u32,
    total: u64,
) -> Result<f64, BenchError> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (pool, next, phase) = (pool.clone(), next.clone(), phase.to_owned());
            // Aborted if the run is interrupted: none may outlive it and reconnect to the
            // scratch database while it is dropped.
            AbortOnDropHandle::new(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<(), BenchError>(());
                    }
                    crate::enqueue(&pool, &email(&phase, i)).await?;
                }
            }))
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| BenchError::Setup(format!("an enqueue client failed: {e}")))??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// `total` notifications in `enqueue_many` calls of [`BATCH`], one after another.
pub async fn batch(pool: &PgPool, phase: &str, total: u64) -> Result<f64, BenchError> {
    let start = Instant::now();
    let mut done = 0;
    while done < total {
        let size = BATCH.min(total - done);
        let items: Vec<Notification> = (done..done + size).map(|i| email(phase, i)).collect();
        crate::enqueue_many(pool, &items).await?;
        done += size;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Removes the enqueue phases' rows (never delivered) so that the dispatch phases drain only
/// their own, and vacuums so that the claim does not walk their dead index entries.
pub async fn clear_pending(pool: &PgPool) -> Result<(), BenchError> {
    // Deleting the intents takes their queue rows with them (the foreign key cascades).
    // Statements without parameters, each one simple-protocol message (VACUUM cannot run in a
    // transaction): fine through a transaction-mode pooler too.
    sqlx::raw_sql("delete from herald.intents where state = 'pending'")
        .execute(pool)
        .await?;
    for table in [
        "vacuum analyze herald.intents",
        "vacuum analyze herald.queue",
    ] {
        sqlx::raw_sql(table).execute(pool).await?;
    }
    Ok(())
}

/// `total` notifications through the SQL entry point `herald.enqueue_many(jsonb)` in calls of
/// [`BATCH`], as an application in another language sends them: one JSON array per call.
pub async fn sql_batch(pool: &PgPool, phase: &str, total: u64) -> Result<f64, BenchError> {
    const SQL: &str = "select count(*) from herald.enqueue_many($1::jsonb)";
    let mut conn = pool.acquire().await?;
    let start = Instant::now();
    let mut done = 0;
    while done < total {
        let size = BATCH.min(total - done);
        let items: Vec<serde_json::Value> = (done..done + size)
            .map(|i| {
                json!({
                    "user_id": format!("user-{}", i % 100_000),
                    "type": "order_shipped",
                    "business_id": format!("{phase}-{i}"),
                    "email": "ann@example.com",
                    "payload": {"order": i, "items": [{"sku": "A-1", "qty": 2}]},
                })
            })
            .collect();
        pooling::in_transaction(&mut conn, async |conn| {
            pooling::query(SQL)
                .bind(serde_json::Value::Array(items))
                .fetch_one(conn)
                .await
        })
        .await?;
        done += size;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Rounds the two sides alternate in, so that drift in the machine's speed hits both alike.
const OVERHEAD_ROUNDS: u64 = 10;

/// What `herald::enqueue` adds to an application's transaction: the time of transactions that
/// insert one application row and enqueue one notification, divided by the time of the same
/// transactions without the enqueue. One connection, one transaction at a time, `transactions`
/// (at most 2,000) on each side.
pub async fn in_tx_overhead(
    pool: &PgPool,
    phase: &str,
    transactions: u64,
) -> Result<f64, BenchError> {
    sqlx::raw_sql(
        "create table if not exists public.bench_orders (id bigint primary key, body jsonb not null)",
    )
    .execute(pool)
    .await?;
    let mut conn = pool.acquire().await?;
    let per_round = (transactions.min(2000) / OVERHEAD_ROUNDS).max(1);
    let (mut without, mut with) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    let mut next = 0u64;
    for _ in 0..OVERHEAD_ROUNDS {
        for enqueue in [false, true] {
            let start = Instant::now();
            for _ in 0..per_round {
                // The application's own transaction, as it would open it.
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                pooling::query("insert into public.bench_orders (id, body) values ($1, $2)")
                    .bind(next as i64)
                    .bind(json!({"order": next, "items": [{"sku": "A-1", "qty": 2}]}))
                    .execute(&mut *tx)
                    .await?;
                if enqueue {
                    crate::enqueue(&mut *tx, &email(phase, next)).await?;
                }
                tx.commit().await?;
                next += 1;
            }
            *(if enqueue { &mut with } else { &mut without }) += start.elapsed();
        }
    }
    drop(conn);
    sqlx::raw_sql("drop table public.bench_orders")
        .execute(pool)
        .await?;
    Ok(with.as_secs_f64() / without.as_secs_f64())
}
