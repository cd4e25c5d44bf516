//! `/v1/endpoints`: register, list, show and change webhook endpoints (limits, URL), and steer
//! them (enable, disable, reset the breaker, rotate the signing secret), as `herald endpoints`
//! does.
//!
//! Invariants:
//! - An endpoint a tenant-bound token may not see is 404, as a missing one is; registering one
//!   for another tenant is 403.
//! - A URL is checked as the CLI checks it (form, scheme, IP literals against
//!   `webhook.allowed_networks`) before anything is written; a secret is shown only in the answer
//!   that made it (register, rotate).
//! - Every refusal names its field; nothing is written for any of them.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State as Shared};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Caller;
use super::notifications::shown;
use super::problem::Problem;
use super::schema::{BodyRefusals, Missing, ProblemDoc, Refusals};
use super::{State, body, connection};
use crate::channel::signature::WebhookSecret;
use crate::limits::{MaxInFlight, Rate};
use crate::net::ssrf::{AddressPolicy, check_endpoint_url};
use crate::notification::check_key_part;
use crate::store::endpoints::{self as store, EndpointRow, LimitChanges};

/// A new endpoint; `url` is required.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NewEndpoint {
    url: String,
    /// Default: the token's tenant, else `default`.
    tenant: Option<String>,
    /// `whsec_<base64 of 24 to 64 bytes>`; default: 32 random bytes.
    secret: Option<String>,
    /// `N/s` or `N/m`; null or absent: no limit.
    rate: Option<String>,
    /// 1 to 10000; null or absent: no cap.
    max_in_flight: Option<u32>,
}

/// Changes to an endpoint: a member absent is left alone; `rate` or `max_in_flight` null
/// removes that limit.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EndpointChanges {
    /// A new URL; the breaker closes (what it knew was about the old one).
    url: Option<String>,
    rate: Option<String>,
    max_in_flight: Option<u32>,
}

/// Why an endpoint is disabled (optional body of `disable`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DisableReason {
    /// Default: `disabled by an operator`.
    reason: Option<String>,
}

/// A rotation (optional body of `rotate-secret`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Rotation {
    /// How long the old secret keeps signing too, e.g. `24h`; default
    /// `webhook.secret_rotation_grace`.
    grace: Option<String>,
    /// The new secret; default: 32 random bytes.
    secret: Option<String>,
}

/// An endpoint with the secret just made: shown once.
#[derive(Serialize, ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: EndpointRow,
    pub secret: String,
    /// After a rotation: until when the old secret signs too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

/// Endpoints, oldest first.
#[derive(Serialize, ToSchema)]
pub struct Endpoints {
    pub items: Vec<EndpointRow>,
}

/// Register a webhook endpoint.
#[utoipa::path(post, path = "/v1/endpoints", operation_id = "createEndpoint", tag = "endpoints",
    request_body(content = NewEndpoint, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered; the secret is shown only now", body = EndpointWithSecret,
            headers(("Location" = String, description = "/v1/endpoints/{id}"))),
        (status = 400, description = "Invalid input (`field`)", body = ProblemDoc, content_type = "application/problem+json"),
        Refusals, BodyRefusals,
    ),
    security(("bearer" = [])))]
pub async fn create(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    caller.may_administer()?;
    let fields = body::object(&state, &headers, body).await?;
    only(
        &fields,
        &["url", "tenant", "secret", "rate", "max_in_flight"],
    )?;
    let tenant = caller.enqueue_tenant(body::string(&fields, "tenant")?.as_deref())?;
    check_key_part("tenant", &tenant).map_err(|e| Problem::bad_request("tenant", e.to_string()))?;
    let url = body::string(&fields, "url")?
        .ok_or_else(|| Problem::bad_request("url", "invalid url: is required"))?;
    let url = checked_url(&state, &url)?;
    let secret = secret(body::string(&fields, "secret")?)?;
    let limits = limit_changes(&fields)?;
    let mut conn = connection(&state).await?;
    let endpoint = store::insert_with_limits(
        &mut conn,
        Uuid::now_v7(),
        &tenant,
        &url,
        secret.expose(),
        limits,
    )
    .await
    .map_err(|e| Problem::internal(&e))?;
    let location = format!("/v1/endpoints/{}", endpoint.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(EndpointWithSecret {
            endpoint,
            secret: secret.expose().to_owned(),
            previous_secret_expires_at: None,
        }),
    )
        .into_response())
}

/// List endpoints (a tenant-bound token: its own).
#[utoipa::path(get, path = "/v1/endpoints", operation_id = "listEndpoints", tag = "endpoints",
    params(("tenant" = Option<String>, Query, description = "Only this tenant's")),
    responses(
        (status = 200, description = "The endpoints, never their secrets", body = Endpoints),
        (status = 400, description = "An unknown parameter (`field`)", body = ProblemDoc, content_type = "application/problem+json"),
        Refusals,
    ),
    security(("bearer" = [])))]
pub async fn list(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Endpoints>, Problem> {
    caller.may_read()?;
    let mut tenant = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "tenant" if value.contains('\0') => {
                return Err(Problem::bad_request(
                    "tenant",
                    "invalid tenant: must not contain NUL",
                ));
            }
            "tenant" if tenant.is_none() => tenant = Some(value.into_owned()),
            "tenant" => {
                return Err(Problem::bad_request(
                    "tenant",
                    "tenant is given more than once",
                ));
            }
            other => {
                return Err(Problem::bad_request(
                    other,
                    format!("unknown parameter {}: tenant", shown(other)),
                ));
            }
        }
    }
    let tenant = caller.read_tenant(tenant.as_deref())?;
    let mut conn = connection(&state).await?;
    let items = store::list(&mut conn, tenant.as_deref())
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(Json(Endpoints { items }))
}

/// One endpoint: its limits, breaker and what it has in flight.
#[utoipa::path(get, path = "/v1/endpoints/{id}", operation_id = "getEndpoint", tag = "endpoints",
    params(("id" = Uuid, Path, description = "The endpoint id")),
    responses(
        (status = 200, description = "The endpoint, never its secret", body = EndpointRow),
        Refusals, Missing,
    ),
    security(("bearer" = [])))]
pub async fn show(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EndpointRow>, Problem> {
    caller.may_read()?;
    let mut conn = connection(&state).await?;
    visible(&mut conn, &caller, &id).await.map(Json)
}

/// Change an endpoint's URL or limits.
#[utoipa::path(patch, path = "/v1/endpoints/{id}", operation_id = "updateEndpoint", tag = "endpoints",
    params(("id" = Uuid, Path, description = "The endpoint id")),
    request_body(content = EndpointChanges, content_type = "application/json"),
    responses(
        (status = 200, description = "The endpoint as it is now", body = EndpointRow),
        (status = 400, description = "Invalid input (`field`)", body = ProblemDoc, content_type = "application/problem+json"),
        Refusals, Missing, BodyRefusals,
    ),
    security(("bearer" = [])))]
pub async fn update(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<EndpointRow>, Problem> {
    caller.may_administer()?;
    let fields = body::object(&state, &headers, body).await?;
    only(&fields, &["url", "rate", "max_in_flight"])?;
    let url = match fields.get("url") {
        None => None,
        Some(_) => Some(checked_url(
            &state,
            &body::string(&fields, "url")?
                .ok_or_else(|| Problem::bad_request("url", "invalid url: cannot be null"))?,
        )?),
    };
    let limits = limit_changes(&fields)?;
    if url.is_none() && limits.is_empty() {
        return Err(Problem::bad_request(
            "body",
            "give at least one of url, rate and max_in_flight",
        ));
    }
    let mut conn = connection(&state).await?;
    let target = visible(&mut conn, &caller, &id).await?;
    let mut row = target;
    if let Some(url) = &url {
        row = found(store::set_url(&mut conn, row.id, url).await, &id)?;
    }
    if !limits.is_empty() {
        row = found(store::set_limits(&mut conn, row.id, limits).await, &id)?;
    }
    Ok(Json(row))
}

/// Enable a disabled endpoint and close its breaker.
#[utoipa::path(post, path = "/v1/endpoints/{id}/enable", operation_id = "enableEndpoint", tag = "endpoints",
    params(("id" = Uuid, Path, description = "The endpoint id")),
    responses(
        (status = 200, description = "The endpoint, enabled", body = EndpointRow),
        Refusals, Missing,
    ),
    security(("bearer" = [])))]
pub async fn enable(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EndpointRow>, Problem> {
    caller.may_administer()?;
    let mut conn = connection(&state).await?;
    let target = visible(&mut conn, &caller, &id).await?;
    found(store::set_enabled(&mut conn, target.id, None).await, &id).map(Json)
}

/// Disable an endpoint: new notifications to it are refused, pending ones go dead.
#[utoipa::path(post, path = "/v1/endpoints/{id}/disable", operation_id = "disableEndpoint", tag = "endpoints",
    params(("id" = Uuid, Path, description = "The endpoint id")),
    request_body(content = Option<DisableReason>, content_type = "application/json"),
    responses(
        (status = 200, description = "The endpoint, disabled", body = EndpointRow),
        (status = 400, description = "Invalid reason (`field`)", body = ProblemDoc, content_type = "application/problem+json"),
        Refusals, Missing,
    ),
    security(("bearer" = [])))]
pub async fn disable(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<EndpointRow>, Problem> {
    caller.may_administer()?;
    let fields = body::optional_object(&state, &headers, body).await?;
    only(&fields, &["reason"])?;
    let reason =
        body::string(&fields, "reason")?.unwrap_or_else(|| "disabled by an operator".to_owned());
    check_key_part("reason", &reason).map_err(|e| Problem::bad_request("reason", e.to_string()))?;
    let mut conn = connection(&state).await?;
    let target = visible(&mut conn, &caller, &id).await?;
    found(
        store::set_enabled(&mut conn, target.id, Some(&reason)).await,
        &id,
    )
    .map(Json)
}

/// Close an endpoint's circuit breaker and forget its failures.
#[utoipa::path(post, path = "/v1/endpoints/{id}/reset", operation_id = "resetEndpoint", tag = "endpoints",
    params(("id" = Uuid, Path, description = "The endpoint id")),
    responses(
        (status = 200, description = "The endpoint, breaker closed", body = EndpointRow),
        Refusals, Missing,
    ),
    security(("bearer" = [])))]
pub async fn reset(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EndpointRow>, Problem> {
    caller.may_administer()?;
    let mut conn = connection(&state).await?;
    let target = visible(&mut conn, &caller, &id).await?;
    found(store::reset_breaker(&mut conn, target.id).await, &id).map(Json)
}

/// Replace the signing secret; the old one keeps signing beside it for a grace period.
#[utoipa::path(post, path = "/v1/endpoints/{id}/rotate-secret", operation_id = "rotateEndpointSecret", tag = "endpoints",
    params(("id" = Uuid, Path, description = "The endpoint id")),
    request_body(content = Option<Rotation>, content_type = "application/json"),
    responses(
        (status = 200, description = "The endpoint and its new secret, shown only now", body = EndpointWithSecret),
        (status = 400, description = "Invalid input (`field`)", body = ProblemDoc, content_type = "application/problem+json"),
        Refusals, Missing,
    ),
    security(("bearer" = [])))]
pub async fn rotate_secret(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<EndpointWithSecret>, Problem> {
    caller.may_administer()?;
    let fields = body::optional_object(&state, &headers, body).await?;
    only(&fields, &["grace", "secret"])?;
    let grace = match body::string(&fields, "grace")? {
        None => state.config.webhook.secret_rotation_grace,
        Some(text) => humantime::parse_duration(&text).map_err(|e| {
            Problem::bad_request(
                "grace",
                format!("invalid grace: not a duration like \"24h\" ({e})"),
            )
        })?,
    };
    if grace > MAX_GRACE {
        return Err(Problem::bad_request(
            "grace",
            "invalid grace: at most 365 days",
        ));
    }
    let secret = secret(body::string(&fields, "secret")?)?;
    let mut conn = connection(&state).await?;
    let target = visible(&mut conn, &caller, &id).await?;
    let (endpoint, expires) = found(
        store::rotate_secret(&mut conn, target.id, secret.expose(), grace).await,
        &id,
    )?;
    Ok(Json(EndpointWithSecret {
        endpoint,
        secret: secret.expose().to_owned(),
        previous_secret_expires_at: Some(expires),
    }))
}

/// The longest grace a rotation may give the old secret.
const MAX_GRACE: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// Refuses members other than `allowed`, naming the first.
fn only(fields: &body::Object, allowed: &[&str]) -> Result<(), Problem> {
    match fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(Problem::bad_request(
            unknown,
            format!("unknown member {}: {}", shown(unknown), allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn checked_url(state: &State, url: &str) -> Result<String, Problem> {
    let webhook = &state.config.webhook;
    let policy = AddressPolicy::new(webhook.allowed_networks.clone());
    check_endpoint_url(url, &policy, webhook.https_only)
        .map(|url| url.to_string())
        .map_err(|e| Problem::bad_request("url", e.to_string()))
}

fn secret(given: Option<String>) -> Result<WebhookSecret, Problem> {
    match given {
        Some(text) => {
            WebhookSecret::parse(&text).map_err(|e| Problem::bad_request("secret", e.to_string()))
        }
        None => WebhookSecret::generate().map_err(|e| {
            tracing::error!(error = %e, "no random secret");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no random source; try again",
            )
        }),
    }
}

/// `rate` and `max_in_flight` of a body: absent leaves a limit alone, null removes it.
fn limit_changes(fields: &body::Object) -> Result<LimitChanges<'static>, Problem> {
    let rate = match fields.get("rate") {
        None => None,
        Some(raw) if is_null(raw) => Some(None),
        Some(_) => {
            let text = body::string(fields, "rate")?.unwrap_or_default();
            let rate: Rate = text
                .parse()
                .map_err(|e| Problem::bad_request("rate", format!("invalid rate: {e}")))?;
            Some(Some((
                i32::try_from(rate.count()).unwrap_or(i32::MAX),
                rate.unit().as_str(),
            )))
        }
    };
    let max_in_flight = match fields.get("max_in_flight") {
        None => None,
        Some(raw) if is_null(raw) => Some(None),
        Some(raw) => {
            let cap: MaxInFlight = raw.get().parse().map_err(|e| {
                Problem::bad_request("max_in_flight", format!("invalid max_in_flight: {e}"))
            })?;
            Some(Some(i32::try_from(cap.get()).unwrap_or(i32::MAX)))
        }
    };
    Ok(LimitChanges {
        rate,
        max_in_flight,
    })
}

fn is_null(raw: &RawValue) -> bool {
    raw.get().trim() == "null"
}

/// The endpoint `id`, when the caller may see it; 404 alike for a malformed id, a missing
/// endpoint and another tenant's.
async fn visible(
    conn: &mut PgConnection,
    caller: &Caller,
    id: &str,
) -> Result<EndpointRow, Problem> {
    let Ok(uuid) = Uuid::parse_str(id) else {
        return Err(not_found(id));
    };
    match store::get(conn, uuid)
        .await
        .map_err(|e| Problem::internal(&e))?
    {
        Some(e) if caller.sees(&e.tenant) => Ok(e),
        _ => Err(not_found(id)),
    }
}

fn found<T>(result: Result<Option<T>, sqlx::Error>, id: &str) -> Result<T, Problem> {
    result
        .map_err(|e| Problem::internal(&e))?
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        format!("webhook endpoint {} not found", shown(id)),
    )
}
