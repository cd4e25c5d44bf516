//! `herald sweep`: run the retention sweeper once.

use clap::Args;
use serde_json::json;

use super::Context;
use super::error::CliError;
use super::output::{outln, print_json};

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Count what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &Context, args: SweepArgs) -> Result<(), CliError> {
    let pool = ctx.pool(false).await?;
    let config = &ctx.config.sweeper;
    if args.dry_run {
        let would = crate::sweeper::dry_run(&pool, config).await?;
        if args.json {
            return print_json(&json!({"dry_run": true, "would_delete": would}));
        }
        outln!("would delete {would} finished notifications past their retention window");
        return Ok(());
    }
    let report =
        crate::sweeper::sweep(&pool, config, &tokio_util::sync::CancellationToken::new()).await?;
    if args.json {
        return print_json(&json!({
            "dry_run": false,
            "deleted": report.deleted,
            "another_sweeper_running": report.yielded,
        }));
    }
    outln!(
        "deleted {} finished notifications past their retention window",
        report.deleted
    );
    if report.yielded {
        outln!("another sweeper is running and will finish the rest");
    }
    Ok(())
}
