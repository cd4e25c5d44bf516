//! The dispatcher daemon: claims due notifications under fenced leases, delivers them outside
//! any transaction, records each attempt, and retries on schedule.
//!
//! Invariants (DESIGN.md guarantees 4–11):
//! - A claim commits before delivery starts; no transaction is open during SMTP or HTTP.
//! - Every state change after delivery is conditional on the lease token (see
//!   `store::dispatch`); a heartbeat extends the leases of deliveries still running.
//! - Wake-up is a hint: the loop drains due work whenever it is woken (NOTIFY, a finished
//!   delivery) and polls every `dispatcher.poll_interval` regardless.
//! - Shutdown stops claiming, gives in-flight deliveries `dispatcher.shutdown_grace`, then
//!   releases the leases of whatever is unfinished so another daemon takes it at once.
//! - A database outage never ends the daemon: each loop logs, backs off and resumes.
//!
//! Layout: `claim_loop` (this file) · `worker` (one delivery, one decided attempt) ·
//! `recorder` (group commit of outcomes) · `heartbeat` (lease extension) · `wakeup` (LISTEN) ·
//! `retry` (the pure retry policy).

mod heartbeat;
mod recorder;
pub mod retry;
mod wakeup;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::channel::Outcome;
use crate::channel::email::EmailSender;
use crate::channel::webhook::WebhookSender;
use crate::config::Config;
use crate::state::Channel;
use crate::store::dispatch::{self as store, Claimed};

/// How a daemon runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Exit once nothing is running (on any daemon), nothing is due, and no retry of an attempt
    /// this daemon made is still waiting.
    pub until_idle: bool,
}

/// The channels a daemon delivers through.
pub struct Senders {
    pub webhook: WebhookSender,
    pub email: EmailSender,
}

impl Senders {
    async fn deliver(&self, n: &Claimed) -> Outcome {
        // Retrying cannot make it readable.
        if let Some(problem) = n.payload.problem() {
            return Outcome::give_up(problem);
        }
        match n.channel {
            Channel::Webhook => self.webhook.deliver(n).await,
            Channel::Email => self.email.deliver(n).await,
        }
    }
}

/// What turns a claim into an outcome: the real channels, or, for `herald bench`'s
/// `dispatch_null` phase only, nothing at all (every claim "delivered" at once), which measures
/// the queue's own cost: claim, lease, outcome and attempt log. The null path is crate-private:
/// no configuration, flag or notification can select it.
enum Delivery {
    Channels(Senders),
    Null,
}

impl Delivery {
    async fn deliver(&self, n: &Claimed) -> Outcome {
        match self {
            Delivery::Channels(senders) => senders.deliver(n).await,
            Delivery::Null => Outcome::Delivered {
                status: None,
                detail: None,
            },
        }
    }
}

/// What a run did, for its last log line and for tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub attempts: u64,
    /// Unfinished deliveries whose leases were handed back at shutdown.
    pub released: u64,
}

/// State shared by the claim loop, the workers and the heartbeat.
struct Shared {
    pool: PgPool,
    config: Config,
    delivery: Delivery,
    owner: String,
    /// Leases this daemon holds: notification id → lease token.
    in_flight: Mutex<HashMap<Uuid, Uuid>>,
    /// Notifications this daemon scheduled a retry for (for `--until-idle`).
    retries_waiting: Mutex<HashSet<Uuid>>,
    /// Signalled by NOTIFY and by every finished delivery.
    wake: Notify,
    recorder: recorder::Recorder,
    attempts: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn held_leases(&self) -> Vec<(Uuid, Uuid)> {
        lock(&self.in_flight)
            .iter()
            .map(|(id, token)| (*id, *token))
            .collect()
    }
}

/// A poisoned lock only means another task panicked while holding it; the maps stay usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct Dispatcher {
    shared: Arc<Shared>,
    /// The recorder outlives every delivery: it stops only after they all finished.
    recorder_stop: CancellationToken,
    recorder_task: tokio::task::JoinHandle<()>,
}

impl Dispatcher {
    pub fn new(pool: PgPool, config: Config, senders: Senders) -> Self {
        Self::with_delivery(pool, config, Delivery::Channels(senders))
    }

    /// A dispatcher that delivers nothing: for `herald bench` (see [`Delivery`]).
    pub(crate) fn without_delivery(pool: PgPool, config: Config) -> Self {
        Self::with_delivery(pool, config, Delivery::Null)
    }

    fn with_delivery(pool: PgPool, config: Config, delivery: Delivery) -> Self {
        let recorder_stop = CancellationToken::new();
        let (recorder, recorder_task) =
            recorder::Recorder::start(pool.clone(), recorder_stop.clone());
        Dispatcher {
            recorder_stop,
            recorder_task,
            shared: Arc::new(Shared {
                recorder,
                pool,
                config,
                delivery,
                owner: owner_name(),
                in_flight: Mutex::new(HashMap::new()),
                retries_waiting: Mutex::new(HashSet::new()),
                wake: Notify::new(),
                attempts: Default::default(),
            }),
        }
    }

    /// This daemon's name in `lease_owner`.
    pub fn owner(&self) -> &str {
        &self.shared.owner
    }

    /// Runs until `shutdown` is cancelled (or, with `until_idle`, until idle), then drains.
    pub async fn run(self, options: RunOptions, shutdown: CancellationToken) -> RunSummary {
        let shared = self.shared;
        let background = CancellationToken::new();
        let helpers = TaskTracker::new();
        helpers.spawn(wakeup::listen(shared.clone(), background.clone()));
        helpers.spawn(heartbeat::extend_leases(shared.clone(), background.clone()));
        helpers.spawn(crate::sweeper::run_on_schedule(
            shared.pool.clone(),
            shared.config.sweeper.clone(),
            background.clone(),
        ));

        let deliveries = TaskTracker::new();
        let abort = CancellationToken::new();
        claim_loop(&shared, options, &shutdown, &deliveries, &abort).await;

        deliveries.close();
        let grace = shared.config.dispatcher.shutdown_grace;
        if tokio::time::timeout(grace, deliveries.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = lock(&shared.in_flight).len(),
                "shutdown grace of {} over: interrupting deliveries still running",
                humantime::format_duration(grace)
            );
            abort.cancel();
            deliveries.wait().await;
        }
        // Stop the heartbeat (and the listener and sweeper) before releasing, so nothing else
        // touches this daemon's leases meanwhile.
        background.cancel();
        helpers.close();
        helpers.wait().await;
        let released = release_unfinished(&shared).await;
        self.recorder_stop.cancel();
        let _ = self.recorder_task.await;
        RunSummary {
            attempts: shared.attempts.load(std::sync::atomic::Ordering::Relaxed),
            released,
        }
    }
}

async fn claim_loop(
    shared: &Arc<Shared>,
    options: RunOptions,
    shutdown: &CancellationToken,
    deliveries: &TaskTracker,
    abort: &CancellationToken,
) {
    let config = &shared.config.dispatcher;
    let workers = Arc::new(Semaphore::new(config.workers));
    // A worker is free again once its delivery ended; its outcome then waits for the
    // recorder's next group commit under a lease slot. Without that split, every worker would
    // sit idle for a whole commit after each delivery, capping throughput at workers / commit
    // time. Lease slots bound what is claimed but not yet recorded.
    let lease_slots = config.workers + recorder::QUEUED_OUTCOMES;
    let leases = Arc::new(Semaphore::new(lease_slots));
    let mut backoff = Backoff::default();
    let mut last_rescue: Option<Instant> = None;
    let mut recheck_soon = false;
    let claim_threshold = (config.batch_size.min(config.workers) / 4).max(1);
    while !shutdown.is_cancelled() {
        let free = workers.available_permits().min(leases.available_permits());
        // While deliveries run, wait until a quarter of a batch's workers are free: claiming
        // one row per finished delivery would spend a round trip and a commit on each.
        let busy = free < config.workers;
        let wanted = if busy && free < claim_threshold {
            0
        } else {
            free.min(config.batch_size)
        };
        let mut claimed = 0;
        if wanted > 0 {
            let result = async {
                let mut conn = shared.pool.acquire().await?;
                store::claim_due(&mut conn, &shared.owner, wanted as i64, config.lease).await
            }
            .await;
            match result {
                Ok(batch) => {
                    backoff.reset();
                    claimed = batch.len();
                    for n in batch {
                        let (Ok(worker), Ok(lease)) = (
                            workers.clone().try_acquire_owned(),
                            leases.clone().try_acquire_owned(),
                        ) else {
                            // Unreachable: only this loop takes permits, and it asked for no
                            // more than were free. Hand the claim back rather than overrun.
                            tracing::error!(id = %n.id, "no free worker for a claimed notification");
                            break;
                        };
                        lock(&shared.in_flight).insert(n.id, n.lease_token);
                        let slots = worker::Slots { worker, lease };
                        deliveries.spawn(worker::deliver(shared.clone(), n, abort.clone(), slots));
                    }
                }
                Err(e) => {
                    crate::metrics::database_error(crate::metrics::DbOperation::Claim);
                    let pause = backoff.next();
                    tracing::warn!(error = %crate::database::reason_of(&e), retry_in = ?pause, "cannot claim notifications");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => continue,
                    }
                }
            }
        }
        // After the claim, not before: a wake-up's work starts without waiting for it.
        let mut rescued = 0;
        if last_rescue.is_none_or(|at| at.elapsed() >= config.poll_interval) {
            last_rescue = Some(Instant::now());
            rescued = rescue_expired(shared).await;
        }
        if rescued > 0 || (wanted > 0 && claimed == wanted) {
            continue; // rescued rows are due now, or a full batch: drain before waiting
        }
        // Idle only on evidence: a claim that ran and found nothing, with every worker free.
        if options.until_idle
            && wanted > 0
            && claimed == 0
            && workers.available_permits() == config.workers
            && leases.available_permits() == lease_slots
            && lock(&shared.in_flight).is_empty()
            && !retries_pending(shared).await
            && !running_anywhere(shared).await
        {
            tracing::info!("idle: nothing running, nothing due, no retry waiting");
            break;
        }
        // A NOTIFY is debounced per enqueuing process: an enqueue that committed just after the
        // one that woke us may have sent none, so look again shortly after a wake-up.
        let wait = if recheck_soon {
            crate::wake::DEBOUNCE
        } else {
            config.poll_interval
        };
        recheck_soon = false;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = shared.wake.notified() => recheck_soon = true,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Returns how many expired leases went back to pending (or dead).
async fn rescue_expired(shared: &Shared) -> u64 {
    let result = async {
        let mut conn = shared.pool.acquire().await?;
        store::rescue_expired(&mut conn, 1000).await
    }
    .await;
    match result {
        Ok(0) => 0,
        Ok(n) => {
            crate::metrics::leases_rescued(n);
            tracing::warn!(
                rescued = n,
                "returned notifications with expired leases to pending"
            );
            n
        }
        Err(e) => {
            crate::metrics::database_error(crate::metrics::DbOperation::Rescue);
            tracing::debug!(error = %crate::database::reason_of(&e), "lease rescue skipped");
            0
        }
    }
}

/// Whether a retry this daemon scheduled is still waiting or running somewhere.
async fn retries_pending(shared: &Shared) -> bool {
    let ids: Vec<Uuid> = lock(&shared.retries_waiting).iter().copied().collect();
    if ids.is_empty() {
        return false;
    }
    let result = async {
        let mut conn = shared.pool.acquire().await?;
        store::count_unfinished(&mut conn, &ids).await
    }
    .await;
    match result {
        Ok(0) => {
            lock(&shared.retries_waiting).clear();
            false
        }
        Ok(_) => true,
        // Cannot tell: keep waiting rather than exit early.
        Err(_) => true,
    }
}

/// Whether any daemon is delivering something (rows another daemon left `running` when it
/// stopped come back once their leases expire, and are drained too).
async fn running_anywhere(shared: &Shared) -> bool {
    let result = async {
        let mut conn = shared.pool.acquire().await?;
        store::any_running(&mut conn).await
    }
    .await;
    // Cannot tell: keep waiting rather than exit early.
    result.unwrap_or(true)
}

async fn release_unfinished(shared: &Shared) -> u64 {
    let held = shared.held_leases();
    if held.is_empty() {
        return 0;
    }
    let result = async {
        let mut conn = shared.pool.acquire().await?;
        store::release(&mut conn, &held).await
    }
    .await;
    match result {
        Ok(released) => {
            tracing::info!(released, "handed unfinished deliveries back to pending");
            released
        }
        Err(e) => {
            crate::metrics::database_error(crate::metrics::DbOperation::Release);
            tracing::warn!(
                error = %crate::database::reason_of(&e),
                "could not release leases; they return to pending when they expire"
            );
            0
        }
    }
}

/// `host:pid:random`, unique per daemon run.
fn owner_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "herald".into());
    let run = Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &run[..8])
}

/// Exponential backoff for database errors: 100 ms doubling to 5 s.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Backoff::FIRST,
        }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        now
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets() {
        let mut b = Backoff::default();
        let seen: Vec<u64> = (0..8).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(seen, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(100));
    }
}
