//! The intents of a scenario, and the application side: many tasks enqueueing the same intents
//! concurrently, each in its own transaction and its own order, for as long as the scenario
//! runs (until it is told to stop). Like a real application, a task retries an enqueue that failed for a database error
//! (the server restarting) until it gets an answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald::{EnqueueError, Enqueued, Notification};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::random::Random;

/// Attempts per intent, the most herald allows. Under `endpoint-flaps` four attempts in five
/// fail (each outage fails every delivery in flight before the breaker opens, and a
/// notification lives through many outages): at that rate one intent in 10^9 runs out; at the
/// 30 % of the other scenarios, none ever will.
pub const MAX_ATTEMPTS: u32 = 100;
/// Every `DOOMED_EVERY`th webhook intent goes to an endpoint that refuses everything, with
/// `DOOMED_ATTEMPTS` attempts: it must end `dead`, and only it may.
pub const DOOMED_EVERY: usize = 50;
pub const DOOMED_ATTEMPTS: u32 = 3;

/// The intents of a scenario; `doomed[i]` says intent `i` is meant to end `dead`.
pub struct Intents {
    pub notifications: Vec<Notification>,
    pub doomed: Vec<bool>,
}

/// `count` webhook intents spread over the tenants of `endpoints` (an endpoint serves only its
/// own tenant's notifications), every `DOOMED_EVERY`th to `doomed_endpoint` (tenant `default`).
pub fn webhook_intents(
    count: usize,
    endpoints: &[(String, Uuid)],
    doomed_endpoint: Uuid,
) -> Intents {
    let doomed: Vec<bool> = (0..count)
        .map(|i| i % DOOMED_EVERY == DOOMED_EVERY - 1)
        .collect();
    let notifications = (0..count)
        .map(|i| {
            let (tenant, endpoint) = &endpoints[i % endpoints.len()];
            let (tenant, endpoint, attempts) = if doomed[i] {
                ("default", doomed_endpoint, DOOMED_ATTEMPTS)
            } else {
                (tenant.as_str(), *endpoint, MAX_ATTEMPTS)
            };
            Notification::webhook(
                format!("user-{}", i % 97),
                format!("chaos.event{}", i % 3),
                format!("order-{i}"),
                endpoint,
            )
            .tenant(tenant)
            .max_attempts(attempts)
            .payload(json!({ "order": i, "lines": [i, i * 2], "note": "ünïcødé & <b>" }))
        })
        .collect();
    Intents {
        notifications,
        doomed,
    }
}

/// `count` email intents, rendered with the shipped `welcome` template; none doomed.
pub fn email_intents(count: usize) -> Intents {
    let notifications = (0..count)
        .map(|i| {
            Notification::email(
                format!("user-{i}"),
                "welcome",
                format!("signup-{i}"),
                format!("user{i}@example.test"),
            )
            .max_attempts(MAX_ATTEMPTS)
            .payload(json!({ "name": format!("User {i}") }))
        })
        .collect();
    Intents {
        notifications,
        doomed: vec![false; count],
    }
}

/// What the enqueueing tasks were told, summed over all of them.
#[derive(Debug)]
pub struct Tally {
    /// `created` answers, per intent (by index).
    pub created: Vec<AtomicU64>,
    pub duplicate: AtomicU64,
    pub conflict: AtomicU64,
    pub invalid: AtomicU64,
    /// Database errors, each retried until the enqueue got an answer.
    pub retried: AtomicU64,
    /// Tasks that have enqueued every intent at least once.
    pub tasks_through_once: AtomicU64,
}

impl Tally {
    pub fn new(intents: usize) -> Self {
        Tally {
            created: (0..intents).map(|_| AtomicU64::new(0)).collect(),
            duplicate: AtomicU64::new(0),
            conflict: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            tasks_through_once: AtomicU64::new(0),
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }

    pub fn created_total(&self) -> u64 {
        self.created.iter().map(Self::get).sum()
    }

    /// Enqueue calls that got an answer.
    pub fn answered(&self) -> u64 {
        self.created_total()
            + Self::get(&self.duplicate)
            + Self::get(&self.conflict)
            + Self::get(&self.invalid)
    }
}

/// `tasks` tasks, each enqueueing every intent in its own shuffled order, pass after pass,
/// until `stop` is cancelled (a pass in progress is finished first).
pub fn spawn_enqueuers(
    pool: PgPool,
    intents: Arc<Vec<Notification>>,
    tasks: usize,
    seed: u64,
    tally: Arc<Tally>,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..tasks)
        .map(|task| {
            let (pool, intents, tally, stop) =
                (pool.clone(), intents.clone(), tally.clone(), stop.clone());
            tokio::spawn(async move {
                let mut random = Random::new(seed.wrapping_add(task as u64));
                let mut order: Vec<usize> = (0..intents.len()).collect();
                let mut first = true;
                while first || !stop.is_cancelled() {
                    random.shuffle(&mut order);
                    for &i in &order {
                        enqueue_until_answered(&pool, &intents[i], &tally.created[i], &tally).await;
                    }
                    if first {
                        tally.tasks_through_once.fetch_add(1, Ordering::SeqCst);
                        first = false;
                    }
                }
            })
        })
        .collect()
}

async fn enqueue_until_answered(
    pool: &PgPool,
    intent: &Notification,
    created: &AtomicU64,
    tally: &Tally,
) {
    loop {
        let counter = match herald::enqueue(pool, intent).await {
            Ok(Enqueued::Created { .. }) => created,
            Ok(Enqueued::Duplicate { .. }) => &tally.duplicate,
            Err(EnqueueError::Conflict { .. }) => &tally.conflict,
            Err(EnqueueError::Invalid { .. }) => &tally.invalid,
            Err(_) => {
                tally.retried.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        counter.fetch_add(1, Ordering::SeqCst);
        return;
    }
}
