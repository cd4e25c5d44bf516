//! The chaos suite: real `herald run` processes, a real PostgreSQL, real HTTP and SMTP receivers
//! that misbehave on purpose, and the same intents replayed from many tasks throughout. After
//! each scenario the invariants of [`invariants`] are checked, and a summary table is printed
//! (and written to `target/tmp/chaos-summary.md`).
//!
//! Short version (part of `cargo test`): `cargo test --test chaos -- --nocapture`.
//! Long version: `HERALD_CHAOS=long cargo test --release --test chaos -- --nocapture`.
//! `HERALD_CHAOS_SEED=<seed it printed>` repeats a run's random choices (which daemon, which
//! answer; timing still varies); `HERALD_CHAOS_ONLY=kill-9,stale-leases` runs some scenarios.

mod checker;
mod fleet;
mod invariants;
mod load;
mod random;
mod receiver;
mod scale;
mod scenario;
mod table;

use std::time::Duration;

use herald_test_support as support;
use receiver::Behaviour;
use scenario::{Disruption, Scenario, Target, WEBHOOK_TIMEOUT};

/// The scenarios, in the order they run.
fn scenarios() -> Vec<Scenario> {
    let accepting = |work_ms| Behaviour::accepting(Duration::from_millis(work_ms), WEBHOOK_TIMEOUT);
    let scenario = |name, target, disruption, daemons| Scenario {
        name,
        target,
        disruption,
        daemons,
        max_events: usize::MAX,
    };
    vec![
        // Deliveries take long enough that a kill always finds some in flight.
        scenario(
            "kill-9",
            Target::Webhook(accepting(150)),
            Disruption::KillDaemons,
            3,
        ),
        Scenario {
            // Each freeze lasts until the frozen daemon's leases are reclaimed: a few make the
            // point without a long run.
            max_events: 3,
            ..scenario(
                "stale-leases",
                Target::Webhook(accepting(300)),
                Disruption::FreezeDaemons,
                3,
            )
        },
        scenario(
            "database-restart",
            Target::Webhook(accepting(20)),
            Disruption::CrashDatabase,
            3,
        ),
        scenario(
            "receiver-hangs-up",
            Target::Webhook(Behaviour {
                hang_up: 0.3,
                ..accepting(5)
            }),
            Disruption::None,
            2,
        ),
        scenario(
            "receiver-answers-late",
            Target::Webhook(Behaviour {
                late: 0.3,
                ..accepting(5)
            }),
            Disruption::None,
            2,
        ),
        scenario(
            "receiver-fails-30%",
            Target::Webhook(Behaviour {
                refuse: 0.3,
                ..accepting(5)
            }),
            Disruption::None,
            2,
        ),
        scenario(
            "smtp-drops-after-data",
            Target::Email { drop_ratio: 0.3 },
            Disruption::None,
            2,
        ),
        scenario(
            "all-at-once",
            Target::Webhook(Behaviour {
                refuse: 0.1,
                hang_up: 0.1,
                late: 0.1,
                ..accepting(100)
            }),
            Disruption::KillDaemons,
            3,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_suite() {
    let scale = scale::Scale::from_env().unwrap_or_else(|e| panic!("{e}"));
    let seed = scale::seed().unwrap_or_else(|e| panic!("{e}"));
    println!(
        "chaos suite, {} version, HERALD_CHAOS_SEED={seed}",
        scale.label
    );
    scenario::drop_leftovers().await;
    let mut outcomes = Vec::new();
    let only = std::env::var("HERALD_CHAOS_ONLY").unwrap_or_default();
    for (i, scenario) in scenarios().iter().enumerate() {
        if !only.is_empty() && !only.split(',').any(|name| name == scenario.name) {
            continue;
        }
        let outcome = scenario.run(&scale, seed.wrapping_add(i as u64)).await;
        println!("{}", table::row(&outcome));
        outcomes.push(outcome);
    }
    let summary = table::render(&scale, seed, &outcomes);
    println!("\n{summary}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("chaos-summary.md");
    std::fs::write(&path, &summary).unwrap();

    let failures: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.verdict.violations.is_empty())
        .map(|o| format!("{}:\n  {}", o.name, o.verdict.violations.join("\n  ")))
        .collect();
    assert!(
        failures.is_empty(),
        "invariants broken (HERALD_CHAOS_SEED={seed}):\n{}",
        failures.join("\n")
    );
}
