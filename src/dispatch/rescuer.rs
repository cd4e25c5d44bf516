//! The lease rescuer: every `dispatcher.poll_interval`, notifications whose lease expired (their
//! daemon crashed or lost the database) go back to `pending`, due at once, or to `dead` when
//! that was their last attempt; each gets an `unknown` attempt in the log.
//!
//! A service of its own, as River runs each maintenance service: it never holds up a claim,
//! and any daemon's rescuer may take any daemon's expired leases (the statement is fenced by
//! the expiry, so two rescuers cannot both rescue one lease). Rescued rows wake this daemon's
//! claim loop.
//!
//! On the same tick it disables the endpoints whose probes kept failing for
//! `breaker.disable_after` (their waiting notifications go dead), in one transaction with the
//! operational events that announce it.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Shared, alerts};
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
            _ = disable_broken_endpoints(&shared) => {}
        };
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Returns how many expired leases went back to pending (or dead). With `alerts.endpoint`
/// set, those that went dead are announced in the rescue's own transaction.
async fn rescue_once(shared: &Shared) -> u64 {
    let result = async {
        let mut conn = shared.pool.acquire().await?;
        let Some(alerts_endpoint) = shared.config.alerts.endpoint_id() else {
            return store::rescue_expired(&mut conn, BATCH).await;
        };
        let mut tx = crate::pooling::begin(&mut conn).await?;
        let rescued = store::rescue_expired(&mut tx, BATCH).await?;
        if !rescued.dead.is_empty()
            && let Some(target) = alerts::target(&mut tx, alerts_endpoint).await?
        {
            let events = alerts::dead_events(&mut tx, &target, &rescued.dead).await?;
            alerts::enqueue(&mut tx, &events).await?;
        }
        tx.commit().await?;
        Ok(rescued)
    }
    .await
    .map(|rescued| rescued.count);
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
            tracing::warn!(error = %crate::database::reason_of(&e), "lease rescue failed; retried at the next tick");
            0
        }
    }
}

/// Disables endpoints whose probes kept failing too long; logs each.
async fn disable_broken_endpoints(shared: &Shared) {
    let result = async {
        let mut conn = shared.pool.acquire().await?;
        let mut tx = crate::pooling::begin(&mut conn).await?;
        let (disabled, dead) =
            store::disable_broken_endpoints(&mut tx, shared.config.breaker.disable_after).await?;
        if let Some(alerts_endpoint) = shared.config.alerts.endpoint_id()
            && !disabled.is_empty()
            && let Some(target) = alerts::target(&mut tx, alerts_endpoint).await?
        {
            let mut events: Vec<_> = disabled
                .iter()
                .filter_map(|d| alerts::disabled_event(&target, d.id, &d.tenant, &d.reason, d.at))
                .collect();
            events.extend(alerts::dead_events(&mut tx, &target, &dead).await?);
            alerts::enqueue(&mut tx, &events).await?;
        }
        tx.commit().await?;
        Ok::<_, sqlx::Error>((disabled, dead.len()))
    }
    .await;
    match result {
        Ok((disabled, dead)) => {
            for endpoint in &disabled {
                tracing::warn!(
                    endpoint = %endpoint.id,
                    reason = %endpoint.reason,
                    dead,
                    "endpoint disabled: its probes kept failing for breaker.disable_after"
                );
            }
        }
        Err(e) => {
            crate::metrics::database_error(crate::metrics::DbOperation::Rescue);
            tracing::debug!(error = %crate::database::reason_of(&e), "disabling broken endpoints skipped");
        }
    }
}
