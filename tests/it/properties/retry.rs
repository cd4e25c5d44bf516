//! The retry schedule, for every configuration validation accepts and any attempt number:
//! the delay is the schedule's step within the jitter band, the last step repeats, a
//! `Retry-After` only lengthens (up to the cap), the last attempt gives up, nothing panics.

use std::time::Duration;

use herald::config::{MAX_DURATION, RetryConfig};
use herald::dispatch::retry::{NextStep, RETRY_AFTER_CAP, next_step};
use proptest::prelude::*;

/// Schedules and jitters as `config.validate()` admits them: 1 to 99 steps (attempts 2 to 100)
/// of 1 ms up to 100 years, jitter in [0, 1].
fn policy() -> impl Strategy<Value = RetryConfig> {
    let step = 1u64..=MAX_DURATION.as_millis() as u64;
    (prop::collection::vec(step, 1..100), 0.0f64..=1.0).prop_map(|(steps, jitter)| RetryConfig {
        schedule: steps.into_iter().map(Duration::from_millis).collect(),
        jitter,
    })
}

/// The step a failed `attempt` waits for: attempt n waits `schedule[n-1]`, the last repeats.
fn step_of(policy: &RetryConfig, attempt: i32) -> Duration {
    let index = (attempt.max(1) as usize - 1).min(policy.schedule.len() - 1);
    policy.schedule[index]
}

/// `d` scaled by `factor`, widened by a microsecond for float rounding.
fn bound(d: Duration, factor: f64, widen_up: bool) -> Duration {
    let scaled = d.mul_f64(factor);
    if widen_up {
        scaled + Duration::from_micros(1)
    } else {
        scaled.saturating_sub(Duration::from_micros(1))
    }
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn the_delay_is_the_step_within_the_jitter_band(
        policy in policy(),
        attempt in any::<i32>(),
        max_attempts in any::<i32>(),
        random in 0.0f64..1.0,
    ) {
        match next_step(&policy, attempt, max_attempts, None, random) {
            NextStep::GiveUp => prop_assert!(attempt >= max_attempts),
            NextStep::RetryAfter(delay) => {
                prop_assert!(attempt < max_attempts);
                let step = step_of(&policy, attempt);
                let low = bound(step, 1.0 - policy.jitter, false);
                let high = bound(step, 1.0 + policy.jitter, true);
                prop_assert!(low <= delay && delay <= high, "{:?} outside [{:?}, {:?}]", delay, low, high);
            }
        }
    }

    #[test]
    fn the_last_step_repeats(policy in policy(), beyond in 1i32..1000, random in 0.0f64..1.0) {
        let len = policy.schedule.len() as i32;
        // Attempt `len` waits for the last step; every later attempt waits exactly as long.
        prop_assert_eq!(
            next_step(&policy, len + beyond, i32::MAX, None, random),
            next_step(&policy, len, i32::MAX, None, random)
        );
    }

    #[test]
    fn retry_after_lengthens_up_to_the_cap_and_never_shortens(
        policy in policy(),
        attempt in 1i32..200,
        asked_ms in any::<u64>(),
        random in 0.0f64..1.0,
    ) {
        let asked = Duration::from_millis(asked_ms);
        let without = next_step(&policy, attempt, i32::MAX, None, random);
        let with = next_step(&policy, attempt, i32::MAX, Some(asked), random);
        let (NextStep::RetryAfter(without), NextStep::RetryAfter(with)) = (without, with) else {
            return Err(TestCaseError::fail("gave up before max_attempts"));
        };
        prop_assert_eq!(with, without.max(asked.min(RETRY_AFTER_CAP)));
    }

    #[test]
    fn nothing_panics_for_any_number(
        policy in policy(),
        attempt in any::<i32>(),
        max_attempts in any::<i32>(),
        asked_ms in proptest::option::of(any::<u64>()),
        random in any::<f64>(),
    ) {
        let _ = next_step(&policy, attempt, max_attempts, asked_ms.map(Duration::from_millis), random);
    }
}
