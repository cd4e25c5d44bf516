//! `GET /notifications` (filters by state, type, user and tenant, search by key, 50 a page
//! with a cursor), `GET /notifications/{id}` (payload and attempt log) and the actions on one
//! (`POST …/retry`, `POST …/cancel`).
//!
//! A tenant-bound token's tenant filter is its tenant, whatever the form says.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State as Shared};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use minijinja::value::Serde;
use serde::Serialize;
use uuid::Uuid;

use super::display::{pretty_payload, when};
use super::form::{FieldError, Fields, Form, uuid};
use super::pages::{database_failed, not_found};
use super::render::{page, see_other};
use super::session::Viewer;
use crate::api::State;
use crate::state::State as NotificationState;
use crate::store::admin::{self, Transition};
use crate::store::notifications::{self as store, AttemptRow, ListFilter, NotificationRow};

/// Rows on a page of the list.
pub const PAGE: i64 = 50;

/// A notification as a row of the list or the head of its page.
#[derive(Debug, Serialize)]
struct Row {
    id: String,
    tenant: String,
    user_id: String,
    #[serde(rename = "type")]
    type_: String,
    business_id: String,
    channel: &'static str,
    destination: String,
    /// Set when the destination is an endpoint (its id).
    endpoint: bool,
    state: &'static str,
    attempts: i32,
    max_attempts: i32,
    run_at: String,
    created_at: String,
    finished_at: Option<String>,
    last_error: Option<String>,
}

impl From<&NotificationRow> for Row {
    fn from(n: &NotificationRow) -> Self {
        Row {
            id: n.id.to_string(),
            tenant: n.tenant.clone(),
            user_id: n.user_id.clone(),
            type_: n.type_.clone(),
            business_id: n.business_id.clone(),
            channel: n.channel.as_str(),
            destination: n.destination.clone(),
            endpoint: n.channel == crate::state::Channel::Webhook,
            state: n.state.as_str(),
            attempts: n.attempts,
            max_attempts: n.max_attempts,
            run_at: when(n.run_at),
            created_at: when(n.created_at),
            finished_at: n.finished_at.map(when),
            last_error: n.last_error.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Attempt {
    attempt: i32,
    started_at: String,
    finished_at: String,
    outcome: String,
    status: Option<i32>,
    error: Option<String>,
}

impl From<&AttemptRow> for Attempt {
    fn from(a: &AttemptRow) -> Self {
        Attempt {
            attempt: a.attempt,
            started_at: when(a.started_at),
            finished_at: when(a.finished_at),
            outcome: a.outcome.clone(),
            status: a.status,
            error: a.error.clone(),
        }
    }
}

/// The filters as the form shows them back.
#[derive(Debug, Default, Serialize)]
struct Filters {
    state: String,
    #[serde(rename = "type")]
    type_: String,
    user_id: String,
    tenant: String,
    business_id: String,
}

/// `GET /notifications?state&type&user_id&tenant&business_id&before`.
pub async fn list(
    Shared(state): Shared<Arc<State>>,
    viewer: Viewer,
    RawQuery(query): RawQuery,
) -> Response {
    let fields = Fields::from_query(query.as_deref());
    let text = |name: &str| fields.get(name).map(str::to_owned);
    let tenant = viewer.caller.tenant.clone().or_else(|| text("tenant"));
    let shown = Filters {
        state: text("state").unwrap_or_default(),
        type_: text("type").unwrap_or_default(),
        user_id: text("user_id").unwrap_or_default(),
        tenant: tenant.clone().unwrap_or_default(),
        business_id: text("business_id").unwrap_or_default(),
    };
    let filter = parse_filter(&fields).map(|mut f| {
        f.tenant = tenant;
        f
    });
    let filter = match filter {
        Ok(filter) => filter,
        Err(error) => {
            return list_page(&viewer, FieldError::STATUS, &shown, &[], None, Some(error));
        }
    };
    let rows = match state.pool.acquire().await {
        Ok(mut conn) => store::list(&mut conn, &filter).await,
        Err(e) => Err(e),
    };
    let mut rows = match rows {
        Ok(rows) => rows,
        Err(e) => return database_failed(Some(&viewer), &e),
    };
    // One row more than a page was asked for: whether a next page exists.
    let next = if rows.len() as i64 > PAGE {
        rows.truncate(PAGE as usize);
        rows.last().map(|last| next_page(&shown, last.id))
    } else {
        None
    };
    list_page(&viewer, StatusCode::OK, &shown, &rows, next, None)
}

fn parse_filter(fields: &Fields) -> Result<ListFilter, FieldError> {
    let state = fields
        .get("state")
        .map(|s| {
            s.parse::<NotificationState>().map_err(|_| {
                FieldError::new(
                    "state",
                    "must be one of pending, running, delivered, dead, cancelled",
                )
            })
        })
        .transpose()?;
    let before = fields
        .get("before")
        .map(|b| uuid("before", b))
        .transpose()?;
    Ok(ListFilter {
        state,
        type_: fields.get("type").map(str::to_owned),
        user_id: fields.get("user_id").map(str::to_owned),
        tenant: None,
        business_id: fields.get("business_id").map(str::to_owned),
        before,
        limit: PAGE + 1,
    })
}

/// The link to the page after the one ending with `last`, with the same filters.
fn next_page(filters: &Filters, last: Uuid) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("state", &filters.state),
        ("type", &filters.type_),
        ("user_id", &filters.user_id),
        ("tenant", &filters.tenant),
        ("business_id", &filters.business_id),
    ] {
        if !value.is_empty() {
            query.append_pair(name, value);
        }
    }
    query.append_pair("before", &last.to_string());
    format!("/notifications?{}", query.finish())
}

fn list_page(
    viewer: &Viewer,
    status: StatusCode,
    filters: &Filters,
    rows: &[NotificationRow],
    next: Option<String>,
    error: Option<FieldError>,
) -> Response {
    let rows: Vec<Row> = rows.iter().map(Row::from).collect();
    page(
        status,
        "notifications.html",
        context! {
            viewer => Serde(viewer.view()),
            nav => "notifications",
            filters => Serde(filters),
            states => NotificationState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            rows => Serde(&rows),
            next => next,
            error => error.map(|e| e.line()),
            page_size => PAGE,
        },
    )
}

/// `GET /notifications/{id}`: `?done=retry|cancel` after an action.
pub async fn show(
    Shared(state): Shared<Arc<State>>,
    viewer: Viewer,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let notice = match Fields::from_query(query.as_deref()).get("done") {
        Some("retry") => Some("Retried: the notification is pending again, due now."),
        Some("cancel") => Some("Cancelled."),
        _ => None,
    };
    detail(&state, &viewer, &id, StatusCode::OK, notice, None).await
}

/// The page of notification `id` (404 when missing or not the viewer's tenant's).
async fn detail(
    state: &State,
    viewer: &Viewer,
    id: &str,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> Response {
    let Ok(id) = id.parse::<Uuid>() else {
        return not_found(viewer, "notification");
    };
    let mut conn = match state.pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return database_failed(Some(viewer), &e),
    };
    let row = match store::get(&mut conn, id).await {
        Ok(Some(row)) if viewer.sees(&row.tenant) => row,
        Ok(_) => return not_found(viewer, "notification"),
        Err(e) => return database_failed(Some(viewer), &e),
    };
    let attempts = match store::attempts(&mut conn, id).await {
        Ok(attempts) => attempts,
        Err(e) => return database_failed(Some(viewer), &e),
    };
    let attempts: Vec<Attempt> = attempts.iter().map(Attempt::from).collect();
    page(
        status,
        "notification.html",
        context! {
            viewer => Serde(viewer.view()),
            nav => "notifications",
            n => Serde(Row::from(&row)),
            payload => pretty_payload(&row.payload),
            attempts => Serde(&attempts),
            may_retry => matches!(row.state, NotificationState::Dead | NotificationState::Cancelled),
            may_cancel => row.state == NotificationState::Pending,
            notice => notice,
            error => error,
        },
    )
}

/// `POST /notifications/{id}/retry`: `csrf`.
pub async fn retry(
    Shared(state): Shared<Arc<State>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form,
) -> Response {
    act(&state, &viewer, &id, &form, Action::Retry).await
}

/// `POST /notifications/{id}/cancel`: `csrf`.
pub async fn cancel(
    Shared(state): Shared<Arc<State>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form,
) -> Response {
    act(&state, &viewer, &id, &form, Action::Cancel).await
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Retry,
    Cancel,
}

async fn act(state: &State, viewer: &Viewer, id: &str, form: &Fields, action: Action) -> Response {
    if let Some(refused) = viewer.refuse_action(form) {
        return refused;
    }
    let Ok(uuid) = id.parse::<Uuid>() else {
        return not_found(viewer, "notification");
    };
    let mut conn = match state.pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return database_failed(Some(viewer), &e),
    };
    // Another tenant's notification is not acted on, and answered as a missing one.
    match store::get(&mut conn, uuid).await {
        Ok(Some(row)) if viewer.sees(&row.tenant) => {}
        Ok(_) => return not_found(viewer, "notification"),
        Err(e) => return database_failed(Some(viewer), &e),
    }
    let done = match action {
        Action::Retry => admin::retry(&mut conn, uuid).await,
        Action::Cancel => admin::cancel(&mut conn, uuid).await,
    };
    drop(conn);
    let (verb, allowed) = match action {
        Action::Retry => (
            "retry",
            "only a dead or cancelled notification can be retried",
        ),
        Action::Cancel => ("cancel", "only a pending notification can be cancelled"),
    };
    match done {
        Ok(Transition::Done) => see_other(&format!("/notifications/{uuid}?done={verb}")),
        Ok(Transition::Refused(now)) => {
            let error = format!("Cannot {verb}: the notification is {now}; {allowed}.");
            detail(state, viewer, id, StatusCode::CONFLICT, None, Some(&error)).await
        }
        Ok(Transition::NotFound) => not_found(viewer, "notification"),
        Err(e) => database_failed(Some(viewer), &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_state_or_cursor_names_its_field() {
        let e = parse_filter(&Fields::parse(b"state=lost")).unwrap_err();
        assert_eq!(e.field, "state");
        let e = parse_filter(&Fields::parse(b"before=x")).unwrap_err();
        assert_eq!(e.field, "before");
        let f = parse_filter(&Fields::parse(b"state=dead&type=+&business_id=k")).unwrap();
        assert_eq!(f.state, Some(NotificationState::Dead));
        assert_eq!(f.type_, None);
        assert_eq!(f.business_id.as_deref(), Some("k"));
        assert_eq!(f.limit, PAGE + 1);
    }

    #[test]
    fn the_next_page_keeps_the_filters() {
        let filters = Filters {
            state: "dead".into(),
            business_id: "a&b".into(),
            ..Filters::default()
        };
        let id = Uuid::nil();
        assert_eq!(
            next_page(&filters, id),
            format!("/notifications?state=dead&business_id=a%26b&before={id}")
        );
    }
}
