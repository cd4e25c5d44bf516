//! The claim loop: claims due notifications for free workers and hands each to a delivery task.
//! When to claim, wait or stop is decided by [`ClaimState`]; what a claim may take, by
//! [`Capacity`]. This file only performs what they decide.
//!
//! Invariants:
//! - A claim in flight is always awaited and its rows delivered, also at shutdown: its rows are
//!   leased in the database whether or not anyone listens for the answer.
//! - Claims run as tasks of their own, so each is on its way the moment it is started, whatever
//!   the loop awaits meanwhile; `SKIP LOCKED` keeps concurrent claims apart.
//! - Idle (`--until-idle`) only on evidence: the claim state found nothing, nothing is claimed
//!   here or running anywhere, nothing is due (a wake-up that arrived unheard, from the rescuer
//!   or a NOTIFY, is for a row this finds), and no retry of this daemon's is waiting.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::capacity::{Capacity, Reservation};
use super::claim_state::ClaimState;
use super::{RunOptions, Shared, lock, store, worker};
use crate::delivery::Delivery;

type ClaimResult = (Result<Vec<Delivery>, sqlx::Error>, Reservation);
type InFlight = FuturesUnordered<tokio::task::JoinHandle<ClaimResult>>;

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
    let mut state = ClaimState::default();
    loop {
        if !shutdown.is_cancelled() {
            while claims.len() < state.claims_allowed(Instant::now()) {
                let Some(reservation) = capacity.reserve(state.share()) else {
                    break;
                };
                claims.push(tokio::spawn(claim(shared.clone(), reservation)));
                state.claim_sent();
            }
        }

        if !claims.is_empty() {
            tokio::select! {
                Some(joined) = claims.next() => {
                    let failure = match joined {
                        Ok((Ok(batch), reservation)) => {
                            state.claim_returned(batch.len(), reservation.wanted, claims.len());
                            start_deliveries(shared, batch, reservation, deliveries, abort);
                            None
                        }
                        Ok((Err(e), _)) => Some(crate::database::reason_of(&e)),
                        // Short of a bug it cannot panic; its reservation went back with it.
                        Err(e) => Some(format!("the claim task failed: {e}")),
                    };
                    if let Some(error) = failure {
                        crate::metrics::database_error(crate::metrics::DbOperation::Claim);
                        let pause = state.claim_failed(Instant::now());
                        tracing::warn!(%error, retry_in = ?pause, "cannot claim notifications");
                    }
                }
                // Finished deliveries free workers for the next claim while one is in flight.
                _ = shared.wake.notified(), if state.listens_while_claiming(claims.len()) => {
                    state.woken_while_claiming();
                }
            }
            continue;
        }

        if shutdown.is_cancelled() {
            break;
        }
        if options.until_idle
            && state.found_nothing(Instant::now())
            && capacity.all_free()
            && lock(&shared.in_flight).is_empty()
            && !retries_pending(shared).await
            && !work_left_anywhere(shared).await
        {
            tracing::info!("idle: nothing running, nothing due, no retry waiting");
            break;
        }
        let wait = state.wait(Instant::now(), config.poll_interval, crate::wake::DEBOUNCE);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = shared.wake.notified() => state.woken_while_waiting(Instant::now()),
            _ = tokio::time::sleep(wait) => state.waited(),
        }
    }
}

async fn claim(shared: Arc<Shared>, reservation: Reservation) -> ClaimResult {
    let config = &shared.config.dispatcher;
    let tokens = store::lease_tokens(reservation.wanted);
    let result = async {
        let mut conn = shared.pool.acquire().await?;
        hand_back_unanswered(&shared, &mut conn).await?;
        // Concurrent claims start from the same lane; one that served nothing leaves the
        // cursor where the other may have moved it.
        let mut cursor = super::lock(&shared.lane_cursor).clone();
        let claimed =
            match store::claim_from(&mut conn, &shared.owner, &tokens, config.lease, &mut cursor)
                .await
            {
                Ok(claimed) => claimed,
                Err(e) => {
                    // The claim may have committed with its answer lost: its rows would wait
                    // out the lease unless handed back.
                    if answer_may_be_lost(&e) {
                        lock(&shared.unanswered_claims).extend_from_slice(&tokens);
                    }
                    return Err(e);
                }
            };
        if !claimed.is_empty() {
            *super::lock(&shared.lane_cursor) = cursor;
        }
        Ok(claimed)
    }
    .await;
    (result, reservation)
}

/// Whether a claim that failed with `error` may have committed all the same: the connection
/// broke (or the server was shutting down) before the answer was complete. Not when the
/// answer arrived and could not be read: handing those rows back spends no attempt, so a row
/// that fails every claim would come back forever; its lease expires and counts the attempt.
fn answer_may_be_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) => true,
        // Connection exceptions (08) and operator intervention (57: shutdown, crash).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57")),
        _ => false,
    }
}

/// Hands back what earlier claims whose answers were lost may have leased (nothing was sent
/// for those rows), before claiming again. Kept for the next claim if this fails.
async fn hand_back_unanswered(
    shared: &Shared,
    conn: &mut sqlx::PgConnection,
) -> Result<(), sqlx::Error> {
    let tokens = std::mem::take(&mut *lock(&shared.unanswered_claims));
    if tokens.is_empty() {
        return Ok(());
    }
    match store::release(conn, &tokens).await {
        Ok(released) => {
            if released > 0 {
                tracing::info!(
                    released,
                    "handed back notifications leased by a claim whose answer was lost"
                );
            }
            Ok(())
        }
        Err(e) => {
            lock(&shared.unanswered_claims).extend(tokens);
            Err(e)
        }
    }
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

/// Whether any daemon is delivering something, or something is due: rows another daemon left
/// `running` when it stopped come back once their leases expire and are drained too, and rows
/// the rescuer (or an enqueue) made due after the last claim looked are looked for again, even
/// when their wake-up arrived after this loop last listened.
async fn work_left_anywhere(shared: &Shared) -> bool {
    let result = async {
        let mut conn = shared.pool.acquire().await?;
        store::any_work_left(&mut conn).await
    }
    .await;
    // Cannot tell: keep waiting rather than exit early.
    result.unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::answer_may_be_lost;

    #[test]
    fn only_a_broken_connection_may_have_lost_a_committed_answer() {
        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "expected 5 bytes");
        assert!(answer_may_be_lost(&sqlx::Error::Io(eof)));
        // Nothing was sent, or the answer arrived and could not be read.
        assert!(!answer_may_be_lost(&sqlx::Error::PoolTimedOut));
        assert!(!answer_may_be_lost(&sqlx::Error::Decode("bad row".into())));
        assert!(!answer_may_be_lost(&sqlx::Error::ColumnNotFound(
            "lease_token".into()
        )));
    }
}
