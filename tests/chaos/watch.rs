//! A watcher of `herald.destinations` while a scenario runs: every few milliseconds, one
//! statement (one snapshot) reads each destination's breaker, its `in_flight` counter and the
//! lease tokens of its queue rows, so the isolation invariants ([`crate::isolation`]) can be
//! checked afterwards. Breaker transitions and claims between two samples are seen through
//! what changed: a new lease token is a claim that committed in between.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Time between samples (plus the statement's own time).
const EVERY: Duration = Duration::from_millis(20);

/// One destination as one statement saw it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Sample {
    /// `clock_timestamp()` of the sampling statement: taken after its snapshot, so any claim
    /// the sample shows started (its `now()`) before this instant.
    pub at: DateTime<Utc>,
    pub destination: String,
    pub breaker: String,
    pub opened_at: Option<DateTime<Utc>>,
    pub next_probe_at: Option<DateTime<Utc>>,
    /// The destination's `in_flight` counter; `None` in a schema without one (where the
    /// leases are what is in flight, and there is nothing to drift).
    pub in_flight: Option<i32>,
    pub max_in_flight: Option<i32>,
    /// Lease tokens of the destination's queue rows, sorted.
    pub leases: Vec<Uuid>,
}

impl Sample {
    /// The same state as `other`, whenever each was taken.
    fn same_state(&self, other: &Sample) -> bool {
        self.breaker == other.breaker
            && self.opened_at == other.opened_at
            && self.next_probe_at == other.next_probe_at
            && self.in_flight == other.in_flight
            && self.max_in_flight == other.max_in_flight
            && self.leases == other.leases
    }
}

// `in_flight` through `to_jsonb`, so that the watch still works where the counter is gone.
const SAMPLE: &str = "
    select clock_timestamp() as at, d.key as destination, d.breaker,
           d.breaker_opened_at as opened_at, d.next_probe_at,
           (to_jsonb(d) ->> 'in_flight')::int4 as in_flight, d.max_in_flight,
           coalesce(array_agg(q.lease_token order by q.lease_token)
                        filter (where q.lease_token is not null),
                    '{}'::uuid[]) as leases
    from herald.destinations d
    left join herald.queue q on q.destination = d.key and q.lease_token is not null
    group by d.key
    order by d.key";

/// What the watcher saw: per destination, each sample that differed from the one before it
/// (a repeat adds nothing to any check), in order.
#[derive(Debug, Default)]
pub struct Watched {
    pub by_destination: HashMap<String, Vec<Sample>>,
    /// Statements that answered.
    pub samples: usize,
    /// The last error of a statement that did not (the database restarting, or a schema the
    /// watch does not fit: with no sample at all, that is reported).
    pub last_error: Option<String>,
}

impl std::fmt::Display for Watched {
    /// One line per stored sample, destination by destination: to explain a violation.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut destinations: Vec<&String> = self.by_destination.keys().collect();
        destinations.sort();
        for destination in destinations {
            writeln!(f, "{destination}")?;
            for s in &self.by_destination[destination] {
                let time = |t: Option<DateTime<Utc>>| {
                    t.map_or("-".to_owned(), |t| t.format("%H:%M:%S%.3f").to_string())
                };
                let leases: Vec<String> = s
                    .leases
                    .iter()
                    .map(|l| l.to_string()[..8].to_owned())
                    .collect();
                writeln!(
                    f,
                    "  {} {} opened {} probe {} in_flight {} leases [{}]",
                    time(Some(s.at)),
                    s.breaker,
                    time(s.opened_at),
                    time(s.next_probe_at),
                    s.in_flight.map_or("-".to_owned(), |n| n.to_string()),
                    leases.join(" ")
                )?;
            }
        }
        Ok(())
    }
}

impl Watched {
    /// Adds one statement's rows.
    pub fn add(&mut self, rows: Vec<Sample>) {
        self.samples += 1;
        for row in rows {
            let line = self
                .by_destination
                .entry(row.destination.clone())
                .or_default();
            if line.last().is_none_or(|last| !last.same_state(&row)) {
                line.push(row);
            }
        }
    }
}

pub struct Watcher {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Watched>,
}

impl Watcher {
    /// Starts sampling the database at `url` on a connection of its own (while the database
    /// is down, samples are skipped).
    pub fn start(url: &str) -> Self {
        let stop = CancellationToken::new();
        let url = url.to_owned();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(1))
                .connect_lazy(&url)
                .expect("a valid database URL");
            let mut watched = Watched::default();
            while !token.is_cancelled() {
                match sqlx::query_as::<_, Sample>(SAMPLE).fetch_all(&pool).await {
                    Ok(rows) => watched.add(rows),
                    Err(e) => watched.last_error = Some(e.to_string()),
                }
                tokio::select! {
                    () = tokio::time::sleep(EVERY) => {}
                    () = token.cancelled() => {}
                }
            }
            // One last look, after whatever stopped the watch (the daemons' shutdown).
            if let Ok(rows) = sqlx::query_as::<_, Sample>(SAMPLE).fetch_all(&pool).await {
                watched.add(rows);
            }
            pool.close().await;
            watched
        });
        Watcher { stop, task }
    }

    pub async fn stop(self) -> Watched {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}
