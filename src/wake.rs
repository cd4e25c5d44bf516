//! Debounced wake-ups for listening dispatchers.
//!
//! An enqueue that creates a notification may ask PostgreSQL to `NOTIFY herald_wake` when its
//! transaction commits. Every notifying commit takes a global lock (measured here: INSERT+COMMIT
//! at 16 clients fell from 8.1k to 2.8k TPS with one NOTIFY per transaction), so each process
//! sends at most one per [`DEBOUNCE`]. The dispatcher drains all due work when woken and polls on
//! an interval, so an enqueue that skips its NOTIFY is still delivered: the wake-up is a hint,
//! polling is the truth.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The LISTEN/NOTIFY channel.
pub const CHANNEL: &str = "herald_wake";

/// At most one NOTIFY per this window per process.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
static ENQUEUE_WAKES: Debouncer = Debouncer::new(DEBOUNCE);

/// Whether an enqueue should send the NOTIFY with its insert: the window is open. Checking does
/// not claim it; [`mark_notified`] does, once a row was actually created, so replays (which
/// write nothing) never use up the window of the next new notification.
pub fn window_open() -> bool {
    ENQUEUE_WAKES.is_open(now_ms())
}

/// Claims the window after a NOTIFY was sent with a created row.
pub fn mark_notified() {
    ENQUEUE_WAKES.try_claim(now_ms());
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

    fn is_open(&self, now_ms: u64) -> bool {
        let last = self.last_claim.load(Ordering::Relaxed);
        last == 0 || now_ms.saturating_sub(last) >= self.window_ms
    }

    fn try_claim(&self, now_ms: u64) -> bool {
        let last = self.last_claim.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < self.window_ms {
            return false;
        }
        // Of several callers racing for an open window, exactly one wins.
        self.last_claim
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_per_window() {
        let d = Debouncer::new(Duration::from_millis(100));
        assert!(d.try_claim(1), "the first call always fires");
        assert!(!d.try_claim(1));
        assert!(!d.try_claim(100));
        assert!(d.try_claim(101), "the window has passed");
        assert!(!d.try_claim(150));
    }

    #[test]
    fn looking_does_not_claim() {
        let d = Debouncer::new(Duration::from_millis(100));
        assert!(
            d.is_open(1) && d.is_open(1),
            "a replay may look without closing the window"
        );
        assert!(d.try_claim(1));
        assert!(!d.is_open(50));
        assert!(d.is_open(101));
    }

    #[test]
    fn racing_callers_get_one_claim() {
        let d = std::sync::Arc::new(Debouncer::new(Duration::from_secs(3600)));
        let wins: usize = (0..8)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || d.try_claim(5) as usize)
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(wins, 1);
    }
}
