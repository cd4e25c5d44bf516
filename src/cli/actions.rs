//! `herald retry` and `herald cancel`: an operator moves one notification.

use clap::Args;
use uuid::Uuid;

use super::Context;
use super::error::CliError;
use super::output::{outln, print_json};
use crate::store::admin::{self as store, Transition};
use crate::store::notifications::{self, NotificationRow};

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
    let n = apply(ctx, &args, Action::Retry).await?;
    if args.json {
        return print_json(&n);
    }
    outln!(
        "retried {}: pending again, due now, with a fresh budget of {} attempts; same delivery id",
        n.id,
        n.max_attempts
    );
    Ok(())
}

pub async fn cancel(ctx: &Context, args: IdArgs) -> Result<(), CliError> {
    let n = apply(ctx, &args, Action::Cancel).await?;
    if args.json {
        return print_json(&n);
    }
    outln!("cancelled {}", n.id);
    Ok(())
}

#[derive(Clone, Copy)]
enum Action {
    Retry,
    Cancel,
}

/// Applies the action; returns the notification as it is afterwards.
async fn apply(ctx: &Context, args: &IdArgs, action: Action) -> Result<NotificationRow, CliError> {
    let pool = ctx.pool(false).await?;
    let mut conn = pool.acquire().await?;
    let (transition, verb, done, applies_to) = match action {
        Action::Retry => (
            store::retry(&mut conn, args.id).await?,
            "retry",
            "retried",
            "dead or cancelled",
        ),
        Action::Cancel => (
            store::cancel(&mut conn, args.id).await?,
            "cancel",
            "cancelled",
            "pending",
        ),
    };
    match transition {
        Transition::Done => {}
        Transition::NotFound => return Err(not_found(args.id)),
        Transition::Refused(state) => {
            return Err(CliError::usage(format!(
                "cannot {verb} notification {}: it is {state}; only {applies_to} notifications can be {done}",
                args.id
            )));
        }
    }
    notifications::get(&mut conn, args.id)
        .await?
        .ok_or_else(|| not_found(args.id))
}

fn not_found(id: Uuid) -> CliError {
    CliError::not_found(format!("notification {id} not found"))
}
