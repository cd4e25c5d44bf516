//! The console's answers that are not a page of their own: refusals (403), things not found
//! (404, the same for another tenant's as for a missing one), and a database that did not
//! answer (503). Each is a page in the console's layout with one line saying what happened.

use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use minijinja::value::Serde;

use super::render::page;
use super::session::Viewer;

/// A message page; `viewer` is `None` for a visitor who is not signed in.
pub fn message(status: StatusCode, viewer: Option<&Viewer>, title: &str, text: &str) -> Response {
    page(
        status,
        "message.html",
        context! {
            viewer => viewer.map(|v| Serde(v.view())),
            title => title,
            text => text,
            status => status.as_u16(),
        },
    )
}

pub fn forbidden(viewer: &Viewer, text: &str) -> Response {
    message(StatusCode::FORBIDDEN, Some(viewer), "Not allowed", text)
}

/// `what` (e.g. "notification") with this id is missing, or belongs to another tenant: the
/// same page either way.
pub fn not_found(viewer: &Viewer, what: &str) -> Response {
    message(
        StatusCode::NOT_FOUND,
        Some(viewer),
        "Not found",
        &format!("There is no such {what}."),
    )
}

/// The database failed: logged in full, answered in one line without its details.
pub fn database_failed(viewer: Option<&Viewer>, error: &sqlx::Error) -> Response {
    use crate::database::{Failure, failure_of};
    match failure_of(error) {
        Failure::Unreadable => {
            return message(
                StatusCode::BAD_REQUEST,
                viewer,
                "Unreadable input",
                "PostgreSQL cannot read a value of this form (a NUL, or text that is not UTF-8).",
            );
        }
        Failure::TooSlow => {
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                viewer,
                "Too slow",
                "The query took longer than herald allows: narrow the filters (a tenant, a user).",
            );
        }
        Failure::Denied | Failure::Unavailable => {}
    }
    tracing::error!(error = %crate::database::reason_of(error), "console request failed");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        viewer,
        "Database unavailable",
        "The database did not answer; try again.",
    )
}

pub fn unavailable() -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "Database unavailable",
        "The database did not answer; try again.",
    )
}
