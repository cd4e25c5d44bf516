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
//! Layout: `claim_loop` (claims for free workers; two at once while a backlog drains), with
//! `claim_state` (when to claim, wait or stop: pure) and `capacity` (workers, lease slots) ·
//! `rescuer` (expired leases back to pending) ·
//! `worker` (one delivery, one decided attempt) · `recorder` (group commit of outcomes) ·
//! `heartbeat` (lease extension) · `wakeup` (LISTEN) · `decision` and `retry` (what an
//! outcome means, pure). The sweeper is not part of it: `herald run` starts it beside.

mod alerts;
mod capacity;
mod claim_loop;
mod claim_state;
mod decision;
mod heartbeat;
mod recorder;
mod rescuer;
pub mod retry;
mod signal;
mod wakeup;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::channel::Outcome;
use crate::channel::email::EmailSender;
use crate::channel::webhook::WebhookSender;
use crate::config::Config;
use crate::delivery::{Delivery, Target};
use crate::notification::MAX_PAYLOAD_DEPTH;
use crate::raw_payload::check_shape;
use crate::store::dispatch as store;

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
    async fn deliver(&self, n: &Delivery) -> Outcome {
        match &n.target {
            Target::Webhook {
                endpoint_id,
                endpoint,
            } => {
                self.webhook
                    .deliver(n, endpoint_id, endpoint.as_ref())
                    .await
            }
            Target::Email { address } => self.email.deliver(n, address).await,
        }
    }
}

/// What turns a claim into an outcome: the real channels, or, for `herald bench`'s
/// `dispatch_null` phase only, nothing at all (every claim "delivered" at once), which measures
/// the queue's own cost: claim, lease, outcome and attempt log. The null path is crate-private:
/// no configuration, flag or notification can select it.
enum Deliverer {
    Channels(Senders),
    Null,
}

impl Deliverer {
    async fn deliver(&self, n: &Delivery) -> Outcome {
        // Only a plain-SQL writer with the owner's rights can store a payload that enqueue
        // refuses; receivers never get one (many JSON readers stop at 100 or 128 levels), and
        // retrying cannot change it.
        if let Err(problem) = check_shape(n.payload.raw(), MAX_PAYLOAD_DEPTH) {
            return Outcome::give_up(format!(
                "the stored payload cannot be delivered: {problem}, which herald's enqueue refuses"
            ));
        }
        match self {
            Deliverer::Channels(senders) => senders.deliver(n).await,
            Deliverer::Null => Outcome::Delivered {
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
    deliverer: Deliverer,
    owner: String,
    /// Leases this daemon holds: notification id → lease token.
    in_flight: Mutex<HashMap<Uuid, Uuid>>,
    /// Lease tokens of claims that failed without an answer: the claim may have committed,
    /// leasing rows to this daemon that it never heard of. The next claim hands them back.
    unanswered_claims: Mutex<Vec<Uuid>>,
    /// Notifications this daemon scheduled a retry for (for `--until-idle`).
    retries_waiting: Mutex<HashSet<Uuid>>,
    /// Where this daemon's last claim's window of lanes ended (fair share, `store::dispatch`).
    lane_cursor: Mutex<store::LaneCursor>,
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
        Self::with_deliverer(pool, config, Deliverer::Channels(senders))
    }

    /// A dispatcher that delivers nothing: for `herald bench` (see [`Deliverer`]).
    pub(crate) fn without_delivery(pool: PgPool, config: Config) -> Self {
        Self::with_deliverer(pool, config, Deliverer::Null)
    }

    fn with_deliverer(pool: PgPool, config: Config, deliverer: Deliverer) -> Self {
        let recorder_stop = CancellationToken::new();
        let settings = recorder::Settings {
            breaker: config.breaker_policy(),
            alerts: config.alerts.endpoint_id(),
        };
        let (recorder, recorder_task) =
            recorder::Recorder::start(pool.clone(), settings, recorder_stop.clone());
        Dispatcher {
            recorder_stop,
            recorder_task,
            shared: Arc::new(Shared {
                recorder,
                pool,
                config,
                deliverer,
                owner: owner_name(),
                in_flight: Mutex::new(HashMap::new()),
                unanswered_claims: Mutex::new(Vec::new()),
                retries_waiting: Mutex::new(HashSet::new()),
                lane_cursor: Mutex::new(store::LaneCursor::default()),
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
        // The rescuer runs while the claim loop does: it stops taking leases back at shutdown,
        // as the loop stops claiming, and when an `--until-idle` run ends.
        let claiming = shutdown.child_token();
        helpers.spawn(rescuer::rescue_expired_leases(
            shared.clone(),
            claiming.clone(),
        ));

        let deliveries = TaskTracker::new();
        let abort = CancellationToken::new();
        claim_loop::claim_loop(&shared, options, &shutdown, &deliveries, &abort).await;
        claiming.cancel();

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
        // Stop the heartbeat (and the listener) before releasing, so nothing else
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

async fn release_unfinished(shared: &Shared) -> u64 {
    let mut tokens: Vec<Uuid> = lock(&shared.in_flight).values().copied().collect();
    tokens.extend(lock(&shared.unanswered_claims).iter());
    if tokens.is_empty() {
        return 0;
    }
    let result = async {
        let mut conn = shared.pool.acquire().await?;
        store::release(&mut conn, &tokens).await
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
