//! One delivery: send through the notification's channel, decide what the outcome means, and
//! record the attempt, fenced by the lease token.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::retry::{NextStep, next_step};
use super::{Shared, lock};
use crate::channel::{AttemptKind, Outcome};
use crate::config::RetryConfig;
use crate::state::State;
use crate::store::dispatch::{self as store, Claimed, Fenced, Recorded};

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
    n: Claimed,
    abort: CancellationToken,
    slots: Slots,
) {
    let started = Instant::now();
    let outcome = tokio::select! {
        outcome = shared.delivery.deliver(&n) => outcome,
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
            if decision.next_state == State::Pending {
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

    let next = match (written, decision.next_state) {
        (Written::LeaseLost, _) => "lease lost, not recorded".to_owned(),
        (Written::GaveUp, _) => "not recorded (database unavailable)".to_owned(),
        (_, State::Pending) => format!(
            "retry in {}",
            humantime::format_duration(round(decision.retry_in))
        ),
        (_, other) => other.to_string(),
    };
    tracing::info!(
        id = %n.id,
        r#type = %n.type_,
        channel = %n.channel,
        attempt = n.attempts,
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

/// What an outcome means for the notification.
pub(super) fn decide(
    policy: &RetryConfig,
    n: &Claimed,
    outcome: &Outcome,
    random: f64,
) -> Recorded {
    let recorded = |next_state,
                    retry_in,
                    kind: &AttemptKind,
                    status: &Option<i32>,
                    error: &str,
                    last_error: String| Recorded {
        next_state,
        retry_in,
        outcome: kind.as_str(),
        status: *status,
        error: Some(error.to_owned()),
        last_error: Some(last_error),
    };
    match outcome {
        Outcome::Delivered { status, detail } => Recorded {
            next_state: State::Delivered,
            retry_in: Duration::ZERO,
            outcome: AttemptKind::Delivered.as_str(),
            status: *status,
            error: detail.clone(),
            last_error: None,
        },
        Outcome::Retry {
            kind,
            status,
            error,
            retry_after,
        } => match next_step(policy, n.attempts, n.max_attempts, *retry_after, random) {
            NextStep::RetryAfter(delay) => {
                recorded(State::Pending, delay, kind, status, error, error.clone())
            }
            NextStep::GiveUp => {
                let exhausted = format!(
                    "attempts exhausted ({} of {}): {error}",
                    n.attempts, n.max_attempts
                );
                recorded(State::Dead, Duration::ZERO, kind, status, error, exhausted)
            }
        },
        Outcome::GiveUp {
            kind,
            status,
            error,
            ..
        } => recorded(
            State::Dead,
            Duration::ZERO,
            kind,
            status,
            error,
            error.clone(),
        ),
    }
}

/// Records the attempt, retrying through database errors for as long as the lease could still
/// be ours.
async fn record(
    shared: &Shared,
    n: &Claimed,
    recorded: &Recorded,
    abort: &CancellationToken,
) -> Written {
    let give_up_at = Instant::now() + shared.config.dispatcher.lease;
    let mut pause = Duration::from_millis(100);
    let mut failed_before = false;
    loop {
        let attempt = Fenced {
            id: n.id,
            lease_token: n.lease_token,
            recorded: recorded.clone(),
        };
        match shared.recorder.record(attempt).await {
            Ok(true) => return Written::Recorded,
            Ok(false) => {
                // After an error, the earlier write may have committed with its answer lost.
                if failed_before && logged_before(shared, n).await {
                    return Written::Recorded;
                }
                tracing::warn!(id = %n.id, r#type = %n.type_, channel = %n.channel, attempt = n.attempts, outcome = recorded.outcome, "lease lost before the outcome was recorded: another claim owns this notification now");
                return Written::LeaseLost;
            }
            Err(e) if Instant::now() + pause < give_up_at => {
                failed_before = true;
                tracing::warn!(id = %n.id, r#type = %n.type_, channel = %n.channel, attempt = n.attempts, outcome = recorded.outcome, error = %e, "cannot record the attempt yet; retrying");
                tokio::select! {
                    _ = abort.cancelled() => return Written::Aborted,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(id = %n.id, r#type = %n.type_, channel = %n.channel, attempt = n.attempts, outcome = recorded.outcome, error = %e, "gave up recording the attempt; the lease will expire and the notification will be retried");
                return Written::GaveUp;
            }
        }
    }
}

/// Whether this lease's attempt is in the log already (`false` when that cannot be read).
async fn logged_before(shared: &Shared, n: &Claimed) -> bool {
    let result = async {
        let mut conn = shared.pool.acquire().await?;
        store::attempt_logged(&mut conn, n.id, n.lease_token).await
    }
    .await;
    result.unwrap_or(false)
}

async fn disable_endpoint(shared: &Shared, n: &Claimed, outcome: &'static str, reason: &str) {
    let Ok(endpoint) = n.destination.parse::<Uuid>() else {
        return;
    };
    let result = async {
        let mut conn = shared.pool.acquire().await?;
        store::disable_endpoint(&mut conn, endpoint, reason).await
    }
    .await;
    match result {
        Ok(true) => {
            tracing::warn!(id = %n.id, r#type = %n.type_, channel = %n.channel, attempt = n.attempts, outcome, %endpoint, reason, "webhook endpoint disabled")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(id = %n.id, r#type = %n.type_, channel = %n.channel, attempt = n.attempts, outcome, %endpoint, error = %crate::database::reason_of(&e), "could not disable the webhook endpoint")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(attempts: i32, max_attempts: i32) -> Claimed {
        Claimed {
            id: Uuid::now_v7(),
            tenant: "default".into(),
            user_id: "u".into(),
            type_: "t".into(),
            business_id: "b".into(),
            channel: crate::state::Channel::Webhook,
            destination: Uuid::now_v7().to_string(),
            payload: serde_json::value::RawValue::from_string("{}".into())
                .expect("valid JSON")
                .into(),
            attempts,
            max_attempts,
            created_at: chrono::Utc::now(),
            lease_token: Uuid::now_v7(),
            claimed_at_unix: 0,
            endpoint: crate::store::dispatch::EndpointColumns {
                endpoint_url: None,
                endpoint_secret: None,
                endpoint_previous_secret: None,
                endpoint_enabled: None,
                endpoint_disabled_reason: None,
            },
        }
    }

    fn retry(kind: AttemptKind) -> Outcome {
        Outcome::Retry {
            kind,
            status: Some(503),
            error: "receiver answered 503".into(),
            retry_after: None,
        }
    }

    #[test]
    fn a_failure_with_attempts_left_is_retried() {
        let policy = RetryConfig {
            schedule: vec![Duration::from_secs(5)],
            jitter: 0.0,
        };
        let d = decide(&policy, &claimed(1, 3), &retry(AttemptKind::Failed), 0.5);
        assert_eq!(d.next_state, State::Pending);
        assert_eq!(d.retry_in, Duration::from_secs(5));
        assert_eq!(d.last_error.as_deref(), Some("receiver answered 503"));
    }

    #[test]
    fn the_last_failure_is_dead_with_the_reason() {
        let policy = RetryConfig::default();
        let d = decide(&policy, &claimed(3, 3), &retry(AttemptKind::Unknown), 0.5);
        assert_eq!(d.next_state, State::Dead);
        assert_eq!(d.outcome, "unknown");
        assert_eq!(
            d.last_error.as_deref(),
            Some("attempts exhausted (3 of 3): receiver answered 503")
        );
    }

    #[test]
    fn delivered_clears_the_last_error_and_give_up_is_final() {
        let policy = RetryConfig::default();
        let ok = Outcome::Delivered {
            status: Some(204),
            detail: None,
        };
        assert_eq!(decide(&policy, &claimed(2, 8), &ok, 0.5).last_error, None);
        let gone = Outcome::give_up("missing template templates/x/subject.txt");
        let d = decide(&policy, &claimed(1, 8), &gone, 0.5);
        assert_eq!((d.next_state, d.outcome), (State::Dead, "failed"));
    }
}
