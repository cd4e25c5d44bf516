//! herald's HTTP API (`herald serve`, DESIGN.md "HTTP API and console"): `/v1` for programs,
//! `/healthz` and `/readyz` for orchestrators.
//!
//! Invariants:
//! - Every `/v1` route takes a [`auth::Caller`], so no route answers without a valid token.
//! - Every error is a problem document ([`problem`]), unknown routes included.
//! - Connections are bounded like every server of herald's (`api.max_connections`,
//!   `api.header_timeout`, `api.idle_timeout`) and bodies by `api.max_body_bytes`.

pub mod auth;
pub mod notifications;
pub mod problem;
pub mod token;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State as Shared};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::net::{bounded_server, probes};
use problem::Problem;

/// What every handler shares.
pub struct State {
    pub pool: PgPool,
    /// The configuration the server started with (retention for explain, the webhook policy
    /// for endpoints, limits).
    pub config: Config,
    /// `limits.max_payload_bytes`, passed to the enqueue function like the library does.
    pub max_payload_bytes: i32,
    /// Cancelled when the process begins to stop: `/readyz` answers 503.
    pub stopping: CancellationToken,
}

pub fn router(state: Arc<State>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(probes::healthz))
        .merge(crate::console::router())
        .route("/readyz", get(readyz))
        .route("/v1/notifications", post(notifications::create))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Serves the API on `listener` until `stop` is cancelled, then lets requests in progress end.
pub async fn serve(
    listener: TcpListener,
    config: &Config,
    pool: PgPool,
    stopping: CancellationToken,
    stop: CancellationToken,
) {
    let state = Arc::new(State {
        pool,
        config: config.clone(),
        max_payload_bytes: i32::try_from(config.limits.max_payload_bytes).unwrap_or(i32::MAX),
        stopping,
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving the HTTP API (/v1), /healthz and /readyz");
    }
    let app = router(state, config.api.max_body_bytes);
    bounded_server::serve(listener, app, config.api.bounds(), stop).await;
}

async fn readyz(Shared(state): Shared<Arc<State>>) -> Response {
    probes::readyz(&state.pool, &state.stopping).await
}

async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "no such route")
}
