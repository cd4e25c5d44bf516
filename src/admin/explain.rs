//! Which notification holds a key, its state, when its dedup window ends, and whether a given
//! intent would be a duplicate or a conflict — and where it differs.
//!
//! Invariant: the verdict comes from the same fingerprint enqueue uses (`herald.fingerprint()`),
//! so an explanation never disagrees with what an enqueue would do.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::PgConnection;

use crate::error::EnqueueError;
use crate::key::Key;
use crate::payload::Payload;
use crate::state::Channel;
use crate::store::admin as store;
use crate::store::notifications::NotificationRow;

/// An intent to judge against the key's holder.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub payload: Box<RawValue>,
    /// The channel and destination to judge too; `None` compares the payload alone.
    pub destination: Option<(Channel, String)>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Explanation {
    pub key: KeyJson,
    pub held: bool,
    pub notification: Option<NotificationRow>,
    /// Retention for this type, in seconds.
    pub retention_seconds: u64,
    /// When the key is free again: `finished_at` + retention (it is then deleted at the next
    /// sweep). None while the notification is not finished.
    pub dedup_window_ends_at: Option<DateTime<Utc>>,
    /// `new`, `duplicate` or `conflict`; None when no candidate was given.
    #[schema(value_type = Option<String>)]
    pub verdict: Option<&'static str>,
    /// `intent` (channel, destination and payload) or `payload` (no destination given).
    #[schema(value_type = Option<String>)]
    pub compared: Option<&'static str>,
    /// What differs: `channel`, `destination`, and JSON paths of the payload.
    pub differences: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Key)]
pub struct KeyJson {
    pub tenant: String,
    pub user_id: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub business_id: String,
}

/// Explains `key`, judging `candidate` when given. The candidate's fields must have been
/// validated as enqueue validates them; the one check only the database can make (the payload's
/// size in jsonb's text form, against `max_payload_bytes`) is made here.
pub async fn explain(
    conn: &mut PgConnection,
    key: &Key,
    candidate: Option<&Candidate>,
    retention: Duration,
    max_payload_bytes: usize,
) -> Result<Explanation, EnqueueError> {
    if let Some(candidate) = candidate {
        let size = store::payload_size(conn, &candidate.payload).await?;
        if size > max_payload_bytes {
            return Err(EnqueueError::Invalid {
                field: "payload",
                message: format!("is {size} bytes, over the limit of {max_payload_bytes} bytes"),
            });
        }
    }
    let holder = store::holder_of(conn, key).await?;
    let mut explanation = Explanation {
        key: KeyJson {
            tenant: key.tenant.clone(),
            user_id: key.user_id.clone(),
            type_: key.type_.clone(),
            business_id: key.business_id.clone(),
        },
        held: holder.is_some(),
        notification: None,
        retention_seconds: retention.as_secs(),
        dedup_window_ends_at: None,
        verdict: None,
        compared: None,
        differences: Vec::new(),
    };
    let Some((row, stored_fingerprint)) = holder else {
        if candidate.is_some() {
            explanation.verdict = Some("new");
        }
        return Ok(explanation);
    };
    // Retention is at most 100 years (validated), so this cannot overflow; checked anyway.
    // A finished_at chrono cannot hold (only plain SQL writes one) gives no window.
    explanation.dedup_window_ends_at = row.finished_at.and_then(|f| f.finite()).and_then(|f| {
        chrono::Duration::from_std(retention)
            .ok()
            .and_then(|r| f.checked_add_signed(r))
    });
    if let Some(candidate) = candidate {
        // The intent's verdict is the database's, from the function enqueue itself uses.
        let same_intent = match &candidate.destination {
            Some((channel, destination)) => Some(
                store::is_fingerprint_of(
                    conn,
                    &stored_fingerprint,
                    *channel,
                    destination,
                    &candidate.payload,
                )
                .await?,
            ),
            None => None,
        };
        let same_payload = store::holds_payload(conn, row.id, &candidate.payload).await?;
        judge(&mut explanation, &row, candidate, same_intent, same_payload);
    }
    explanation.notification = Some(row);
    Ok(explanation)
}

/// Compares a candidate with the holder: the full intent when a destination was given (then
/// `same_intent` is the database's fingerprint comparison), else the payload alone.
fn judge(
    e: &mut Explanation,
    row: &NotificationRow,
    candidate: &Candidate,
    same_intent: Option<bool>,
    same_payload: bool,
) {
    // As `Value`s with every number a float cannot hold as a string of its digits, on both
    // sides alike; unreadable only past serde_json's nesting limit, which enqueue refuses.
    let stored = row.payload.to_value().unwrap_or(Value::Null);
    let candidate_value = Payload::from(candidate.payload.clone())
        .to_value()
        .unwrap_or(Value::Null);
    let paths = crate::json_diff::differing_paths(&stored, &candidate_value);
    match candidate.destination.as_ref().zip(same_intent) {
        Some(((channel, destination), same)) => {
            e.compared = Some("intent");
            e.verdict = Some(if same { "duplicate" } else { "conflict" });
            if *channel != row.channel {
                e.differences.push("channel".into());
            }
            if *destination != row.destination {
                e.differences.push("destination".into());
            }
        }
        None => {
            e.compared = Some("payload");
            e.verdict = Some(if same_payload {
                "duplicate"
            } else {
                "conflict"
            });
        }
    }
    e.differences.extend(paths);
}

/// The retention of `type_`: its `sweeper.retention_by_type` entry (case-insensitive), else
/// `sweeper.retention`.
pub fn retention_for(sweeper: &crate::config::SweeperConfig, type_: &str) -> Duration {
    sweeper
        .retention_by_type
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(type_))
        .map(|(_, d)| *d)
        .unwrap_or(sweeper.retention)
}
