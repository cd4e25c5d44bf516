//! Group commit: concurrent [`crate::enqueue`] calls of one process on one pool share one
//! statement and one commit.
//!
//! Each pool has at most one *leader*: a task that takes everything waiting for the pool, enqueues
//! it with one `herald.enqueue_many` statement (a single statement commits on its own), answers
//! every caller, and goes on while callers keep arriving. A caller that finds no leader starts
//! one. The leader is a task of its own, so a caller that gives up waiting (its future dropped)
//! stops no one else's enqueue.
//!
//! Invariants:
//! - Every caller gets what a lone enqueue would have told it. A batch that fails for any
//!   reason (one item refused, a deadlock with another process, a lost connection) is rolled
//!   back whole, and each of its items is enqueued again on its own. The one visible
//!   difference: an item of a batch that committed but whose answer was lost comes back
//!   `Duplicate` of the notification that batch made, as any replay would.
//! - A batch holds only items with the same payload limit (`herald.enqueue_many` takes one), and
//!   a lone item goes through the single enqueue: no batch statement for one notification.
//! - Pools are told apart by their connect options (one `Arc` per pool, kept alive by the leader's
//!   clone of the pool), so items go only to the pool their caller named.
//! - Enqueues in a caller's transaction (`&mut *tx`) never come here.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use sqlx::PgPool;
use tokio::sync::oneshot;

use super::{Enqueued, enqueue_validated, enqueued};
use crate::error::EnqueueError;
use crate::notification::Validated;
use crate::store::enqueue as sql;

/// Items per statement at most: a statement as large as the library's own batches.
const MAX_BATCH: usize = 1000;

/// A pool (by the address of its connect options) and a payload limit.
type GroupKey = (usize, usize);

struct Waiter {
    item: Validated,
    reply: oneshot::Sender<Result<Enqueued, EnqueueError>>,
}

/// The items waiting for each leader. A key is present exactly while its leader runs.
static WAITING: LazyLock<Mutex<HashMap<GroupKey, Vec<Waiter>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn waiting() -> std::sync::MutexGuard<'static, HashMap<GroupKey, Vec<Waiter>>> {
    // A panic while holding the lock leaves the map consistent: every change is one call.
    WAITING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Enqueues `item` on `pool` together with whatever other callers of this process enqueue on
/// it meanwhile.
pub(super) async fn enqueue(pool: &PgPool, item: Validated) -> Result<Enqueued, EnqueueError> {
    let key: GroupKey = (
        Arc::as_ptr(&pool.connect_options()) as usize,
        item.max_payload_bytes,
    );
    let (reply, answer) = oneshot::channel();
    let lead = {
        let mut waiting = waiting();
        match waiting.get_mut(&key) {
            Some(queue) => {
                queue.push(Waiter { item, reply });
                false
            }
            None => {
                waiting.insert(key, vec![Waiter { item, reply }]);
                true
            }
        }
    };
    if lead {
        tokio::spawn(lead_group(pool.clone(), key));
    }
    answer.await.unwrap_or_else(|_| {
        Err(EnqueueError::Database(sqlx::Error::Protocol(
            "the group commit's leader stopped before answering".into(),
        )))
    })
}

/// Runs batches for `key` until nobody waits.
async fn lead_group(pool: PgPool, key: GroupKey) {
    loop {
        let batch: Vec<Waiter> = {
            let mut waiting = waiting();
            let Some(queue) = waiting.get_mut(&key) else {
                return;
            };
            if queue.is_empty() {
                waiting.remove(&key);
                return;
            }
            let take = queue.len().min(MAX_BATCH);
            queue.drain(..take).collect()
        };
        run_batch(&pool, batch).await;
    }
}

async fn run_batch(pool: &PgPool, batch: Vec<Waiter>) {
    if batch.len() > 1
        && let Some(results) = together(pool, &batch).await
    {
        for (waiter, result) in batch.into_iter().zip(results) {
            let _ = waiter.reply.send(result);
        }
        return;
    }
    for waiter in batch {
        let result = alone(pool, &waiter.item).await;
        let _ = waiter.reply.send(result);
    }
}

/// All of the batch in one statement, or `None` when that failed (and wrote nothing).
async fn together(pool: &PgPool, batch: &[Waiter]) -> Option<Vec<Result<Enqueued, EnqueueError>>> {
    let items: Vec<Validated> = batch.iter().map(|w| w.item.clone()).collect();
    let mut conn = pool.acquire().await.ok()?;
    let rows = sql::enqueue_many(&mut conn, &items).await.ok()?;
    if rows.len() != items.len() {
        return None;
    }
    Some(rows.into_iter().map(enqueued).collect())
}

/// One item on its own connection, as a lone enqueue would run.
async fn alone(pool: &PgPool, item: &Validated) -> Result<Enqueued, EnqueueError> {
    let mut conn = pool.acquire().await?;
    enqueue_validated(&mut conn, item).await
}
