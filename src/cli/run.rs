//! `herald run`: the dispatcher daemon, with signal handling.

use std::sync::Arc;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::error::CliError;
use crate::channel::email::EmailSender;
use crate::channel::templates::Templates;
use crate::channel::webhook::WebhookSender;
use crate::dispatch::{Dispatcher, RunOptions, Senders};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Concurrent deliveries (default: dispatcher.workers).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    workers: Option<u32>,
    /// Drain and exit 0: once nothing is running, nothing is due, and no retry of an attempt
    /// this daemon made is still waiting.
    #[arg(long)]
    until_idle: bool,
    /// Do not create the database or apply migrations at start.
    #[arg(long)]
    no_migrate: bool,
}

pub async fn run(ctx: &Context, args: RunArgs) -> Result<(), CliError> {
    let mut config = ctx.config.clone();
    if let Some(workers) = args.workers {
        config.dispatcher.workers = workers as usize;
    }
    let (templates, loaded) =
        Templates::load(&config.templates.dir).map_err(|e| CliError::usage(e.to_string()))?;
    let webhook = WebhookSender::new(&config.webhook)
        .map_err(|e| CliError::runtime(format!("cannot set up the HTTP client: {e}")))?;
    let templates_dir = templates.dir().to_owned();
    let email = EmailSender::new(
        &config.smtp,
        config.dispatcher.workers as u32,
        Arc::new(templates),
    )
    .map_err(|e| CliError::usage(format!("config: {e}")))?;

    // Bound before anything else starts, so an address in use stops the start at once.
    let metrics_listener = match config.metrics.listen_addr() {
        Some(addr) => Some(
            crate::metrics::server::bind(addr)
                .await
                .map_err(|e| CliError::runtime(e.to_string()))?,
        ),
        None => None,
    };
    let api_listener = match config.api.listen_addr() {
        Some(addr) => Some(super::serve::bind(addr).await?),
        None => None,
    };

    let pool = if args.no_migrate {
        let pool = ctx.pool(false).await?;
        // Fail at start, not in the claim loop, when the schema is not there. One
        // simple-protocol message: fine through a transaction-mode pooler too.
        sqlx::raw_sql("select 1 from herald.notifications limit 0")
            .execute(&pool)
            .await?;
        pool
    } else {
        let direct = ctx.migration_pool().await?;
        crate::migrate(&direct).await?;
        record_payload_ceiling(&direct, config.limits.max_payload_bytes).await?;
        match ctx.listen_url() {
            Some(_) => {
                direct.close().await;
                ctx.pool(false).await?
            }
            None => direct,
        }
    };
    if api_listener.is_some() {
        super::serve::check_role(&pool).await?;
    }
    if ctx.listen_url().is_some() {
        tracing::info!(
            "transaction pooling: statements unnamed, each in a transaction; LISTEN and migrations on database.listen_url"
        );
    }
    // Logged once the database answered, so a start that fails prints only its error.
    if loaded.is_empty() {
        tracing::warn!(dir = %templates_dir.display(), "no email templates found: email notifications will go dead until their templates exist");
    }
    for t in &loaded {
        tracing::info!(r#type = %t.type_, html = t.html, dir = %templates_dir.display(), "email template loaded");
    }
    if let Ok(schedule) = crate::config::schedule::parse(&config.sweeper.schedule) {
        let next: Vec<String> = crate::config::schedule::next_fires(&schedule, 3)
            .iter()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .collect();
        tracing::info!(
            schedule = %config.sweeper.schedule,
            retention = %humantime::format_duration(config.sweeper.retention),
            next = %next.join(", "),
            "sweeper scheduled (UTC)"
        );
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let metrics_stop = CancellationToken::new();
    let metrics_server = metrics_listener.map(|listener| {
        tokio::spawn(crate::metrics::server::serve(
            listener,
            config.metrics.bounds(),
            pool.connect_options(),
            config.metrics.state_refresh,
            shutdown.clone(),
            metrics_stop.clone(),
        ))
    });

    // The API beside the dispatcher: not ready once stopping, closed after the dispatcher drained.
    let api_stop = CancellationToken::new();
    let api_server = api_listener.map(|listener| {
        let (config, pool) = (config.clone(), pool.clone());
        let (stopping, stop) = (shutdown.clone(), api_stop.clone());
        tokio::spawn(
            async move { crate::api::serve(listener, &config, pool, stopping, stop).await },
        )
    });
    let dispatcher = Dispatcher::new(pool.clone(), config.clone(), Senders { webhook, email });
    tracing::info!(
        owner = dispatcher.owner(),
        workers = config.dispatcher.workers,
        until_idle = args.until_idle,
        "herald dispatcher started"
    );
    // The sweeper runs beside the dispatcher, from start until the dispatcher has drained.
    let sweeper_stop = CancellationToken::new();
    let sweeper = tokio::spawn(crate::sweeper::run_on_schedule(
        pool.clone(),
        config.sweeper.clone(),
        sweeper_stop.clone(),
    ));
    let summary = dispatcher
        .run(
            RunOptions {
                until_idle: args.until_idle,
            },
            shutdown,
        )
        .await;
    sweeper_stop.cancel();
    let _ = sweeper.await;
    metrics_stop.cancel();
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
    api_stop.cancel();
    if let Some(server) = api_server {
        let _ = server.await;
    }
    pool.close().await;
    tracing::info!(
        attempts = summary.attempts,
        released = summary.released,
        "herald dispatcher stopped"
    );
    Ok(())
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
pub(super) async fn stop_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = terminate => tracing::info!("SIGTERM: stopping"),
    }
    shutdown.cancel();
}

/// Records `limits.max_payload_bytes` as the enqueue functions' ceiling when this login may
/// (herald's owner); otherwise warns when the ceiling in force differs from it.
pub(super) async fn record_payload_ceiling(
    pool: &sqlx::PgPool,
    configured: usize,
) -> Result<(), CliError> {
    let mut conn = pool.acquire().await?;
    if crate::store::settings::record_payload_ceiling(&mut conn, configured).await? {
        return Ok(());
    }
    let ceiling = crate::store::settings::payload_ceiling(&mut conn).await?;
    if ceiling != configured {
        tracing::warn!(
            configured,
            ceiling,
            "limits.max_payload_bytes differs from the database's ceiling, which only herald's owner records (herald migrate): enqueues are held to the smaller"
        );
    }
    Ok(())
}
