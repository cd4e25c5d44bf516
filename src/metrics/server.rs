//! The daemon's operator endpoints on `metrics.listen`:
//! - `GET /metrics`: the Prometheus exposition (OpenMetrics text);
//! - `GET /healthz`: 200 while the process serves at all (liveness);
//! - `GET /readyz`: 200 when the database answers and every migration this binary needs is
//!   applied; 503 with a one-line reason otherwise, and while the daemon is stopping.
//!
//! Invariants: connections are bounded in number and time by `metrics.max_connections`,
//! `metrics.header_timeout` and `metrics.idle_timeout` ([`bounded_server`]), so no client can
//! take the descriptors deliveries need; the endpoints use a pool of one connection of their own, so a busy dispatcher
//! cannot make a probe fail and a probe cannot take a connection from a claim; every database
//! call is bounded by [`PROBE_TIMEOUT`], so a dead database gives a prompt 503, not a hung probe.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::gauges::StateGauges;
use crate::net::bounded_server::{self, Bounds};

/// The longest a readiness check waits for the database.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, thiserror::Error)]
#[error("metrics.listen: cannot listen on {addr}: {source}")]
pub struct BindError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Binds `metrics.listen`; done before anything else starts, so an address in use stops the
/// start with a clear error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

struct Endpoints {
    pool: PgPool,
    gauges: StateGauges,
    /// Cancelled when the daemon begins to stop: no longer ready.
    stopping: CancellationToken,
}

/// Serves the endpoints on `listener` until `stop` is cancelled, within `bounds`, connecting with
/// the daemon's `database` options through a one-connection pool of the endpoints' own.
pub async fn serve(
    listener: TcpListener,
    bounds: Bounds,
    database: Arc<PgConnectOptions>,
    state_refresh: Duration,
    stopping: CancellationToken,
    stop: CancellationToken,
) {
    let own = crate::database::pool_options()
        .max_connections(1)
        .acquire_timeout(PROBE_TIMEOUT)
        .connect_lazy_with((*database).clone());
    let endpoints = Arc::new(Endpoints {
        gauges: StateGauges::new(own.clone(), state_refresh),
        pool: own,
        stopping,
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(endpoints.clone());
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    bounded_server::serve(listener, app, bounds, stop).await;
    endpoints.pool.close().await;
}

async fn metrics(State(endpoints): State<Arc<Endpoints>>) -> Response {
    endpoints.gauges.refresh_if_stale().await;
    ([(header::CONTENT_TYPE, OPENMETRICS)], super::encode()).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(endpoints): State<Arc<Endpoints>>) -> Response {
    match readiness(&endpoints).await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

/// Why the daemon is not ready, if it is not.
async fn readiness(endpoints: &Endpoints) -> Result<(), String> {
    if endpoints.stopping.is_cancelled() {
        return Err("stopping".into());
    }
    let status = tokio::time::timeout(PROBE_TIMEOUT, async {
        let mut conn = endpoints.pool.acquire().await?;
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
