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
use super::schema::{BodyRefusals, EnqueueItem, ProblemDoc, Refusals};
use super::{State, body, connection, enqueue_error, item};
use crate::admin::explain::{Candidate, Explanation, explain as answer, retention_for};
use crate::key::Key;
use crate::notification::{DEFAULT_TENANT, Notification};

/// `{}`: the payload of an item that gives none.
fn empty_object() -> Box<RawValue> {
    serde_json::value::to_raw_value(&serde_json::Map::new())
        .unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// Explain a key, and judge an intent against its holder.
#[utoipa::path(post, path = "/v1/explain", operation_id = "explainKey", tag = "notifications",
    request_body(content = EnqueueItem, content_type = "application/json",
        description = "An enqueue item. With `email` or `webhook` the whole intent is judged (payload default {}); with only `payload`, the payload; with neither, no verdict"),
    responses(
        (status = 200, description = "The explanation", body = Explanation),
        (status = 400, description = "Invalid input (`field`)", body = ProblemDoc, content_type = "application/problem+json"),
        Refusals, BodyRefusals,
    ),
    security(("bearer" = [])))]
pub async fn explain(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Explanation>, Problem> {
    caller.may_read()?;
    let object = body::object(&state, &headers, body).await?;
    let item = item::read(&object)?;
    let tenant = caller
        .read_tenant(body::string(&object, "tenant")?.as_deref())?
        .unwrap_or_else(|| DEFAULT_TENANT.to_owned());
    let key = Key {
        tenant,
        user_id: item.user_id.clone(),
        type_: item.type_.clone(),
        business_id: item.business_id.clone(),
    };
    // What enqueue would refuse is refused here, with enqueue's own validation and words. With
    // no destination only the key and payload are judged: a webhook's endpoint is checked only
    // for existence at enqueue, which is no concern of explain.
    let notification = item.notification(&key.tenant).unwrap_or_else(|| {
        item.with_details(
            Notification::webhook(&key.user_id, &key.type_, &key.business_id, Uuid::nil())
                .tenant(&key.tenant),
        )
    });
    let limits = state.config.limits();
    notification.validate(&limits).map_err(enqueue_error)?;
    let candidate = match (&item.payload, &item.destination) {
        (None, None) => None,
        (payload, destination) => Some(Candidate {
            payload: payload.clone().unwrap_or_else(empty_object),
            destination: destination.clone(),
        }),
    };
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
