//! Several `herald run` processes on one database, any of which can be killed with SIGKILL and
//! replaced, as an orchestrator would after a crash.

use std::time::Duration;

use sqlx::PgPool;

use crate::random::Random;
use crate::support::daemon::Daemon;

pub struct Fleet {
    url: String,
    env: Vec<(String, String)>,
    daemons: Vec<Daemon>,
    /// Logs of daemons that were killed, kept to explain a failure.
    pub dead_logs: Vec<String>,
    pub kills: usize,
    pub pauses: usize,
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
            kills: 0,
            pauses: 0,
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

    /// A daemon holding leases right now (so it dies or freezes mid-batch), chosen by `random`;
    /// `None` while no daemon holds any. Leases name their owner as `host:pid:run`.
    async fn busy_daemon(&self, pool: &PgPool, random: &mut Random) -> Option<usize> {
        let owners: Vec<String> = sqlx::query_scalar(
            "select distinct lease_owner from herald.notifications where state = 'running'",
        )
        .fetch_all(pool)
        .await
        .ok()?;
        let pids: Vec<u32> = owners
            .iter()
            .filter_map(|owner| owner.split(':').nth(1)?.parse().ok())
            .collect();
        let busy: Vec<usize> = (0..self.daemons.len())
            .filter(|&i| self.daemons[i].pid().is_some_and(|pid| pids.contains(&pid)))
            .collect();
        (!busy.is_empty()).then(|| busy[random.below(busy.len())])
    }

    /// `kill -9` of a daemon holding leases, then a fresh one in its place. False when no
    /// daemon holds any at the moment.
    pub async fn kill_one(&mut self, pool: &PgPool, random: &mut Random) -> bool {
        let Some(victim) = self.busy_daemon(pool, random).await else {
            return false;
        };
        self.daemons[victim].kill9().await;
        let replacement = self.spawn();
        let dead = std::mem::replace(&mut self.daemons[victim], replacement);
        self.dead_logs.push(dead.log());
        self.kills += 1;
        true
    }

    /// SIGSTOP of a daemon holding leases for `pause` (longer than its lease: its work is
    /// reclaimed and delivered by the others meanwhile), then SIGCONT: it wakes up holding stale
    /// leases, and every write it then attempts must be refused by the fencing. False when no
    /// daemon holds any at the moment.
    pub async fn pause_one(&mut self, pool: &PgPool, random: &mut Random, pause: Duration) -> bool {
        let Some(victim) = self.busy_daemon(pool, random).await else {
            return false;
        };
        let victim = &self.daemons[victim];
        victim.signal("STOP").await;
        tokio::time::sleep(pause).await;
        victim.signal("CONT").await;
        self.pauses += 1;
        true
    }

    /// Daemons that exited on their own (none should).
    pub fn exited(&mut self) -> Vec<String> {
        self.daemons
            .iter_mut()
            .filter_map(|d| (!d.is_running()).then(|| d.log()))
            .collect()
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

    /// SIGTERM to every daemon; each must exit 0 within the grace period.
    pub async fn stop(mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        for daemon in &mut self.daemons {
            // One that already exited is reported by `exited`.
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
