//! `herald retry` and `herald cancel`: an operator moves one notification.

use clap::Args;
use uuid::Uuid;

use super::Context;
use super::error::CliError;
use super::output::print_json;
use crate::store::admin::{self as store, Transition};
use crate::store::notifications;

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The notification id.
    #[arg(value_name = "ID")]
    id: Uuid,
    /// Print the notification afterwards as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn retry(ctx: &Context, args: IdArgs) -> Result<(), CliError> {
    let pool = ctx.pool(false).await?;
    let mut conn = pool.acquire().await?;
    match store::retry(&mut conn, args.id).await? {
        Transition::Done => {}
        Transition::NotFound => return Err(not_found(args.id)),
        Transition::Refused(state) => {
            return Err(CliError::usage(format!(
                "cannot retry notification {}: it is {state}; only dead or cancelled notifications can be retried",
                args.id
            )));
        }
    }
    let n = notifications::get(&mut conn, args.id)
        .await?
        .ok_or_else(|| not_found(args.id))?;
    if args.json {
        return print_json(&n);
    }
    println!(
        "retried {}: pending again, due now, with a fresh budget of {} attempts; same delivery id",
        n.id, n.max_attempts
    );
    Ok(())
}

pub async fn cancel(ctx: &Context, args: IdArgs) -> Result<(), CliError> {
    let pool = ctx.pool(false).await?;
    let mut conn = pool.acquire().await?;
    match store::cancel(&mut conn, args.id).await? {
        Transition::Done => {}
        Transition::NotFound => return Err(not_found(args.id)),
        Transition::Refused(state) => {
            return Err(CliError::usage(format!(
                "cannot cancel notification {}: it is {state}; only pending notifications can be cancelled",
                args.id
            )));
        }
    }
    let n = notifications::get(&mut conn, args.id)
        .await?
        .ok_or_else(|| not_found(args.id))?;
    if args.json {
        return print_json(&n);
    }
    println!("cancelled {}", n.id);
    Ok(())
}

fn not_found(id: Uuid) -> CliError {
    CliError::not_found(format!("notification {id} not found"))
}
