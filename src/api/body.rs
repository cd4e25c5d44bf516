//! Request bodies: JSON only, bounded in size and in time, and kept as text below the top level.
//!
//! Invariants:
//! - A body is read only when its media type is JSON in UTF-8 (415 otherwise, unread); it must
//!   arrive whole within `api.body_timeout` of the head (408: a client trickling bytes cannot
//!   hold a connection) and within `api.max_body_bytes` (413, read no further); anything
//!   serde_json cannot parse is 400 naming `body`.
//! - Members stay raw JSON text ([`RawValue`]): a payload's numbers reach the database exactly
//!   as the client wrote them (a `Value` would round `123456789012345678901234567890`), as the
//!   library's payloads do. A duplicate member keeps its last value, as jsonb does.
//! - A header the API reads (`Content-Type`, `Idempotency-Key`, `Authorization`) given twice is
//!   refused (400), so herald and a proxy in front of it cannot read different ones.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::State;
use super::problem::Problem;

/// A JSON object whose members are kept as text.
pub type Object = BTreeMap<String, Box<RawValue>>;

/// The body as one JSON object.
pub async fn object(state: &State, headers: &HeaderMap, body: Body) -> Result<Object, Problem> {
    parse(
        &json_bytes(state, headers, body).await?,
        "the body must be a JSON object",
    )
}

/// The body as one JSON object; an empty body, with or without a media type, is an empty one.
pub async fn optional_object(
    state: &State,
    headers: &HeaderMap,
    body: Body,
) -> Result<Object, Problem> {
    if single(headers, &header::CONTENT_TYPE)?.is_none() {
        let bytes = read(state, body).await?;
        return match bytes.is_empty() {
            true => Ok(Object::new()),
            false => Err(unsupported()),
        };
    }
    object(state, headers, body).await
}

/// The body as a JSON array.
pub async fn array(
    state: &State,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<Box<RawValue>>, Problem> {
    parse(
        &json_bytes(state, headers, body).await?,
        "the body must be a JSON array",
    )
}

/// The value of `name` when given once; `None` when absent; 400 when given more than once.
pub fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, Problem> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Problem::bad_request(
            name.as_str(),
            format!("{name} is given more than once"),
        ));
    }
    Ok(first)
}

async fn json_bytes(state: &State, headers: &HeaderMap, body: Body) -> Result<Bytes, Problem> {
    let declared = single(headers, &header::CONTENT_TYPE)?
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_in_utf8);
    if !declared {
        return Err(unsupported());
    }
    read(state, body).await
}

/// `application/json`, with no charset or UTF-8's (JSON is UTF-8: RFC 8259).
fn is_json_in_utf8(content_type: &str) -> bool {
    let mut parts = content_type.split(';').map(str::trim);
    let essence = parts.next().unwrap_or_default();
    essence.eq_ignore_ascii_case("application/json")
        && parts.all(|parameter| match parameter.split_once('=') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
                value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            _ => true,
        })
}

fn unsupported() -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "the body must be JSON in UTF-8, sent with Content-Type: application/json",
    )
}

/// The whole body, within `api.max_body_bytes` (413) and `api.body_timeout` (408).
pub(crate) async fn read(state: &State, body: Body) -> Result<Bytes, Problem> {
    let limit = state.config.api.max_body_bytes;
    let collect = async {
        let mut stream = body.into_data_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                Problem::bad_request("body", format!("the body could not be read: {e}"))
            })?;
            if bytes.len() + chunk.len() > limit {
                return Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the body is larger than api.max_body_bytes",
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(bytes))
    };
    tokio::time::timeout(state.config.api.body_timeout, collect)
        .await
        .unwrap_or_else(|_| {
            Err(Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive within api.body_timeout",
            )
            .closing())
        })
}

fn parse<T: DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, Problem> {
    let value: Box<RawValue> = serde_json::from_slice(body)
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
        let object: Object = parse(
            br#"{"payload": {"n": 123456789012345678901234567890}, "tenant": "a", "tenant": "b"}"#,
            "",
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
        let object: Object = parse(br#"{"tenant": 5, "type": null}"#, "").unwrap();
        assert_eq!(
            string(&object, "tenant").unwrap_err().members["field"],
            "tenant"
        );
        assert_eq!(string(&object, "type").unwrap(), None);
    }

    #[test]
    fn json_is_json_only_in_utf8() {
        for accepted in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(is_json_in_utf8(accepted), "{accepted}");
        }
        for refused in [
            "application/json; charset=latin1",
            "application/jsonx",
            "text/json",
            "",
        ] {
            assert!(!is_json_in_utf8(refused), "{refused}");
        }
    }

    #[test]
    fn a_header_given_twice_is_refused_by_name() {
        let mut headers = HeaderMap::new();
        headers.append(header::CONTENT_TYPE, HeaderValue::from_static("a"));
        assert!(single(&headers, &header::CONTENT_TYPE).unwrap().is_some());
        headers.append(header::CONTENT_TYPE, HeaderValue::from_static("b"));
        let problem = single(&headers, &header::CONTENT_TYPE).unwrap_err();
        assert_eq!(problem.members["field"], "content-type");
    }
}
