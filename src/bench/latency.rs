//! Wake-up latency of an idle daemon: one webhook notification enqueued at a time, at a light
//! steady load (one per [`crate::wake::DEBOUNCE`] + 20 ms, so each enqueue carries its NOTIFY),
//! timed from the enqueueing transaction's commit to the receiver seeing the request.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

use super::receiver::Receiver;
use super::{BenchError, Percentiles};
use crate::Notification;
use crate::config::Config;
use crate::dispatch::{Dispatcher, RunOptions};

/// Samples for `n` notifications: 1 per 100, between 10 and 200.
pub fn samples(n: u64) -> u64 {
    (n / 100).clamp(10, 200)
}

pub async fn idle_daemon(
    pool: &PgPool,
    config: &Config,
    receiver: &Receiver,
    endpoint: Uuid,
    n: u64,
) -> Result<Percentiles, BenchError> {
    let dispatcher = Dispatcher::new(
        pool.clone(),
        config.clone(),
        super::dispatch::senders(config)?,
    );
    let shutdown = CancellationToken::new();
    let daemon = AbortOnDropHandle::new(tokio::spawn(
        dispatcher.run(RunOptions::default(), shutdown.clone()),
    ));
    let result = measure(pool, receiver, endpoint, samples(n)).await;
    shutdown.cancel();
    let _ = daemon.await;
    result
}

async fn measure(
    pool: &PgPool,
    receiver: &Receiver,
    endpoint: Uuid,
    samples: u64,
) -> Result<Percentiles, BenchError> {
    let notification =
        |i: u64| Notification::webhook("latency", "bench", format!("latency-{i}"), endpoint);
    // Warm-up: the daemon is up, connected and listening once this one arrives.
    let mut expected = receiver.count() + 1;
    crate::enqueue(pool, &notification(u64::MAX)).await?;
    arrival(receiver, expected).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut latencies = Vec::with_capacity(samples as usize);
    for i in 0..samples {
        tokio::time::sleep(crate::wake::DEBOUNCE + Duration::from_millis(20)).await;
        expected += 1;
        let mut tx = pool.begin().await?;
        crate::enqueue(&mut *tx, &notification(i)).await?;
        let committed = Instant::now();
        tx.commit().await?;
        arrival(receiver, expected).await?;
        latencies.push(committed.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(Percentiles::of(&latencies))
}

/// Waits for the receiver's `expected`-th request; a daemon that delivers nothing for 30 s
/// fails the bench rather than hanging it.
async fn arrival(receiver: &Receiver, expected: u64) -> Result<(), BenchError> {
    tokio::time::timeout(Duration::from_secs(30), receiver.wait_for(expected))
        .await
        .map_err(|_| BenchError::Setup("no webhook arrived within 30 s of its enqueue".into()))
}
