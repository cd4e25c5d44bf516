//! Group commit of attempt outcomes: workers hand their outcome to one recorder task, which
//! writes everything that has arrived in one statement, fenced per row by its lease token.
//!
//! Why: recording each attempt in its own transaction costs a commit per notification, which
//! capped delivery near the raw per-job ceiling of two commits (claim, complete). Batching
//! needs no timer: while one statement runs, the next outcomes queue up.
//!
//! The same statement moves the destinations' breakers; each change is logged once here, and
//! with `alerts.endpoint` set, its event (and each dead notification's) is enqueued in the
//! outcome's own transaction.

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::alerts;
use crate::state::State;
use crate::store::dispatch::{self as store, BreakerChange, BreakerPolicy, OutcomeRow, Recorded};

/// The most outcomes written by one statement. Past about a hundred, a statement costs more
/// per outcome, not less (its row locks and index updates pile up in one transaction), and a
/// slow statement lets the next batch grow bigger still; `herald bench`'s null dispatch is the
/// figure to watch when changing it.
const MAX_BATCH: usize = 64;

/// Outcomes that may wait for the recorder beyond those of busy workers: two full statements'
/// worth, so that deliveries go on while one statement runs and the next fills up.
pub(super) const QUEUED_OUTCOMES: usize = 2 * MAX_BATCH;

/// Why an outcome could not be written; the worker tries again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct RecordError(pub String);

struct Job {
    attempt: OutcomeRow,
    /// `Ok(true)`: recorded; `Ok(false)`: the lease was lost.
    reply: oneshot::Sender<Result<bool, RecordError>>,
}

#[derive(Clone)]
pub(super) struct Recorder {
    jobs: mpsc::Sender<Job>,
}

/// What the recorder needs besides the outcomes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    pub breaker: BreakerPolicy,
    /// `alerts.endpoint`.
    pub alerts: Option<Uuid>,
}

impl Recorder {
    /// Starts the recorder task; it runs until `stop` is cancelled.
    pub(super) fn start(
        pool: PgPool,
        settings: Settings,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        let task = tokio::spawn(write_batches(pool, settings, queue, stop));
        (Recorder { jobs }, task)
    }

    /// Records one attempt; returns whether its lease was still held.
    pub(super) async fn record(&self, attempt: OutcomeRow) -> Result<bool, RecordError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { attempt, reply })
            .await
            .map_err(|_| RecordError("the recorder has stopped".into()))?;
        answer
            .await
            .map_err(|_| RecordError("the recorder has stopped".into()))?
    }
}

async fn write_batches(
    pool: PgPool,
    settings: Settings,
    mut queue: mpsc::Receiver<Job>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            job = queue.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let attempts: Vec<OutcomeRow> = batch.iter().map(|job| job.attempt.clone()).collect();
        match record(&pool, &attempts, settings).await {
            Ok(recorded) => {
                recorded.breakers.iter().for_each(report);
                for job in batch.drain(..) {
                    let held = (job.attempt.id, job.attempt.lease_token);
                    let _ = job.reply.send(Ok(recorded.leases.contains(&held)));
                }
            }
            Err(e) => {
                crate::metrics::database_error(crate::metrics::DbOperation::Record);
                let reason = crate::database::reason_of(&e);
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(RecordError(reason.clone())));
                }
            }
        }
    }
}

/// One outcome statement, and with alerts on, its events in the same transaction.
async fn record(
    pool: &PgPool,
    attempts: &[OutcomeRow],
    settings: Settings,
) -> Result<Recorded, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let Some(alerts_endpoint) = settings.alerts else {
        return store::record_outcomes(&mut conn, attempts, settings.breaker).await;
    };
    let mut tx = crate::pooling::begin(&mut conn).await?;
    let recorded = store::record_outcomes(&mut tx, attempts, settings.breaker).await?;
    let dead: Vec<Uuid> = attempts
        .iter()
        .filter(|a| a.next_state == State::Dead && recorded.leases.contains(&(a.id, a.lease_token)))
        .map(|a| a.id)
        .collect();
    if !(recorded.breakers.is_empty() && dead.is_empty())
        && let Some(target) = alerts::target(&mut tx, alerts_endpoint).await?
    {
        let mut events: Vec<_> = recorded
            .breakers
            .iter()
            .filter_map(|change| alerts::breaker_event(&target, change))
            .collect();
        events.extend(alerts::dead_events(&mut tx, &target, &dead).await?);
        alerts::enqueue(&mut tx, &events).await?;
    }
    tx.commit().await?;
    Ok(recorded)
}

/// One log line and one count per breaker transition.
fn report(change: &BreakerChange) {
    crate::metrics::breaker_transition(&change.to);
    let next_probe_at = change.next_probe_at.map(|at| at.to_rfc3339());
    match change.to.as_str() {
        "open" => tracing::warn!(
            destination = %change.destination,
            from = %change.from,
            consecutive_failures = change.consecutive_failures,
            next_probe_at = next_probe_at.as_deref().unwrap_or(""),
            "circuit breaker open: its notifications wait without spending attempts"
        ),
        _ => tracing::info!(
            destination = %change.destination,
            from = %change.from,
            to = %change.to,
            "circuit breaker {}",
            change.to
        ),
    }
}
