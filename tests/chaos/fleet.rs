//! Several `herald run` processes on one database, any of which can be killed with SIGKILL and
//! replaced (as an orchestrator would after a crash), or frozen past its lease and thawed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use crate::random::Random;
use crate::support::daemon::Daemon;

pub struct Fleet {
    url: String,
    env: Vec<(String, String)>,
    daemons: Vec<Daemon>,
    /// Logs of daemons that were killed, kept to explain a failure.
    dead_logs: Vec<String>,
    /// Process ids of every daemon killed or frozen: the only ones whose leases may expire.
    pub struck_pids: HashSet<u32>,
    /// Daemons thawed after a freeze, by pid: each must have found its leases lost.
    thawed: HashSet<u32>,
    pub kills: usize,
    pub freezes: usize,
}

impl Fleet {
    pub fn start(url: &str, size: usize, env: &[(&str, &str)]) -> Self {
        let mut fleet = Fleet {
            url: url.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            daemons: Vec::new(),
            dead_logs: Vec::new(),
            struck_pids: HashSet::new(),
            thawed: HashSet::new(),
            kills: 0,
            freezes: 0,
        };
        for _ in 0..size {
            let daemon = fleet.spawn();
            fleet.daemons.push(daemon);
        }
        fleet
    }

    fn spawn(&self) -> Daemon {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Daemon::spawn_url(&self.url, &["--no-migrate"], &env)
    }

    /// `kill -9` of a daemon holding leases (so it dies mid-batch), then a fresh one in its
    /// place. False when no daemon holds any at the moment.
    pub async fn kill_one(&mut self, pool: &PgPool, random: &mut Random) -> bool {
        let Some((victim, pid)) = self.busy_daemon(pool, random).await else {
            return false;
        };
        self.struck_pids.insert(pid);
        self.daemons[victim].kill9().await;
        let replacement = self.spawn();
        let dead = std::mem::replace(&mut self.daemons[victim], replacement);
        self.dead_logs.push(dead.log());
        self.kills += 1;
        true
    }

    /// SIGSTOP of a daemon holding leases; SIGCONT once the other daemons have reclaimed all of
    /// them (they expired while it was frozen) and claimed at least one again. It wakes up
    /// mid-delivery with stale tokens while a newer claim of the same row is in flight, so only
    /// the lease token tells its write from the current one: every write it attempts must be
    /// refused. False when no daemon holds leases at the moment.
    pub async fn freeze_one(
        &mut self,
        pool: &PgPool,
        random: &mut Random,
        limit: Duration,
    ) -> bool {
        let Some((victim, pid)) = self.busy_daemon(pool, random).await else {
            return false;
        };
        self.struck_pids.insert(pid);
        let daemon = &self.daemons[victim];
        daemon.signal("STOP").await;
        let held = leased_to(pool, pid).await;
        let frozen_at = Instant::now();
        while frozen_at.elapsed() < limit && !taken_over(pool, &held, pid).await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        daemon.signal("CONT").await;
        self.thawed.insert(pid);
        self.freezes += 1;
        true
    }

    /// A daemon holding leases right now, with its pid; `None` while no daemon holds any.
    async fn busy_daemon(&self, pool: &PgPool, random: &mut Random) -> Option<(usize, u32)> {
        let owners: Vec<String> = sqlx::query_scalar(
            "select distinct lease_owner from herald.notifications where state = 'running'",
        )
        .fetch_all(pool)
        .await
        .ok()?;
        let pids: Vec<u32> = owners.iter().filter_map(|owner| pid_of(owner)).collect();
        let busy: Vec<(usize, u32)> = self
            .daemons
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.pid().filter(|pid| pids.contains(pid)).map(|pid| (i, pid)))
            .collect();
        (!busy.is_empty()).then(|| busy[random.below(busy.len())])
    }

    /// Problems with the daemons themselves: one that exited on its own, or one that was
    /// thawed and never noticed its leases were gone.
    pub fn problems(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for daemon in &mut self.daemons {
            let pid = daemon.pid();
            if !daemon.is_running() {
                problems.push(format!("a daemon exited on its own:\n{}", daemon.log()));
            } else if pid.is_some_and(|pid| self.thawed.contains(&pid))
                && !daemon.log().contains("lease lost")
            {
                problems.push(format!(
                    "a daemon thawed after its leases were reclaimed never logged a lost lease:\n{}",
                    daemon.log()
                ));
            }
        }
        problems
    }

    /// The logs of all daemons, living and dead, for a failure message.
    pub fn logs(&self) -> String {
        let living = self.daemons.iter().map(Daemon::log);
        self.dead_logs
            .iter()
            .cloned()
            .chain(living)
            .collect::<Vec<_>>()
            .join("\n----\n")
    }

    /// SIGTERM to every daemon still running; each must exit 0 within the grace period.
    pub async fn stop(mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        for daemon in &mut self.daemons {
            // One that already exited is reported by `problems`.
            if daemon.is_running() {
                daemon.terminate().await;
            }
        }
        for daemon in self.daemons {
            let run = daemon.wait(Duration::from_secs(60)).await;
            if run.code != 0 {
                problems.push(format!("a daemon exited {}: {}", run.code, run.stderr));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

/// Leases name their owner `host:pid:run`.
fn pid_of(owner: &str) -> Option<u32> {
    owner.split(':').nth(1)?.parse().ok()
}

/// The notifications leased to the daemon with `pid`.
async fn leased_to(pool: &PgPool, pid: u32) -> Vec<Uuid> {
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("select id, lease_owner from herald.notifications where state = 'running'")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    rows.into_iter()
        .filter(|(_, owner)| pid_of(owner) == Some(pid))
        .map(|(id, _)| id)
        .collect()
}

/// None of `ids` is leased to `pid` any more, and one of them is running under another daemon
/// (or all have finished: the moment for a takeover in flight has passed).
async fn taken_over(pool: &PgPool, ids: &[Uuid], pid: u32) -> bool {
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("select state, lease_owner from herald.notifications where id = any($1)")
            .bind(ids)
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    let still_ours = rows
        .iter()
        .any(|(_, owner)| owner.as_deref().and_then(pid_of) == Some(pid));
    let running_elsewhere = rows.iter().any(|(state, _)| state == "running");
    let all_finished = rows
        .iter()
        .all(|(state, _)| matches!(state.as_str(), "delivered" | "dead"));
    !still_ours && (running_elsewhere || all_finished)
}
