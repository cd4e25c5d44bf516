//! `/v1/notifications`: enqueue one or a batch over HTTP with the SQL function's semantics (each
//! body is an `herald.enqueue_many` item, the `Idempotency-Key` header the `business_id`); list,
//! show, retry and cancel.
//!
//! Invariants:
//! - The tenant of an enqueue is settled before the database sees the item: the token's own when
//!   the body names none (or null); a tenant-bound token naming another is refused 403, nothing
//!   written. A batch is all or nothing, and a refusal names its 0-based `item`.
//! - A notification a tenant-bound token may not see is answered 404, as a missing one is.
//! - Every refusal is a problem document naming its `field`; nothing is written for any of them.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State as Shared};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Caller;
use super::problem::Problem;
use super::schema::{BodyRefusals, EnqueueItem, Enqueued, Missing, ProblemDoc, Refusals};
use super::{State, body, connection, item};
use crate::enqueue::refusal::{Refusal, classify, without_item};
use crate::state::State as NotificationState;
use crate::store::admin::{self as actions, Transition};
use crate::store::enqueue::{self as store, EnqueueRow};
use crate::store::notifications::{self as read, AttemptRow, ListFilter, NotificationRow};

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The most `limit` may ask for.
pub const MAX_LIMIT: i64 = 500;
const DEFAULT_LIMIT: i64 = 50;

/// Enqueue one notification.
#[utoipa::path(post, path = "/v1/notifications", operation_id = "enqueueNotification", tag = "notifications",
    request_body(content = EnqueueItem, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "The business_id; giving both with different values is 400")),
    responses(
        (status = 201, description = "A new notification", body = Enqueued,
            headers(("Location" = String, description = "/v1/notifications/{id}"))),
        (status = 200, description = "A replay: the stored notification", body = Enqueued,
            headers(("Location" = String, description = "/v1/notifications/{id}"))),
        (status = 400, description = "Invalid input (`field`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The key is held by a different intent (`existing_id`, `differs`)", body = ProblemDoc, content_type = "application/problem+json"),
        Refusals, BodyRefusals,
    ),
    security(("bearer" = [])))]
pub async fn create(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    caller.may_enqueue()?;
    let mut item = body::object(&state, &headers, body).await?;
    if let Some(key) = body::single(&headers, &IDEMPOTENCY_KEY)? {
        let key = key.to_str().map_err(|_| {
            Problem::bad_request("Idempotency-Key", "Idempotency-Key must be visible ASCII")
        })?;
        match body::string(&item, "business_id")? {
            None => {
                item.insert("business_id".into(), body::raw_string(key));
            }
            Some(given) if given == key => {}
            Some(_) => {
                return Err(Problem::bad_request(
                    "business_id",
                    "the Idempotency-Key header and business_id differ; give one, or both alike",
                ));
            }
        }
    }
    settle_tenant(&caller, &mut item)?;
    let tenant = body::string(&item, "tenant")?.unwrap_or_default();
    let notification = item::read(&item)?.notification(&tenant).ok_or_else(|| {
        Problem::bad_request("email", "invalid email: give one of email and webhook")
    })?;
    // Through the library: concurrent requests share commits, as concurrent callers do.
    let row = match crate::enqueue_with_limits(&state.pool, &notification, &state.config.limits())
        .await
    {
        Ok(done) => enqueued_of(&done),
        Err(e) => return Err(super::enqueue_error(e)),
    };
    let status = if row.status == "created" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(header::LOCATION, format!("/v1/notifications/{}", row.id))],
        Json(row),
    )
        .into_response())
}

/// Enqueue a batch, all or nothing.
#[utoipa::path(post, path = "/v1/notifications/batch", operation_id = "enqueueBatch", tag = "notifications",
    request_body(content = Vec<EnqueueItem>, content_type = "application/json"),
    responses(
        (status = 200, description = "One result per item, in input order", body = Vec<Enqueued>),
        (status = 400, description = "Invalid input (`field`, `item`), or an Idempotency-Key header", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A key held by a different intent (`existing_id`, `differs`, `item`)", body = ProblemDoc, content_type = "application/problem+json"),
        Refusals, BodyRefusals,
    ),
    security(("bearer" = [])))]
pub async fn create_batch(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Vec<Enqueued>>, Problem> {
    caller.may_enqueue()?;
    if headers.contains_key(&IDEMPOTENCY_KEY) {
        return Err(Problem::bad_request(
            "Idempotency-Key",
            "a batch takes no Idempotency-Key: give each item its business_id",
        ));
    }
    let items = body::array(&state, &headers, body).await?;
    let mut settled = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let mut item: body::Object = serde_json::from_str(item.get()).map_err(|_| {
            Problem::bad_request("body", format!("item {index} must be a JSON object"))
                .with("item", index)
        })?;
        settle_tenant(&caller, &mut item).map_err(|p| p.with("item", index))?;
        settled.push(item);
    }
    let mut conn = connection(&state).await?;
    let rows = store::enqueue_json(&mut conn, &settled, state.max_payload_bytes)
        .await
        .map_err(refusal)?;
    Ok(Json(rows.into_iter().map(enqueued).collect()))
}

/// The item's tenant: the token's own when it names none (or null); another is 403. And a NUL
/// in a member other than the payload is refused naming that member (PostgreSQL's jsonb
/// refuses the whole item, which would blame the payload).
fn settle_tenant(caller: &Caller, item: &mut body::Object) -> Result<(), Problem> {
    for (name, raw) in item.iter() {
        let holds_nul = name.contains('\0')
            || (name != "payload"
                && serde_json::from_str::<String>(raw.get()).is_ok_and(|text| text.contains('\0')));
        if holds_nul {
            let field = if name.contains('\0') {
                "body"
            } else {
                name.as_str()
            };
            return Err(Problem::bad_request(
                field,
                format!("invalid {field}: must not contain NUL (\\u0000)"),
            ));
        }
    }
    let tenant = caller.enqueue_tenant(body::string(item, "tenant")?.as_deref())?;
    item.insert("tenant".into(), body::raw_string(&tenant));
    Ok(())
}

fn enqueued_of(done: &crate::Enqueued) -> Enqueued {
    let (status, id, state) = match done {
        crate::Enqueued::Created { id, state, .. } => ("created", *id, *state),
        crate::Enqueued::Duplicate { id, state, .. } => ("duplicate", *id, *state),
    };
    Enqueued {
        id,
        status: status.to_owned(),
        state: state.as_str().to_owned(),
    }
}

fn enqueued(row: EnqueueRow) -> Enqueued {
    Enqueued {
        id: row.id,
        status: row.status,
        state: row.state,
    }
}

/// The SQL function's refusals as problems: invalid input 400 naming the field, a conflict 422
/// with the notification that holds the key; each names its batch `item`.
fn refusal(error: sqlx::Error) -> Problem {
    let (problem, item) = match classify(error) {
        Refusal::Invalid {
            field,
            message,
            item,
        } => (
            Problem::bad_request(
                &field,
                format!("invalid {field}: {}", without_item(&message)),
            ),
            item,
        ),
        Refusal::Conflict {
            existing_id,
            differs,
            message,
            item,
        } => (
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, without_item(&message))
                .with("existing_id", existing_id.to_string())
                .with("differs", differs),
            item,
        ),
        Refusal::Database(error) => return Problem::internal(&error),
    };
    match item {
        Some(item) => problem.with("item", item),
        None => problem,
    }
}

/// The query of `GET /v1/notifications`; every member optional.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListQuery {
    /// pending, running, delivered, dead or cancelled.
    state: Option<String>,
    #[param(rename = "type")]
    type_: Option<String>,
    /// The user_id.
    user: Option<String>,
    /// Confined to the token's own for a tenant-bound token (another is 403).
    tenant: Option<String>,
    business_id: Option<String>,
    /// 1 to 500; default 50.
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of notifications, newest first.
#[derive(Serialize, ToSchema)]
pub struct Page {
    pub items: Vec<NotificationRow>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// List notifications, newest first.
#[utoipa::path(get, path = "/v1/notifications", operation_id = "listNotifications", tag = "notifications", params(ListQuery),
    responses(
        (status = 200, description = "A page", body = Page),
        (status = 400, description = "A bad filter (`field`)", body = ProblemDoc, content_type = "application/problem+json"),
        Refusals,
    ),
    security(("bearer" = [])))]
pub async fn list(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Page>, Problem> {
    caller.may_read()?;
    let mut filter = ListFilter {
        limit: DEFAULT_LIMIT,
        ..ListFilter::default()
    };
    let mut tenant = None;
    let mut seen = std::collections::HashSet::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if !seen.insert(name.clone()) {
            return Err(Problem::bad_request(
                &name,
                format!("{name} is given more than once"),
            ));
        }
        let value = value.into_owned();
        if value.contains('\0') {
            return Err(Problem::bad_request(
                &name,
                format!("invalid {name}: must not contain NUL"),
            ));
        }
        match name.as_ref() {
            "state" => {
                filter.state =
                    Some(value.parse::<NotificationState>().map_err(|e| {
                        Problem::bad_request("state", format!("invalid state: {e}"))
                    })?)
            }
            "type" => filter.type_ = Some(value),
            "user" => filter.user_id = Some(value),
            "business_id" => filter.business_id = Some(value),
            "tenant" => tenant = Some(value),
            "limit" => {
                filter.limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        Problem::bad_request(
                            "limit",
                            format!("invalid limit: must be 1 to {MAX_LIMIT}"),
                        )
                    })?
            }
            "cursor" => {
                filter.before = Some(Uuid::parse_str(&value).map_err(|_| {
                    Problem::bad_request("cursor", "invalid cursor: pass a page's next_cursor")
                })?)
            }
            other => {
                return Err(Problem::bad_request(
                    other,
                    format!(
                        "unknown parameter {other:?}: state, type, user, tenant, business_id, limit, cursor"
                    ),
                ));
            }
        }
    }
    filter.tenant = caller.read_tenant(tenant.as_deref())?;
    let limit = filter.limit;
    // One more than asked tells whether a next page exists.
    filter.limit += 1;
    let mut conn = connection(&state).await?;
    let mut items = read::list(&mut conn, &filter)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = more
        .then(|| items.last().map(|n| n.id.to_string()))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}

/// A notification with its attempt log.
#[derive(Serialize, ToSchema)]
pub struct Detail {
    #[serde(flatten)]
    pub notification: NotificationRow,
    pub attempt_log: Vec<AttemptRow>,
}

/// One notification and its attempt log.
#[utoipa::path(get, path = "/v1/notifications/{id}", operation_id = "getNotification", tag = "notifications",
    params(("id" = Uuid, Path, description = "The notification id")),
    responses(
        (status = 200, description = "The notification", body = Detail),
        Refusals, Missing,
    ),
    security(("bearer" = [])))]
pub async fn show(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Detail>, Problem> {
    caller.may_read()?;
    let mut conn = connection(&state).await?;
    let notification = visible(&mut conn, &caller, &id).await?;
    let attempt_log = read::attempts(&mut conn, notification.id)
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(Json(Detail {
        notification,
        attempt_log,
    }))
}

/// Retry a dead or cancelled notification: pending again, due now, a fresh attempt budget.
#[utoipa::path(post, path = "/v1/notifications/{id}/retry", operation_id = "retryNotification", tag = "notifications",
    params(("id" = Uuid, Path, description = "The notification id")),
    responses(
        (status = 200, description = "The notification, pending again", body = NotificationRow),
        (status = 409, description = "Not dead or cancelled (`state`)", body = ProblemDoc, content_type = "application/problem+json"),
        Refusals, Missing,
    ),
    security(("bearer" = [])))]
pub async fn retry(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<NotificationRow>, Problem> {
    act(&state, &caller, &id, Action::Retry).await.map(Json)
}

/// Cancel a pending notification.
#[utoipa::path(post, path = "/v1/notifications/{id}/cancel", operation_id = "cancelNotification", tag = "notifications",
    params(("id" = Uuid, Path, description = "The notification id")),
    responses(
        (status = 200, description = "The notification, cancelled", body = NotificationRow),
        (status = 409, description = "Not pending (`state`)", body = ProblemDoc, content_type = "application/problem+json"),
        Refusals, Missing,
    ),
    security(("bearer" = [])))]
pub async fn cancel(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<NotificationRow>, Problem> {
    act(&state, &caller, &id, Action::Cancel).await.map(Json)
}

#[derive(Clone, Copy)]
enum Action {
    Retry,
    Cancel,
}

async fn act(
    state: &State,
    caller: &Caller,
    id: &str,
    action: Action,
) -> Result<NotificationRow, Problem> {
    caller.may_administer()?;
    let mut conn = connection(state).await?;
    let target = visible(&mut conn, caller, id).await?;
    let done = match action {
        Action::Retry => actions::retry(&mut conn, target.id).await,
        Action::Cancel => actions::cancel(&mut conn, target.id).await,
    }
    .map_err(|e| Problem::internal(&e))?;
    match done {
        Transition::Done => {}
        Transition::NotFound => return Err(not_found(id)),
        Transition::Refused(now) => {
            let allowed = match action {
                Action::Retry => "only a dead or cancelled notification can be retried",
                Action::Cancel => "only a pending notification can be cancelled",
            };
            return Err(
                Problem::new(StatusCode::CONFLICT, format!("it is {now}: {allowed}"))
                    .with("state", now.as_str()),
            );
        }
    }
    read::get(&mut conn, target.id)
        .await
        .map_err(|e| Problem::internal(&e))?
        .ok_or_else(|| not_found(id))
}

/// The notification `id`, when the caller may see it; 404 alike for a malformed id, a missing
/// notification and another tenant's.
async fn visible(
    conn: &mut PgConnection,
    caller: &Caller,
    id: &str,
) -> Result<NotificationRow, Problem> {
    let Ok(uuid) = Uuid::parse_str(id) else {
        return Err(not_found(id));
    };
    match read::get(conn, uuid)
        .await
        .map_err(|e| Problem::internal(&e))?
    {
        Some(n) if caller.sees(&n.tenant) => Ok(n),
        _ => Err(not_found(id)),
    }
}

fn not_found(id: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        format!("notification {} not found", shown(id)),
    )
}

/// At most 64 characters of what a client sent, for a message.
pub(super) fn shown(text: &str) -> String {
    let mut cut: String = text.chars().take(64).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}
