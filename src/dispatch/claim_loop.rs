//! The claim loop: claims due notifications for free workers and hands each to a delivery task.
//!
//! Invariants:
//! - A claim reserves its workers and lease slots before it is sent, so claims in flight never
//!   promise more rows than there are workers for; a claimed row takes one of each, and the
//!   unused rest goes back when the claim returns.
//! - While a backlog drains (the last claim came back full), up to [`CLAIMS_IN_FLIGHT`] claims
//!   run at once, each for at most its share of the workers: a claim costs a commit (a WAL
//!   flush), and with one in flight the daemon waited for every flush in turn. `SKIP LOCKED`
//!   keeps concurrent claims apart. Otherwise one claim at a time, so an idle daemon polls with
//!   one statement.
//! - A claim in flight is always awaited and its rows delivered, also at shutdown: its rows are
//!   leased in the database whether or not anyone listens for the answer.
//! - Idle (`--until-idle`) only on evidence: the last claim ran, found nothing, and nothing is
//!   claimed, running, in flight or waiting for a retry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{RunOptions, Shared, lock, recorder, store, worker};
use crate::delivery::Delivery;

/// Claims in flight at once while a backlog drains.
pub(super) const CLAIMS_IN_FLIGHT: usize = 2;

/// The workers and lease slots a claim may fill, held from before it is sent until its rows
/// take theirs.
struct Reservation {
    wanted: usize,
    workers: OwnedSemaphorePermit,
    leases: OwnedSemaphorePermit,
}

impl Reservation {
    /// One row's share: a worker and a lease slot.
    fn take_one(&mut self) -> Option<worker::Slots> {
        Some(worker::Slots {
            worker: self.workers.split(1)?,
            lease: self.leases.split(1)?,
        })
    }
}

type ClaimResult = (Result<Vec<Delivery>, sqlx::Error>, Reservation);
/// Claims run as tasks of their own, so each is on its way the moment it is started, whatever
/// the loop awaits meanwhile.
type InFlight = FuturesUnordered<tokio::task::JoinHandle<ClaimResult>>;

/// Capacity of the daemon: what bounds claims and when one is worth sending.
struct Capacity {
    workers: Arc<Semaphore>,
    leases: Arc<Semaphore>,
    worker_count: usize,
    lease_slots: usize,
    batch_size: usize,
    /// While deliveries run, a claim waits until this many workers are free: claiming one row
    /// per finished delivery would spend a round trip and a commit on each.
    threshold: usize,
}

impl Capacity {
    fn new(workers: usize, batch_size: usize) -> Self {
        // A worker is free again once its delivery ended; its outcome then waits for the
        // recorder's next group commit under a lease slot. Without that split, every worker
        // would sit idle for a whole commit after each delivery, capping throughput at
        // workers / commit time. Lease slots bound what is claimed but not yet recorded.
        let lease_slots = workers + recorder::QUEUED_OUTCOMES;
        Capacity {
            workers: Arc::new(Semaphore::new(workers)),
            leases: Arc::new(Semaphore::new(lease_slots)),
            worker_count: workers,
            lease_slots,
            batch_size,
            threshold: (batch_size.min(workers) / 4).max(1),
        }
    }

    /// Reserves room for the next claim, or `None` when too little is free. With `share` > 1,
    /// asks for at most that fraction of the workers, so that many claims fit at once.
    fn reserve(&self, share: usize) -> Option<Reservation> {
        let free = self
            .workers
            .available_permits()
            .min(self.leases.available_permits());
        let busy = free < self.worker_count;
        if free == 0 || (busy && free < self.threshold) {
            return None;
        }
        let wanted = free
            .min(self.batch_size)
            .min(self.worker_count.div_ceil(share));
        // Only this loop takes these permits, and it just saw them free.
        let workers = self
            .workers
            .clone()
            .try_acquire_many_owned(wanted as u32)
            .ok()?;
        let leases = self
            .leases
            .clone()
            .try_acquire_many_owned(wanted as u32)
            .ok()?;
        Some(Reservation {
            wanted,
            workers,
            leases,
        })
    }

    fn all_free(&self) -> bool {
        self.workers.available_permits() == self.worker_count
            && self.leases.available_permits() == self.lease_slots
    }
}

pub(super) async fn claim_loop(
    shared: &Arc<Shared>,
    options: RunOptions,
    shutdown: &CancellationToken,
    deliveries: &TaskTracker,
    abort: &CancellationToken,
) {
    let config = &shared.config.dispatcher;
    let capacity = Capacity::new(config.workers, config.batch_size);
    let mut claims = InFlight::new();
    let mut backoff = Backoff::default();
    let mut paused_until: Option<Instant> = None;
    let mut last_rescue: Option<Instant> = None;
    let mut recheck_soon = false;
    // Whether due work may be waiting: at the start, after a wake-up or a poll interval, after
    // a rescue, and while claims come back full.
    let mut look = true;
    // The last claim came back full: more is probably due.
    let mut draining = false;
    // The last claim ran and found nothing.
    let mut found_nothing = false;
    // A reason to look (a wake-up, rescued rows) arrived that no claim sent since has covered:
    // a claim in flight took its snapshot before it, so its coming back short proves nothing.
    let mut uncovered = false;
    loop {
        let paused = paused_until.is_some_and(|until| Instant::now() < until);
        if look && !shutdown.is_cancelled() && !paused {
            let limit = if draining { CLAIMS_IN_FLIGHT } else { 1 };
            while claims.len() < limit {
                let Some(reservation) = capacity.reserve(limit) else {
                    break;
                };
                claims.push(tokio::spawn(claim(shared.clone(), reservation)));
                uncovered = false;
            }
        }
        // After starting the claims, not before: a wake-up's work starts without waiting for it.
        let mut rescued = 0;
        if !shutdown.is_cancelled()
            && last_rescue.is_none_or(|at| at.elapsed() >= config.poll_interval)
        {
            last_rescue = Some(Instant::now());
            rescued = rescue_expired(shared).await;
        }
        if rescued > 0 {
            (look, uncovered) = (true, true); // rescued rows are due now
            continue;
        }

        if !claims.is_empty() {
            tokio::select! {
                Some(joined) = claims.next() => {
                    let failure = match joined {
                        Ok((Ok(batch), reservation)) => {
                            backoff.reset();
                            draining = batch.len() == reservation.wanted;
                            look = draining || uncovered;
                            found_nothing = batch.is_empty() && claims.is_empty() && !uncovered;
                            start_deliveries(shared, batch, reservation, deliveries, abort);
                            None
                        }
                        Ok((Err(e), _)) => Some(crate::database::reason_of(&e)),
                        // Short of a bug it cannot panic; its reservation went back with it.
                        Err(e) => Some(format!("the claim task failed: {e}")),
                    };
                    if let Some(error) = failure {
                        crate::metrics::database_error(crate::metrics::DbOperation::Claim);
                        let pause = backoff.next();
                        tracing::warn!(%error, retry_in = ?pause, "cannot claim notifications");
                        paused_until = Some(Instant::now() + pause);
                        (look, draining, found_nothing) = (false, false, false);
                    }
                }
                // Finished deliveries free workers for the next claim while one is in flight.
                _ = shared.wake.notified(), if draining && claims.len() < CLAIMS_IN_FLIGHT => {
                    uncovered = true;
                }
            }
            continue;
        }

        if shutdown.is_cancelled() {
            break;
        }
        if options.until_idle
            && found_nothing
            && !paused
            && capacity.all_free()
            && lock(&shared.in_flight).is_empty()
            && !retries_pending(shared).await
            && !running_anywhere(shared).await
        {
            tracing::info!("idle: nothing running, nothing due, no retry waiting");
            break;
        }
        // A NOTIFY is debounced per enqueuing process: an enqueue that committed just after the
        // one that woke us may have sent none, so look again shortly after a wake-up.
        let wait = match paused_until {
            Some(until) if paused => until.saturating_duration_since(Instant::now()),
            _ if recheck_soon => crate::wake::DEBOUNCE,
            _ => config.poll_interval,
        };
        recheck_soon = false;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = shared.wake.notified() => recheck_soon = !paused,
            _ = tokio::time::sleep(wait) => {}
        }
        look = true;
    }
}

async fn claim(shared: Arc<Shared>, reservation: Reservation) -> ClaimResult {
    let config = &shared.config.dispatcher;
    let result = async {
        let mut conn = shared.pool.acquire().await?;
        store::claim_due(
            &mut conn,
            &shared.owner,
            reservation.wanted as i64,
            config.lease,
        )
        .await
    }
    .await;
    (result, reservation)
}

fn start_deliveries(
    shared: &Arc<Shared>,
    batch: Vec<Delivery>,
    mut reservation: Reservation,
    deliveries: &TaskTracker,
    abort: &CancellationToken,
) {
    for n in batch {
        let Some(slots) = reservation.take_one() else {
            // Unreachable: a claim returns at most the rows it reserved room for. Leave the
            // rest to lease expiry rather than overrun the workers.
            tracing::error!(id = %n.id, "no free worker for a claimed notification");
            break;
        };
        lock(&shared.in_flight).insert(n.id, n.lease_token);
        deliveries.spawn(worker::deliver(shared.clone(), n, abort.clone(), slots));
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
    let ids: Vec<uuid::Uuid> = lock(&shared.retries_waiting).iter().copied().collect();
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

    #[test]
    fn a_reservation_holds_its_permits_until_its_rows_take_them() {
        let capacity = Capacity::new(32, 32);
        let mut first = capacity.reserve(1).expect("everything is free");
        assert_eq!(first.wanted, 32);
        assert!(capacity.reserve(1).is_none(), "nothing is left to reserve");
        let slot = first.take_one().expect("a row's share");
        drop(first); // the claim returned one row: the other 31 come back
        assert_eq!(capacity.workers.available_permits(), 31);
        drop(slot);
        assert!(capacity.all_free());
    }

    #[test]
    fn while_draining_two_claims_share_the_workers() {
        let capacity = Capacity::new(32, 32);
        let first = capacity
            .reserve(CLAIMS_IN_FLIGHT)
            .expect("everything is free");
        let second = capacity.reserve(CLAIMS_IN_FLIGHT).expect("half is free");
        assert_eq!((first.wanted, second.wanted), (16, 16));
        assert!(capacity.reserve(CLAIMS_IN_FLIGHT).is_none());
    }

    #[test]
    fn a_busy_daemon_waits_for_a_quarter_batch_of_free_workers() {
        let capacity = Capacity::new(32, 32);
        let mut all = capacity.reserve(1).expect("everything is free");
        let held: Vec<_> = (0..25).map(|_| all.take_one().unwrap()).collect();
        drop(all); // 7 free: below the threshold of 8
        assert!(capacity.reserve(1).is_none());
        drop(held);
        assert_eq!(capacity.reserve(1).map(|r| r.wanted), Some(32));
    }
}
