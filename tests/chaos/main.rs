//! The chaos suite: real `herald run` processes, a real PostgreSQL, real HTTP and SMTP receivers
//! that misbehave on purpose, and the same intents replayed from many tasks throughout. After
//! each scenario the invariants of [`invariants`] are checked, and a summary table is printed
//! (and written to `target/tmp/chaos-summary.md`).
//!
//! Short version (part of `cargo test`): `cargo test --test chaos -- --nocapture`.
//! Long version: `HERALD_CHAOS=long cargo test --release --test chaos -- --nocapture`.
//! Repeat a run's random choices with `HERALD_CHAOS_SEED=<seed it printed>`; run some scenarios
//! only with `HERALD_CHAOS_ONLY=kill-9,stale-leases`.

#[allow(dead_code)]
#[path = "../it/support/mod.rs"]
mod support;

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

use receiver::Behaviour;
use scenario::{Chaos, Scenario, Target};

/// The scenarios, in the order they run.
fn scenarios() -> Vec<Scenario> {
    let calm = Behaviour {
        work: Duration::from_millis(5),
        ..Behaviour::default()
    };
    let webhook = |behaviour| Target::Webhook(behaviour);
    vec![
        Scenario {
            name: "kill-9",
            target: webhook(Behaviour {
                work: Duration::from_millis(150),
                ..calm
            }),
            chaos: Chaos::KillDaemons,
            daemons: 3,
            max_events: usize::MAX,
        },
        Scenario {
            name: "stale-leases",
            target: webhook(Behaviour {
                work: Duration::from_millis(150),
                ..calm
            }),
            chaos: Chaos::PauseDaemons,
            daemons: 3,
            // Each pause outlasts a lease: a few make the point without a long run.
            max_events: 3,
        },
        Scenario {
            name: "database-restart",
            target: webhook(Behaviour {
                work: Duration::from_millis(20),
                ..calm
            }),
            chaos: Chaos::RestartDatabase,
            daemons: 3,
            max_events: usize::MAX,
        },
        Scenario {
            name: "receiver-hangs-up",
            target: webhook(Behaviour {
                hang_up: 0.3,
                ..calm
            }),
            chaos: Chaos::Calm,
            daemons: 2,
            max_events: usize::MAX,
        },
        Scenario {
            name: "receiver-answers-late",
            target: webhook(Behaviour { late: 0.3, ..calm }),
            chaos: Chaos::Calm,
            daemons: 2,
            max_events: usize::MAX,
        },
        Scenario {
            name: "receiver-fails-30%",
            target: webhook(Behaviour {
                refuse: 0.3,
                ..calm
            }),
            chaos: Chaos::Calm,
            daemons: 2,
            max_events: usize::MAX,
        },
        Scenario {
            name: "smtp-drops-after-data",
            target: Target::Email { drop_ratio: 0.3 },
            chaos: Chaos::Calm,
            daemons: 2,
            max_events: usize::MAX,
        },
        Scenario {
            name: "all-at-once",
            target: webhook(Behaviour {
                refuse: 0.1,
                hang_up: 0.1,
                late: 0.1,
                work: Duration::from_millis(100),
                ..calm
            }),
            chaos: Chaos::KillDaemons,
            daemons: 3,
            max_events: usize::MAX,
        },
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
