//! Isolation: the delivery latency (enqueue commit → received, as in [`super::latency`]) of a
//! healthy webhook endpoint (answers at once) while noisy neighbours saturate the daemon, beside
//! the same latency with no neighbours ("alone"), in one run and with one daemon:
//! - a slow endpoint of the healthy endpoint's own tenant that answers after [`SLOW_DELAY`],
//!   with [`SLOW_PER_WORKER`] times as many notifications due as the daemon has workers;
//! - a bursting tenant: up to [`BURST_MAX`] notifications (`--notifications` if fewer) spread
//!   over [`BURST_ENDPOINTS`] endpoints that answer after [`BURST_DELAY`], enqueued at once after
//!   the slow backlog and just before the healthy notifications.
//!
//! Both neighbours are due before any measured notification, so a daemon that delivers in
//! `run_at` order alone serves the healthy endpoint only after them: the figures measure
//! fairness, not throughput.
//!
//! Invariants:
//! - Bounded: each healthy notification is waited for at most [`BOUND`] from its commit; one not
//!   received by then counts as [`BOUND`] in the percentiles and in `healthy_late` /
//!   `alone_late`, and a warning says so. The phase never waits for the neighbours' backlog: the
//!   daemon is stopped (in-flight slow requests end within [`SLOW_DELAY`]; past a margin it is
//!   aborted) and every row of the phase's tenants is deleted, so later phases meet none.
//! - Each healthy enqueue sends its own NOTIFY in its transaction: a few ms apart, most would
//!   otherwise fall inside the enqueue debounce ([`crate::wake::DEBOUNCE`]) and wait for a later
//!   wake-up, and both figures would measure that rather than what the daemon delivers first.
//! - Alone is measured first, by the same warmed-up daemon, so the two differ only by the
//!   neighbours.

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

use super::dispatch::{enqueue_in_batches, senders};
use super::receiver::{Receiver, register};
use super::{BenchError, Percentiles};
use crate::Notification;
use crate::config::Config;
use crate::dispatch::{Dispatcher, RunOptions};

/// The healthy endpoint's tenant.
const TENANT: &str = "isolation";
/// The slow endpoint's tenant: another customer, as in the incident this phase measures.
const SLOW_TENANT: &str = "isolation-slow";
/// The bursting tenant.
const BURST_TENANT: &str = "isolation-burst";

pub const SLOW_DELAY: Duration = Duration::from_secs(3);
pub const SLOW_PER_WORKER: u64 = 10;
pub const BURST_MAX: u64 = 2000;
pub const BURST_ENDPOINTS: u64 = 40;
pub const BURST_DELAY: Duration = Duration::from_millis(200);
/// The longest a healthy notification is waited for: more than [`SLOW_DELAY`] with room to
/// spare, so one that waits out a round of slow requests is still measured.
pub const BOUND: Duration = Duration::from_secs(10);
/// Pause between healthy enqueues (each also takes a commit, ≈ 2–3 ms here).
const SPACING: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Serialize)]
pub struct IsolationReport {
    /// Healthy endpoint, neighbours saturating the daemon.
    pub healthy_p50_ms: f64,
    pub healthy_p99_ms: f64,
    /// The same endpoint, no neighbours.
    pub alone_p50_ms: f64,
    pub alone_p99_ms: f64,
    /// Healthy notifications measured in each half.
    pub samples: u64,
    /// Of them, those not received within `bound_ms` of their commit (counted as `bound_ms`).
    pub healthy_late: u64,
    pub alone_late: u64,
    pub bound_ms: f64,
    /// Notifications due to the slow endpoint, and of those, requests at it (all still
    /// unanswered) when the healthy notifications began.
    pub slow_backlog: u64,
    pub slow_in_flight: u64,
    /// The bursting tenant's notifications.
    pub burst: u64,
}

/// Healthy notifications per half for `n` notifications: 1 per 20, between 10 and 150.
pub fn samples(n: u64) -> u64 {
    (n / 20).clamp(10, 150)
}

pub async fn run(
    pool: &PgPool,
    config: &Config,
    receiver: &Receiver,
    n: u64,
) -> Result<IsolationReport, BenchError> {
    let dispatcher = Dispatcher::new(pool.clone(), config.clone(), senders(config)?);
    let shutdown = CancellationToken::new();
    let daemon = AbortOnDropHandle::new(tokio::spawn(
        dispatcher.run(RunOptions::default(), shutdown.clone()),
    ));
    let measured = measure(pool, receiver, config.dispatcher.workers as u64, n).await;
    shutdown.cancel();
    // The daemon's shutdown grace lets the in-flight slow requests finish; a grace configured
    // longer than they need never holds the bench beyond this margin (dropping the handle
    // aborts the daemon, whose leases go with the rows).
    if tokio::time::timeout(SLOW_DELAY + Duration::from_secs(5), daemon)
        .await
        .is_err()
    {
        tracing::warn!("bench isolation: the daemon did not stop in time; aborted it");
    }
    // A failed measurement is the error to report; the rows go either way.
    let cleared = clear(pool).await;
    let report = measured?;
    cleared?;
    Ok(report)
}

async fn measure(
    pool: &PgPool,
    receiver: &Receiver,
    workers: u64,
    n: u64,
) -> Result<IsolationReport, BenchError> {
    // Only the healthy URL is `timed`: its requests are the measured ones.
    let healthy_url = receiver.url_with("/healthy", Duration::ZERO, true);
    let healthy = register(pool, TENANT, &healthy_url).await?;
    let slow_url = receiver.url_with("/slow", SLOW_DELAY, false);
    let slow = register(pool, SLOW_TENANT, &slow_url).await?;
    let mut bursting = Vec::with_capacity(BURST_ENDPOINTS as usize);
    for e in 0..BURST_ENDPOINTS {
        let url = receiver.url_with(&format!("/burst-{e}"), BURST_DELAY, false);
        bursting.push(register(pool, BURST_TENANT, &url).await?);
    }
    let samples = samples(n);

    warm_up(pool, receiver, healthy).await?;
    let alone = latencies(pool, receiver, healthy, "alone", samples).await?;

    let slow_backlog = SLOW_PER_WORKER * workers;
    let before = receiver.count();
    enqueue_in_batches(pool, slow_backlog, |i| {
        Notification::webhook(format!("user-{i}"), "slow", format!("slow-{i}"), slow)
            .tenant(SLOW_TENANT)
    })
    .await?;
    wake(&mut *pool.acquire().await?).await?;
    // Saturated: a request at the slow endpoint for every worker, or two seconds of trying (a
    // daemon that caps an endpoint's share never gets there). Under SLOW_DELAY, so none of
    // them has been answered yet.
    let saturated = receiver.wait_for(before + slow_backlog.min(workers));
    let _ = tokio::time::timeout(Duration::from_secs(2), saturated).await;
    let slow_in_flight = receiver.count() - before;

    let burst = n.min(BURST_MAX);
    enqueue_in_batches(pool, burst, |i| {
        let endpoint = bursting[(i % BURST_ENDPOINTS) as usize];
        Notification::webhook(format!("user-{i}"), "burst", format!("burst-{i}"), endpoint)
            .tenant(BURST_TENANT)
    })
    .await?;
    wake(&mut *pool.acquire().await?).await?;
    let noisy = latencies(pool, receiver, healthy, "healthy", samples).await?;

    Ok(IsolationReport {
        healthy_p50_ms: noisy.ms.p50,
        healthy_p99_ms: noisy.ms.p99,
        alone_p50_ms: alone.ms.p50,
        alone_p99_ms: alone.ms.p99,
        samples,
        healthy_late: noisy.late,
        alone_late: alone.late,
        bound_ms: BOUND.as_secs_f64() * 1000.0,
        slow_backlog,
        slow_in_flight,
        burst,
    })
}

/// One healthy notification through: the daemon is up, connected and listening.
async fn warm_up(pool: &PgPool, receiver: &Receiver, healthy: Uuid) -> Result<(), BenchError> {
    let id = crate::enqueue(pool, &notification(healthy, "warm-up", 0))
        .await?
        .id();
    wake(&mut *pool.acquire().await?).await?;
    tokio::time::timeout(Duration::from_secs(30), receiver.wait_for_arrivals(&[id]))
        .await
        .map_err(|_| BenchError::Setup("no webhook arrived within 30 s of its enqueue".into()))?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

struct Sampled {
    ms: Percentiles,
    late: u64,
}

/// Enqueues `samples` healthy notifications [`SPACING`] apart, without waiting for each, then
/// waits for them until [`BOUND`] after the last commit.
async fn latencies(
    pool: &PgPool,
    receiver: &Receiver,
    healthy: Uuid,
    phase: &str,
    samples: u64,
) -> Result<Sampled, BenchError> {
    let mut sent = Vec::with_capacity(samples as usize);
    for i in 0..samples {
        let mut tx = pool.begin().await?;
        let id = crate::enqueue(&mut *tx, &notification(healthy, phase, i))
            .await?
            .id();
        wake(&mut tx).await?;
        let committed = Instant::now();
        tx.commit().await?;
        sent.push((id, committed));
        tokio::time::sleep(SPACING).await;
    }
    let ids: Vec<Uuid> = sent.iter().map(|&(id, _)| id).collect();
    if let Some(&(_, last)) = sent.last() {
        let all = receiver.wait_for_arrivals(&ids);
        let _ = tokio::time::timeout_at((last + BOUND).into(), all).await;
    }
    let mut late = 0;
    let ms: Vec<f64> = sent
        .iter()
        .map(|&(id, committed)| {
            let took = receiver
                .arrived_at(id)
                .map(|at| at.saturating_duration_since(committed))
                .filter(|took| *took <= BOUND)
                .unwrap_or_else(|| {
                    late += 1;
                    BOUND
                });
            took.as_secs_f64() * 1000.0
        })
        .collect();
    if late > 0 {
        tracing::warn!(
            "bench isolation ({phase}): {late} of {samples} healthy notifications not received \
             within {} s of their commit; counted as {0} s",
            BOUND.as_secs()
        );
    }
    Ok(Sampled {
        ms: Percentiles::of(&ms),
        late,
    })
}

fn notification(healthy: Uuid, phase: &str, i: u64) -> Notification {
    Notification::webhook(
        format!("user-{i}"),
        "healthy",
        format!("{phase}-{i}"),
        healthy,
    )
    .tenant(TENANT)
}

/// A wake-up for listening daemons, sent when `conn`'s transaction commits, or at once on a
/// connection outside one (see the module docs for why the bench does not leave it to the
/// enqueue's debounce).
async fn wake(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    crate::pooling::in_transaction(conn, async |conn| {
        crate::pooling::query("select pg_notify($1, '')")
            .bind(crate::wake::CHANNEL)
            .execute(conn)
            .await
    })
    .await
    .map(drop)
}

/// Deletes every row of the phase's tenants (their queue rows and attempts go by cascade) and
/// vacuums, as [`super::enqueue::clear_pending`] does, so that later phases neither drain nor
/// walk them.
async fn clear(pool: &PgPool) -> Result<(), BenchError> {
    const SQL: &str = "delete from herald.intents where tenant in ($1, $2, $3)";
    crate::pooling::in_transaction(&mut *pool.acquire().await?, async |conn| {
        crate::pooling::query(SQL)
            .bind(TENANT)
            .bind(SLOW_TENANT)
            .bind(BURST_TENANT)
            .execute(conn)
            .await
    })
    .await?;
    // VACUUM cannot run in a transaction: one simple-protocol message.
    sqlx::raw_sql("vacuum analyze herald.intents, herald.queue")
        .execute(pool)
        .await?;
    Ok(())
}
