//! herald's HTTP API (`herald serve`, DESIGN.md "HTTP API and console"): `/v1` for programs,
//! `/healthz` and `/readyz` for orchestrators.
//!
//! Invariants:
//! - Every `/v1` route takes a [`auth::Caller`], so no route answers without a valid token.
//! - Every error is a problem document ([`problem`]), unknown routes included.
//! - Connections are bounded like every server of herald's (`api.max_connections`,
//!   `api.header_timeout`, `api.idle_timeout`) and bodies by `api.max_body_bytes`.

pub mod auth;
pub mod body;
pub mod endpoints;
pub mod explain;
pub mod item;
pub mod notifications;
pub mod openapi;
pub mod problem;
pub mod schema;
pub mod stats;
pub mod token;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State as Shared};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    let (v1, document) = v1().split_for_parts();
    let document = Arc::new(document);
    Router::new()
        .route("/healthz", get(probes::healthz))
        .merge(crate::console::router())
        .route("/readyz", get(readyz))
        .route(
            "/v1/openapi.json",
            get(move || {
                let document = Arc::clone(&document);
                async move { Json(document) }
            }),
        )
        .merge(v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// The `/v1` routes, each with its part of the OpenAPI document.
pub fn v1() -> OpenApiRouter<Arc<State>> {
    OpenApiRouter::with_openapi(openapi::Document::openapi())
        .routes(routes!(notifications::create, notifications::list))
        .routes(routes!(notifications::create_batch))
        .routes(routes!(notifications::show))
        .routes(routes!(notifications::retry))
        .routes(routes!(notifications::cancel))
        .routes(routes!(explain::explain))
        .routes(routes!(stats::stats))
        .routes(routes!(endpoints::create, endpoints::list))
        .routes(routes!(endpoints::show, endpoints::update))
        .routes(routes!(endpoints::enable))
        .routes(routes!(endpoints::disable))
        .routes(routes!(endpoints::reset))
        .routes(routes!(endpoints::rotate_secret))
}

/// The OpenAPI document of `/v1`.
pub fn document() -> utoipa::openapi::OpenApi {
    v1().into_openapi()
}

/// A connection for one request; 503 when the database does not answer.
pub(crate) async fn connection(
    state: &State,
) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, Problem> {
    state
        .pool
        .acquire()
        .await
        .map_err(|e| Problem::internal(&e))
}

/// An enqueue's refusal as a problem: invalid input 400 naming the field, a conflict 422.
pub(crate) fn enqueue_error(error: crate::EnqueueError) -> Problem {
    match error {
        crate::EnqueueError::Invalid { field, message } => {
            Problem::bad_request(field, format!("invalid {field}: {message}"))
        }
        crate::EnqueueError::Conflict {
            existing_id,
            differs,
            ..
        } => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
            .with("existing_id", existing_id.to_string())
            .with("differs", differs),
        crate::EnqueueError::Database(error) => Problem::internal(&error),
    }
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

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take that method (see /v1/openapi.json)",
    )
}

async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "no such route")
}
