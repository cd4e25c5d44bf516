//! Lease extension: while a delivery runs, its lease is pushed forward every third of
//! `dispatcher.lease`, so only a daemon that stopped (crashed, lost the database) lets a lease
//! expire.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Shared, lock};
use crate::store::dispatch as store;

pub(super) async fn extend_leases(shared: Arc<Shared>, stop: CancellationToken) {
    let lease = shared.config.dispatcher.lease;
    let every = lease / 3;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let held = shared.held_leases();
        if held.is_empty() {
            continue;
        }
        let result = async {
            let mut conn = shared.pool.acquire().await?;
            store::extend_leases(&mut conn, &held, lease).await
        }
        .await;
        match result {
            Ok(extended) => {
                // A lease missing from the answer either finished meanwhile (no longer in
                // flight) or was lost: it expired and may belong to another daemon now.
                let in_flight = lock(&shared.in_flight);
                for (id, token) in held {
                    if !extended.contains(&token) && in_flight.get(&id) == Some(&token) {
                        tracing::warn!(%id, "lease lost while delivering: its outcome will not be recorded here");
                    }
                }
            }
            Err(e) => {
                crate::metrics::database_error(crate::metrics::DbOperation::Heartbeat);
                tracing::warn!(error = %crate::database::reason_of(&e), "cannot extend leases")
            }
        }
    }
}
