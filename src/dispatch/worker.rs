//! One delivery: send through the notification's channel, decide what the outcome means, and
//! record the attempt, fenced by the lease token.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::decision::{Decision, Next, decide};
use super::{Shared, lock};
use crate::channel::{AttemptKind, Outcome};
use crate::delivery::{Delivery, Target};
use crate::store::dispatch as store;

/// What a claimed notification holds while it is handled: a worker (`dispatcher.workers`
/// bounds concurrent deliveries) until its delivery ends, and a lease slot until its outcome is
/// recorded.
pub(super) struct Slots {
    pub worker: OwnedSemaphorePermit,
    pub lease: OwnedSemaphorePermit,
}

/// Delivers `n` and records the attempt. On `abort` (shutdown grace over) it stops at once and
/// leaves the lease in `in_flight` for the dispatcher to release.
pub(super) async fn deliver(
    shared: Arc<Shared>,
    n: Delivery,
    abort: CancellationToken,
    slots: Slots,
) {
    if n.probe {
        crate::metrics::breaker_transition("half_open");
        let destination = match n.channel() {
            crate::state::Channel::Email => "smtp",
            crate::state::Channel::Webhook => n.destination(),
        };
        tracing::info!(
            destination,
            id = %n.id,
            "circuit breaker half_open: one notification is sent as a probe"
        );
    }
    let started = Instant::now();
    let outcome = tokio::select! {
        outcome = shared.deliverer.deliver(&n) => outcome,
        _ = abort.cancelled() => return,
    };
    let elapsed = started.elapsed();
    // The delivery is over: the worker may take the next one while the outcome is recorded.
    drop(slots.worker);
    shared.wake.notify_one();
    shared.attempts.fetch_add(1, Ordering::Relaxed);
    crate::metrics::attempt_ended(&n, outcome.kind(), elapsed);
    let decision = decide(&shared.config.retry, &n, &outcome, random_unit());

    let written = record(&shared, &n, &decision, &abort).await;
    match written {
        Written::Recorded => {
            if matches!(decision.next, Next::RetryIn(_)) {
                lock(&shared.retries_waiting).insert(n.id);
            }
            // Only the lease holder may disable the endpoint, so only after the fenced write.
            if let Outcome::GiveUp {
                disable_endpoint: Some(reason),
                ..
            } = &outcome
            {
                disable_endpoint(&shared, &n, outcome.kind().as_str(), reason).await;
            }
        }
        Written::LeaseLost => {}
        // The lease runs out and the notification comes back; `--until-idle` waits for it.
        Written::GaveUp => {
            lock(&shared.retries_waiting).insert(n.id);
        }
        // Shutdown: the dispatcher releases the lease still listed in `in_flight`.
        Written::Aborted => return,
    }
    {
        let mut in_flight = lock(&shared.in_flight);
        // The same notification may have been claimed again meanwhile (a new lease, after this
        // one expired): leave that entry alone.
        if in_flight.get(&n.id) == Some(&n.lease_token) {
            in_flight.remove(&n.id);
        }
    }
    // Free the lease slot before waking the claim loop, so it sees the capacity.
    drop(slots.lease);
    shared.wake.notify_one();

    let next = match (written, decision.next) {
        (Written::LeaseLost, _) => "lease lost, not recorded".to_owned(),
        (Written::GaveUp, _) => "not recorded (database unavailable)".to_owned(),
        (_, Next::RetryIn(delay)) => {
            format!("retry in {}", humantime::format_duration(round(delay)))
        }
        (_, Next::Delivered) => "delivered".to_owned(),
        (_, Next::Dead) => "dead".to_owned(),
    };
    tracing::info!(
        id = %n.id,
        r#type = %n.key.type_,
        channel = %n.channel(),
        attempt = n.attempt,
        outcome = outcome.kind().as_str(),
        status = outcome.status(),
        duration_ms = elapsed.as_millis() as u64,
        next = %next,
        error = decision.error.as_deref().filter(|_| outcome.kind() != AttemptKind::Delivered),
        "attempt"
    );
}

/// What became of an attempt's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Recorded,
    /// The lease was taken over: nothing was written.
    LeaseLost,
    /// The database stayed unavailable for as long as the lease could last.
    GaveUp,
    /// Shutdown interrupted the write.
    Aborted,
}

/// Records the attempt, retrying through database errors for as long as the lease could still
/// be ours.
async fn record(
    shared: &Shared,
    n: &Delivery,
    decision: &Decision,
    abort: &CancellationToken,
) -> Written {
    let give_up_at = Instant::now() + shared.config.dispatcher.lease;
    let mut pause = Duration::from_millis(100);
    let mut failed_before = false;
    loop {
        match shared
            .recorder
            .record(decision.fenced(n.id, n.lease_token))
            .await
        {
            Ok(true) => return Written::Recorded,
            Ok(false) => {
                // After an error, the earlier write may have committed with its answer lost.
                if failed_before && logged_before(shared, n).await {
                    return Written::Recorded;
                }
                tracing::warn!(id = %n.id, r#type = %n.key.type_, channel = %n.channel(), attempt = n.attempt, outcome = decision.kind.as_str(), "lease lost before the outcome was recorded: another claim owns this notification now");
                return Written::LeaseLost;
            }
            Err(e) if Instant::now() + pause < give_up_at => {
                failed_before = true;
                tracing::warn!(id = %n.id, r#type = %n.key.type_, channel = %n.channel(), attempt = n.attempt, outcome = decision.kind.as_str(), error = %e, "cannot record the attempt yet; retrying");
                tokio::select! {
                    _ = abort.cancelled() => return Written::Aborted,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(id = %n.id, r#type = %n.key.type_, channel = %n.channel(), attempt = n.attempt, outcome = decision.kind.as_str(), error = %e, "gave up recording the attempt; the lease will expire and the notification will be retried");
                return Written::GaveUp;
            }
        }
    }
}

/// Whether this lease's attempt is in the log already (`false` when that cannot be read).
async fn logged_before(shared: &Shared, n: &Delivery) -> bool {
    let result = async {
        let mut conn = shared.pool.acquire().await?;
        store::attempt_logged(&mut conn, n.id, n.lease_token).await
    }
    .await;
    result.unwrap_or(false)
}

async fn disable_endpoint(shared: &Shared, n: &Delivery, outcome: &'static str, reason: &str) {
    let Target::Webhook { endpoint_id, .. } = &n.target else {
        return;
    };
    let Ok(endpoint) = endpoint_id.parse::<Uuid>() else {
        return;
    };
    let result = async {
        let mut conn = shared.pool.acquire().await?;
        store::disable_endpoint(&mut conn, endpoint, reason).await
    }
    .await;
    match result {
        Ok(true) => {
            tracing::warn!(id = %n.id, r#type = %n.key.type_, channel = %n.channel(), attempt = n.attempt, outcome, %endpoint, reason, "webhook endpoint disabled")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(id = %n.id, r#type = %n.key.type_, channel = %n.channel(), attempt = n.attempt, outcome, %endpoint, error = %crate::database::reason_of(&e), "could not disable the webhook endpoint")
        }
    }
}

/// Uniform in [0, 1), for jitter.
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
