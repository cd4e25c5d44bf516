//! Request bodies: JSON only, bounded, and kept as text below the top level.
//!
//! Invariants:
//! - A body is read only when its media type is JSON (415 otherwise); one past
//!   `api.max_body_bytes` is 413; anything serde_json cannot parse is 400 naming `body`.
//! - Members stay raw JSON text ([`RawValue`]): a payload's numbers reach the database exactly
//!   as the client wrote them (a `Value` would round `123456789012345678901234567890`), as the
//!   library's payloads do. A duplicate member keeps its last value, as jsonb does.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::problem::Problem;

/// A JSON object whose members are kept as text.
pub type Object = BTreeMap<String, Box<RawValue>>;

/// The body as one JSON object.
pub fn object(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Object, Problem> {
    parse(headers, body, "the body must be a JSON object")
}

/// The body as a JSON array.
pub fn array(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Vec<Box<RawValue>>, Problem> {
    parse(headers, body, "the body must be a JSON array")
}

fn parse<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    shape: &str,
) -> Result<T, Problem> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().eq_ignore_ascii_case("application/json"))
        .unwrap_or(false);
    if !declared {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, sent with Content-Type: application/json",
        ));
    }
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is larger than api.max_body_bytes",
            )
        } else {
            Problem::bad_request("body", format!("the body could not be read: {rejection}"))
        }
    })?;
    let value: Box<RawValue> = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request("body", format!("malformed JSON: {e}")))?;
    serde_json::from_str(value.get()).map_err(|_| Problem::bad_request("body", shape))
}

/// Member `name` of `object` as a string; `None` when absent or null, 400 naming it otherwise.
pub fn string(object: &Object, name: &str) -> Result<Option<String>, Problem> {
    match object.get(name) {
        None => Ok(None),
        Some(raw) => serde_json::from_str::<Option<String>>(raw.get())
            .map_err(|_| Problem::bad_request(name, format!("invalid {name}: must be a string"))),
    }
}

/// `text` as a member value.
pub fn raw_string(text: &str) -> Box<RawValue> {
    // Serialising a string cannot fail.
    serde_json::value::to_raw_value(text).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_their_text_and_the_last_duplicate_wins() {
        let object: Object = serde_json::from_str(
            r#"{"payload": {"n": 123456789012345678901234567890}, "tenant": "a", "tenant": "b"}"#,
        )
        .unwrap();
        assert_eq!(
            object["payload"].get(),
            r#"{"n": 123456789012345678901234567890}"#
        );
        assert_eq!(string(&object, "tenant").unwrap().as_deref(), Some("b"));
    }

    #[test]
    fn a_member_that_is_not_a_string_is_named() {
        let object: Object = serde_json::from_str(r#"{"tenant": 5, "type": null}"#).unwrap();
        assert_eq!(
            string(&object, "tenant").unwrap_err().members["field"],
            "tenant"
        );
        assert_eq!(string(&object, "type").unwrap(), None);
    }
}
