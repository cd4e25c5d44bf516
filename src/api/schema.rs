//! The shapes the API's OpenAPI document describes that no handler parses itself: the enqueue
//! item (the SQL function validates it), the answers built as JSON, and the problem document.
//! They exist for the document; each names the code that defines its behaviour.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, ToSchema};
use uuid::Uuid;

/// One `herald.enqueue_many` item (docs/library-and-sql.md): the function validates it, and
/// refuses members it does not know.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EnqueueItem {
    /// Default: the token's tenant, else `default`.
    tenant: Option<String>,
    user_id: String,
    #[schema(rename = "type")]
    type_: String,
    /// Or the `Idempotency-Key` header.
    business_id: Option<String>,
    /// Exactly one of `email` and `webhook`.
    email: Option<String>,
    /// A webhook endpoint's id.
    webhook: Option<Uuid>,
    #[schema(value_type = Option<Object>)]
    payload: Option<()>,
    #[schema(value_type = Option<String>, format = DateTime)]
    run_at: Option<()>,
    max_attempts: Option<i32>,
}

/// An enqueue's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Enqueued {
    pub id: Uuid,
    /// `created` or `duplicate`.
    pub status: String,
    pub state: String,
}

/// An RFC 9457 problem document; refusals add `field`, `item`, `existing_id`, `differs`.
#[derive(ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
pub struct ProblemDoc {
    #[schema(rename = "type", example = "about:blank")]
    type_: String,
    title: String,
    status: u16,
    detail: String,
    /// The field at fault (400, 403).
    field: Option<String>,
    /// The 0-based index of the batch item at fault.
    item: Option<usize>,
    /// The notification holding the key (422).
    existing_id: Option<Uuid>,
    /// `channel`, `destination` or `payload` (422).
    differs: Option<String>,
}

/// The refusals every `/v1` operation may answer: 401 and 403.
pub struct Refusals;
/// 404, for an operation on one notification or endpoint.
pub struct Missing;
/// 413 and 415, for an operation that reads a body.
pub struct BodyRefusals;

impl IntoResponses for Refusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problems(&[
            (401, "No valid token"),
            (403, "Outside the token's role, or another tenant named"),
        ])
    }
}

impl IntoResponses for Missing {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problems(&[(404, "No such one, or another tenant's: the same answer")])
    }
}

impl IntoResponses for BodyRefusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problems(&[
            (413, "A body over api.max_body_bytes"),
            (415, "A body that is not JSON in UTF-8"),
        ])
    }
}

/// Problem-document responses, one per `(status, description)`.
fn problems(answers: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    answers
        .iter()
        .map(|(status, description)| {
            let response = ResponseBuilder::new()
                .description(*description)
                .content(
                    super::problem::CONTENT_TYPE,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}
