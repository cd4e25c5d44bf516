//! Cost with history: `rows` finished notifications (each with its attempt) are loaded, then
//! enqueue and null dispatch are measured again, and the rows are swept (a retention window
//! they all exceed) while one client enqueues serially and times each enqueue.
//!
//! The figures are compared with the empty-table ones of the same run: claim and dispatch
//! should stay within 1.3×, the enqueue p99 during the sweep within 2× of before it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

use super::{BenchError, Options, Percentiles};
use crate::config::Config;

#[derive(Debug, Clone, Serialize)]
pub struct HistoryReport {
    pub rows: u64,
    pub load_s: f64,
    pub enqueue_single_per_s: f64,
    pub dispatch_null_per_s: f64,
    /// Empty-table `dispatch_null_per_s` / this one: ≤ 1.3 is the target.
    pub dispatch_null_slowdown: f64,
    pub sweep_rows: u64,
    pub sweep_rows_per_s: f64,
    /// Serial enqueue latency before the sweep, and while it runs.
    pub enqueue_ms_before_sweep: Percentiles,
    pub enqueue_ms_during_sweep: Percentiles,
}

pub async fn run(
    pool: &PgPool,
    config: &Config,
    endpoint: Uuid,
    options: Options,
    empty_null_per_s: f64,
) -> Result<HistoryReport, BenchError> {
    let started = Instant::now();
    load(pool, options.history).await?;
    let load_s = started.elapsed().as_secs_f64();

    let n = options.notifications;
    let enqueue_single = super::enqueue::single(pool, "history-single", options.clients, n).await?;
    super::enqueue::clear_pending(pool).await?;
    let null = super::dispatch::drain_null_as(pool, config, "history-null", endpoint, n).await?;

    let before = probe_for(pool, "probe-before", Duration::from_secs(3)).await?;
    let (sweep_rows, sweep_s, during) = sweep_under_probe(pool, config).await?;
    Ok(HistoryReport {
        rows: options.history,
        load_s,
        enqueue_single_per_s: enqueue_single,
        dispatch_null_per_s: null.per_s,
        dispatch_null_slowdown: empty_null_per_s / null.per_s,
        sweep_rows,
        sweep_rows_per_s: sweep_rows as f64 / sweep_s,
        enqueue_ms_before_sweep: before,
        enqueue_ms_during_sweep: during,
    })
}

/// Loads `rows` delivered notifications, finished a day ago, each with one attempt, then
/// vacuums and analyzes, as autovacuum would have by then.
async fn load(pool: &PgPool, rows: u64) -> Result<(), BenchError> {
    const SQL: &str = "
        with made as (
            insert into herald.intents
                (id, tenant, user_id, type, business_id, fingerprint, channel, destination,
                 payload, max_attempts, attempts, state, run_at, created_at, finished_at)
            select herald._uuid_v7_at(now() - interval '1 day'), 'default', 'user-' || (g % 100000), 'order_shipped',
                   'history-' || g, sha256(('history-' || g)::bytea), 'email', 'ann@example.com',
                   jsonb_build_object('order', g), 8, 1, 'delivered',
                   now() - interval '1 day', now() - interval '1 day', now() - interval '1 day'
            from generate_series($1::int8, $2::int8) g
            returning id, finished_at)
        insert into herald.attempts (notification_id, attempt, started_at, finished_at, outcome, status)
        select id, 1, finished_at, finished_at, 'delivered', 204 from made";
    super::scratch::load_in_chunks(pool, SQL, rows).await?;
    // VACUUM cannot run in a transaction: one simple-protocol message each.
    sqlx::raw_sql("vacuum analyze herald.intents")
        .execute(pool)
        .await?;
    sqlx::raw_sql("vacuum analyze herald.attempts")
        .execute(pool)
        .await?;
    sqlx::raw_sql("checkpoint").execute(pool).await?;
    Ok(())
}

/// Serial enqueues for `duration`, one every 5 ms; their latencies.
async fn probe_for(
    pool: &PgPool,
    phase: &str,
    duration: Duration,
) -> Result<Percentiles, BenchError> {
    let stop = Arc::new(AtomicBool::new(false));
    let probe = AbortOnDropHandle::new(tokio::spawn(probe(
        pool.clone(),
        phase.to_owned(),
        stop.clone(),
    )));
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let samples = probe
        .await
        .map_err(|e| BenchError::Setup(format!("the enqueue probe failed: {e}")))??;
    Ok(Percentiles::of(&samples))
}

async fn probe(pool: PgPool, phase: String, stop: Arc<AtomicBool>) -> Result<Vec<f64>, BenchError> {
    let mut samples = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        crate::enqueue(&pool, &super::enqueue::email(&phase, i)).await?;
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(samples)
}

/// Sweeps every history row (a retention of one hour) while the probe enqueues.
async fn sweep_under_probe(
    pool: &PgPool,
    config: &Config,
) -> Result<(u64, f64, Percentiles), BenchError> {
    let mut sweeper = config.sweeper.clone();
    sweeper.retention = Duration::from_secs(3600);
    sweeper.retention_by_type.clear();
    let stop = Arc::new(AtomicBool::new(false));
    let probe = AbortOnDropHandle::new(tokio::spawn(probe(
        pool.clone(),
        "probe-during".into(),
        stop.clone(),
    )));
    let start = Instant::now();
    let swept = crate::sweeper::sweep(pool, &sweeper, &CancellationToken::new()).await;
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let samples = probe
        .await
        .map_err(|e| BenchError::Setup(format!("the enqueue probe failed: {e}")))??;
    let report = swept?;
    Ok((report.deleted, elapsed, Percentiles::of(&samples)))
}
