//! `GET /explain` (the form) and `POST /explain`: [`crate::admin::explain`]'s answer for a key,
//! and, given a payload (and optionally an email or webhook destination), whether enqueueing
//! it would be new, a duplicate or a conflict. The inputs are checked as `herald explain`
//! checks them; a tenant-bound token explains keys of its tenant only.

use std::sync::Arc;

use axum::extract::State as Shared;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use minijinja::value::Serde;
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::display::{at, when};
use super::form::{FieldError, Form, uuid};
use super::pages::database_failed;
use super::render::page;
use super::session::Viewer;
use crate::EnqueueError;
use crate::admin::explain::{Candidate, Explanation, explain, retention_for};
use crate::api::State;
use crate::key::Key;
use crate::notification::{DEFAULT_TENANT, Notification, check_key_part};
use crate::state::Channel;
use crate::store::admin as store;

/// The form as it is shown back.
#[derive(Debug, Default, Serialize)]
struct Inputs {
    tenant: String,
    user_id: String,
    #[serde(rename = "type")]
    type_: String,
    business_id: String,
    payload: String,
    email: String,
    webhook: String,
}

/// The answer, in words.
#[derive(Debug, Serialize)]
struct Answer {
    key: String,
    held_by: Option<Held>,
    retention: String,
    window: Option<String>,
    verdict: Option<&'static str>,
    compared: Option<&'static str>,
    differences: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Held {
    id: String,
    state: &'static str,
    channel: &'static str,
    destination: String,
    created_at: String,
    last_error: Option<String>,
}

/// What the form asks, checked.
struct Question {
    key: Key,
    candidate: Option<Candidate>,
}

pub async fn form(viewer: Viewer) -> Response {
    let inputs = Inputs {
        tenant: viewer
            .caller
            .tenant
            .clone()
            .unwrap_or_else(|| DEFAULT_TENANT.to_owned()),
        ..Inputs::default()
    };
    explain_page(&viewer, StatusCode::OK, &inputs, None, None)
}

/// `POST /explain`: `csrf`, `tenant`, `user_id`, `type`, `business_id`, and optionally
/// `payload` (JSON) with `email` or `webhook` (an endpoint id).
pub async fn answer(
    Shared(state): Shared<Arc<State>>,
    viewer: Viewer,
    Form(form): Form,
) -> Response {
    if let Some(refused) = viewer.refuse_csrf(&form) {
        return refused;
    }
    let text = |name: &str| form.get(name).unwrap_or_default().to_owned();
    let inputs = Inputs {
        tenant: viewer
            .caller
            .tenant
            .clone()
            .unwrap_or_else(|| form.get("tenant").unwrap_or(DEFAULT_TENANT).to_owned()),
        user_id: text("user_id"),
        type_: text("type"),
        business_id: text("business_id"),
        payload: text("payload"),
        email: text("email"),
        webhook: text("webhook"),
    };
    let question = match question(&inputs, &state.config) {
        Ok(q) => q,
        Err(e) => {
            return explain_page(&viewer, FieldError::STATUS, &inputs, None, Some(e.line()));
        }
    };
    let mut conn = match state.pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return database_failed(Some(&viewer), &e),
    };
    let retention = retention_for(&state.config.sweeper, &question.key.type_);
    let explained = explain(
        &mut conn,
        &question.key,
        question.candidate.as_ref(),
        retention,
        state.config.limits().max_payload_bytes,
    )
    .await;
    let explanation = match explained {
        Ok(e) => e,
        Err(EnqueueError::Database(e)) => return database_failed(Some(&viewer), &e),
        Err(e) => {
            let e = refusal(e);
            return explain_page(&viewer, FieldError::STATUS, &inputs, None, Some(e.line()));
        }
    };
    let now = match store::now(&mut conn).await {
        Ok(now) => now,
        Err(e) => return database_failed(Some(&viewer), &e),
    };
    let answer = words(&explanation, &question.key, retention, now);
    explain_page(&viewer, StatusCode::OK, &inputs, Some(answer), None)
}

/// The key and candidate, checked as `herald explain` checks them.
fn question(inputs: &Inputs, config: &crate::config::Config) -> Result<Question, FieldError> {
    let key = Key {
        tenant: inputs.tenant.clone(),
        user_id: inputs.user_id.clone(),
        type_: inputs.type_.clone(),
        business_id: inputs.business_id.clone(),
    };
    if !inputs.email.is_empty() && !inputs.webhook.is_empty() {
        return Err(FieldError::new(
            "webhook",
            "give an email or a webhook endpoint, not both",
        ));
    }
    let webhook = match inputs.webhook.as_str() {
        "" => None,
        text => Some(uuid("webhook", text)?),
    };
    if inputs.payload.is_empty() {
        for (field, value) in [
            ("tenant", &key.tenant),
            ("user_id", &key.user_id),
            ("type", &key.type_),
            ("business_id", &key.business_id),
        ] {
            check_key_part(field, value).map_err(refusal)?;
        }
        if !inputs.email.is_empty() || webhook.is_some() {
            return Err(FieldError::new(
                "payload",
                "a destination is judged with a payload: give the payload too",
            ));
        }
        return Ok(Question {
            key,
            candidate: None,
        });
    }
    let payload: Box<RawValue> = serde_json::from_str(&inputs.payload)
        .map_err(|e| FieldError::new("payload", format!("is not JSON ({e})")))?;
    // What enqueue would refuse is refused here, with enqueue's own validation and words.
    let n = match (inputs.email.as_str(), webhook) {
        ("", Some(endpoint)) => {
            Notification::webhook(&key.user_id, &key.type_, &key.business_id, endpoint)
        }
        ("", None) => {
            Notification::webhook(&key.user_id, &key.type_, &key.business_id, Uuid::nil())
        }
        (address, _) => Notification::email(&key.user_id, &key.type_, &key.business_id, address),
    };
    n.tenant(&key.tenant)
        .payload_raw(payload.clone())
        .validate(&config.limits())
        .map_err(refusal)?;
    let destination = match (inputs.email.as_str(), webhook) {
        ("", Some(endpoint)) => Some((Channel::Webhook, endpoint.to_string())),
        ("", None) => None,
        (address, _) => Some((Channel::Email, address.to_owned())),
    };
    Ok(Question {
        key,
        candidate: Some(Candidate {
            payload,
            destination,
        }),
    })
}

fn refusal(e: EnqueueError) -> FieldError {
    match e {
        EnqueueError::Invalid { field, message } => FieldError::new(field, message),
        other => FieldError::new("key", other.to_string()),
    }
}

fn words(
    e: &Explanation,
    key: &Key,
    retention: std::time::Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Answer {
    let retention_text = humantime::format_duration(retention).to_string();
    let window = e
        .notification
        .as_ref()
        .map(|n| match e.dedup_window_ends_at {
            None => format!(
                "open: it is {}; the key stays held until {retention_text} after it finishes",
                n.state
            ),
            Some(ends) if ends > now => {
                format!("ends {} ({retention_text} after it finished)", at(ends))
            }
            Some(ends) => format!(
                "ended {}; the key is free once the next sweep deletes the row",
                at(ends)
            ),
        });
    Answer {
        key: key.to_string(),
        held_by: e.notification.as_ref().map(|n| Held {
            id: n.id.to_string(),
            state: n.state.as_str(),
            channel: n.channel.as_str(),
            destination: n.destination.clone(),
            created_at: when(n.created_at),
            last_error: n.last_error.clone(),
        }),
        retention: retention_text,
        window,
        verdict: e.verdict,
        compared: e.compared,
        differences: e.differences.clone(),
    }
}

fn explain_page(
    viewer: &Viewer,
    status: StatusCode,
    inputs: &Inputs,
    answer: Option<Answer>,
    error: Option<String>,
) -> Response {
    page(
        status,
        "explain.html",
        context! {
            viewer => Serde(viewer.view()),
            nav => "explain",
            inputs => Serde(inputs),
            answer => answer.map(Serde),
            error => error,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            tenant: "default".into(),
            user_id: "u1".into(),
            type_: "welcome".into(),
            business_id: "b1".into(),
            ..Inputs::default()
        }
    }

    #[test]
    fn bad_inputs_name_their_field() {
        let config = crate::config::Config::default();
        let field = |i: Inputs| question(&i, &config).err().map(|e| e.field);
        assert_eq!(field(inputs()), None);
        assert_eq!(
            field(Inputs {
                user_id: String::new(),
                ..inputs()
            }),
            Some("user_id")
        );
        assert_eq!(
            field(Inputs {
                payload: "{nope".into(),
                ..inputs()
            }),
            Some("payload")
        );
        assert_eq!(
            field(Inputs {
                payload: "{}".into(),
                webhook: "x".into(),
                ..inputs()
            }),
            Some("webhook")
        );
        assert_eq!(
            field(Inputs {
                email: "a@example.com".into(),
                ..inputs()
            }),
            Some("payload")
        );
        assert_eq!(
            field(Inputs {
                payload: "{}".into(),
                email: "not an address".into(),
                ..inputs()
            }),
            Some("email")
        );
    }
}
