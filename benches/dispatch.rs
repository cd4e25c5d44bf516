//! Delivery throughput and wake-up latency of one daemon: `cargo bench --bench dispatch`.
//!
//! - `deliver`: N webhooks (default 5,000) enqueued up front, one in-process dispatcher with the
//!   default 64 workers delivering to a local receiver until idle; notifications per second.
//!   Baseline in the same run: the same N POSTs from a bare reqwest client with 32 in flight to
//!   the same receiver (the HTTP ceiling, no database).
//! - `latency`: an idle daemon (default 1 s poll interval); one notification enqueued and
//!   committed at a time; time from commit to the receiver seeing the request, p50/p99 over
//!   `SAMPLES`. Baseline in the same run: commit of a bare `NOTIFY` to a `LISTEN`er receiving it.
//!
//! Environment: `BENCH_DATABASE_URL` (default the local server's `postgres` database; a fresh
//! database `herald_bench_dispatch` is created), `N`, `SAMPLES` (default 200).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use herald::Notification;
use herald::dispatch::{Dispatcher, RunOptions, Senders};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const DATABASE: &str = "herald_bench_dispatch";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = common::base_url();
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let samples: usize = std::env::var("SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let receiver = Receiver::start().await?;
    println!("phase,value,unit,note");

    // Baseline: the HTTP ceiling.
    let rate = bare_http(&receiver, n, 32).await?;
    println!(
        "baseline:http_post:c32,{rate:.0},requests/s,bare reqwest client to the same receiver"
    );

    let pool = common::fresh_database(&base, DATABASE, 16).await?;
    let config = bench_config();
    let hook = endpoint(&pool, &receiver).await?;
    let batch: Vec<Notification> = (0..n)
        .map(|i| Notification::webhook(format!("user-{i}"), "bench", format!("b-{i}"), hook))
        .collect();
    for chunk in batch.chunks(1000) {
        herald::enqueue_many(&pool, chunk).await?;
    }
    receiver.reset();
    let start = Instant::now();
    let dispatcher = Dispatcher::new(pool.clone(), config.clone(), senders(&config)?);
    dispatcher
        .run(RunOptions { until_idle: true }, CancellationToken::new())
        .await;
    let elapsed = start.elapsed();
    assert_eq!(receiver.count(), n, "every notification delivered once");
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "herald:deliver_webhooks:workers32,{rate:.0},notifications/s,{n} enqueued up front; one daemon"
    );

    // Latency of an idle daemon.
    let baseline = notify_latency(&pool, samples).await?;
    println!(
        "baseline:notify_commit_to_listener:p50,{:.2},ms,bare NOTIFY",
        percentile(&baseline, 0.50)
    );
    println!(
        "baseline:notify_commit_to_listener:p99,{:.2},ms,bare NOTIFY",
        percentile(&baseline, 0.99)
    );
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::new(pool.clone(), config.clone(), senders(&config)?);
    let daemon = tokio::spawn(dispatcher.run(RunOptions::default(), shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await; // let it LISTEN and go idle
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        receiver.reset();
        // Past the enqueue debounce window, so each enqueue sends its NOTIFY.
        tokio::time::sleep(herald::wake::DEBOUNCE + Duration::from_millis(20)).await;
        let mut tx = pool.begin().await?;
        herald::enqueue(
            &mut *tx,
            &Notification::webhook("u", "latency", format!("l-{i}"), hook),
        )
        .await?;
        let committed = Instant::now();
        tx.commit().await?;
        receiver.wait_for(1).await;
        latencies.push(committed.elapsed().as_secs_f64() * 1000.0);
    }
    shutdown.cancel();
    daemon.await?;
    println!(
        "herald:enqueue_commit_to_delivery:p50,{:.2},ms,idle daemon, poll_interval 1s",
        percentile(&latencies, 0.50)
    );
    println!(
        "herald:enqueue_commit_to_delivery:p99,{:.2},ms,idle daemon, poll_interval 1s",
        percentile(&latencies, 0.99)
    );
    pool.close().await;
    let admin = PgPool::connect(&base).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database if exists {DATABASE} with (force)"
    )))
    .execute(&admin)
    .await?;
    Ok(())
}

fn bench_config() -> herald::config::Config {
    let mut config = herald::config::Config::default();
    config.webhook.allowed_networks = vec!["127.0.0.0/8".parse().expect("a network")];
    config.database.max_connections = 16;
    config
}

fn senders(config: &herald::config::Config) -> Result<Senders, Box<dyn std::error::Error>> {
    let templates =
        herald::channel::templates::Templates::load(std::path::Path::new("templates"))?.0;
    Ok(Senders {
        webhook: herald::channel::webhook::WebhookSender::new(&config.webhook)?,
        email: herald::channel::email::EmailSender::new(&config.smtp, 1, Arc::new(templates))?,
    })
}

async fn endpoint(pool: &PgPool, receiver: &Receiver) -> Result<uuid::Uuid, sqlx::Error> {
    let id = uuid::Uuid::now_v7();
    let secret = herald::channel::signature::WebhookSecret::generate().expect("random secret");
    herald::store::endpoints::insert(
        &mut *pool.acquire().await?,
        id,
        "default",
        &receiver.url(),
        secret.expose(),
    )
    .await?;
    Ok(id)
}

async fn bare_http(receiver: &Receiver, n: usize, in_flight: usize) -> Result<f64, reqwest::Error> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (client, next, url) = (client.clone(), next.clone(), receiver.url());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    client
                        .post(&url)
                        .body(r#"{"type":"bench","data":{}}"#)
                        .send()
                        .await?;
                }
                Ok::<(), reqwest::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task")?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

async fn notify_latency(pool: &PgPool, samples: usize) -> Result<Vec<f64>, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen("bench_baseline").await?;
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let mut tx = pool.begin().await?;
        sqlx::query("select pg_notify('bench_baseline', '')")
            .execute(&mut *tx)
            .await?;
        let committed = Instant::now();
        tx.commit().await?;
        listener.recv().await?;
        out.push(committed.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(out)
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A minimal receiver: counts requests, answers 204.
struct Receiver {
    addr: std::net::SocketAddr,
    count: Arc<AtomicUsize>,
    arrived: Arc<Notify>,
}

impl Receiver {
    async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let count = Arc::new(AtomicUsize::new(0));
        let arrived = Arc::new(Notify::new());
        let (c, a) = (count.clone(), arrived.clone());
        let app = axum::Router::new().fallback(move || {
            let (c, a) = (c.clone(), a.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                a.notify_one();
                StatusCode::NO_CONTENT
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Receiver {
            addr,
            count,
            arrived,
        })
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    fn reset(&self) {
        self.count.store(0, Ordering::SeqCst);
    }

    async fn wait_for(&self, n: usize) {
        while self.count() < n {
            self.arrived.notified().await;
        }
    }
}
