//! `herald explain`: [`crate::admin::explain`] from the command line, and its answer for people.

use chrono::{DateTime, Utc};
use clap::Args;
use uuid::Uuid;

use super::Context;
use super::error::CliError;
use super::key_args::KeyArgs;
use super::output::{fields, out, print_json, time};
use crate::admin::explain::{Candidate, Explanation, explain, retention_for};
use crate::key::Key;
use crate::notification::{Notification, check_key_part};
use crate::state::Channel;
use crate::store::admin as store;

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
    let retention = retention_for(&ctx.config.sweeper, &key.type_);
    let candidate = payload.map(|payload| Candidate {
        payload,
        destination: candidate(&args),
    });
    let explanation = explain(
        &mut conn,
        &key,
        candidate.as_ref(),
        retention,
        ctx.config.limits().max_payload_bytes,
    )
    .await?;
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
