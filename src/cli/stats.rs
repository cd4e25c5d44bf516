//! `herald stats`: counts by state and channel, the oldest due notification, the last hour,
//! open breakers and the endpoints with the most waiting.

use clap::Args;

use super::Context;
use super::error::CliError;
use super::output::{out, outln, print_json, table};
use crate::admin::stats;
use crate::state::State;

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &Context, args: StatsArgs) -> Result<(), CliError> {
    let pool = ctx.pool(false).await?;
    let stats = stats::gather(&mut *pool.acquire().await?).await?;
    if args.json {
        return print_json(&stats);
    }
    let cells: Vec<Vec<String>> = State::ALL
        .iter()
        .map(|s| {
            let c = &stats.counts[s.as_str()];
            vec![
                s.to_string(),
                c.email.to_string(),
                c.webhook.to_string(),
                c.total.to_string(),
            ]
        })
        .collect();
    out!("{}", table(&["STATE", "EMAIL", "WEBHOOK", "TOTAL"], &cells));
    outln!();
    let oldest = match stats.oldest_due_age_seconds {
        Some(age) => format!("due for {}", seconds(age)),
        None => "nothing due".into(),
    };
    let latency = match (
        stats.last_hour.latency_p50_ms,
        stats.last_hour.latency_p99_ms,
    ) {
        (Some(p50), Some(p99)) => format!(
            "p50 {}, p99 {} (from due to delivered)",
            seconds(p50 / 1000.0),
            seconds(p99 / 1000.0)
        ),
        _ => "no deliveries".into(),
    };
    out!(
        "{}",
        super::output::fields(&[
            ("oldest due", oldest),
            (
                "last hour",
                format!(
                    "{} delivered, {} failed, {} unknown attempts",
                    stats.last_hour.delivered, stats.last_hour.failed, stats.last_hour.unknown
                )
            ),
            ("latency", latency),
        ])
    );
    if !stats.open_breakers.is_empty() {
        outln!();
        let rows: Vec<Vec<String>> = stats
            .open_breakers
            .iter()
            .map(|b| {
                vec![
                    b.destination.clone(),
                    b.opened_at.map(super::output::time).unwrap_or_default(),
                    b.next_probe_at.map(super::output::time).unwrap_or_default(),
                ]
            })
            .collect();
        out!(
            "{}",
            table(&["OPEN BREAKER", "OPENED", "NEXT PROBE"], &rows)
        );
    }
    if !stats.busiest_endpoints.is_empty() {
        outln!();
        let rows: Vec<Vec<String>> = stats
            .busiest_endpoints
            .iter()
            .map(|b| vec![b.id.clone(), b.waiting.to_string()])
            .collect();
        out!("{}", table(&["BUSIEST ENDPOINT", "WAITING"], &rows));
    }
    Ok(())
}

/// `850ms`, `12.3s`, `4m 10s`.
fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        humantime::format_duration(std::time::Duration::from_secs(s as u64)).to_string()
    }
}
