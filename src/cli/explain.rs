//! `herald explain`: which notification holds a key, its state, when its dedup window ends, and
//! whether a given payload would be a duplicate or a conflict — and where it differs.
//!
//! The verdict comes from the same fingerprint enqueue uses, so `explain` never disagrees with
//! what an enqueue would do.

use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::Context;
use super::error::CliError;
use super::key_args::KeyArgs;
use super::output::{fields, out, print_json, time};
use crate::error::EnqueueError;
use crate::key::Key;
use crate::notification::{Notification, check_key_part};
use crate::payload::Payload;
use crate::state::Channel;
use crate::store::admin as store;
use crate::store::notifications::NotificationRow;

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// A payload to judge: would enqueueing it be a duplicate or a conflict?
    // Parsed by `run` as `herald enqueue` parses it (clap's error would echo the whole value).
    #[arg(long, value_name = "JSON")]
    payload: Option<String>,
    /// With --payload: the email destination to judge too (else only the payload is compared).
    #[arg(long, value_name = "ADDR", conflicts_with = "webhook")]
    email: Option<String>,
    /// With --payload: the webhook endpoint to judge too.
    #[arg(long, value_name = "ENDPOINT_ID")]
    webhook: Option<Uuid>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Explanation {
    key: KeyJson,
    held: bool,
    notification: Option<NotificationRow>,
    /// Retention for this type, in seconds.
    retention_seconds: u64,
    /// When the key is free again: `finished_at` + retention (it is then deleted at the next
    /// sweep). None while the notification is not finished.
    dedup_window_ends_at: Option<DateTime<Utc>>,
    /// `new`, `duplicate` or `conflict`; None when no payload was given.
    verdict: Option<&'static str>,
    /// `intent` (channel, destination and payload) or `payload` (no destination given).
    compared: Option<&'static str>,
    /// What differs: `channel`, `destination`, and JSON paths of the payload.
    differences: Vec<String>,
}

#[derive(Serialize)]
struct KeyJson {
    tenant: String,
    user_id: String,
    #[serde(rename = "type")]
    type_: String,
    business_id: String,
}

pub async fn run(ctx: &Context, mut args: ExplainArgs) -> Result<(), CliError> {
    let payload = args
        .payload
        .take()
        .map(|text| super::enqueue::parse_payload_arg(&text))
        .transpose()?;
    let key = args.key.key();
    match &payload {
        // What enqueue would refuse is refused here, with enqueue's own validation and words.
        Some(payload) => {
            let n = match (&args.email, args.webhook) {
                (Some(address), _) => Notification::email(
                    &key.user_id,
                    &key.type_,
                    &key.business_id,
                    address.as_str(),
                ),
                (None, Some(endpoint)) => {
                    Notification::webhook(&key.user_id, &key.type_, &key.business_id, endpoint)
                }
                // No destination to judge: validation checks a webhook's only by its existence,
                // which is no concern of explain.
                (None, None) => {
                    Notification::webhook(&key.user_id, &key.type_, &key.business_id, Uuid::nil())
                }
            };
            n.tenant(&key.tenant)
                .payload_raw(payload.clone())
                .validate(&ctx.config.limits())?;
        }
        None => {
            for (field, value) in [
                ("tenant", &key.tenant),
                ("user_id", &key.user_id),
                ("type", &key.type_),
                ("business_id", &key.business_id),
            ] {
                check_key_part(field, value)?;
            }
            if args.email.is_some() || args.webhook.is_some() {
                return Err(CliError::usage(
                    "--email and --webhook need --payload: they are judged with it",
                ));
            }
        }
    }
    let pool = ctx.pool(false).await?;
    let mut conn = pool.acquire().await?;
    if let Some(payload) = &payload {
        // The one check only the database can make, in jsonb's text form, as enqueue's.
        let limit = ctx.config.limits().max_payload_bytes;
        let size = store::payload_size(&mut conn, payload).await?;
        if size > limit {
            return Err(EnqueueError::Invalid {
                field: "payload",
                message: format!("is {size} bytes, over the limit of {limit} bytes"),
            }
            .into());
        }
    }
    let holder = store::holder_of(&mut conn, &key).await?;
    let retention = retention_for(ctx, &key.type_);
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
    if let Some((row, stored_fingerprint)) = holder {
        // The intent's verdict is the database's, from the function enqueue itself uses.
        let same_intent = match (candidate(&args), &payload) {
            (Some((channel, destination)), Some(payload)) => Some(
                store::is_fingerprint_of(
                    &mut conn,
                    &stored_fingerprint,
                    channel,
                    &destination,
                    payload,
                )
                .await?,
            ),
            _ => None,
        };
        // Retention is at most 100 years (validated), so this cannot overflow; checked anyway.
        // A finished_at chrono cannot hold (only plain SQL writes one) gives no window.
        explanation.dedup_window_ends_at = row.finished_at.and_then(|f| f.finite()).and_then(|f| {
            chrono::Duration::from_std(retention)
                .ok()
                .and_then(|r| f.checked_add_signed(r))
        });
        if let Some(payload) = &payload {
            let same_payload = store::holds_payload(&mut conn, row.id, payload).await?;
            judge(
                &mut explanation,
                &row,
                same_intent,
                same_payload,
                payload,
                &args,
            );
        }
        explanation.notification = Some(row);
    } else if payload.is_some() {
        explanation.verdict = Some("new");
    }
    if args.json {
        return print_json(&explanation);
    }
    let now = store::now(&mut conn).await?;
    out!("{}", human(&explanation, &key, retention, now));
    Ok(())
}

/// The candidate's channel and destination, when one was given.
fn candidate(args: &ExplainArgs) -> Option<(Channel, String)> {
    match (&args.email, args.webhook) {
        (Some(address), _) => Some((Channel::Email, address.clone())),
        (None, Some(endpoint)) => Some((Channel::Webhook, endpoint.to_string())),
        (None, None) => None,
    }
}

/// Compares a candidate with the holder: the full intent when a destination was given (then
/// `same_intent` is the database's fingerprint comparison), else the payload alone.
fn judge(
    e: &mut Explanation,
    row: &NotificationRow,
    same_intent: Option<bool>,
    same_payload: bool,
    payload: &RawValue,
    args: &ExplainArgs,
) {
    // As `Value`s with every number a float cannot hold as a string of its digits, on both
    // sides alike; unreadable only past serde_json's nesting limit, which enqueue refuses.
    let stored = row.payload.to_value().unwrap_or(Value::Null);
    let candidate_value = Payload::from(payload.to_owned())
        .to_value()
        .unwrap_or(Value::Null);
    let paths = crate::json_diff::differing_paths(&stored, &candidate_value);
    match candidate(args).zip(same_intent) {
        Some(((channel, destination), same)) => {
            e.compared = Some("intent");
            e.verdict = Some(if same { "duplicate" } else { "conflict" });
            if channel != row.channel {
                e.differences.push("channel".into());
            }
            if destination != row.destination {
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

fn retention_for(ctx: &Context, type_: &str) -> std::time::Duration {
    let sweeper = &ctx.config.sweeper;
    sweeper
        .retention_by_type
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(type_))
        .map(|(_, d)| *d)
        .unwrap_or(sweeper.retention)
}

fn human(e: &Explanation, key: &Key, retention: std::time::Duration, now: DateTime<Utc>) -> String {
    let retention_text = humantime::format_duration(retention).to_string();
    let mut lines: Vec<(&str, String)> = vec![("key", key.to_string())];
    match &e.notification {
        None => {
            lines.push((
                "held by",
                "nothing: an enqueue of this key creates a new notification".into(),
            ));
        }
        Some(n) => {
            lines.push((
                "held by",
                format!("{} ({}, {} to {})", n.id, n.state, n.channel, n.destination),
            ));
            lines.push(("created", n.created_at.to_string()));
            let window = match e.dedup_window_ends_at {
                None => format!(
                    "open: it is {}; the key stays held until {retention_text} after it finishes",
                    n.state
                ),
                Some(ends) if ends > now => format!(
                    "ends {} (finished {} + {retention_text})",
                    time(ends),
                    n.finished_at.map_or_else(|| time(ends), |f| f.to_string())
                ),
                Some(ends) => format!(
                    "ended {}; the key is free once the next sweep deletes the row",
                    time(ends)
                ),
            };
            lines.push(("dedup window", window));
            if let Some(error) = &n.last_error {
                lines.push(("last error", error.clone()));
            }
        }
    }
    if let Some(verdict) = e.verdict {
        let scope = match e.compared {
            Some("payload") => {
                " (payload compared; give --email or --webhook to judge the destination too)"
            }
            _ => "",
        };
        let text = match verdict {
            "new" => "new: nothing holds the key".to_owned(),
            "duplicate" => format!(
                "duplicate of {}{scope}",
                e.notification
                    .as_ref()
                    .map(|n| n.id.to_string())
                    .unwrap_or_default()
            ),
            _ => format!("conflict{scope}: differs at {}", e.differences.join(", ")),
        };
        lines.push(("verdict", text));
    }
    fields(&lines)
}
