//! Form bodies and query strings (`application/x-www-form-urlencoded`), read by hand so that
//! every refusal names its field in the console's words, and the refusal of one field.
//!
//! Invariant: a form body is read as the API reads its bodies (`api::body::read`): whole, within
//! `api.max_body_bytes` (413) and `api.body_timeout` (408), so a client trickling bytes cannot
//! hold a connection; nothing is done with a body that did not arrive whole.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::Response;

use super::pages;
use crate::api::State;

/// A form body's fields (see the module's invariant).
#[derive(Debug, Clone)]
pub struct Form(pub Fields);

impl FromRequest<Arc<State>> for Form {
    type Rejection = Response;

    async fn from_request(request: Request, state: &Arc<State>) -> Result<Self, Response> {
        let body: Body = request.into_body();
        match crate::api::body::read(state, body).await {
            Ok(bytes) => Ok(Form(Fields::parse(&bytes))),
            Err(problem) if problem.status == StatusCode::REQUEST_TIMEOUT => Err(pages::message(
                StatusCode::REQUEST_TIMEOUT,
                None,
                "Form too slow",
                "The form did not arrive in time.",
            )),
            Err(problem) => Err(pages::message(
                problem.status,
                None,
                "Form too large",
                "The form was larger than api.max_body_bytes, or did not arrive whole.",
            )),
        }
    }
}

/// The fields of a form or query string, in order; the first of a repeated name wins.
#[derive(Debug, Default, Clone)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn parse(bytes: &[u8]) -> Fields {
        Fields(
            url::form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn from_query(query: Option<&str>) -> Fields {
        Fields::parse(query.unwrap_or_default().as_bytes())
    }

    /// The field's value as sent.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The field's value trimmed; `None` when absent or blank (a blank filter matches all).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw(name).map(str::trim).filter(|v| !v.is_empty())
    }
}

/// One bad field: the page is shown again with this line and status 400, nothing written.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }

    pub const STATUS: StatusCode = StatusCode::BAD_REQUEST;

    /// The line shown: the field, then what is wrong with it.
    pub fn line(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// `text` as a UUID, or the refusal naming `field`.
pub fn uuid(field: &'static str, text: &str) -> Result<uuid::Uuid, FieldError> {
    text.parse()
        .map_err(|_| FieldError::new(field, "is not a UUID (like 0193a1b2-…)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_decode_trim_and_treat_blank_as_absent() {
        let f = Fields::parse(b"a=1&b=+x%20+&c=&a=2&d=%3Cb%3E");
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("b"), Some("x"));
        assert_eq!(f.raw("b"), Some(" x  "));
        assert_eq!(f.get("c"), None);
        assert_eq!(f.get("d"), Some("<b>"));
        assert_eq!(f.get("missing"), None);
    }

    #[test]
    fn a_bad_uuid_names_its_field() {
        let e = uuid("before", "nope").unwrap_err();
        assert_eq!(e.field, "before");
        assert!(e.line().starts_with("before: "));
        assert!(uuid("id", "0193a1b2-0000-7000-8000-000000000000").is_ok());
    }
}
