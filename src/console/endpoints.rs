//! `GET /endpoints`: each webhook endpoint's health (breaker, consecutive failures, in flight)
//! and limits; `POST /endpoints/{id}/{enable|disable|reset|rotate-secret}`.
//!
//! Rotating shows the new secret once, on the answer to the POST (never stored for a later
//! page); the old secret keeps signing beside it for `webhook.secret_rotation_grace`, as
//! `herald endpoints rotate-secret` does.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State as Shared};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use minijinja::value::Serde;
use serde::Serialize;
use uuid::Uuid;

use super::display::at;
use super::form::{FieldError, Fields, Form};
use super::pages::{database_failed, not_found};
use super::render::{page, see_other};
use super::session::Viewer;
use crate::api::State;
use crate::channel::signature::WebhookSecret;
use crate::notification::check_key_part;
use crate::store::endpoints::{self as store, EndpointRow};

#[derive(Debug, Serialize)]
struct Endpoint {
    id: String,
    tenant: String,
    url: String,
    enabled: bool,
    disabled_reason: Option<String>,
    created_at: String,
    rate: Option<String>,
    max_in_flight: Option<i32>,
    breaker: String,
    consecutive_failures: i32,
    breaker_opened_at: Option<String>,
    next_probe_at: Option<String>,
    in_flight: i32,
}

impl From<&EndpointRow> for Endpoint {
    fn from(e: &EndpointRow) -> Self {
        Endpoint {
            id: e.id.to_string(),
            tenant: e.tenant.clone(),
            url: e.url.clone(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.clone(),
            created_at: at(e.created_at),
            rate: e.rate.clone(),
            max_in_flight: e.max_in_flight,
            breaker: e.breaker.clone(),
            consecutive_failures: e.consecutive_failures,
            breaker_opened_at: e.breaker_opened_at.map(at),
            next_probe_at: e.next_probe_at.map(at),
            in_flight: e.in_flight,
        }
    }
}

/// `GET /endpoints`: `?done=ACTION&id=ID` after an action.
pub async fn list(
    Shared(state): Shared<Arc<State>>,
    viewer: Viewer,
    RawQuery(query): RawQuery,
) -> Response {
    let fields = Fields::from_query(query.as_deref());
    let notice = match (fields.get("done"), fields.get("id")) {
        // Only an id, never text of the link's choosing, in a notice styled as herald's own.
        (Some(done @ ("enabled" | "disabled" | "reset")), Some(id)) => uuid::Uuid::parse_str(id)
            .ok()
            .map(|id| format!("Endpoint {id} {done}.")),
        _ => None,
    };
    list_page(&state, &viewer, StatusCode::OK, notice, None).await
}

async fn list_page(
    state: &State,
    viewer: &Viewer,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let rows = match state.pool.acquire().await {
        Ok(mut conn) => store::list(&mut conn, viewer.caller.tenant.as_deref()).await,
        Err(e) => Err(e),
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return database_failed(Some(viewer), &e),
    };
    let endpoints: Vec<Endpoint> = rows.iter().map(Endpoint::from).collect();
    page(
        status,
        "endpoints.html",
        context! {
            viewer => Serde(viewer.view()),
            nav => "endpoints",
            endpoints => Serde(&endpoints),
            notice => notice,
            error => error,
        },
    )
}

/// `POST /endpoints/{id}/{action}`: `csrf`, and `reason` to disable.
pub async fn act(
    Shared(state): Shared<Arc<State>>,
    viewer: Viewer,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form,
) -> Response {
    if let Some(refused) = viewer.refuse_action(&form) {
        return refused;
    }
    let Ok(uuid) = id.parse::<Uuid>() else {
        return not_found(&viewer, "endpoint");
    };
    if !matches!(
        action.as_str(),
        "enable" | "disable" | "reset" | "rotate-secret"
    ) {
        return not_found(&viewer, "action");
    }
    // Checked before anything is read or written: a refused reason changes nothing.
    let reason = if action == "disable" {
        match disable_reason(&form) {
            Ok(reason) => Some(reason),
            Err(e) => {
                return list_page(&state, &viewer, FieldError::STATUS, None, Some(e.line())).await;
            }
        }
    } else {
        None
    };
    let mut conn = match state.pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return database_failed(Some(&viewer), &e),
    };
    // Another tenant's endpoint is not acted on, and answered as a missing one.
    match store::get(&mut conn, uuid).await {
        Ok(Some(row)) if viewer.sees(&row.tenant) => {}
        Ok(_) => return not_found(&viewer, "endpoint"),
        Err(e) => return database_failed(Some(&viewer), &e),
    }
    let done = match action.as_str() {
        "rotate-secret" => return rotate(&state, &viewer, &mut conn, uuid).await,
        "enable" => store::set_enabled(&mut conn, uuid, None).await,
        "disable" => store::set_enabled(&mut conn, uuid, reason.as_deref()).await,
        _ => store::reset_breaker(&mut conn, uuid).await,
    };
    let past = match action.as_str() {
        "enable" => "enabled",
        "disable" => "disabled",
        _ => "reset",
    };
    match done {
        Ok(Some(_)) => see_other(&format!("/endpoints?done={past}&id={uuid}")),
        Ok(None) => not_found(&viewer, "endpoint"),
        Err(e) => database_failed(Some(&viewer), &e),
    }
}

fn disable_reason(form: &Fields) -> Result<String, FieldError> {
    let reason = form
        .get("reason")
        .ok_or_else(|| FieldError::new("reason", "say why the endpoint is disabled"))?;
    check_key_part("reason", reason).map_err(|e| match e {
        crate::EnqueueError::Invalid { message, .. } => FieldError::new("reason", message),
        other => FieldError::new("reason", other.to_string()),
    })?;
    Ok(reason.to_owned())
}

async fn rotate(
    state: &State,
    viewer: &Viewer,
    conn: &mut sqlx::PgConnection,
    id: Uuid,
) -> Response {
    let secret = match WebhookSecret::generate() {
        Ok(secret) => secret,
        Err(e) => {
            tracing::error!(error = %e, "console: no secret generated");
            return super::pages::unavailable();
        }
    };
    let grace = state.config.webhook.secret_rotation_grace;
    match store::rotate_secret(conn, id, secret.expose(), grace).await {
        Ok(Some((row, expires))) => page(
            StatusCode::OK,
            "rotated.html",
            context! {
                viewer => Serde(viewer.view()),
                nav => "endpoints",
                endpoint => Serde(Endpoint::from(&row)),
                secret => secret.expose(),
                old_valid_until => at(expires),
            },
        ),
        Ok(None) => not_found(viewer, "endpoint"),
        Err(e) => database_failed(Some(viewer), &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disable_needs_a_reason_of_key_rules() {
        assert_eq!(
            disable_reason(&Fields::parse(b"")).unwrap_err().field,
            "reason"
        );
        assert_eq!(
            disable_reason(&Fields::parse(b"reason=+"))
                .unwrap_err()
                .field,
            "reason"
        );
        let long = format!("reason={}", "x".repeat(1000));
        assert!(disable_reason(&Fields::parse(long.as_bytes())).is_err());
        assert_eq!(
            disable_reason(&Fields::parse(b"reason=receiver+down")).unwrap(),
            "receiver down"
        );
    }
}
