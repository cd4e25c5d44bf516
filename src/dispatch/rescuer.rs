//! The lease rescuer: every `dispatcher.poll_interval`, notifications whose lease expired (their
//! daemon crashed or lost the database) go back to `pending`, due at once, or to `dead` when
//! that was their last attempt; each gets an `unknown` attempt in the log.
//!
//! A service of its own, as River runs each maintenance service: it never holds up a claim,
//! and any daemon's rescuer may take any daemon's expired leases (the statement is fenced by
//! the expiry, so two rescuers cannot both rescue one lease). Rescued rows wake this daemon's
//! claim loop.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::store::dispatch as store;

/// The most leases one statement rescues; the rest wait for the next tick.
const BATCH: i64 = 1000;

pub(super) async fn rescue_expired_leases(shared: Arc<Shared>, stop: CancellationToken) {
    let every = shared.config.dispatcher.poll_interval;
    loop {
        // Biased: once stopped, not one more rescue.
        let rescued = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            rescued = rescue_once(&shared) => rescued,
        };
        if rescued > 0 {
            shared.wake.notify_one();
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Returns how many expired leases went back to pending (or dead).
async fn rescue_once(shared: &Shared) -> u64 {
    let result = async {
        let mut conn = shared.pool.acquire().await?;
        store::rescue_expired(&mut conn, BATCH).await
    }
    .await;
    match result {
        Ok(0) => 0,
        Ok(n) => {
            crate::metrics::leases_rescued(n);
            tracing::warn!(
                rescued = n,
                "returned notifications with expired leases to pending"
            );
            n
        }
        Err(e) => {
            crate::metrics::database_error(crate::metrics::DbOperation::Rescue);
            tracing::debug!(error = %crate::database::reason_of(&e), "lease rescue skipped");
            0
        }
    }
}
