//! Debounced wake-ups for listening dispatchers.
//!
//! An enqueue that creates a notification may ask PostgreSQL to `NOTIFY herald_wake` when its
//! transaction commits. Every notifying commit takes one cluster-wide lock, which serialises
//! concurrent committers, so each process sends at most one per [`DEBOUNCE`]. The dispatcher drains all due work when woken and polls on
//! an interval, so an enqueue that skips its NOTIFY is still delivered: the wake-up is a hint,
//! polling is the truth.
//!
//! Invariant: the window is claimed atomically *before* the insert that may notify, so of many
//! concurrent enqueues exactly one sends the NOTIFY (a check before the insert and a claim
//! after it would let every enqueue in flight notify). An insert that created nothing (a replay) gives the window back, so
//! replays never use up the wake-up of the next new notification.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The LISTEN/NOTIFY channel.
pub const CHANNEL: &str = "herald_wake";

/// At most one NOTIFY per this window per process.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
static ENQUEUE_WAKES: Debouncer = Debouncer::new(DEBOUNCE);

/// Claims this window's NOTIFY for an enqueue about to insert; `None` when another enqueue of
/// this process holds it. Call [`WindowClaim::keep`] once the insert created a row (and so sent
/// the NOTIFY); dropping the claim otherwise gives the window back.
pub fn claim_window() -> Option<WindowClaim> {
    let at = now_ms();
    ENQUEUE_WAKES.try_claim(at).map(|previous| WindowClaim {
        at,
        previous,
        kept: false,
    })
}

/// The right to send this window's NOTIFY (see [`claim_window`]).
#[must_use]
pub struct WindowClaim {
    at: u64,
    previous: u64,
    kept: bool,
}

impl WindowClaim {
    /// The NOTIFY was sent: the window stays closed.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for WindowClaim {
    fn drop(&mut self) {
        if !self.kept {
            ENQUEUE_WAKES.give_back(self.at, self.previous);
        }
    }
}

/// Milliseconds since the process's first call; +1 so that the very first is not "never".
fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64 + 1
}

/// Lets one caller through per window.
struct Debouncer {
    window_ms: u64,
    /// Milliseconds (on the caller's clock) of the last claim; 0 means never.
    last_claim: AtomicU64,
}

impl Debouncer {
    const fn new(window: Duration) -> Self {
        Debouncer {
            window_ms: window.as_millis() as u64,
            last_claim: AtomicU64::new(0),
        }
    }

    /// Claims the window if it is open; returns the claim it replaced (for [`Self::give_back`]).
    fn try_claim(&self, now_ms: u64) -> Option<u64> {
        let last = self.last_claim.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < self.window_ms {
            return None;
        }
        // Of several callers racing for an open window, exactly one wins.
        self.last_claim
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
    }

    /// Reopens the window claimed at `at`, unless a later claim replaced it.
    fn give_back(&self, at: u64, previous: u64) {
        let _ =
            self.last_claim
                .compare_exchange(at, previous, Ordering::Relaxed, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_per_window() {
        let d = Debouncer::new(Duration::from_millis(100));
        assert_eq!(d.try_claim(1), Some(0), "the first call always fires");
        assert_eq!(d.try_claim(1), None);
        assert_eq!(d.try_claim(100), None);
        assert_eq!(d.try_claim(101), Some(1), "the window has passed");
        assert_eq!(d.try_claim(150), None);
    }

    #[test]
    fn a_claim_given_back_reopens_the_window() {
        let d = Debouncer::new(Duration::from_millis(100));
        let previous = d.try_claim(1).unwrap();
        d.give_back(1, previous);
        assert_eq!(
            d.try_claim(2),
            Some(0),
            "a replay does not use up the window"
        );
        // A give-back after a later claim leaves that claim alone.
        d.give_back(1, 0);
        assert_eq!(d.try_claim(50), None);
    }

    #[test]
    fn racing_callers_get_one_claim() {
        let d = std::sync::Arc::new(Debouncer::new(Duration::from_secs(3600)));
        let wins: usize = (0..8)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || d.try_claim(5).is_some() as usize)
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(wins, 1);
    }
}
