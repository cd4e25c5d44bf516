//! The daemon's capacity: workers (concurrent deliveries) and lease slots (claimed but not yet
//! recorded), and the reservations a claim holds on both.
//!
//! Invariant: a claim reserves its workers and lease slots before it is sent, so claims in
//! flight never promise more rows than there are workers for; a claimed row takes one of each,
//! and the unused rest goes back when the reservation is dropped.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{recorder, worker};

/// The workers and lease slots a claim may fill, held from before it is sent until its rows
/// take theirs.
pub(super) struct Reservation {
    pub wanted: usize,
    workers: OwnedSemaphorePermit,
    leases: OwnedSemaphorePermit,
}

impl Reservation {
    /// One row's share: a worker and a lease slot.
    pub fn take_one(&mut self) -> Option<worker::Slots> {
        Some(worker::Slots {
            worker: self.workers.split(1)?,
            lease: self.leases.split(1)?,
        })
    }
}

/// Capacity of the daemon: what bounds claims and when one is worth sending.
pub(super) struct Capacity {
    workers: Arc<Semaphore>,
    leases: Arc<Semaphore>,
    worker_count: usize,
    lease_slots: usize,
    batch_size: usize,
    /// While deliveries run, a claim waits until this many workers are free: claiming one row
    /// per finished delivery would spend a round trip and a commit on each.
    threshold: usize,
}

impl Capacity {
    pub fn new(workers: usize, batch_size: usize) -> Self {
        // A worker is free again once its delivery ended; its outcome then waits for the
        // recorder's next group commit under a lease slot. Without that split, every worker
        // would sit idle for a whole commit after each delivery, capping throughput at
        // workers / commit time. Lease slots bound what is claimed but not yet recorded.
        let lease_slots = workers + recorder::QUEUED_OUTCOMES;
        Capacity {
            workers: Arc::new(Semaphore::new(workers)),
            leases: Arc::new(Semaphore::new(lease_slots)),
            worker_count: workers,
            lease_slots,
            batch_size,
            threshold: (batch_size.min(workers) / 4).max(1),
        }
    }

    /// Reserves room for the next claim, or `None` when too little is free. With `share` > 1,
    /// asks for at most that fraction of the workers, so that many claims fit at once.
    pub fn reserve(&self, share: usize) -> Option<Reservation> {
        let free = self
            .workers
            .available_permits()
            .min(self.leases.available_permits());
        let busy = free < self.worker_count;
        if free == 0 || (busy && free < self.threshold) {
            return None;
        }
        let wanted = free
            .min(self.batch_size)
            .min(self.worker_count.div_ceil(share));
        // Only this loop takes these permits, and it just saw them free.
        let workers = self
            .workers
            .clone()
            .try_acquire_many_owned(wanted as u32)
            .ok()?;
        let leases = self
            .leases
            .clone()
            .try_acquire_many_owned(wanted as u32)
            .ok()?;
        Some(Reservation {
            wanted,
            workers,
            leases,
        })
    }

    pub fn all_free(&self) -> bool {
        self.workers.available_permits() == self.worker_count
            && self.leases.available_permits() == self.lease_slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHARED_BY_TWO: usize = 2;

    #[test]
    fn a_reservation_holds_its_permits_until_its_rows_take_them() {
        let capacity = Capacity::new(32, 32);
        let mut first = capacity.reserve(1).expect("everything is free");
        assert_eq!(first.wanted, 32);
        assert!(capacity.reserve(1).is_none(), "nothing is left to reserve");
        let slot = first.take_one().expect("a row's share");
        drop(first); // the claim returned one row: the other 31 come back
        assert_eq!(capacity.workers.available_permits(), 31);
        drop(slot);
        assert!(capacity.all_free());
    }

    #[test]
    fn while_draining_two_claims_share_the_workers() {
        let capacity = Capacity::new(32, 32);
        let first = capacity.reserve(SHARED_BY_TWO).expect("everything is free");
        let second = capacity.reserve(SHARED_BY_TWO).expect("half is free");
        assert_eq!((first.wanted, second.wanted), (16, 16));
        assert!(capacity.reserve(SHARED_BY_TWO).is_none());
    }

    #[test]
    fn a_busy_daemon_waits_for_a_quarter_batch_of_free_workers() {
        let capacity = Capacity::new(32, 32);
        let mut all = capacity.reserve(1).expect("everything is free");
        let held: Vec<_> = (0..25).map(|_| all.take_one().unwrap()).collect();
        drop(all); // 7 free: below the threshold of 8
        assert!(capacity.reserve(1).is_none());
        drop(held);
        assert_eq!(capacity.reserve(1).map(|r| r.wanted), Some(32));
    }
}
