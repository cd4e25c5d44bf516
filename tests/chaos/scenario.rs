//! One scenario: a fresh database, a misbehaving receiver, a fleet of real daemons, many tasks
//! replaying the same intents, and a driver that disrupts (kills or freezes daemons, crashes
//! the database) while work is in flight; once every intent has ended and the daemons have
//! stopped, the invariants. A watcher samples `herald.destinations` throughout, for the
//! isolation invariants.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

use crate::fleet::Fleet;
use crate::invariants::{self, Chaos, Sighting, Verdict};
use crate::isolation;
use crate::load::{self, Intents, Tally};
use crate::random::Random;
use crate::receiver::{Answer, Behaviour, ChaosReceiver};
use crate::scale::Scale;
use crate::support::cluster::Cluster;
use crate::support::smtp::SmtpSink;
use crate::support::{self, SECRET};
use crate::watch::Watcher;

/// Concurrent deliveries per daemon.
const WORKERS: usize = 4;
/// The daemons' request timeout (`webhook.timeout`).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(1);
/// `smtp.timeout`: generous, so only a dropped connection makes an SMTP outcome ambiguous.
const SMTP_TIMEOUT: &str = "3s";
/// Short enough that a killed daemon's work is reclaimed within seconds, long enough that a
/// busy two-core machine never lets a live daemon's heartbeat miss it.
const LEASE: &str = "5s";
/// The longest a frozen daemon stays frozen waiting for its leases to be reclaimed.
const FREEZE_LIMIT: Duration = Duration::from_secs(30);
const MESSAGE_ID_DOMAIN: &str = "chaos.herald.test";

#[derive(Debug, Clone)]
pub enum Target {
    /// One receiver behind the three tenants' endpoints (plus the one that refuses all).
    Webhook(Behaviour),
    /// Endpoints of their own, each with its receiver and limits (plus the one that refuses
    /// all).
    Endpoints(Vec<EndpointSpec>),
    /// An SMTP server that hangs up after DATA for this share of messages.
    Email { drop_ratio: f64 },
}

/// One endpoint of [`Target::Endpoints`].
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub tenant: &'static str,
    pub behaviour: Behaviour,
    /// Of every round of intents (the sum of all shares), this many go to this endpoint.
    pub share: usize,
    /// Arguments of `herald endpoints set ID` (e.g. `--max-in-flight 3`); none: no limit.
    pub limits: &'static [&'static str],
}

/// The versions of the suite a scenario belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    Both,
    Short,
    Long,
}

impl Runs {
    pub fn includes(self, scale: &Scale) -> bool {
        match self {
            Runs::Both => true,
            Runs::Short => scale.label == "short",
            Runs::Long => scale.label == "long",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruption {
    None,
    /// `kill -9` of a daemon holding leases, replaced at once.
    KillDaemons,
    /// SIGSTOP of a daemon holding leases until they are reclaimed, then SIGCONT.
    FreezeDaemons,
    /// `pg_ctl stop -m immediate`, then start again, on a throwaway cluster.
    CrashDatabase,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub target: Target,
    pub disruption: Disruption,
    pub daemons: usize,
    /// At most this many disruptions, whatever the scale.
    pub max_events: usize,
    /// At most this many intents, whatever the scale.
    pub max_intents: usize,
    /// Which version of the suite runs it.
    pub runs: Runs,
    /// The daemons' settings beyond the suite's (`HERALD_…` variables; these win).
    pub env: Vec<(&'static str, String)>,
}

/// A scenario's result: the verdict and what the driver did.
#[derive(Debug)]
pub struct Outcome {
    pub name: &'static str,
    pub intents: usize,
    /// Enqueue calls that got an answer.
    pub enqueues: u64,
    pub kills: usize,
    pub freezes: usize,
    pub crashes: usize,
    pub wall: Duration,
    pub verdict: Verdict,
}

/// A database for one scenario: on the shared server (dropped afterwards), or on a throwaway
/// cluster when the scenario crashes the server.
enum Database {
    Shared { name: String },
    Throwaway(Arc<Cluster>),
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
            drop_database(name).await;
        }
    }

    /// Crashes the throwaway cluster and starts it again (blocking work, off the runtime).
    async fn crash_and_restart(&self) {
        if let Database::Throwaway(cluster) = self {
            let cluster = cluster.clone();
            tokio::task::spawn_blocking(move || {
                cluster.crash();
                std::thread::sleep(Duration::from_millis(500));
                cluster.start_again();
            })
            .await
            .unwrap();
        }
    }
}

async fn drop_database(name: &str) {
    let admin = PgPool::connect(&support::url_for("postgres"))
        .await
        .unwrap();
    let sql = format!("drop database if exists {name} with (force)");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
}

/// Drops the databases of earlier runs that died before cleaning up: those whose process (the
/// name ends in its pid) is gone. A suite running at the same time keeps its own.
pub async fn drop_leftovers() {
    let admin = PgPool::connect(&support::url_for("postgres"))
        .await
        .unwrap();
    let names: Vec<String> = sqlx::query_scalar(
        "select datname from pg_database where datname like 'herald\\_chaos\\_%'",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    admin.close().await;
    for name in names {
        let pid = name.rsplit('_').next().unwrap_or_default();
        let alive = !pid.is_empty() && std::path::Path::new("/proc").join(pid).exists();
        if !alive {
            drop_database(&name).await;
        }
    }
}

/// What received the deliveries: webhook receivers (the main one and the one that refuses
/// everything, for doomed intents), or the SMTP sink.
enum Receiving {
    Webhook(Vec<ChaosReceiver>),
    Email(SmtpSink),
}

impl Receiving {
    fn sightings(&self) -> Vec<Sighting> {
        match self {
            Receiving::Webhook(receivers) => receivers
                .iter()
                .flat_map(ChaosReceiver::seen)
                .map(|s| Sighting {
                    id: s.webhook_id,
                    processed: s.answer.processed(),
                    accepted: s.answer == Answer::Accepted,
                    signature_valid: s.signature_valid,
                    data: s.data,
                    span: Some((s.read_at, s.done_at)),
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
                    data: None,
                    span: None,
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
    /// Distinct intents at `scale`.
    fn intents(&self, scale: &Scale) -> usize {
        scale.intents.min(self.max_intents)
    }

    pub async fn run(&self, scale: &Scale, seed: u64) -> Outcome {
        let started = Instant::now();
        let database = match self.disruption {
            Disruption::CrashDatabase => Database::Throwaway(Arc::new(
                tokio::task::spawn_blocking(Cluster::start).await.unwrap(),
            )),
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
        let migrate = support::Cli::at(&url).arg("migrate").run().await;
        assert_eq!(migrate.code, 0, "herald migrate: {migrate:?}");
        let pool = PgPoolOptions::new()
            .max_connections(12)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await
            .unwrap();

        let (receiving, intents, smtp_port) = self.prepare(&pool, &url, scale, seed).await;
        let mut env = daemon_env(smtp_port);
        env.extend(self.env.iter().cloned());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let watcher = Watcher::start(&url);
        let mut fleet = Fleet::start(&url, self.daemons, &env);

        let intents = Arc::new(intents);
        let tally = Arc::new(Tally::new(intents.notifications.len()));
        let stop_enqueuing = CancellationToken::new();
        let enqueuers = load::spawn_enqueuers(
            pool.clone(),
            Arc::new(intents.notifications.clone()),
            scale.enqueue_tasks,
            seed,
            tally.clone(),
            stop_enqueuing.clone(),
        );

        let mut random = Random::new(seed ^ 0x5eed);
        let mut crashes = 0;
        let mut violations = Vec::new();
        let deadline = Instant::now() + scale.deadline;
        let mut next_event = Instant::now() + gap_between_events(&mut random);
        loop {
            let through_once = Tally::get(&tally.tasks_through_once) == scale.enqueue_tasks as u64;
            let unfinished = unfinished(&pool).await;
            if through_once && unfinished == Some(0) {
                break;
            }
            let events = fleet.kills + fleet.freezes + crashes;
            let budget = scale.events.min(self.max_events);
            if Instant::now() >= next_event && events < budget && unfinished != Some(0) {
                // Kills and freezes wait for a daemon holding leases, so they land mid-batch.
                let struck = match self.disruption {
                    Disruption::None => true,
                    Disruption::KillDaemons => fleet.kill_one(&pool, &mut random).await,
                    Disruption::FreezeDaemons => {
                        fleet.freeze_one(&pool, &mut random, FREEZE_LIMIT).await
                    }
                    Disruption::CrashDatabase => {
                        database.crash_and_restart().await;
                        crashes += 1;
                        true
                    }
                };
                if struck {
                    next_event = Instant::now() + gap_between_events(&mut random);
                }
            }
            if Instant::now() > deadline {
                violations.push(format!(
                    "not finished after {:?}: {unfinished:?} notifications unfinished",
                    scale.deadline
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let wall = started.elapsed();
        stop_enqueuing.cancel();
        for task in enqueuers {
            let _ = task.await;
        }

        // The daemons stop before the check, so a late write of a thawed daemon is in.
        violations.extend(fleet.problems());
        let (kills, freezes) = (fleet.kills, fleet.freezes);
        let chaos = Chaos {
            struck_pids: fleet.struck_pids.clone(),
            crashes,
            unexplained_per_crash: self.daemons * WORKERS,
        };
        let logs = fleet.logs();
        if let Err(problem) = fleet.stop().await {
            violations.push(problem);
        }
        let watched = watcher.stop().await;
        let sightings = receiving.sightings();
        let mut verdict = invariants::check(&pool, &intents, &sightings, &tally, &chaos).await;
        isolation::check(&pool, &sightings, &watched, &mut verdict).await;
        verdict.violations.extend(violations);
        if !(verdict.violations.is_empty() && verdict.known.is_empty()) {
            let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("chaos-{}-destinations.txt", self.name));
            let watch = match std::fs::write(&path, watched.to_string()) {
                Ok(()) => format!(
                    "what the watcher saw of herald.destinations: {}",
                    path.display()
                ),
                Err(e) => format!("cannot write {}: {e}", path.display()),
            };
            if verdict.violations.is_empty() {
                verdict.known.push(watch);
            } else {
                verdict.violations.push(format!(
                    "{watch}\n  daemon logs (tail):\n{}",
                    tail(&logs, 8_000)
                ));
            }
        }
        pool.close().await;
        database.drop_shared().await;
        Outcome {
            name: self.name,
            intents: intents.notifications.len(),
            enqueues: tally.answered(),
            kills,
            freezes,
            crashes,
            wall,
            verdict,
        }
    }

    /// Starts the receiving side and registers what the intents need (endpoints, and their
    /// limits through `herald endpoints set`); returns the SMTP port (0 for webhooks).
    async fn prepare(
        &self,
        pool: &PgPool,
        url: &str,
        scale: &Scale,
        seed: u64,
    ) -> (Receiving, Intents, u16) {
        let refusing = Behaviour {
            refuse: 1.0,
            ..Behaviour::accepting(Duration::ZERO, WEBHOOK_TIMEOUT)
        };
        match &self.target {
            Target::Webhook(behaviour) => {
                let receiver = ChaosReceiver::start(*behaviour, SECRET, seed).await;
                let doom = ChaosReceiver::start(refusing, SECRET, seed).await;
                let mut endpoints = Vec::new();
                for tenant in ["default", "acme", "globex"] {
                    let id = support::endpoint_at(pool, tenant, &receiver.url()).await;
                    endpoints.push((tenant.to_owned(), id));
                }
                let doomed = support::endpoint_at(pool, "default", &doom.url()).await;
                let intents = load::webhook_intents(self.intents(scale), &endpoints, doomed);
                (Receiving::Webhook(vec![receiver, doom]), intents, 0)
            }
            Target::Endpoints(specs) => {
                let mut receivers = Vec::new();
                let mut round = Vec::new();
                for (i, spec) in specs.iter().enumerate() {
                    let receiver =
                        ChaosReceiver::start(spec.behaviour, SECRET, seed.wrapping_add(i as u64))
                            .await;
                    let id = support::endpoint_at(pool, spec.tenant, &receiver.url()).await;
                    if !spec.limits.is_empty() {
                        let id = id.to_string();
                        let mut args = vec!["endpoints", "set", id.as_str()];
                        args.extend_from_slice(spec.limits);
                        let set = support::Cli::at(url).args(&args).run().await;
                        assert_eq!(set.code, 0, "herald endpoints set: {set:?}");
                    }
                    round.extend(std::iter::repeat_n(
                        (spec.tenant.to_owned(), id),
                        spec.share,
                    ));
                    receivers.push(receiver);
                }
                // Interleaved, so every stretch of intents reaches every endpoint.
                let mut random = Random::new(seed);
                random.shuffle(&mut round);
                let doom = ChaosReceiver::start(refusing, SECRET, seed).await;
                let doomed = support::endpoint_at(pool, "default", &doom.url()).await;
                receivers.push(doom);
                let intents = load::webhook_intents(self.intents(scale), &round, doomed);
                (Receiving::Webhook(receivers), intents, 0)
            }
            Target::Email { drop_ratio } => {
                let sink = SmtpSink::dropping(*drop_ratio, seed).await;
                let port = sink.port;
                (
                    Receiving::Email(sink),
                    load::email_intents(self.intents(scale)),
                    port,
                )
            }
        }
    }
}

/// The daemons' settings: the test suite's fast retries plus the chaos timeouts.
fn daemon_env(smtp_port: u16) -> Vec<(&'static str, String)> {
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates");
    let mut env: Vec<(&'static str, String)> = support::daemon::FAST
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect();
    env.extend([
        ("HERALD_DISPATCHER__WORKERS", WORKERS.to_string()),
        ("HERALD_DISPATCHER__LEASE", LEASE.to_owned()),
        ("HERALD_DISPATCHER__SHUTDOWN_GRACE", "10s".to_owned()),
        (
            "HERALD_WEBHOOK__TIMEOUT",
            format!("{}ms", WEBHOOK_TIMEOUT.as_millis()),
        ),
        ("HERALD_SMTP__HOST", "127.0.0.1".to_owned()),
        ("HERALD_SMTP__PORT", smtp_port.to_string()),
        ("HERALD_SMTP__TIMEOUT", SMTP_TIMEOUT.to_owned()),
        ("HERALD_SMTP__FROM", "Chaos <chaos@herald.test>".to_owned()),
        (
            "HERALD_SMTP__MESSAGE_ID_DOMAIN",
            MESSAGE_ID_DOMAIN.to_owned(),
        ),
        ("HERALD_TEMPLATES__DIR", templates.display().to_string()),
    ]);
    env
}

/// A scenario name as a database name: letters and digits, the rest `_`.
fn identifier(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn tail(text: &str, chars: usize) -> String {
    let skip = text.chars().count().saturating_sub(chars);
    text.chars().skip(skip).collect()
}

/// Time between disruptions: 300 ms to 1 s.
fn gap_between_events(random: &mut Random) -> Duration {
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
