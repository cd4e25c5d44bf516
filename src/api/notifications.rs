//! `POST /v1/notifications`: one enqueue over HTTP, with the SQL function's semantics (the body
//! is an `herald.enqueue_many` item) and the `Idempotency-Key` header as the `business_id`.
//!
//! Invariants:
//! - The tenant is settled before the database sees the item: the token's own when the body
//!   names none (or null); a tenant-bound token naming another is refused 403, nothing written.
//! - Every refusal is a problem document naming its `field`; nothing is written for any of them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sqlx::postgres::PgDatabaseError;

use super::State;
use super::auth::Caller;
use super::problem::Problem;
use crate::store::enqueue::{self as store, EnqueueRow};

const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub async fn create(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.may_enqueue()?;
    let mut item = json_object(&headers, body)?;
    if let Some(key) = headers.get(IDEMPOTENCY_KEY) {
        let key = key.to_str().map_err(|_| {
            Problem::bad_request("Idempotency-Key", "Idempotency-Key must be visible ASCII")
        })?;
        match item.get("business_id") {
            None | Some(Value::Null) => {
                item.insert("business_id".into(), Value::from(key));
            }
            Some(Value::String(given)) if given == key => {}
            Some(Value::String(_)) => {
                return Err(Problem::bad_request(
                    "business_id",
                    "the Idempotency-Key header and business_id differ; give one, or both alike",
                ));
            }
            Some(_) => {
                return Err(Problem::bad_request(
                    "business_id",
                    "invalid business_id: must be a string",
                ));
            }
        }
    }
    let tenant = match item.get("tenant") {
        None | Some(Value::Null) => caller.enqueue_tenant(None)?,
        Some(Value::String(named)) => caller.enqueue_tenant(Some(named))?,
        Some(_) => {
            return Err(Problem::bad_request(
                "tenant",
                "invalid tenant: must be a string",
            ));
        }
    };
    item.insert("tenant".into(), Value::from(tenant));

    let mut conn = state
        .pool
        .acquire()
        .await
        .map_err(|e| Problem::internal(&e))?;
    let rows = store::enqueue_json(
        &mut conn,
        &Value::Array(vec![Value::Object(item)]),
        state.max_payload_bytes,
    )
    .await
    .map_err(refusal)?;
    let row = rows
        .into_iter()
        .next()
        .ok_or_else(|| Problem::internal(&sqlx::Error::RowNotFound))?;
    Ok(created_or_duplicate(&row))
}

/// 201 for a new notification, 200 for a replay; `Location` names it either way.
fn created_or_duplicate(row: &EnqueueRow) -> Response {
    let status = if row.status == "created" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/v1/notifications/{}", row.id);
    (
        status,
        [
            (header::LOCATION, location),
            (header::CONTENT_TYPE, "application/json".to_owned()),
        ],
        json!({"id": row.id, "status": row.status, "state": row.state}).to_string(),
    )
        .into_response()
}

/// The request's body as a JSON object: 415 unless it is declared JSON, 413 past
/// `api.max_body_bytes`, 400 when it is not one JSON object.
fn json_object(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<serde_json::Map<String, Value>, Problem> {
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
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(Problem::bad_request(
            "body",
            "the body must be a JSON object",
        )),
        Err(e) => Err(Problem::bad_request("body", format!("malformed JSON: {e}"))),
    }
}

/// The SQL function's refusals as problems: `HR001` 400 naming the field, `HR002` 422 with
/// the notification that holds the key; anything else is the database failing.
fn refusal(error: sqlx::Error) -> Problem {
    let Some(db) = error
        .as_database_error()
        .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
    else {
        return Problem::internal(&error);
    };
    let detail: Value = db
        .detail()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(Value::Null);
    match db.code() {
        "HR001" => {
            let field = db.column().unwrap_or("body").to_owned();
            Problem::bad_request(&field, strip_item_suffix(db.message()))
        }
        "HR002" => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            strip_item_suffix(db.message()),
        )
        .with("existing_id", detail["existing_id"].clone())
        .with("differs", detail["differs"].clone()),
        "22P02" | "22003" | "22P05" => Problem::bad_request(
            "payload",
            format!(
                "invalid payload: PostgreSQL cannot store it: {}",
                db.message()
            ),
        ),
        _ => Problem::internal(&error),
    }
}

/// The SQL function ends a batch item's message with ` (item N)`; a single enqueue has no item.
fn strip_item_suffix(message: &str) -> String {
    match message.rfind(" (item ") {
        Some(at) if message.ends_with(')') => message[..at].to_owned(),
        _ => message.to_owned(),
    }
}
