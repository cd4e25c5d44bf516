//! The shapes the API's OpenAPI document describes that no handler parses itself: the enqueue
//! item (the SQL function validates it), the answers built as JSON, and the problem document.
//! They exist for the document; each names the code that defines its behaviour.

use serde::Serialize;
use utoipa::ToSchema;
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
