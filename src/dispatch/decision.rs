//! What an attempt's outcome means for its notification: delivered, a retry after a delay, or
//! dead, with the texts the attempt log and `last_error` keep. Pure, so it is tested without a
//! database.
//!
//! Invariant: `last_error` is `None` exactly when the notification is delivered; a notification
//! that ran out of attempts says so in its `last_error`.

use std::time::Duration;

use uuid::Uuid;

use super::retry::{NextStep, next_step};
use super::signal::{Signal, signal};
use crate::channel::{AttemptKind, Outcome};
use crate::config::RetryConfig;
use crate::delivery::Delivery;
use crate::state::State;
use crate::store::dispatch::OutcomeRow;

/// Where the notification goes next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Next {
    Delivered,
    /// Back to `pending`, due after this delay.
    RetryIn(Duration),
    Dead,
}

/// The decided outcome of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Decision {
    pub next: Next,
    pub kind: AttemptKind,
    pub status: Option<i32>,
    /// The attempt's error, or the receiver's answer.
    pub error: Option<String>,
    /// The notification's `last_error`.
    pub last_error: Option<String>,
    /// What the attempt says about its destination (breaker, throttle).
    pub signal: Signal,
}

impl Decision {
    /// The row that records it, fenced by the lease the attempt was made under.
    pub fn fenced(&self, id: Uuid, lease_token: Uuid) -> OutcomeRow {
        let (next_state, retry_in) = match self.next {
            Next::Delivered => (State::Delivered, Duration::ZERO),
            Next::RetryIn(delay) => (State::Pending, delay),
            Next::Dead => (State::Dead, Duration::ZERO),
        };
        OutcomeRow {
            id,
            lease_token,
            next_state,
            retry_in,
            outcome: self.kind,
            status: self.status,
            error: self.error.clone(),
            last_error: self.last_error.clone(),
            signal: self.signal.as_str(),
            throttle_secs: self.signal.throttle_secs(),
        }
    }
}

/// What `outcome` means for attempt `d.attempt` of `d`. `random` is uniform in `[0, 1)`, for
/// the retry's jitter.
pub(super) fn decide(
    policy: &RetryConfig,
    d: &Delivery,
    outcome: &Outcome,
    random: f64,
) -> Decision {
    let signal = signal(d.channel(), outcome);
    let failed = |next, kind: AttemptKind, status: Option<i32>, error: &str, last_error| Decision {
        next,
        kind,
        status,
        error: Some(error.to_owned()),
        last_error: Some(last_error),
        signal,
    };
    match outcome {
        Outcome::Delivered { status, detail } => Decision {
            next: Next::Delivered,
            kind: AttemptKind::Delivered,
            status: *status,
            error: detail.clone(),
            last_error: None,
            signal,
        },
        Outcome::Retry {
            kind,
            status,
            error,
            retry_after,
        } => match next_step(policy, d.attempt, d.max_attempts, *retry_after, random) {
            NextStep::RetryAfter(delay) => {
                failed(Next::RetryIn(delay), *kind, *status, error, error.clone())
            }
            NextStep::GiveUp => {
                let exhausted = format!(
                    "attempts exhausted ({} of {}): {error}",
                    d.attempt, d.max_attempts
                );
                failed(Next::Dead, *kind, *status, error, exhausted)
            }
        },
        Outcome::GiveUp {
            kind,
            status,
            error,
            ..
        } => failed(Next::Dead, *kind, *status, error, error.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(attempt: i32, max_attempts: i32) -> Delivery {
        Delivery::sample("t", attempt, max_attempts)
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
        let d = decide(&policy, &delivery(1, 3), &retry(AttemptKind::Failed), 0.5);
        assert_eq!(d.next, Next::RetryIn(Duration::from_secs(5)));
        assert_eq!(d.last_error.as_deref(), Some("receiver answered 503"));
        let row = d.fenced(Uuid::nil(), Uuid::nil());
        assert_eq!(
            (row.next_state, row.retry_in),
            (State::Pending, Duration::from_secs(5))
        );
    }

    #[test]
    fn the_last_failure_is_dead_with_the_reason() {
        let policy = RetryConfig::default();
        let d = decide(&policy, &delivery(3, 3), &retry(AttemptKind::Unknown), 0.5);
        assert_eq!((d.next, d.kind), (Next::Dead, AttemptKind::Unknown));
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
        let delivered = decide(&policy, &delivery(2, 8), &ok, 0.5);
        assert_eq!(
            (delivered.next, delivered.last_error),
            (Next::Delivered, None)
        );
        let gone = Outcome::give_up("missing template templates/x/subject.txt");
        let d = decide(&policy, &delivery(1, 8), &gone, 0.5);
        assert_eq!((d.next, d.kind), (Next::Dead, AttemptKind::Failed));
        assert_eq!(d.fenced(Uuid::nil(), Uuid::nil()).next_state, State::Dead);
    }
}
