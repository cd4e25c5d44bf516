//! Enqueue throughput: `single` (each notification its own transaction, `clients` at once, as
//! `herald::enqueue(&pool, …)` does it) and `batch` (`enqueue_many` of 1,000 per call).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::json;
use sqlx::PgPool;
use tokio_util::task::AbortOnDropHandle;

use super::BenchError;
use crate::Notification;

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
    sqlx::query("delete from herald.intents where state = 'pending'")
        .execute(pool)
        .await?;
    for table in [
        "vacuum analyze herald.intents",
        "vacuum analyze herald.queue",
    ] {
        sqlx::query(table).execute(pool).await?;
    }
    Ok(())
}
