//! The daemon's operator endpoints on `metrics.listen`:
//! - `GET /metrics`: the Prometheus exposition (OpenMetrics text);
//! - `GET /healthz` and `GET /readyz` ([`probes`]).
//!
//! Invariants: connections are bounded in number and time by `metrics.max_connections`,
//! `metrics.header_timeout` and `metrics.idle_timeout` ([`bounded_server`]), so no client can
//! take the descriptors deliveries need; the endpoints use a pool of one connection of their own, so a busy dispatcher
//! cannot make a probe fail and a probe cannot take a connection from a claim.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::gauges::StateGauges;
use crate::net::bounded_server::{self, Bounds};
use crate::net::probes::{self, PROBE_TIMEOUT};

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
        .route("/healthz", get(probes::healthz))
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

async fn readyz(State(endpoints): State<Arc<Endpoints>>) -> Response {
    probes::readyz(&endpoints.pool, &endpoints.stopping).await
}
