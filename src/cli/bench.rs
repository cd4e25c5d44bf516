//! `herald bench`: measures herald on the configured server in a scratch database it creates
//! and drops (see [`crate::bench`]), and prints a table or, with `--json`, one object.

use clap::Args;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::Context;
use super::error::CliError;
use super::output::{emit, print_json, table};
use crate::bench::{self, Options, Report, isolation, scratch::Scratch};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Notifications per throughput phase.
    #[arg(long, value_name = "N", default_value_t = 10_000,
          allow_negative_numbers = true,
        value_parser = clap::value_parser!(u64).range(10..=10_000_000))]
    notifications: u64,
    /// Concurrent clients of the single-enqueue phase.
    #[arg(long, value_name = "N", default_value_t = 16,
          allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=1024))]
    clients: u32,
    /// Also measure with ROWS finished notifications in the table, and sweep them under an
    /// enqueue probe (e.g. 5000000).
    #[arg(long, value_name = "ROWS", default_value_t = 0,
          allow_negative_numbers = true,
        value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    history: u64,
    /// Also time the console's notifications page with its filters, with ROWS notifications in
    /// the table (0: skip it).
    #[arg(long, value_name = "ROWS", default_value_t = 1_000_000,
          allow_negative_numbers = true,
        value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    console_rows: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &Context, args: BenchArgs) -> Result<(), CliError> {
    let options = Options {
        notifications: args.notifications,
        clients: args.clients,
        history: args.history,
        console_rows: args.console_rows,
    };
    let mut interrupts = Interrupts::listen()?;
    let direct_url = ctx.listen_url().unwrap_or(&ctx.database_url);
    let scratch = Scratch::create_beside(&ctx.database_url, direct_url).await?;
    let measured = tokio::select! {
        measured = measure(ctx, &scratch, options) => measured,
        signal = interrupts.received() => Err(CliError::runtime(format!("interrupted by {signal}"))),
    };
    let name = scratch.name.clone();
    let dropped = scratch.drop().await;
    // A failed drop is reported even when the run itself failed: the database is left behind.
    let mut report = match (measured, dropped) {
        (Ok(report), Ok(())) => report,
        (Err(e), Ok(())) => return Err(e),
        (Ok(_), Err(drop)) => return Err(drop.into()),
        (Err(e), Err(drop)) => {
            let drop = CliError::from(drop);
            return Err(CliError::runtime(format!(
                "{}; and {}",
                e.message, drop.message
            )));
        }
    };
    report.database = name;
    if args.json {
        return print_json(&report);
    }
    emit(&render(&report))
}

async fn measure(ctx: &Context, scratch: &Scratch, options: Options) -> Result<Report, CliError> {
    let connections = ctx.config.database.max_connections.max(options.clients + 2);
    let pool = scratch.pool(connections).await?;
    let mut config = ctx.config.clone();
    if ctx.listen_url().is_some() {
        // Migrations and the dispatchers' LISTEN bypass the pooler.
        let direct = scratch.direct_pool().await?;
        crate::migrate(&direct).await?;
        direct.close().await;
        config.database.listen_url = scratch.url.clone().into();
    } else {
        crate::migrate(&pool).await?;
    }
    let report = bench::run(&pool, &config, options)
        .await
        .map_err(|e| CliError::runtime(format!("bench: {e}")))?;
    pool.close().await;
    Ok(report)
}

fn render(r: &Report) -> String {
    let rate = |v: f64| format!("{v:.0}");
    let i = &r.isolation;
    // A late notification is counted at the bound: the percentile is then a floor, not a
    // measurement, and the row says so.
    let late = |late: u64| match late {
        0 => "ms".to_owned(),
        late => {
            let (samples, bound_s) = (i.samples, i.bound_ms / 1000.0);
            format!(
                "ms ({late} of {samples} not received within {bound_s:.0} s, counted as {bound_s:.0} s)"
            )
        }
    };
    let mut rows = vec![
        vec![
            "enqueue_single".into(),
            rate(r.enqueue_single_per_s),
            format!(
                "notifications/s ({} clients, one notification per call; overlapping calls share commits)",
                r.clients
            ),
        ],
        vec![
            "api_enqueue".into(),
            rate(r.api_enqueue_per_s),
            format!(
                "notifications/s (POST /v1/notifications, {} clients; {:.2}x enqueue_single)",
                r.clients,
                r.api_enqueue_per_s / r.enqueue_single_per_s
            ),
        ],
        vec![
            "enqueue_batch".into(),
            rate(r.enqueue_batch_per_s),
            "notifications/s (enqueue_many of 1,000)".into(),
        ],
        vec![
            "enqueue_sql_batch".into(),
            rate(r.enqueue_sql_batch_per_s),
            "notifications/s (SQL herald.enqueue_many of 1,000)".into(),
        ],
        vec![
            "enqueue_in_tx_overhead".into(),
            format!("{:.2}", r.enqueue_in_tx_overhead),
            "x (an application transaction with herald::enqueue over the same without it)".into(),
        ],
        vec![
            "dispatch_null".into(),
            rate(r.dispatch_null_per_s),
            format!(
                "notifications/s (no-op channel; workers {}, batch {})",
                r.workers, r.batch_size
            ),
        ],
        vec![
            "dispatch_webhook".into(),
            rate(r.dispatch_webhook_per_s),
            "notifications/s (signed POSTs to loopback, one daemon)".into(),
        ],
        vec![
            "http_client_ceiling".into(),
            rate(r.http_client_ceiling_per_s),
            format!(
                "requests/s (bare reqwest client, {} in flight, same receiver, no database; webhook dispatch {:.2}x of it)",
                r.workers,
                r.dispatch_webhook_per_s / r.http_client_ceiling_per_s
            ),
        ],
        vec![
            "latency_p50".into(),
            format!("{:.2}", r.latency_ms.p50),
            "ms (enqueue commit to received, idle daemon)".into(),
        ],
        vec![
            "latency_p99".into(),
            format!("{:.2}", r.latency_ms.p99),
            "ms".into(),
        ],
        vec![
            "isolation_healthy_p50".into(),
            format!("{:.2}", i.healthy_p50_ms),
            format!(
                "ms (enqueue commit to received, healthy endpoint, while a {} s endpoint of its tenant has {} due and another tenant bursts {} over {} endpoints)",
                isolation::SLOW_DELAY.as_secs(),
                i.slow_backlog,
                i.burst,
                isolation::BURST_ENDPOINTS
            ),
        ],
        vec![
            "isolation_healthy_p99".into(),
            format!("{:.2}", i.healthy_p99_ms),
            late(i.healthy_late),
        ],
        vec![
            "isolation_alone_p50".into(),
            format!("{:.2}", i.alone_p50_ms),
            "ms (the same endpoint, no neighbours)".into(),
        ],
        vec![
            "isolation_alone_p99".into(),
            format!("{:.2}", i.alone_p99_ms),
            late(i.alone_late),
        ],
        vec![
            "rss".into(),
            r.rss_mb
                .map(|mb| format!("{mb:.1}"))
                .unwrap_or_else(|| "-".into()),
            "MiB peak while dispatching".into(),
        ],
    ];
    if let Some(c) = &r.console {
        rows.push(vec![
            "console_p50".into(),
            format!("{:.2}", c.page_ms.p50),
            format!(
                "ms (the console's notifications page, 9 filters, {} rows, one request at a time)",
                c.rows
            ),
        ]);
        rows.push(vec![
            "console_p99".into(),
            format!("{:.2}", c.page_ms.p99),
            format!(
                "ms (slowest filter: {:?} at p99 {:.2} ms)",
                c.worst_filter, c.worst_filter_p99_ms
            ),
        ]);
    }
    if let Some(h) = &r.history {
        rows.extend([
            vec![
                "history_rows".into(),
                h.rows.to_string(),
                format!("finished rows loaded in {:.1} s", h.load_s),
            ],
            vec![
                "history_enqueue_single".into(),
                rate(h.enqueue_single_per_s),
                "notifications/s".into(),
            ],
            vec![
                "history_dispatch_null".into(),
                rate(h.dispatch_null_per_s),
                format!(
                    "notifications/s ({:.2}x slower than empty)",
                    h.dispatch_null_slowdown
                ),
            ],
            vec![
                "sweep".into(),
                rate(h.sweep_rows_per_s),
                format!("rows/s ({} rows)", h.sweep_rows),
            ],
            vec![
                "enqueue_p99_before_sweep".into(),
                format!("{:.2}", h.enqueue_ms_before_sweep.p99),
                "ms (serial probe)".into(),
            ],
            vec![
                "enqueue_p99_during_sweep".into(),
                format!("{:.2}", h.enqueue_ms_during_sweep.p99),
                "ms".into(),
            ],
        ]);
    }
    table(&["PHASE", "VALUE", "UNIT"], &rows)
}

/// SIGINT and SIGTERM, listened for from before the scratch database exists, so that a signal
/// at any moment ends the run through the drop.
struct Interrupts {
    interrupt: Signal,
    terminate: Signal,
}

impl Interrupts {
    fn listen() -> Result<Self, CliError> {
        let listen = |kind| {
            signal(kind).map_err(|e| CliError::runtime(format!("cannot listen for signals: {e}")))
        };
        Ok(Interrupts {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
        })
    }

    /// Resolves on the first of them, naming it.
    async fn received(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
