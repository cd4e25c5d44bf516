//! One scenario: a fresh database, a misbehaving receiver, a fleet of real daemons, many tasks
//! replaying the same intents, and a chaos driver (SIGKILL of daemons, or crashes of the
//! database) until every intent has ended; then the invariants.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::Notification;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::fleet::Fleet;
use crate::invariants::{self, Allowance, Sighting, Verdict};
use crate::load::{self, Tally};
use crate::random::Random;
use crate::receiver::{Behaviour, ChaosReceiver};
use crate::scale::Scale;
use crate::support::cluster::Cluster;
use crate::support::smtp::SmtpSink;
use crate::support::{self, SECRET};

/// Concurrent deliveries per daemon.
const WORKERS: usize = 4;
/// The daemons' request timeout; late answers come well after it.
const WEBHOOK_TIMEOUT: &str = "1s";
const LATE_BY: Duration = Duration::from_millis(2500);
/// An answer slower than this may have reached a sender that had given up: ambiguous.
const IN_TIME: Duration = Duration::from_millis(500);
/// Short enough that a killed daemon's work is reclaimed within seconds, long enough that a
/// busy two-core machine never lets a live daemon's heartbeat miss it.
const LEASE: &str = "5s";
/// Attempts per intent: a 30 % failure rate then kills one intent in 10^12.
const MAX_ATTEMPTS: u32 = 24;
/// A paused daemon sleeps through its lease and the rescue that follows it.
const PAUSE: Duration = Duration::from_millis(6_500);
const MESSAGE_ID_DOMAIN: &str = "chaos.herald.test";

#[derive(Debug, Clone, Copy)]
pub enum Target {
    Webhook(Behaviour),
    /// An SMTP server that hangs up after DATA for this share of messages.
    Email {
        drop_ratio: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chaos {
    Calm,
    KillDaemons,
    /// SIGSTOP a daemon past its lease, then SIGCONT: a worker with stale leases.
    PauseDaemons,
    RestartDatabase,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub target: Target,
    pub chaos: Chaos,
    pub daemons: usize,
    /// At most this many chaos events, whatever the scale.
    pub max_events: usize,
}

/// A scenario's result: the verdict and what the chaos did.
#[derive(Debug)]
pub struct Outcome {
    pub name: &'static str,
    pub intents: usize,
    pub kills: usize,
    pub pauses: usize,
    pub restarts: usize,
    pub enqueues: u64,
    pub wall: Duration,
    pub verdict: Verdict,
}

/// A database for one scenario: on the shared server (dropped afterwards), or on a throwaway
/// cluster when the scenario crashes the server.
enum Database {
    Shared { name: String },
    Throwaway(Cluster),
}

impl Database {
    fn url(&self) -> String {
        match self {
            Database::Shared { name } => support::url_for(name),
            Database::Throwaway(cluster) => cluster.url("herald"),
        }
    }

    async fn drop_shared(&self) {
        if let Database::Shared { name } = self {
            let admin = PgPool::connect(&support::url_for("postgres"))
                .await
                .unwrap();
            let sql = format!("drop database if exists {name} with (force)");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&admin)
                .await
                .unwrap();
        }
    }
}

enum Receiving {
    Webhook(ChaosReceiver),
    Email(SmtpSink),
}

impl Receiving {
    fn sightings(&self) -> Vec<Sighting> {
        match self {
            Receiving::Webhook(receiver) => receiver
                .seen()
                .into_iter()
                .map(|s| Sighting {
                    id: s.webhook_id,
                    processed: s.answer.processed(),
                    accepted: s.answer == crate::receiver::Answer::Accepted,
                    signature_valid: s.signature_valid,
                })
                .collect(),
            Receiving::Email(sink) => sink
                .received()
                .into_iter()
                .map(|(answer, message_id)| Sighting {
                    id: notification_id_of(&message_id),
                    processed: answer == "250" || answer == "drop",
                    accepted: answer == "250",
                    signature_valid: true,
                })
                .collect(),
        }
    }
}

/// `<id@domain>` → `id`.
fn notification_id_of(message_id: &str) -> String {
    message_id
        .trim_start_matches('<')
        .split('@')
        .next()
        .unwrap_or_default()
        .to_owned()
}

impl Scenario {
    pub async fn run(&self, scale: &Scale, seed: u64) -> Outcome {
        let started = Instant::now();
        let database = match self.chaos {
            Chaos::RestartDatabase => Database::Throwaway(Cluster::start()),
            _ => Database::Shared {
                name: format!(
                    "herald_chaos_{}_{}",
                    identifier(self.name),
                    std::process::id()
                ),
            },
        };
        database.drop_shared().await;
        let url = database.url();
        let migrate = support::herald_env(&["--database-url", &url, "migrate"], &[]).await;
        assert_eq!(migrate.code, 0, "herald migrate: {migrate:?}");
        let pool = PgPoolOptions::new()
            .max_connections(12)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await
            .unwrap();

        let (receiving, intents, port) = self.prepare(&pool, scale, seed).await;
        let port = port.to_string();
        let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates");
        let workers = WORKERS.to_string();
        let env = support::daemon::env_with(&[
            ("HERALD_DISPATCHER__WORKERS", &workers),
            ("HERALD_DISPATCHER__LEASE", LEASE),
            ("HERALD_DISPATCHER__SHUTDOWN_GRACE", "10s"),
            ("HERALD_WEBHOOK__TIMEOUT", WEBHOOK_TIMEOUT),
            ("HERALD_SMTP__HOST", "127.0.0.1"),
            ("HERALD_SMTP__PORT", &port),
            ("HERALD_SMTP__TIMEOUT", "1s"),
            ("HERALD_SMTP__FROM", "Chaos <chaos@herald.test>"),
            ("HERALD_SMTP__MESSAGE_ID_DOMAIN", MESSAGE_ID_DOMAIN),
            ("HERALD_TEMPLATES__DIR", templates.to_str().unwrap()),
        ]);
        let mut fleet = Fleet::start(&url, self.daemons, &env);

        let intents = Arc::new(intents);
        let tally = Arc::new(Tally::default());
        let enqueuers = load::spawn_enqueuers(
            pool.clone(),
            intents.clone(),
            scale.enqueue_tasks,
            scale.passes,
            seed,
            tally.clone(),
        );
        let replays = (scale.enqueue_tasks * scale.passes * intents.len()) as u64;

        let mut random = Random::new(seed ^ 0x5eed);
        let mut restarts = 0;
        let mut violations = Vec::new();
        let deadline = Instant::now() + scale.deadline;
        let mut next_event = Instant::now() + pause(&mut random);
        loop {
            let enqueued = enqueuers.iter().all(|task| task.is_finished());
            let unfinished = unfinished(&pool).await;
            if enqueued && unfinished == Some(0) {
                break;
            }
            let events = fleet.kills + fleet.pauses + restarts;
            let budget = scale.events.min(self.max_events);
            if Instant::now() >= next_event && events < budget && unfinished != Some(0) {
                // Kills and pauses wait for a daemon holding leases, so they land mid-batch.
                let struck = match self.chaos {
                    Chaos::Calm => true,
                    Chaos::KillDaemons => fleet.kill_one(&pool, &mut random).await,
                    Chaos::PauseDaemons => fleet.pause_one(&pool, &mut random, PAUSE).await,
                    Chaos::RestartDatabase => {
                        if let Database::Throwaway(cluster) = &database {
                            cluster.crash();
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            cluster.start_again();
                            restarts += 1;
                        }
                        true
                    }
                };
                if struck {
                    next_event = Instant::now() + pause(&mut random);
                }
            }
            if Instant::now() > deadline {
                violations.push(format!(
                    "not finished after {:?}: {unfinished:?} notifications unfinished, enqueuers done: {enqueued}",
                    scale.deadline
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let wall = started.elapsed();
        for task in enqueuers {
            task.abort();
        }
        for log in fleet.exited() {
            violations.push(format!("a daemon exited on its own:\n{log}"));
        }

        let allowance = Allowance {
            duplicates_after_acceptance: (fleet.kills + fleet.pauses) * WORKERS
                + restarts * self.daemons * WORKERS,
        };
        let mut verdict = invariants::check(
            &pool,
            &intents,
            &receiving.sightings(),
            &tally,
            replays,
            allowance,
        )
        .await;
        let (kills, pauses) = (fleet.kills, fleet.pauses);
        let logs = fleet.logs();
        if let Err(problem) = fleet.stop().await {
            violations.push(problem);
        }
        verdict.violations.extend(violations);
        if !verdict.violations.is_empty() {
            let tail: String = logs
                .chars()
                .rev()
                .take(8_000)
                .collect::<String>()
                .chars()
                .rev()
                .collect();
            verdict
                .violations
                .push(format!("daemon logs (tail):\n{tail}"));
        }
        pool.close().await;
        database.drop_shared().await;
        Outcome {
            name: self.name,
            intents: intents.len(),
            kills,
            pauses,
            restarts,
            enqueues: replays,
            wall,
            verdict,
        }
    }

    /// Starts the receiving side and registers what the intents need.
    async fn prepare(
        &self,
        pool: &PgPool,
        scale: &Scale,
        seed: u64,
    ) -> (Receiving, Vec<Notification>, u16) {
        match self.target {
            Target::Webhook(behaviour) => {
                let behaviour = Behaviour {
                    late_by: LATE_BY,
                    in_time: IN_TIME,
                    ..behaviour
                };
                let receiver = ChaosReceiver::start(behaviour, SECRET, seed).await;
                let mut endpoints = Vec::new();
                for tenant in ["default", "acme", "globex"] {
                    let id = support::endpoint_at(pool, tenant, &receiver.url()).await;
                    endpoints.push((tenant.to_owned(), id));
                }
                let intents = with_budget(load::webhook_intents(scale.intents, &endpoints));
                (Receiving::Webhook(receiver), intents, 0)
            }
            Target::Email { drop_ratio } => {
                let sink = SmtpSink::dropping(drop_ratio, seed).await;
                let port = sink.port;
                let intents = with_budget(load::email_intents(scale.intents));
                (Receiving::Email(sink), intents, port)
            }
        }
    }
}

/// A scenario name as a database name: letters and digits, the rest `_`.
fn identifier(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn with_budget(intents: Vec<Notification>) -> Vec<Notification> {
    intents
        .into_iter()
        .map(|n| n.max_attempts(MAX_ATTEMPTS))
        .collect()
}

/// Time between chaos events: 300 ms to 1 s.
fn pause(random: &mut Random) -> Duration {
    Duration::from_millis(300 + random.below(700) as u64)
}

/// Notifications not yet finished; `None` while the database cannot be asked.
async fn unfinished(pool: &PgPool) -> Option<i64> {
    sqlx::query_scalar(
        "select count(*) from herald.notifications where state in ('pending', 'running')",
    )
    .fetch_one(pool)
    .await
    .ok()
}
