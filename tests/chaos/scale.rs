//! How big a run is: the short suite (every `cargo test`, a couple of minutes) or the long one
//! (`HERALD_CHAOS=long`). `HERALD_CHAOS_SEED` repeats a run's random choices.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Scale {
    pub label: &'static str,
    /// Distinct intents per scenario.
    pub intents: usize,
    /// Tasks replaying all the intents concurrently, pass after pass, until the scenario ends.
    pub enqueue_tasks: usize,
    /// Daemon kills or database crashes per scenario that has them.
    pub events: usize,
    /// A scenario that has not finished by then fails.
    pub deadline: Duration,
}

impl Scale {
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("HERALD_CHAOS").as_deref() {
            Err(_) | Ok("") | Ok("short") => Ok(Scale {
                label: "short",
                intents: 400,
                enqueue_tasks: 8,
                events: 5,
                deadline: Duration::from_secs(120),
            }),
            Ok("long") => Ok(Scale {
                label: "long",
                intents: 5_000,
                enqueue_tasks: 16,
                events: 30,
                deadline: Duration::from_secs(600),
            }),
            Ok(other) => Err(format!("HERALD_CHAOS must be short or long, not {other:?}")),
        }
    }
}

/// `HERALD_CHAOS_SEED`, else one drawn from the clock (printed, so a failure can be repeated).
pub fn seed() -> Result<u64, String> {
    match std::env::var("HERALD_CHAOS_SEED") {
        Ok(text) => text
            .parse()
            .map_err(|_| format!("HERALD_CHAOS_SEED must be an unsigned integer, not {text:?}")),
        Err(_) => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)),
    }
}
