//! herald's operator console (`herald serve`, DESIGN.md "HTTP API and console"): server-rendered
//! pages under `/` beside the API's `/v1`. An overview, the notifications with filters and
//! pagination, one notification with its attempt log (retry, cancel), the endpoints (enable,
//! disable, reset, rotate the secret) and an explain form. No JavaScript, no build step: the
//! templates and the stylesheet are compiled into the binary.
//!
//! Invariants:
//! - Every page but `/login` and `/console.css` takes a [`session::Viewer`]: a valid, unrevoked
//!   token of role `read` or `admin`, checked against its row on every request.
//! - Every POST but the sign-in checks the session's CSRF value ([`csrf`]) before anything else,
//!   and every action checks the role `admin` next: a refusal writes nothing.
//! - A tenant-bound token sees its tenant alone; another tenant's notification or endpoint is
//!   the same 404 page as a missing one, and its filters and explain forms are fixed to its tenant.
//! - The console answers what [`crate::admin`] and [`crate::store`] answer; it computes nothing
//!   of its own, and every query it makes is bounded (a page of the list is 50 rows).
//! - Every response carries a strict Content-Security-Policy and friends ([`render`]).

pub mod csrf;
pub mod display;
pub mod endpoints;
pub mod explain;
pub mod form;
pub mod login;
pub mod notifications;
pub mod overview;
pub mod pages;
pub mod render;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::api::State;

/// The console's routes, to be merged into the API's router (which owns `/v1`, `/healthz`,
/// `/readyz` and the fallback for unknown routes).
pub fn router() -> Router<Arc<State>> {
    Router::new()
        .route("/", get(overview::show))
        .route("/console.css", get(render::stylesheet))
        .route("/login", get(login::form).post(login::sign_in))
        .route("/logout", post(login::sign_out))
        .route("/notifications", get(notifications::list))
        .route("/notifications/{id}", get(notifications::show))
        .route("/notifications/{id}/retry", post(notifications::retry))
        .route("/notifications/{id}/cancel", post(notifications::cancel))
        .route("/endpoints", get(endpoints::list))
        .route("/endpoints/{id}/{action}", post(endpoints::act))
        .route("/explain", get(explain::form).post(explain::answer))
        .layer(axum::middleware::map_response(render::secure_headers))
}
