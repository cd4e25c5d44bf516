//! An enqueue item of the HTTP API, read into the library's [`Notification`]: the single enqueue
//! hands it to [`crate::enqueue`] (whose concurrent calls share commits), and explain judges it.
//!
//! Invariants:
//! - The members are those of an `herald.enqueue_many` item, each of its JSON type; any other
//!   member, or a member of another type, is refused naming it.
//! - The payload stays the client's text ([`RawValue`]); `null` or absent is `{}`, as in SQL.
//! - Nothing here checks what [`Notification::validate`] checks (key parts, addresses, payload
//!   shape and size, attempt and time ranges): the library does, in its own words.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::body::{self, Object};
use super::problem::Problem;
use crate::notification::Notification;
use crate::state::Channel;

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

/// An item's parts, before they become a notification.
pub struct Item {
    pub user_id: String,
    pub type_: String,
    pub business_id: String,
    /// The channel and destination, when the item names one.
    pub destination: Option<(Channel, String)>,
    /// The payload as sent; `None` when absent or null.
    pub payload: Option<Box<RawValue>>,
    pub run_at: Option<DateTime<Utc>>,
    pub max_attempts: Option<u32>,
}

/// Reads `object`'s members; the tenant is the caller's business (see `auth::Caller`).
pub fn read(object: &Object) -> Result<Item, Problem> {
    if let Some(unknown) = object.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
        return Err(Problem::bad_request(
            unknown,
            format!(
                "unknown member {}: {}",
                super::notifications::shown(unknown),
                MEMBERS.join(", ")
            ),
        ));
    }
    let required = |name: &str| {
        body::string(object, name)?
            .ok_or_else(|| Problem::bad_request(name, format!("invalid {name}: is required")))
    };
    let email = body::string(object, "email")?;
    let webhook = body::string(object, "webhook")?
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
                "invalid webhook: give one of email and webhook",
            ));
        }
        (Some(address), None) => Some((Channel::Email, address)),
        (None, Some(endpoint)) => Some((Channel::Webhook, endpoint.to_string())),
        (None, None) => None,
    };
    let max_attempts = match object.get("max_attempts").filter(|raw| !is_null(raw)) {
        None => None,
        Some(raw) => Some(serde_json::from_str::<u32>(raw.get()).map_err(|_| {
            Problem::bad_request(
                "max_attempts",
                "invalid max_attempts: must be an integer from 1 to 100",
            )
        })?),
    };
    let run_at = body::string(object, "run_at")?
        .map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|at| at.with_timezone(&Utc))
                .map_err(|_| {
                    Problem::bad_request(
                        "run_at",
                        "invalid run_at: must be an RFC 3339 time, e.g. 2026-12-01T09:00:00Z",
                    )
                })
        })
        .transpose()?;
    Ok(Item {
        user_id: required("user_id")?,
        type_: required("type")?,
        business_id: required("business_id")?,
        destination,
        payload: object.get("payload").filter(|raw| !is_null(raw)).cloned(),
        run_at,
        max_attempts,
    })
}

impl Item {
    /// The notification this item asks for, in `tenant`; `None` when it names no destination.
    /// Without `max_attempts` it gets the SQL function's default, so that a single enqueue and a
    /// batch (which SQL reads) agree.
    pub fn notification(&self, tenant: &str) -> Option<Notification> {
        let (channel, destination) = self.destination.as_ref()?;
        let n = match channel {
            Channel::Email => Notification::email(
                &self.user_id,
                &self.type_,
                &self.business_id,
                destination.as_str(),
            ),
            Channel::Webhook => Notification::webhook(
                &self.user_id,
                &self.type_,
                &self.business_id,
                Uuid::parse_str(destination).unwrap_or_default(),
            ),
        };
        Some(self.with_details(n.tenant(tenant)))
    }

    /// `n` with this item's payload, time and attempts.
    pub fn with_details(&self, mut n: Notification) -> Notification {
        if let Some(payload) = &self.payload {
            n = n.payload_raw(payload.clone());
        }
        if let Some(run_at) = self.run_at {
            n = n.run_at(run_at);
        }
        n.max_attempts(self.max_attempts.unwrap_or(crate::DEFAULT_MAX_ATTEMPTS))
    }
}

fn is_null(raw: &RawValue) -> bool {
    raw.get().trim() == "null"
}
