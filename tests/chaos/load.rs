//! The intents of a scenario, and the application side: many tasks enqueueing the same intents
//! concurrently, each in its own transaction and its own order, for as long as the scenario
//! runs. Like a real application, a task retries an enqueue that failed for a database error
//! (the server restarting) until it gets an answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald::{EnqueueError, Enqueued, Notification};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::random::Random;

/// `count` webhook intents spread over the tenants of `endpoints` (an endpoint serves only its
/// own tenant's notifications).
pub fn webhook_intents(count: usize, endpoints: &[(String, Uuid)]) -> Vec<Notification> {
    (0..count)
        .map(|i| {
            let (tenant, endpoint) = &endpoints[i % endpoints.len()];
            Notification::webhook(
                format!("user-{}", i % 97),
                format!("chaos.event{}", i % 3),
                format!("order-{i}"),
                *endpoint,
            )
            .tenant(tenant.clone())
            .payload(json!({ "order": i, "lines": [i, i * 2], "note": "ünïcødé & <b>" }))
        })
        .collect()
}

/// `count` email intents, rendered with the shipped `welcome` template.
pub fn email_intents(count: usize) -> Vec<Notification> {
    (0..count)
        .map(|i| {
            Notification::email(
                format!("user-{i}"),
                "welcome",
                format!("signup-{i}"),
                format!("user{i}@example.test"),
            )
            .payload(json!({ "name": format!("User {i}") }))
        })
        .collect()
}

/// What the enqueueing tasks were told, summed over all of them.
#[derive(Debug, Default)]
pub struct Tally {
    pub created: AtomicU64,
    pub duplicate: AtomicU64,
    pub conflict: AtomicU64,
    pub invalid: AtomicU64,
    /// Database errors, each retried until the enqueue got an answer.
    pub retried: AtomicU64,
}

impl Tally {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }
}

/// `tasks` tasks, each enqueueing every intent `passes` times in its own shuffled order.
pub fn spawn_enqueuers(
    pool: PgPool,
    intents: Arc<Vec<Notification>>,
    tasks: usize,
    passes: usize,
    seed: u64,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..tasks)
        .map(|task| {
            let (pool, intents, tally) = (pool.clone(), intents.clone(), tally.clone());
            tokio::spawn(async move {
                let mut random = Random::new(seed.wrapping_add(task as u64));
                for _ in 0..passes {
                    let mut order: Vec<usize> = (0..intents.len()).collect();
                    random.shuffle(&mut order);
                    for i in order {
                        enqueue_until_answered(&pool, &intents[i], &tally).await;
                    }
                }
            })
        })
        .collect()
}

async fn enqueue_until_answered(pool: &PgPool, intent: &Notification, tally: &Tally) {
    loop {
        let counter = match herald::enqueue(pool, intent).await {
            Ok(Enqueued::Created { .. }) => &tally.created,
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
