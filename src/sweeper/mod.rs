//! The retention sweeper: on `sweeper.schedule`, delete finished notifications (delivered,
//! dead, cancelled) whose `finished_at` is older than their retention window, with their
//! attempts, so their keys are free again.
//!
//! Invariants:
//! - Pending and running rows are never touched (see `store::sweep`).
//! - Each batch of `sweeper.batch_size` rows is its own short transaction, so enqueues and
//!   claims never wait long on it.
//! - One sweeper at a time: every batch takes a transaction-scoped advisory lock and a sweeper
//!   that cannot get it stops (another daemon is sweeping and will finish). A late tick, a double
//!   tick, or ticks on several daemons are all correct: the cutoff comes from the database clock
//!   at each batch, and a row can be deleted only once.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::{SweeperConfig, schedule};
use crate::store::sweep::{self as store, Retention, SweepCursor};

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub deleted: u64,
    pub batches: u32,
    /// It stopped because another sweeper held the lock.
    pub yielded: bool,
}

pub fn retention(config: &SweeperConfig) -> Retention {
    let mut by_type: Vec<(String, Duration)> = config
        .retention_by_type
        .iter()
        // ASCII letters only, as the sweep's SQL folds the rows' types (`lower(… collate "C")`):
        // Unicode case folding differs between Rust and the database's locale.
        .map(|(type_, window)| (type_.to_ascii_lowercase(), *window))
        .collect();
    by_type.sort();
    Retention {
        default: config.retention,
        by_type,
    }
}

/// Sweeps until no expired row is left, another sweeper has the lock, or `stop` is cancelled
/// (checked between batches). Each batch takes a pooled connection and gives it back.
pub async fn sweep(
    pool: &PgPool,
    config: &SweeperConfig,
    stop: &CancellationToken,
) -> Result<SweepReport, sqlx::Error> {
    let retention = retention(config);
    let mut report = SweepReport::default();
    let mut cursor = SweepCursor::default();
    while !stop.is_cancelled() {
        let batch = async {
            let mut conn = pool.acquire().await?;
            store::delete_batch(&mut conn, &retention, config.batch_size, &mut cursor).await
        }
        .await?;
        match batch {
            None => {
                report.yielded = true;
                return Ok(report);
            }
            Some(deleted) => {
                crate::metrics::swept(deleted);
                report.deleted += deleted;
                report.batches += 1;
                if deleted < config.batch_size as u64 {
                    return Ok(report);
                }
            }
        }
    }
    Ok(report)
}

/// How many rows a sweep would delete now.
pub async fn dry_run(pool: &PgPool, config: &SweeperConfig) -> Result<i64, sqlx::Error> {
    store::count_expired(&mut *pool.acquire().await?, &retention(config)).await
}

/// The daemon's sweeper task: sweeps at each fire time until `stop`.
pub async fn run_on_schedule(pool: PgPool, config: SweeperConfig, stop: CancellationToken) {
    let schedule = match schedule::parse(&config.schedule) {
        Ok(schedule) => schedule,
        Err(e) => {
            // Unreachable: the configuration was validated at start.
            tracing::error!(error = %e, "sweeper not started");
            return;
        }
    };
    loop {
        let Some(next) = schedule::next_fires(&schedule, 1).pop() else {
            return;
        };
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match sweep(&pool, &config, &stop).await {
            Ok(report) if report.yielded => {
                tracing::info!(
                    deleted = report.deleted,
                    "sweep: another daemon is sweeping; leaving it to finish"
                )
            }
            Ok(report) => tracing::info!(
                deleted = report.deleted,
                batches = report.batches,
                "sweep done"
            ),
            Err(e) => {
                crate::metrics::database_error(crate::metrics::DbOperation::Sweep);
                tracing::warn!(error = %crate::database::reason_of(&e), "sweep failed; the next tick tries again")
            }
        }
    }
}
