//! Group commit: concurrent [`crate::enqueue`] calls of one process on one pool share one
//! statement and one commit.
//!
//! Each pool has at most one *leader*: a task that takes everything waiting for the pool and
//! enqueues it with one `herald._enqueue_group` statement (a single statement commits on its
//! own), answers every caller, and goes on while callers keep arriving. A caller that finds no
//! leader starts one.
//!
//! Invariants:
//! - Every caller gets what a lone enqueue would have told it. A group of one runs the single
//!   enqueue's statement. Whatever the leader cannot settle as a group (a group that fails for
//!   any reason: one item refused, a key held by another transaction, no connection) it hands
//!   back, and each of those callers enqueues on its own, concurrently, as a lone enqueue does. The one
//!   visible difference: an item of a group that committed but whose answer was lost comes back
//!   `Duplicate` of the notification that group made, as any replay would.
//! - The leader never waits long: a group gives up on a key another transaction holds after
//!   `lock_timeout` (50 ms, in `herald._enqueue_group`), well before PostgreSQL would look for
//!   a deadlock. A group holds every key it inserted while it waits, so waiting longer could
//!   deadlock an application transaction that enqueues one of them, or hold up every caller
//!   behind it.
//! - A caller that gives up (its future dropped) before its group is sent is left out of it.
//! - A group holds items with one payload limit only (`herald.enqueue_many` takes one).
//! - Pools are told apart by their connect options: the entry of a running leader holds that
//!   `Arc`, so no other pool's options can take its address meanwhile, and items go only to the
//!   pool their caller named.
//! - However the leader ends (done, panicked, dropped with its runtime), its entry goes with it
//!   and the callers still waiting enqueue on their own: no pool is ever left without a leader.
//! - Enqueues in a caller's transaction (`&mut *tx`) never come here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::oneshot;

use super::{Enqueued, decide, enqueue_validated, enqueued};
use crate::error::EnqueueError;
use crate::notification::Validated;
use crate::store::enqueue as sql;

/// Items per statement at most: a statement as large as the library's own batches.
const MAX_GROUP: usize = 1000;

/// A pool (by the address of its connect options) and a payload limit.
type GroupKey = (usize, usize);

/// What the leader tells a caller.
enum Answer {
    Settled(Result<Enqueued, EnqueueError>),
    /// Enqueue on your own.
    Alone,
}

struct Waiter {
    item: Arc<Validated>,
    reply: oneshot::Sender<Answer>,
}

/// A running leader's queue.
struct Group {
    /// Which leader runs it: one that ended removes its own entry only.
    leader: u64,
    /// Kept alive so that its address, the key, stays this pool's.
    _options: Arc<PgConnectOptions>,
    waiting: Vec<Waiter>,
}

static LEADERS: AtomicU64 = AtomicU64::new(0);

/// A key is present exactly while its leader runs.
static GROUPS: LazyLock<Mutex<HashMap<GroupKey, Group>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn groups() -> std::sync::MutexGuard<'static, HashMap<GroupKey, Group>> {
    // Every change under the lock is one call that cannot panic halfway.
    GROUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Enqueues `item` on `pool` together with whatever other callers of this process enqueue on
/// it meanwhile.
pub(super) async fn enqueue(pool: &PgPool, item: Validated) -> Result<Enqueued, EnqueueError> {
    let item = Arc::new(item);
    // Without a runtime there is no leader to start: the lone enqueue says what is wrong.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return alone(pool, &item).await;
    };
    let options = pool.connect_options();
    let key: GroupKey = (Arc::as_ptr(&options) as usize, item.max_payload_bytes);
    let (reply, answer) = oneshot::channel();
    let waiter = Waiter {
        item: item.clone(),
        reply,
    };
    let lead = {
        let mut groups = groups();
        match groups.get_mut(&key) {
            Some(group) => {
                group.waiting.push(waiter);
                None
            }
            None => {
                let leader = Leader {
                    key,
                    id: LEADERS.fetch_add(1, Ordering::Relaxed),
                };
                groups.insert(
                    key,
                    Group {
                        leader: leader.id,
                        _options: options,
                        waiting: vec![waiter],
                    },
                );
                Some(leader)
            }
        }
    };
    if let Some(leader) = lead {
        runtime.spawn(leader.run(pool.clone()));
    }
    match answer.await {
        Ok(Answer::Settled(result)) => result,
        // Handed back, or the leader ended without answering.
        Ok(Answer::Alone) | Err(_) => alone(pool, &item).await,
    }
}

/// The leader of one key; dropping it (at the end, in a panic, with its runtime) removes the
/// key, and the callers still waiting then enqueue on their own.
struct Leader {
    key: GroupKey,
    id: u64,
}

impl Drop for Leader {
    fn drop(&mut self) {
        // Their senders are dropped with the entry: each caller goes on alone.
        let mut groups = groups();
        if groups.get(&self.key).is_some_and(|g| g.leader == self.id) {
            groups.remove(&self.key);
        }
    }
}

impl Leader {
    async fn run(self, pool: PgPool) {
        while let Some(group) = self.next_group() {
            settle(&pool, group).await;
        }
    }

    /// The next group: everyone waiting whose caller has not given up, at most [`MAX_GROUP`].
    /// `None` when nobody waits: the entry is gone then, under the same lock, so a caller
    /// arriving next starts a leader of its own.
    fn next_group(&self) -> Option<Vec<Waiter>> {
        let mut groups = groups();
        let group = groups.get_mut(&self.key).filter(|g| g.leader == self.id)?;
        group.waiting.retain(|w| !w.reply.is_closed());
        if group.waiting.is_empty() {
            groups.remove(&self.key);
            return None;
        }
        let take = group.waiting.len().min(MAX_GROUP);
        Some(group.waiting.drain(..take).collect())
    }
}

/// One statement for the group, or every caller back to enqueue on its own.
async fn settle(pool: &PgPool, group: Vec<Waiter>) {
    let results = match &group[..] {
        [one] => by_itself(pool, &one.item).await.map(|result| vec![result]),
        _ => together(pool, &group).await,
    };
    match results {
        Some(results) => {
            for (waiter, result) in group.into_iter().zip(results) {
                let _ = waiter.reply.send(Answer::Settled(result));
            }
        }
        None => {
            for waiter in group {
                let _ = waiter.reply.send(Answer::Alone);
            }
        }
    }
}

/// The group in one statement, or `None` when that failed (and wrote nothing).
async fn together(pool: &PgPool, group: &[Waiter]) -> Option<Vec<Result<Enqueued, EnqueueError>>> {
    let items: Vec<&Validated> = group.iter().map(|w| &*w.item).collect();
    let mut conn = pool.acquire().await.ok()?;
    // The process's wake-up window, as a lone enqueue claims it; a group that created nothing
    // gives it back.
    let wake_claim = crate::wake::claim_window();
    let rows = sql::enqueue_group(&mut conn, &items, wake_claim.is_some())
        .await
        .ok()?;
    if rows.len() != items.len() {
        return None;
    }
    if let Some(claim) = wake_claim
        && rows.iter().any(|row| row.status == "created")
    {
        claim.keep();
    }
    Some(rows.into_iter().map(enqueued).collect())
}

/// A group of one: the single enqueue's statement, with the group's short wait on a held key;
/// `None` when it failed (a refusal is a result, not a failure).
async fn by_itself(pool: &PgPool, item: &Validated) -> Option<Result<Enqueued, EnqueueError>> {
    let mut conn = pool.acquire().await.ok()?;
    let wake_claim = crate::wake::claim_window();
    let decision = sql::enqueue_one_in_group(&mut conn, item, wake_claim.is_some())
        .await
        .ok()?;
    if let Some(claim) = wake_claim
        && decision.status == "created"
    {
        claim.keep();
    }
    Some(decide(item, decision))
}

/// One item on its own connection: the lone enqueue.
async fn alone(pool: &PgPool, item: &Validated) -> Result<Enqueued, EnqueueError> {
    let mut conn = pool.acquire().await?;
    enqueue_validated(&mut conn, item).await
}
