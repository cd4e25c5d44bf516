//! The summary table, one row per scenario, as Markdown (it goes into docs/testing.md as printed).

use crate::scale::Scale;
use crate::scenario::Outcome;

const HEADER: &str = "| scenario | intents | enqueues | delivered | dead | lost | distinct ids | raw sends | duplicate sends | after acceptance | reclaimed leases | kills | freezes | db crashes | breaker openings | limit peaks | wall | invariants |\n\
                      |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|";

pub fn render(scale: &Scale, seed: u64, outcomes: &[Outcome]) -> String {
    let mut text = format!(
        "chaos suite ({} version, HERALD_CHAOS_SEED={seed})\n\n{HEADER}\n",
        scale.label
    );
    for outcome in outcomes {
        text.push_str(&row(outcome));
        text.push('\n');
    }
    text
}

/// One scenario's line, printed as soon as it finishes.
pub fn row(o: &Outcome) -> String {
    let v = &o.verdict;
    let mut invariants = if v.violations.is_empty() {
        "all hold".to_owned()
    } else {
        format!("{} broken", v.violations.len())
    };
    if !v.known.is_empty() {
        invariants.push_str(" (a known bug seen)");
    }
    let peaks = if v.limit_peaks.is_empty() {
        "–".to_owned()
    } else {
        v.limit_peaks.join(", ")
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s | {} |",
        o.name,
        o.intents,
        o.enqueues,
        v.delivered,
        v.dead,
        v.lost,
        v.distinct_ids,
        v.raw_sends,
        v.duplicate_sends,
        v.duplicates_after_acceptance,
        v.reclaimed,
        o.kills,
        o.freezes,
        o.crashes,
        v.breaker_openings,
        peaks,
        o.wall.as_secs_f64(),
        invariants
    )
}
