//! LISTEN for enqueue wake-ups. A hint only: notifications sent while the listener is
//! reconnecting are lost, and the claim loop's polling covers them.
//!
//! Behind a transaction-mode pooler (`database.listen_url` set) the listener connects to
//! `listen_url` directly: a pooler hands a server connection out for one transaction at a time,
//! and a LISTEN would be left on a connection other clients then use.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::wake::CHANNEL;

pub(super) async fn listen(shared: Arc<Shared>, stop: CancellationToken) {
    let mut pause = Duration::from_millis(100);
    loop {
        let subscribed = tokio::select! {
            _ = stop.cancelled() => return,
            subscribed = subscribe(&shared) => subscribed,
        };
        match subscribed {
            Ok(mut listener) => {
                pause = Duration::from_millis(100);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        received = listener.recv() => match received {
                            Ok(_) => shared.wake.notify_one(),
                            Err(e) => {
                                crate::metrics::database_error(crate::metrics::DbOperation::Listen);
                                tracing::warn!(error = %crate::database::reason_of(&e), "wake-up listener lost; polling meanwhile");
                                break;
                            }
                        },
                    }
                }
            }
            Err(e) => {
                crate::metrics::database_error(crate::metrics::DbOperation::Listen);
                tracing::debug!(error = %crate::database::reason_of(&e), "wake-up listener not connected; polling meanwhile")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

async fn subscribe(shared: &Shared) -> Result<PgListener, sqlx::Error> {
    // A connection of its own, outside the daemon's pool: a listener holds its connection for
    // as long as it listens, and must not take one from the claims and the recorder. Behind a
    // transaction-mode pooler, LISTEN needs a direct connection: `database.listen_url`.
    let options = match shared.config.database.listen_url() {
        Some(url) => {
            crate::database::parse_url(url)
                .map_err(|e| {
                    sqlx::Error::Configuration(
                        format!("database.listen_url: {}", e.problem()).into(),
                    )
                })?
                .0
        }
        None => (*shared.pool.connect_options()).clone(),
    };
    let own = crate::database::pool_options()
        .max_connections(1)
        .acquire_timeout(crate::database::CONNECT_TIMEOUT)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(options);
    let mut listener = PgListener::connect_with(&own).await?;
    listener.listen(CHANNEL).await?;
    // Anything enqueued before the subscription took effect is found by the next claim.
    shared.wake.notify_one();
    Ok(listener)
}
