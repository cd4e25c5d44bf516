//! Dispatch throughput of one daemon draining a burst: `n` webhook notifications enqueued up
//! front, then a dispatcher run until idle, timed from its start to its exit. With the null
//! channel (pure queue overhead: claim, lease, outcome, attempt log) and with real signed
//! POSTs to the loopback receiver. Each run also reports the process's peak resident memory.

use std::sync::Arc;
use std::time::Instant;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::receiver::Receiver;
use super::{BenchError, rss};
use crate::Notification;
use crate::channel::email::EmailSender;
use crate::channel::templates::Templates;
use crate::channel::webhook::WebhookSender;
use crate::config::Config;
use crate::dispatch::{Dispatcher, RunOptions, Senders};

pub struct Drained {
    pub per_s: f64,
    pub peak_rss_mb: Option<f64>,
}

/// Enqueues `n` webhook notifications to `endpoint`, in batches; `phase` keeps keys apart.
pub async fn prefill(pool: &PgPool, phase: &str, endpoint: Uuid, n: u64) -> Result<(), BenchError> {
    enqueue_in_batches(pool, n, |i| {
        Notification::webhook(
            format!("user-{}", i % 100_000),
            "bench",
            format!("{phase}-{i}"),
            endpoint,
        )
        .payload(serde_json::json!({"order": i}))
    })
    .await
}

/// Enqueues `make(0..n)` in `enqueue_many` calls of [`super::enqueue::BATCH`].
pub async fn enqueue_in_batches(
    pool: &PgPool,
    n: u64,
    make: impl Fn(u64) -> Notification,
) -> Result<(), BenchError> {
    let mut done = 0;
    while done < n {
        let size = super::enqueue::BATCH.min(n - done);
        let items: Vec<Notification> = (done..done + size).map(&make).collect();
        crate::enqueue_many(pool, &items).await?;
        done += size;
    }
    Ok(())
}

/// The null channel: every claim "delivered" at once.
pub async fn drain_null(
    pool: &PgPool,
    config: &Config,
    endpoint: Uuid,
    n: u64,
) -> Result<Drained, BenchError> {
    drain_null_as(pool, config, "null", endpoint, n).await
}

pub async fn drain_null_as(
    pool: &PgPool,
    config: &Config,
    phase: &str,
    endpoint: Uuid,
    n: u64,
) -> Result<Drained, BenchError> {
    prefill(pool, phase, endpoint, n).await?;
    let dispatcher = Dispatcher::without_delivery(pool.clone(), config.clone());
    Ok(drain(dispatcher, n).await)
}

/// Real signed POSTs to `receiver`.
pub async fn drain_webhooks(
    pool: &PgPool,
    config: &Config,
    receiver: &Receiver,
    endpoint: Uuid,
    n: u64,
) -> Result<Drained, BenchError> {
    prefill(pool, "webhook", endpoint, n).await?;
    let before = receiver.count();
    let dispatcher = Dispatcher::new(pool.clone(), config.clone(), senders(config)?);
    let drained = drain(dispatcher, n).await;
    let received = receiver.count() - before;
    if received < n {
        return Err(BenchError::Setup(format!(
            "the receiver saw {received} of {n} webhooks: see the attempt log"
        )));
    }
    Ok(drained)
}

async fn drain(dispatcher: Dispatcher, n: u64) -> Drained {
    let measured = rss::reset_peak();
    let start = Instant::now();
    dispatcher
        .run(RunOptions { until_idle: true }, CancellationToken::new())
        .await;
    let per_s = n as f64 / start.elapsed().as_secs_f64();
    Drained {
        per_s,
        peak_rss_mb: rss::peak_mb().filter(|_| measured),
    }
}

/// The real channels, as `herald run` builds them. Email is never used by the bench: its
/// sender gets no templates and connects to nothing.
pub fn senders(config: &Config) -> Result<Senders, BenchError> {
    let webhook = WebhookSender::new(&config.webhook)
        .map_err(|e| BenchError::Setup(format!("cannot set up the HTTP client: {e}")))?;
    let nowhere = std::env::temp_dir().join("herald-bench-no-templates");
    let templates = Templates::load(&nowhere)
        .map_err(|e| BenchError::Setup(e.to_string()))?
        .0;
    let email = EmailSender::new(&config.smtp, 1, Arc::new(templates))
        .map_err(|e| BenchError::Setup(format!("config: {e}")))?;
    Ok(Senders { webhook, email })
}
