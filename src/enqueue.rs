//! `enqueue` and `enqueue_many`: idempotent, transactional (outbox) enqueue.
//!
//! Invariants:
//! - Dedup is the `notifications_key` UNIQUE constraint: `INSERT … ON CONFLICT DO NOTHING`, and
//!   a read of the existing row only when the insert wrote nothing. Duplicates write nothing.
//! - Same key, equal fingerprint: `Duplicate` of the existing notification. Different
//!   fingerprint: `Conflict` naming the existing id; nothing changes. The fingerprint is
//!   computed and compared by PostgreSQL (`herald.fingerprint()`), the same function the SQL
//!   `herald.enqueue(...)` uses, so every client agrees on what a replay is.
//! - Bad input is refused as `Invalid` before any SQL runs (see `notification`), except what
//!   only the database knows (an unknown or disabled webhook endpoint), which is refused without
//!   writing.
//! - `enqueue_many` is all or nothing: it runs in a transaction (a savepoint inside the caller's),
//!   rolled back if any item is refused, with one insert statement for the whole batch.
//! - Both join the caller's transaction when given `&mut *tx`: a rollback leaves no row.

use std::collections::HashMap;

use futures_util::future::BoxFuture;
use sqlx::{Acquire, PgConnection, Postgres};
use uuid::Uuid;

use crate::notification::{Key, Limits, Notification, Validated};
use crate::state::State;
use crate::store::enqueue::{self as sql, EndpointStatus, Existing};
use crate::wake;

/// What an enqueue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A new notification was written; it is delivered once the transaction commits.
    #[non_exhaustive]
    Created { id: Uuid, state: State },
    /// The same intent was already enqueued: nothing was written. `state` is the existing one's.
    #[non_exhaustive]
    Duplicate { id: Uuid, state: State },
}

impl Enqueued {
    /// The notification's id, which is also its delivery id.
    pub fn id(&self) -> Uuid {
        match self {
            Enqueued::Created { id, .. } | Enqueued::Duplicate { id, .. } => *id,
        }
    }

    pub fn state(&self) -> State {
        match self {
            Enqueued::Created { state, .. } | Enqueued::Duplicate { state, .. } => *state,
        }
    }

    pub fn is_created(&self) -> bool {
        matches!(self, Enqueued::Created { .. })
    }
}

/// Why an enqueue was refused. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    /// Bad input; `field` names it (`tenant`, `user_id`, `type`, `business_id`, `email`,
    /// `endpoint`, `payload`, `max_attempts`, `run_at`; `batch` for two items of one
    /// `enqueue_many` that share a key but not an intent). Batch messages end with the item's index.
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The key is held by a notification with a different channel, destination or payload.
    #[error("conflict: key {key} is held by notification {existing_id} with a different {differs}")]
    Conflict {
        existing_id: Uuid,
        key: Box<Key>,
        /// `"channel"`, `"destination"` or `"payload"`: the first that differs.
        differs: &'static str,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// How often an enqueue re-tries a key whose conflicting row vanished between the insert and
/// the read (swept in between). The second try always settles it; the bound is a safeguard.
const MAX_PASSES: usize = 3;

/// Enqueues one notification with the default [`Limits`].
///
/// `conn` is `&mut *tx` (joins the caller's transaction) or `&pool`.
pub fn enqueue<'a, A>(
    conn: A,
    notification: &'a Notification,
) -> BoxFuture<'a, Result<Enqueued, EnqueueError>>
where
    A: Acquire<'a, Database = Postgres> + Send + 'a,
{
    Box::pin(enqueue_one(conn, notification, Limits::default()))
}

/// [`enqueue`] with explicit limits.
pub fn enqueue_with_limits<'a, A>(
    conn: A,
    notification: &'a Notification,
    limits: &Limits,
) -> BoxFuture<'a, Result<Enqueued, EnqueueError>>
where
    A: Acquire<'a, Database = Postgres> + Send + 'a,
{
    Box::pin(enqueue_one(conn, notification, *limits))
}

/// Enqueues a batch with the default [`Limits`]: one insert statement for all of it, results
/// in input order. Repeats of a key inside the batch resolve to one notification.
pub fn enqueue_many<'a, A>(
    conn: A,
    notifications: &'a [Notification],
) -> BoxFuture<'a, Result<Vec<Enqueued>, EnqueueError>>
where
    A: Acquire<'a, Database = Postgres> + Send + 'a,
{
    Box::pin(enqueue_batch(conn, notifications, Limits::default()))
}

/// [`enqueue_many`] with explicit limits.
pub fn enqueue_many_with_limits<'a, A>(
    conn: A,
    notifications: &'a [Notification],
    limits: &Limits,
) -> BoxFuture<'a, Result<Vec<Enqueued>, EnqueueError>>
where
    A: Acquire<'a, Database = Postgres> + Send + 'a,
{
    Box::pin(enqueue_batch(conn, notifications, *limits))
}

// The public functions return boxed futures so that their `Send`-ness is proven here, once,
// for every `Acquire` implementation: an `async fn` generic over `Acquire<'a>` trips rustc's
// "implementation of `Acquire` is not general enough" when awaited inside `tokio::spawn`.
async fn enqueue_one<'a, A>(
    conn: A,
    notification: &'a Notification,
    limits: Limits,
) -> Result<Enqueued, EnqueueError>
where
    A: Acquire<'a, Database = Postgres> + Send + 'a,
{
    let item = notification.validate(&limits)?;
    let mut conn = conn.acquire().await?;
    for _ in 0..MAX_PASSES {
        // Claimed before the insert, so that concurrent enqueues do not all notify; a replay
        // (nothing created) drops the claim, which gives the window back.
        let wake_claim = wake::claim_window();
        if let Some(state) = sql::insert_one(&mut conn, &item, wake_claim.is_some()).await? {
            if let Some(claim) = wake_claim {
                claim.keep();
            }
            return Ok(Enqueued::Created { id: item.id, state });
        }
        drop(wake_claim);
        let found = sql::find_existing(&mut conn, &item).await?;
        if let Some(settled) = settle(&item, found.existing, &found.endpoint) {
            return settled;
        }
    }
    Err(unsettled(&item.key))
}

async fn enqueue_batch<'a, A>(
    conn: A,
    notifications: &'a [Notification],
    limits: Limits,
) -> Result<Vec<Enqueued>, EnqueueError>
where
    A: Acquire<'a, Database = Postgres> + Send + 'a,
{
    let items = notifications
        .iter()
        .enumerate()
        .map(|(i, n)| n.validate(&limits).map_err(|e| in_item(i, e)))
        .collect::<Result<Vec<_>, _>>()?;
    if items.is_empty() {
        return Ok(Vec::new());
    }
    // The first occurrence of each key represents it in the insert; repeats copy its result.
    let mut first_of_key: HashMap<&Key, usize> = HashMap::new();
    let representative: Vec<usize> = items
        .iter()
        .enumerate()
        .map(|(i, item)| *first_of_key.entry(&item.key).or_insert(i))
        .collect();

    let mut tx = conn.begin().await?;
    let settled = settle_batch(&mut tx, &items, &representative).await;
    match settled {
        Ok(results) => {
            tx.commit().await?;
            Ok(results)
        }
        Err(error) => {
            tx.rollback().await?;
            Err(error)
        }
    }
}

async fn settle_batch(
    conn: &mut PgConnection,
    items: &[Validated],
    representative: &[usize],
) -> Result<Vec<Enqueued>, EnqueueError> {
    let mut results: Vec<Option<Result<Enqueued, EnqueueError>>> =
        (0..items.len()).map(|_| None).collect();
    let mut pending: Vec<usize> = (0..items.len())
        .filter(|&i| representative[i] == i)
        .collect();
    for _ in 0..MAX_PASSES {
        if pending.is_empty() {
            break;
        }
        let batch: Vec<&Validated> = pending.iter().map(|&i| &items[i]).collect();
        let wake_claim = wake::claim_window();
        let rows = sql::insert_batch(conn, &batch, wake_claim.is_some()).await?;
        if let Some(claim) = wake_claim
            && rows.iter().any(|row| row.created.is_some())
        {
            claim.keep();
        }
        let mut still_pending = Vec::new();
        for (row, &i) in rows.into_iter().zip(&pending) {
            let item = &items[i];
            match row.created {
                Some(state) => results[i] = Some(Ok(Enqueued::Created { id: item.id, state })),
                None => match settle(item, row.existing, &row.endpoint) {
                    Some(settled) => results[i] = Some(settled.map_err(|e| in_item(i, e))),
                    None => still_pending.push(i),
                },
            }
        }
        pending = still_pending;
    }
    if let Some(&i) = pending.first() {
        return Err(unsettled(&items[i].key));
    }
    // Repeats inside the batch: the same intent is a duplicate of its representative, a
    // different one conflicts with it. The representative's own error is reported, earlier in
    // input order.
    let repeats: Vec<usize> = (0..items.len())
        .filter(|&i| representative[i] != i && matches!(results[representative[i]], Some(Ok(_))))
        .collect();
    let same = if repeats.is_empty() {
        Vec::new()
    } else {
        let pairs: Vec<(&Validated, &Validated)> = repeats
            .iter()
            .map(|&i| (&items[i], &items[representative[i]]))
            .collect();
        sql::same_intents(conn, &pairs).await?
    };
    for (&i, same_intent) in repeats.iter().zip(same) {
        let rep = representative[i];
        let rep_result = match &results[rep] {
            Some(Ok(done)) => done.clone(),
            _ => continue,
        };
        let item = &items[i];
        let what = differs(item, items[rep].channel.as_str(), &items[rep].destination);
        results[i] = Some(match rep_result {
            _ if same_intent => Ok(Enqueued::Duplicate {
                id: rep_result.id(),
                state: rep_result.state(),
            }),
            // The key was already held before this batch: a conflict with that notification.
            Enqueued::Duplicate { id, .. } => Err(conflict(item, id, what)),
            // Both intents are new: there is no existing notification to name.
            Enqueued::Created { .. } => Err(EnqueueError::Invalid {
                field: "batch",
                message: format!(
                    "items {rep} and {i} share the key {} but differ in {what}",
                    item.key
                ),
            }),
        });
    }
    // The first refusal in input order fails the whole batch.
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(unsettled(&items[0].key))))
        .collect()
}

/// Says which batch item an `Invalid` is about.
fn in_item(index: usize, error: EnqueueError) -> EnqueueError {
    match error {
        EnqueueError::Invalid { field, message } => EnqueueError::Invalid {
            field,
            message: format!("{message} (item {index})"),
        },
        other => other,
    }
}

/// Decides an insert that wrote nothing: `None` when the key's row vanished in between and the
/// insert should be tried again.
fn settle(
    item: &Validated,
    existing: Option<Existing>,
    endpoint: &EndpointStatus,
) -> Option<Result<Enqueued, EnqueueError>> {
    if let Some(existing) = existing {
        return Some(if existing.same_intent {
            Ok(Enqueued::Duplicate {
                id: existing.id,
                state: existing.state,
            })
        } else {
            let what = differs(item, &existing.channel, &existing.destination);
            Err(conflict(item, existing.id, what))
        });
    }
    let endpoint_id = item
        .endpoint_id
        .map(|id| id.to_string())
        .unwrap_or_default();
    match endpoint {
        EndpointStatus::Missing => Some(Err(EnqueueError::Invalid {
            field: "endpoint",
            message: format!(
                "webhook endpoint {endpoint_id} does not exist for tenant {:?}",
                item.key.tenant
            ),
        })),
        EndpointStatus::Disabled(reason) => Some(Err(EnqueueError::Invalid {
            field: "endpoint",
            message: format!("webhook endpoint {endpoint_id} is disabled: {reason}"),
        })),
        EndpointStatus::Enabled | EndpointStatus::NotWebhook => None,
    }
}

/// Which part of the intent differs from the existing notification's.
fn differs(item: &Validated, channel: &str, destination: &str) -> &'static str {
    if item.channel.as_str() != channel {
        "channel"
    } else if item.destination != destination {
        "destination"
    } else {
        "payload"
    }
}

fn conflict(item: &Validated, existing_id: Uuid, differs: &'static str) -> EnqueueError {
    EnqueueError::Conflict {
        existing_id,
        key: Box::new(item.key.clone()),
        differs,
    }
}

/// Unreachable in practice (see [`MAX_PASSES`]); reported rather than looping forever.
fn unsettled(key: &Key) -> EnqueueError {
    EnqueueError::Database(sqlx::Error::Protocol(format!(
        "enqueue of key {key} did not settle after {MAX_PASSES} attempts"
    )))
}
