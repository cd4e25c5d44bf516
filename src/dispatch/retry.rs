//! The retry policy: what a failed attempt leads to. Pure, so it is tested without a database.
//!
//! Invariants: a notification makes at most `max_attempts` attempts; the delay before retry `n`
//! is `schedule[n-1]` (the last step repeats when `max_attempts` exceeds the schedule) scaled by a
//! random factor in `[1 - jitter, 1 + jitter]`; a receiver's `Retry-After` can lengthen that
//! delay, up to [`RETRY_AFTER_CAP`], never shorten it.

use std::time::Duration;

use crate::config::RetryConfig;

/// The longest a `Retry-After` header can push a retry out: a receiver cannot park a
/// notification for days by asking.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// What happens after an attempt that did not deliver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NextStep {
    /// Back to `pending`, due after this delay.
    RetryAfter(Duration),
    /// Attempts exhausted: `dead`.
    GiveUp,
}

/// The next step after attempt number `attempt` (1-based) of `max_attempts` failed.
/// `random` is uniform in `[0, 1)`; callers pass `rand`-style randomness, tests pass constants.
pub fn next_step(
    policy: &RetryConfig,
    attempt: i32,
    max_attempts: i32,
    retry_after: Option<Duration>,
    random: f64,
) -> NextStep {
    if attempt >= max_attempts {
        return NextStep::GiveUp;
    }
    let scheduled = match policy.schedule.len() {
        0 => Duration::ZERO,
        len => policy.schedule[(attempt.max(1) as usize - 1).min(len - 1)],
    };
    let factor = 1.0 - policy.jitter + 2.0 * policy.jitter * random.clamp(0.0, 1.0);
    let jittered = scheduled.mul_f64(factor.max(0.0));
    let asked = retry_after
        .map(|d| d.min(RETRY_AFTER_CAP))
        .unwrap_or_default();
    NextStep::RetryAfter(jittered.max(asked))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(schedule: &[u64], jitter: f64) -> RetryConfig {
        RetryConfig {
            schedule: schedule.iter().map(|s| Duration::from_secs(*s)).collect(),
            jitter,
        }
    }

    #[test]
    fn follows_the_schedule_and_repeats_its_last_step() {
        let p = policy(&[5, 300, 1800], 0.0);
        let step = |attempt| next_step(&p, attempt, 10, None, 0.5);
        assert_eq!(step(1), NextStep::RetryAfter(Duration::from_secs(5)));
        assert_eq!(step(2), NextStep::RetryAfter(Duration::from_secs(300)));
        assert_eq!(step(3), NextStep::RetryAfter(Duration::from_secs(1800)));
        assert_eq!(step(9), NextStep::RetryAfter(Duration::from_secs(1800)));
        assert_eq!(step(10), NextStep::GiveUp);
    }

    #[test]
    fn the_last_attempt_gives_up() {
        let p = policy(&[5], 0.2);
        assert_eq!(next_step(&p, 1, 1, None, 0.3), NextStep::GiveUp);
        assert_eq!(
            next_step(&p, 8, 8, Some(Duration::from_secs(1)), 0.3),
            NextStep::GiveUp
        );
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let p = policy(&[100], 0.2);
        let delay = |random| match next_step(&p, 1, 5, None, random) {
            NextStep::RetryAfter(d) => d,
            NextStep::GiveUp => panic!("gave up early"),
        };
        assert_eq!(delay(0.0), Duration::from_secs(80));
        assert_eq!(delay(0.5), Duration::from_secs(100));
        assert!(delay(0.999_999) <= Duration::from_secs(120));
        for i in 0..100 {
            let d = delay(i as f64 / 100.0);
            assert!(
                d >= Duration::from_secs(80) && d <= Duration::from_secs(120),
                "{d:?}"
            );
        }
    }

    #[test]
    fn retry_after_lengthens_up_to_the_cap_but_never_shortens() {
        let p = policy(&[5], 0.0);
        let step = |after: u64| next_step(&p, 1, 5, Some(Duration::from_secs(after)), 0.5);
        assert_eq!(
            step(1),
            NextStep::RetryAfter(Duration::from_secs(5)),
            "never shorter"
        );
        assert_eq!(step(60), NextStep::RetryAfter(Duration::from_secs(60)));
        assert_eq!(step(86_400), NextStep::RetryAfter(RETRY_AFTER_CAP));
    }

    #[test]
    fn an_empty_schedule_retries_at_once() {
        let p = policy(&[], 0.2);
        assert_eq!(
            next_step(&p, 1, 3, None, 0.7),
            NextStep::RetryAfter(Duration::ZERO)
        );
    }
}
