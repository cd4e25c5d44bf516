//! When the claim loop claims, waits or stops: a state machine with named transitions and no
//! I/O, so every rule below is unit-tested without a database.
//!
//! Invariants:
//! - A claim is sent only when due work may be waiting (`look`): at the start, after a wake-up
//!   or a poll interval, and while claims come back full (`draining`).
//! - While draining, up to [`CLAIMS_IN_FLIGHT`] claims run at once; otherwise one, so an idle
//!   daemon polls with one statement.
//! - A reason to look that arrives while a claim is in flight (`uncovered`) is honoured after it
//!   returns: that claim took its snapshot before the reason, so its coming back short proves
//!   nothing.
//! - Idle only on evidence: the last claim ran, found nothing, and no reason to look arrived
//!   since. (The loop adds what only it can see: nothing claimed, running or waiting to retry.)
//! - After a failed claim nothing is claimed until the backoff pause is over.

use std::time::{Duration, Instant};

/// Claims in flight at once while a backlog drains: a claim costs a commit (a WAL flush), and
/// with one in flight the daemon waited for every flush in turn.
pub(super) const CLAIMS_IN_FLIGHT: usize = 2;

/// The claim loop's state between events.
#[derive(Debug)]
pub(super) struct ClaimState {
    /// Due work may be waiting.
    look: bool,
    /// The last claim came back full: more is probably due.
    draining: bool,
    /// The last claim ran and found nothing.
    found_nothing: bool,
    /// A reason to look arrived that no claim sent since has covered.
    uncovered: bool,
    /// A wake-up arrived while idle: look again shortly, as an enqueue that committed just
    /// after the one that woke us may have sent no NOTIFY of its own (it is debounced).
    recheck_soon: bool,
    /// No claims until then (a claim failed).
    paused_until: Option<Instant>,
    backoff: Backoff,
}

impl Default for ClaimState {
    fn default() -> Self {
        ClaimState {
            look: true,
            draining: false,
            found_nothing: false,
            uncovered: false,
            recheck_soon: false,
            paused_until: None,
            backoff: Backoff::default(),
        }
    }
}

impl ClaimState {
    fn paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|until| now < until)
    }

    /// How many claims may be in flight now (0 while there is nothing to look for, or paused).
    pub fn claims_allowed(&self, now: Instant) -> usize {
        match (self.look && !self.paused(now), self.draining) {
            (false, _) => 0,
            (true, true) => CLAIMS_IN_FLIGHT,
            (true, false) => 1,
        }
    }

    /// The share of the workers one claim may ask for: all of them unless several claims are
    /// meant to run at once.
    pub fn share(&self) -> usize {
        if self.draining { CLAIMS_IN_FLIGHT } else { 1 }
    }

    /// A claim was sent: it covers every reason to look that arrived before it.
    pub fn claim_sent(&mut self) {
        self.uncovered = false;
    }

    /// A claim came back with `rows` of the `wanted`; `others_in_flight` claims are still out.
    pub fn claim_returned(&mut self, rows: usize, wanted: usize, others_in_flight: usize) {
        self.backoff.reset();
        self.draining = rows == wanted;
        self.look = self.draining || self.uncovered;
        self.found_nothing = rows == 0 && others_in_flight == 0 && !self.uncovered;
    }

    /// A claim failed: pause for the next backoff step, which is returned for the log.
    pub fn claim_failed(&mut self, now: Instant) -> Duration {
        let pause = self.backoff.next();
        self.paused_until = Some(now + pause);
        (self.look, self.draining, self.found_nothing) = (false, false, false);
        pause
    }

    /// Whether a wake-up (a finished delivery, a NOTIFY) should be heard while claims are in
    /// flight: only while draining, when a freed worker may take another claim at once.
    pub fn listens_while_claiming(&self, in_flight: usize) -> bool {
        self.draining && in_flight < CLAIMS_IN_FLIGHT
    }

    /// Woken while a claim is in flight.
    pub fn woken_while_claiming(&mut self) {
        self.uncovered = true;
    }

    /// Woken while waiting with no claim in flight: a reason to look that no claim has covered
    /// yet, so no longer evidence of idle.
    pub fn woken_while_waiting(&mut self, now: Instant) {
        self.recheck_soon = !self.paused(now);
        self.look = true;
        self.found_nothing = false;
    }

    /// The wait ended (the poll interval, the recheck or the pause is over).
    pub fn waited(&mut self) {
        self.look = true;
    }

    /// Whether the daemon may be idle, as far as claims can tell.
    pub fn found_nothing(&self, now: Instant) -> bool {
        self.found_nothing && !self.paused(now)
    }

    /// How long to wait with no claim in flight; clears a pending recheck.
    pub fn wait(&mut self, now: Instant, poll_interval: Duration, recheck: Duration) -> Duration {
        let recheck_soon = std::mem::take(&mut self.recheck_soon);
        match self.paused_until {
            Some(until) if now < until => until - now,
            _ if recheck_soon => recheck,
            _ => poll_interval,
        }
    }
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

    const POLL: Duration = Duration::from_secs(1);
    const RECHECK: Duration = Duration::from_millis(100);

    #[test]
    fn a_new_loop_sends_one_claim_and_waits_for_its_answer() {
        let mut s = ClaimState::default();
        let now = Instant::now();
        assert_eq!((s.claims_allowed(now), s.share()), (1, 1));
        s.claim_sent();
        assert!(!s.listens_while_claiming(1));
    }

    #[test]
    fn a_full_claim_drains_with_two_claims_sharing_the_workers() {
        let mut s = ClaimState::default();
        let now = Instant::now();
        s.claim_sent();
        s.claim_returned(32, 32, 0);
        assert_eq!((s.claims_allowed(now), s.share()), (CLAIMS_IN_FLIGHT, 2));
        assert!(s.listens_while_claiming(1));
        assert!(!s.listens_while_claiming(CLAIMS_IN_FLIGHT));
        assert!(!s.found_nothing(now));
    }

    #[test]
    fn a_short_claim_stops_looking_until_woken_or_polled() {
        let mut s = ClaimState::default();
        let now = Instant::now();
        s.claim_sent();
        s.claim_returned(3, 32, 0);
        assert_eq!(s.claims_allowed(now), 0);
        assert_eq!(s.wait(now, POLL, RECHECK), POLL);
        s.waited();
        assert_eq!(s.claims_allowed(now), 1);
    }

    #[test]
    fn an_empty_claim_with_nothing_else_out_is_evidence_of_idle() {
        let mut s = ClaimState::default();
        let now = Instant::now();
        s.claim_sent();
        s.claim_returned(0, 32, 0);
        assert!(s.found_nothing(now));
        // Another claim still out may yet bring rows: not evidence.
        let mut t = ClaimState::default();
        t.claim_sent();
        t.claim_returned(0, 16, 1);
        assert!(!t.found_nothing(now));
    }

    #[test]
    fn a_wake_up_during_a_claim_is_honoured_after_it_returns() {
        let mut s = ClaimState::default();
        let now = Instant::now();
        s.claim_sent();
        s.claim_returned(32, 32, 0); // draining
        s.claim_sent();
        s.woken_while_claiming();
        s.claim_returned(0, 16, 0);
        assert!(!s.found_nothing(now), "the claim predates the wake-up");
        assert_eq!(s.claims_allowed(now), 1, "look again for what woke us");
        s.claim_sent();
        s.claim_returned(0, 32, 0);
        assert!(s.found_nothing(now));
    }

    #[test]
    fn a_wake_up_not_yet_covered_by_a_claim_is_no_evidence_of_idle() {
        let mut s = ClaimState::default();
        let now = Instant::now();
        s.claim_sent();
        s.claim_returned(0, 1, 0);
        assert!(s.found_nothing(now));
        s.woken_while_waiting(now);
        assert!(
            !s.found_nothing(now),
            "the wake-up came after the last claim"
        );
        s.claim_sent();
        s.claim_returned(0, 1, 0);
        assert!(s.found_nothing(now));
    }

    #[test]
    fn a_wake_up_while_waiting_rechecks_soon_once() {
        let mut s = ClaimState::default();
        let now = Instant::now();
        s.claim_sent();
        s.claim_returned(0, 32, 0);
        s.woken_while_waiting(now);
        assert_eq!(s.claims_allowed(now), 1);
        assert_eq!(s.wait(now, POLL, RECHECK), RECHECK);
        assert_eq!(s.wait(now, POLL, RECHECK), POLL, "the recheck is used up");
    }

    #[test]
    fn a_failed_claim_pauses_claims_with_a_growing_backoff_reset_by_success() {
        let mut s = ClaimState::default();
        let now = Instant::now();
        s.claim_sent();
        assert_eq!(s.claim_failed(now), Duration::from_millis(100));
        assert_eq!(s.claims_allowed(now), 0);
        assert!(!s.found_nothing(now));
        // A wake-up during the pause neither claims nor shortens the pause.
        s.woken_while_waiting(now);
        assert_eq!(s.claims_allowed(now), 0);
        assert_eq!(s.wait(now, POLL, RECHECK), Duration::from_millis(100));
        let later = now + Duration::from_millis(100);
        s.waited();
        assert_eq!(s.claims_allowed(later), 1);
        assert_eq!(s.claim_failed(later), Duration::from_millis(200));
        s.waited();
        let after = later + Duration::from_millis(200);
        s.claim_returned(1, 32, 0);
        assert_eq!(s.claim_failed(after), Duration::from_millis(100));
    }

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets() {
        let mut b = Backoff::default();
        let seen: Vec<u64> = (0..8).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(seen, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(100));
    }
}
