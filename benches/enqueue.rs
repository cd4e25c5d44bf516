//! Enqueue throughput against a real PostgreSQL: `cargo bench --bench enqueue`.
//!
//! Phases, each on a freshly created database so earlier phases do not bloat later ones:
//! - `single/c1` and `single/c16`: one `herald::enqueue` per transaction (BEGIN, enqueue,
//!   COMMIT), serial and from 16 concurrent clients, for `BENCH_SECONDS` each;
//! - `duplicate/c16`: replays of existing keys (insert that writes nothing, then the read);
//! - `batch1000`: `herald::enqueue_many` of 1,000 new notifications per call.
//!
//! Compare with `benches/compare.sh`, which runs pgbench's single-row INSERT in the same run and
//! prints the ratios. Environment: `BENCH_DATABASE_URL` (a server where the `postgres` role may
//! create databases; default the local one), `BENCH_SECONDS` (default 15).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald::Notification;
use serde_json::json;
use sqlx::PgPool;

const DATABASE: &str = "herald_bench_enqueue";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = common::base_url();
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let duration = Duration::from_secs(seconds);
    println!("phase,value,unit,note");

    let pool = common::fresh_database(&base, DATABASE, 20).await?;
    let rate = timed(&pool, 1, duration, |_, i| single(i)).await?;
    println!("herald:enqueue_single:c1,{rate:.0},notifications/s,one enqueue per transaction");

    let pool = common::fresh_database(&base, DATABASE, 20).await?;
    let rate = timed(&pool, 16, duration, |c, i| single(c * 1_000_000_000 + i)).await?;
    println!("herald:enqueue_single:c16,{rate:.0},notifications/s,one enqueue per transaction");

    // Replays: every key exists already.
    let keys = 10_000u64;
    let seed: Vec<Notification> = (0..keys).map(single).collect();
    for chunk in seed.chunks(1000) {
        herald::enqueue_many(&pool, chunk).await?;
    }
    let rate = timed(&pool, 16, duration, move |c, i| {
        single((c * 7919 + i) % keys)
    })
    .await?;
    println!("herald:enqueue_duplicate:c16,{rate:.0},notifications/s,replays of existing keys");

    let pool = common::fresh_database(&base, DATABASE, 4).await?;
    let batches = (seconds * 4).max(20);
    let start = Instant::now();
    for b in 0..batches {
        let batch: Vec<Notification> = (0..1000).map(|i| single(b * 1000 + i)).collect();
        herald::enqueue_many(&pool, &batch).await?;
    }
    let rate = (batches * 1000) as f64 / start.elapsed().as_secs_f64();
    println!("herald:enqueue_batch1000:c1,{rate:.0},notifications/s,{batches} calls of 1000");
    Ok(())
}

/// A typical notification: an email with a small payload.
fn single(i: u64) -> Notification {
    Notification::email(
        format!("user-{}", i % 100_000),
        "order_shipped",
        format!("order-{i}"),
        "ann@example.com",
    )
    .payload(json!({"order": i, "items": [{"sku": "A-1", "qty": 2}]}))
}

/// Runs `clients` loops of enqueue-in-a-transaction for `duration`; notifications per second.
async fn timed(
    pool: &PgPool,
    clients: u64,
    duration: Duration,
    make: impl Fn(u64, u64) -> Notification + Send + Sync + Copy + 'static,
) -> Result<f64, sqlx::Error> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (pool, stop, done) = (pool.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let mut tx = pool.begin().await?;
                    herald::enqueue(&mut *tx, &make(c, i))
                        .await
                        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                    tx.commit().await?;
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<(), sqlx::Error>(())
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("bench task")?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}
