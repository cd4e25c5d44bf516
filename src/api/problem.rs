//! Errors as RFC 9457 problem details (`application/problem+json`): `type` is `about:blank`,
//! `title` the status's phrase, `detail` one line for people, and members for programs
//! (`field`, `item`, `existing_id`, `differs`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

pub const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: String,
    pub members: Map<String, Value>,
    /// Close the connection after answering: what is left of the request cannot be trusted.
    pub close: bool,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            status,
            detail: detail.into(),
            members: Map::new(),
            close: false,
        }
    }

    /// Closes the connection after this answer (`Connection: close`).
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// Adds a member for programs (`field`, `item`, …).
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.members.insert(name.to_owned(), value.into());
        self
    }

    pub fn unauthorized() -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "a valid token is required: Authorization: Bearer <token from `herald tokens add`>",
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, detail)
    }

    pub fn bad_request(field: &str, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, detail).with("field", field)
    }

    /// The database failed: logged in full, answered in one line without its details. A
    /// privilege the server's role lacks is 500 (trying again will not help), the rest 503.
    pub fn internal(error: &sqlx::Error) -> Self {
        use crate::database::{Failure, failure_of};
        match failure_of(error) {
            Failure::Unreadable => {
                return Problem::bad_request(
                    "input",
                    format!(
                        "PostgreSQL cannot read this input: {}",
                        crate::database::reason_of(error)
                    ),
                );
            }
            Failure::TooSlow => {
                tracing::warn!(error = %crate::database::reason_of(error), "API request past its statement timeout");
                return Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the query took longer than herald allows: narrow the filters (a tenant, a user)",
                );
            }
            Failure::Denied => {
                tracing::error!(error = %crate::database::reason_of(error), "API request refused by the database: the server's role lacks a privilege");
                return Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "herald's database role may not do this: serve the API as a role holding herald_admin",
                );
            }
            Failure::Unavailable => {}
        }
        tracing::error!(error = %crate::database::reason_of(error), "API request failed");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database did not answer; try again",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Value::Object(object) = &mut body {
            object.extend(self.members);
        }
        let mut response = (self.status, body.to_string()).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        // A problem is never a page to frame, sniff or run anything in (console routes answer
        // 404 and 405 with problems too).
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
        response.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.close {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"herald\""),
            );
        }
        response
    }
}
