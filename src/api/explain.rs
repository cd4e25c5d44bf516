//! `POST /v1/explain`: [`crate::admin::explain`] for a body shaped as an enqueue item — which
//! notification holds its key, and whether enqueueing it would be new, a duplicate or a
//! conflict (and where it differs).
//!
//! Invariants: the item is validated as an enqueue validates it (400 naming the field), and a
//! tenant-bound token explains only keys of its tenant (403 for another), so it cannot learn
//! whether another tenant's key is held.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State as Shared;
use axum::http::HeaderMap;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::auth::Caller;
use super::problem::Problem;
use super::schema::{EnqueueItem, ProblemDoc};
use super::{State, body, connection, enqueue_error};
use crate::admin::explain::{Candidate, Explanation, explain as answer, retention_for};
use crate::key::Key;
use crate::notification::{DEFAULT_TENANT, Notification};
use crate::state::Channel;

/// The members of an enqueue item; `run_at` and `max_attempts` do not change a verdict, but
/// are refused where enqueue would refuse them.
const MEMBERS: [&str; 9] = [
    "tenant",
    "user_id",
    "type",
    "business_id",
    "email",
    "webhook",
    "payload",
    "run_at",
    "max_attempts",
];

/// Explain a key, and judge an intent against its holder.
#[utoipa::path(post, path = "/v1/explain", operation_id = "explainKey", tag = "notifications",
    request_body(content = EnqueueItem, content_type = "application/json",
        description = "An enqueue item. With `email` or `webhook` the whole intent is judged (payload default {}); with only `payload`, the payload; with neither, no verdict"),
    responses(
        (status = 200, description = "The explanation", body = Explanation),
        (status = 400, description = "Invalid input (`field`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "An enqueue token, or another tenant", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body over api.max_body_bytes", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = ProblemDoc, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn explain(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Explanation>, Problem> {
    caller.may_read()?;
    let item = body::object(&state, &headers, body).await?;
    if let Some(unknown) = item.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
        return Err(Problem::bad_request(
            unknown,
            format!("unknown member {}", super::notifications::shown(unknown)),
        ));
    }
    let tenant = caller
        .read_tenant(body::string(&item, "tenant")?.as_deref())?
        .unwrap_or_else(|| DEFAULT_TENANT.to_owned());
    let required = |name: &str| {
        body::string(&item, name)?
            .ok_or_else(|| Problem::bad_request(name, format!("invalid {name}: is required")))
    };
    let key = Key {
        tenant,
        user_id: required("user_id")?,
        type_: required("type")?,
        business_id: required("business_id")?,
    };
    let email = body::string(&item, "email")?;
    let webhook = body::string(&item, "webhook")?
        .map(|text| {
            Uuid::parse_str(&text).map_err(|_| {
                Problem::bad_request("webhook", "invalid webhook: must be an endpoint id")
            })
        })
        .transpose()?;
    let destination = match (email, webhook) {
        (Some(_), Some(_)) => {
            return Err(Problem::bad_request(
                "webhook",
                "give one of email and webhook",
            ));
        }
        (Some(address), None) => Some((Channel::Email, address)),
        (None, Some(endpoint)) => Some((Channel::Webhook, endpoint.to_string())),
        (None, None) => None,
    };
    let payload = item
        .get("payload")
        .filter(|raw| raw.get() != "null")
        .cloned();
    let candidate = match (payload, &destination) {
        (Some(payload), _) => Some(payload),
        (None, Some(_)) => Some(
            RawValue::from_string("{}".to_owned())
                .map_err(|_| Problem::bad_request("payload", "invalid payload"))?,
        ),
        (None, None) => None,
    }
    .map(|payload| Candidate {
        payload,
        destination,
    });
    // What enqueue would refuse is refused here, with enqueue's own validation and words.
    let limits = state.config.limits();
    let notification = match &candidate {
        Some(c) => {
            let n = match &c.destination {
                Some((Channel::Email, address)) => Notification::email(
                    &key.user_id,
                    &key.type_,
                    &key.business_id,
                    address.as_str(),
                ),
                // A webhook's endpoint is checked only for existence at enqueue, which is no
                // concern of explain.
                _ => Notification::webhook(&key.user_id, &key.type_, &key.business_id, Uuid::nil()),
            };
            n.payload_raw(c.payload.clone())
        }
        None => Notification::webhook(&key.user_id, &key.type_, &key.business_id, Uuid::nil()),
    };
    let mut notification = notification.tenant(&key.tenant);
    if let Some(raw) = item.get("max_attempts").filter(|raw| raw.get() != "null") {
        let attempts = serde_json::from_str::<u32>(raw.get()).map_err(|_| {
            Problem::bad_request(
                "max_attempts",
                "invalid max_attempts: must be an integer from 1 to 100",
            )
        })?;
        notification = notification.max_attempts(attempts);
    }
    if let Some(text) = body::string(&item, "run_at")? {
        let at = chrono::DateTime::parse_from_rfc3339(&text).map_err(|_| {
            Problem::bad_request(
                "run_at",
                "invalid run_at: must be an RFC 3339 time, e.g. 2026-12-01T09:00:00Z",
            )
        })?;
        notification = notification.run_at(at.with_timezone(&chrono::Utc));
    }
    notification.validate(&limits).map_err(enqueue_error)?;
    let retention = retention_for(&state.config.sweeper, &key.type_);
    let mut conn = connection(&state).await?;
    answer(
        &mut conn,
        &key,
        candidate.as_ref(),
        retention,
        limits.max_payload_bytes,
    )
    .await
    .map(Json)
    .map_err(enqueue_error)
}
