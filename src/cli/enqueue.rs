//! `herald enqueue`: one notification from the command line, through the library's enqueue.

use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;
use uuid::Uuid;

use super::Context;
use super::error::CliError;
use super::key_args::KeyArgs;
use super::output::{outln, print_json};
use crate::notification::{MAX_PAYLOAD_DEPTH, Notification};
use crate::{Enqueued, State};

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// Deliver by email to this address.
    #[arg(long, value_name = "ADDR")]
    email: Option<String>,
    /// Deliver to this registered webhook endpoint.
    #[arg(long, value_name = "ENDPOINT_ID")]
    webhook: Option<Uuid>,
    /// JSON object: template context, or the webhook's `data`. Default {}.
    // Parsed by `build`, not by clap: clap's error would echo the whole value, which may be
    // huge (a hostile nesting) or personal data.
    #[arg(long, value_name = "JSON")]
    payload: Option<String>,
    /// Deliver no earlier than this time, e.g. 2026-12-01T09:00:00Z.
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    run_at: Option<DateTime<Utc>>,
    /// Attempts before the notification is dead. Default: retry.schedule steps + 1.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    max_attempts: Option<u32>,
    /// Print {"id", "status", "state"} as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct EnqueueOutput {
    id: Uuid,
    status: &'static str,
    state: State,
}

pub async fn run(ctx: &Context, args: EnqueueArgs) -> Result<(), CliError> {
    let json = args.json;
    let notification = build(ctx, args)?;
    let limits = ctx.config.limits();
    // Refuse bad input before touching the database.
    notification.validate(&limits)?;
    let pool = ctx.pool(false).await?;
    let out = crate::enqueue_with_limits(&pool, &notification, &limits).await?;
    let status = match out {
        Enqueued::Created { .. } => "created",
        Enqueued::Duplicate { .. } => "duplicate",
    };
    if json {
        print_json(&EnqueueOutput {
            id: out.id(),
            status,
            state: out.state(),
        })
    } else {
        outln!("{status} {} ({})", out.id(), out.state());
        Ok(())
    }
}

fn build(ctx: &Context, args: EnqueueArgs) -> Result<Notification, CliError> {
    let key = args.key.key();
    let mut n = match (args.email, args.webhook) {
        (Some(address), None) => {
            Notification::email(key.user_id, key.type_, key.business_id, address)
        }
        (None, Some(endpoint)) => {
            Notification::webhook(key.user_id, key.type_, key.business_id, endpoint)
        }
        (None, None) => return Err(CliError::usage("one of --email or --webhook is required")),
        (Some(_), Some(_)) => {
            return Err(CliError::usage(
                "--email and --webhook cannot be used together; give one",
            ));
        }
    };
    if let Some(text) = args.payload {
        n = n.payload_raw(parse_payload_arg(&text)?);
    }
    n = n.tenant(key.tenant);
    if let Some(run_at) = args.run_at {
        n = n.run_at(run_at);
    }
    let max_attempts = args
        .max_attempts
        .unwrap_or_else(|| ctx.config.retry.default_max_attempts());
    Ok(n.max_attempts(max_attempts))
}

/// The `--payload` of `enqueue` and `explain`, refused as invalid input naming it.
pub(super) fn parse_payload_arg(text: &str) -> Result<Box<serde_json::value::RawValue>, CliError> {
    parse_payload(text)
        .map_err(|problem| CliError::usage(format!("invalid payload (--payload): {problem}")))
}

/// JSON text, kept as text so that its numbers reach the database exactly as written. Checking
/// raw JSON does not recurse; the validation that follows refuses what is nested too deep.
fn parse_payload(text: &str) -> Result<Box<serde_json::value::RawValue>, String> {
    serde_json::from_str(text).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            format!("must be nested at most {MAX_PAYLOAD_DEPTH} levels deep")
        } else {
            format!("not valid JSON: {e}")
        }
    })
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time ({e}); e.g. 2026-12-01T09:00:00Z"))
}
