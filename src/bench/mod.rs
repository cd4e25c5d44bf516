//! `herald bench`: herald's own throughput, latency and memory against the configured
//! PostgreSQL server, like `river bench`. One file per phase:
//! [`enqueue`] (single and batch), [`api`] (single enqueues over HTTP), [`dispatch`] (null channel and real webhooks, peak RSS),
//! [`ceiling`] (a bare HTTP client against the same receiver, the bound webhook dispatch is
//! read against), [`latency`] (enqueue commit → received, idle daemon), [`isolation`] (the same
//! for a healthy endpoint beside a slow endpoint and a bursting tenant, and alone),
//! [`history`] (the same with millions of finished rows, and a sweep of them under an enqueue
//! probe), [`console`] (the console's notifications page over a million rows).
//!
//! Invariants:
//! - Everything happens in a scratch database `herald_bench_<random>` on the configured server
//!   ([`scratch`]); the caller drops it afterwards, on error and on Ctrl-C too.
//! - The loopback receiver is reachable because this bench's own copy of the configuration
//!   allows `127.0.0.1/32`; the SSRF guard itself and users' configurations are untouched.
//! - The null channel (`Dispatcher::without_delivery`) is reachable only
//!   from here.
//! - Each phase enqueues its own keys, so no phase meets another's rows as duplicates.

pub mod api;
pub mod ceiling;
pub mod console;
pub mod dispatch;
pub mod enqueue;
pub mod history;
pub mod isolation;
pub mod latency;
pub mod receiver;
pub mod rss;
pub mod scratch;
pub mod server;

use serde::Serialize;
use sqlx::PgPool;

use crate::config::Config;
use receiver::Receiver;

/// What to measure.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Notifications per throughput phase.
    pub notifications: u64,
    /// Concurrent clients of `enqueue_single`.
    pub clients: u32,
    /// Finished rows to load for the history phase (0: skip it).
    pub history: u64,
    /// Rows to load for the console phase (0: skip it).
    pub console_rows: u64,
}

/// The figures, rates per second.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scratch database the bench ran in (dropped since).
    pub database: String,
    pub enqueue_single_per_s: f64,
    /// `POST /v1/notifications` to an in-process `herald serve`, as many clients as
    /// `enqueue_single_per_s` has callers.
    pub api_enqueue_per_s: f64,
    pub enqueue_batch_per_s: f64,
    /// `herald.enqueue_many(jsonb)` called with SQL, 1,000 per call.
    pub enqueue_sql_batch_per_s: f64,
    /// Time of an application's transaction with `herald::enqueue` in it over the same
    /// transaction without it.
    pub enqueue_in_tx_overhead: f64,
    pub dispatch_null_per_s: f64,
    pub dispatch_webhook_per_s: f64,
    /// POSTs per second from a bare reqwest client to the same receiver, as many in flight as
    /// the dispatcher has workers, no database: the ceiling `dispatch_webhook_per_s` is read
    /// against.
    pub http_client_ceiling_per_s: f64,
    pub latency_ms: Percentiles,
    /// A healthy endpoint's latency beside noisy neighbours, and alone.
    pub isolation: isolation::IsolationReport,
    /// Peak resident memory while the dispatcher ran at full speed (`None` off Linux).
    pub rss_mb: Option<f64>,
    pub notifications: u64,
    pub clients: u32,
    /// The dispatcher settings used (from the configuration).
    pub workers: usize,
    pub batch_size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<history::HistoryReport>,
    /// The console's notifications page with filters: p99 over every filter's requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_p99_ms: Option<f64>,
    /// The console phase in full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console: Option<console::ConsoleReport>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (milliseconds); zeros when there are none.
    pub fn of(samples: &[f64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let at = |p: f64| {
            if sorted.is_empty() {
                return 0.0;
            }
            sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
        };
        Percentiles {
            p50: at(0.50),
            p99: at(0.99),
        }
    }
}

/// Why a bench stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("database error: {}", crate::database::reason_of(.0))]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Enqueue(#[from] crate::EnqueueError),
    #[error("{0}")]
    Setup(String),
}

/// The configuration the bench's dispatchers run with: the configured one, plus loopback for
/// the bench's own receiver and enough connections for its phases.
pub fn bench_config(config: &Config) -> Config {
    let mut config = config.clone();
    config.webhook.allowed_networks = vec!["127.0.0.1/32".parse().expect("a network literal")];
    config.webhook.https_only = false;
    config
}

/// Runs every phase against `pool` (a migrated scratch database).
pub async fn run(pool: &PgPool, config: &Config, options: Options) -> Result<Report, BenchError> {
    let config = bench_config(config);
    let n = options.notifications;
    let receiver = Receiver::start()
        .await
        .map_err(|e| BenchError::Setup(format!("cannot start the loopback receiver: {e}")))?;
    let endpoint = receiver.register(pool).await?;

    let enqueue_single = enqueue::single(pool, "single", options.clients, n).await?;
    let api_enqueue = api::enqueue(pool, &config, "api", options.clients, n).await?;
    let enqueue_batch = enqueue::batch(pool, "batch", n).await?;
    let enqueue_sql_batch = enqueue::sql_batch(pool, "sql-batch", n).await?;
    let enqueue_in_tx_overhead = enqueue::in_tx_overhead(pool, "in-tx", n).await?;
    enqueue::clear_pending(pool).await?;

    let null = dispatch::drain_null(pool, &config, endpoint, n).await?;
    let ceiling = ceiling::bare_client(&receiver, config.dispatcher.workers, n).await?;
    let webhook = dispatch::drain_webhooks(pool, &config, &receiver, endpoint, n).await?;
    let latency = latency::idle_daemon(pool, &config, &receiver, endpoint, n).await?;
    let isolation = isolation::run(pool, &config, &receiver, n).await?;

    let history = if options.history > 0 {
        Some(history::run(pool, &config, endpoint, options, null.per_s).await?)
    } else {
        None
    };
    // Last: it loads rows that no other phase should meet.
    let console = if options.console_rows > 0 {
        Some(console::run(pool, &config, options.console_rows).await?)
    } else {
        None
    };
    Ok(Report {
        database: String::new(),
        enqueue_single_per_s: enqueue_single,
        api_enqueue_per_s: api_enqueue,
        enqueue_batch_per_s: enqueue_batch,
        enqueue_sql_batch_per_s: enqueue_sql_batch,
        enqueue_in_tx_overhead,
        dispatch_null_per_s: null.per_s,
        dispatch_webhook_per_s: webhook.per_s,
        http_client_ceiling_per_s: ceiling,
        latency_ms: latency,
        isolation,
        rss_mb: max_option(null.peak_rss_mb, webhook.peak_rss_mb),
        notifications: n,
        clients: options.clients,
        workers: config.dispatcher.workers,
        batch_size: config.dispatcher.batch_size,
        history,
        console_p99_ms: console.as_ref().map(|c| c.page_ms.p99),
        console,
    })
}

fn max_option(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&samples);
        assert_eq!((p.p50, p.p99), (51.0, 99.0));
        let none = Percentiles::of(&[]);
        assert_eq!((none.p50, none.p99), (0.0, 0.0));
    }
}
