//! `/healthz` and `/readyz`, alike on every server herald runs (`metrics.listen`, `api.listen`):
//! - `GET /healthz`: 200 while the process serves at all (liveness);
//! - `GET /readyz`: 200 when the database answers and every migration this binary needs is
//!   applied; 503 with a one-line reason otherwise, and while the process is stopping.
//!
//! Invariant: every database call is bounded by [`PROBE_TIMEOUT`], so a dead database gives a
//! prompt 503, not a hung probe.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The longest a readiness check waits for the database.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// The `/readyz` answer for a process whose database is `pool` and that is stopping once
/// `stopping` is cancelled.
pub async fn readyz(pool: &PgPool, stopping: &CancellationToken) -> Response {
    match readiness(pool, stopping).await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

/// Why the process is not ready, if it is not.
async fn readiness(pool: &PgPool, stopping: &CancellationToken) -> Result<(), String> {
    if stopping.is_cancelled() {
        return Err("stopping".into());
    }
    let status = tokio::time::timeout(PROBE_TIMEOUT, async {
        let mut conn = pool.acquire().await?;
        crate::migrate::status(&mut conn).await
    })
    .await
    .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    .map_err(|e| match e {
        sqlx::Error::PoolTimedOut => format!(
            "database unreachable (no answer within {}s)",
            PROBE_TIMEOUT.as_secs()
        ),
        e => format!("database unreachable ({})", crate::database::reason_of(&e)),
    })?;
    if !status.is_current() {
        return Err(format!(
            "migrations pending: {} (run `herald migrate`)",
            status.pending.join(", ")
        ));
    }
    Ok(())
}
