//! `herald list` and `herald show`: reading notifications and their attempt logs.

use clap::Args;
use serde::Serialize;
use uuid::Uuid;

use super::Context;
use super::error::CliError;
use super::output::{fields, out, outln, print_json, table};
use crate::State;
use crate::store::notifications::{self as store, AttemptRow, ListFilter, NotificationRow};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this state: pending, running, delivered, dead, cancelled.
    #[arg(long, value_name = "S")]
    state: Option<State>,
    /// Only this type.
    #[arg(long = "type", value_name = "T")]
    type_: Option<String>,
    /// Only this user.
    #[arg(long, value_name = "U")]
    user: Option<String>,
    /// Only this tenant.
    #[arg(long, value_name = "T")]
    tenant: Option<String>,
    /// At most this many, newest first.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    limit: i64,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

pub async fn list(ctx: &Context, args: ListArgs) -> Result<(), CliError> {
    let pool = ctx.pool(false).await?;
    let filter = ListFilter {
        state: args.state,
        type_: args.type_,
        user_id: args.user,
        tenant: args.tenant,
        business_id: None,
        before: None,
        limit: args.limit,
    };
    let rows = store::list(&mut *pool.acquire().await?, &filter).await?;
    if args.json {
        return print_json(&rows);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|n| {
            vec![
                n.id.to_string(),
                n.tenant.clone(),
                n.user_id.clone(),
                n.type_.clone(),
                n.business_id.clone(),
                n.channel.to_string(),
                n.state.to_string(),
                format!("{}/{}", n.attempts, n.max_attempts),
                n.run_at.to_string(),
                n.created_at.to_string(),
            ]
        })
        .collect();
    let headers = [
        "ID",
        "TENANT",
        "USER",
        "TYPE",
        "BUSINESS_ID",
        "CHANNEL",
        "STATE",
        "ATTEMPTS",
        "RUN_AT",
        "CREATED_AT",
    ];
    out!("{}", table(&headers, &cells));
    Ok(())
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The notification id.
    #[arg(value_name = "ID")]
    id: Uuid,
    /// Print one JSON object, with `attempt_log`.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct ShowOutput {
    #[serde(flatten)]
    notification: NotificationRow,
    attempt_log: Vec<AttemptRow>,
}

pub async fn show(ctx: &Context, args: ShowArgs) -> Result<(), CliError> {
    let pool = ctx.pool(false).await?;
    let mut conn = pool.acquire().await?;
    let Some(notification) = store::get(&mut conn, args.id).await? else {
        return Err(CliError::not_found(format!(
            "notification {} not found",
            args.id
        )));
    };
    let attempt_log = store::attempts(&mut conn, args.id).await?;
    if args.json {
        return print_json(&ShowOutput {
            notification,
            attempt_log,
        });
    }
    let n = &notification;
    out!(
        "{}",
        fields(&[
            ("id", n.id.to_string()),
            ("tenant", n.tenant.clone()),
            ("user_id", n.user_id.clone()),
            ("type", n.type_.clone()),
            ("business_id", n.business_id.clone()),
            ("channel", n.channel.to_string()),
            ("destination", n.destination.clone()),
            ("state", n.state.to_string()),
            ("attempts", format!("{} of {}", n.attempts, n.max_attempts)),
            ("run_at", n.run_at.to_string()),
            ("created_at", n.created_at.to_string()),
            (
                "finished_at",
                n.finished_at.map_or_else(|| "-".into(), |t| t.to_string())
            ),
            (
                "last_error",
                n.last_error.clone().unwrap_or_else(|| "-".into())
            ),
            ("payload", n.payload.to_string()),
        ])
    );
    if attempt_log.is_empty() {
        outln!("\nno attempts yet");
        return Ok(());
    }
    let cells: Vec<Vec<String>> = attempt_log
        .iter()
        .map(|a| {
            vec![
                a.attempt.to_string(),
                a.started_at.to_seconds_text(),
                a.finished_at.to_seconds_text(),
                a.outcome.clone(),
                a.status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                a.error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    outln!();
    out!(
        "{}",
        table(
            &[
                "ATTEMPT",
                "STARTED_AT",
                "FINISHED_AT",
                "OUTCOME",
                "STATUS",
                "ERROR"
            ],
            &cells
        )
    );
    Ok(())
}
