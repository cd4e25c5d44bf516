//! Group commit of attempt outcomes: workers hand their outcome to one recorder task, which
//! writes everything that has arrived in one statement, fenced per row by its lease token.
//!
//! Why: recording each attempt in its own transaction costs a commit per notification, which
//! capped delivery near the raw per-job ceiling of two commits (claim, complete). Batching
//! needs no timer: while one statement runs, the next outcomes queue up.

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::store::dispatch::{self as store, OutcomeRow};

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

impl Recorder {
    /// Starts the recorder task; it runs until `stop` is cancelled.
    pub(super) fn start(
        pool: PgPool,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        let task = tokio::spawn(write_batches(pool, queue, stop));
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

async fn write_batches(pool: PgPool, mut queue: mpsc::Receiver<Job>, stop: CancellationToken) {
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
        let result = async {
            let mut conn = pool.acquire().await?;
            store::record_outcomes(&mut conn, &attempts).await
        }
        .await;
        match result {
            Ok(recorded) => {
                for job in batch.drain(..) {
                    let held = (job.attempt.id, job.attempt.lease_token);
                    let _ = job.reply.send(Ok(recorded.contains(&held)));
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
