//! The notifications-by-state gauges and the oldest due age, recounted on scrape when older
//! than `metrics.state_refresh`.
//!
//! Why on scrape and cached: the count is a GROUP BY over the whole table. Counting on every
//! scrape would let scrapers (several Prometheus replicas, a curious operator) drive that load;
//! counting on a timer would spend it when nobody looks. Concurrent scrapes wait for the one
//! count in progress rather than starting their own. A failed count keeps the previous values
//! (and counts a database error); the next try waits for the next interval.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::DbOperation;

pub struct StateGauges {
    pool: PgPool,
    every: Duration,
    /// When the last count started; `None` before the first.
    last: tokio::sync::Mutex<Option<Instant>>,
}

impl StateGauges {
    /// `pool` should be one of its own, not the dispatcher's: a scrape must neither wait for
    /// nor delay claims.
    pub fn new(pool: PgPool, every: Duration) -> Self {
        StateGauges {
            pool,
            every,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Recounts unless the last count is younger than `metrics.state_refresh`.
    pub async fn refresh_if_stale(&self) {
        let mut last = self.last.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.every) {
            return;
        }
        *last = Some(Instant::now());
        let counted = tokio::time::timeout(crate::database::CONNECT_TIMEOUT, async {
            let mut conn = self.pool.acquire().await?;
            crate::store::health::state_counts(&mut conn).await
        })
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut));
        match counted {
            Ok(values) => super::set_state_counts(&values),
            Err(e) => {
                super::database_error(DbOperation::StateGauges);
                tracing::warn!(error = %crate::database::reason_of(&e), "cannot count notifications for the metrics; keeping the last counts");
            }
        }
    }
}
