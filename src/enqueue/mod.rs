//! `enqueue` and `enqueue_many`: idempotent, transactional (outbox) enqueue.
//!
//! Invariants:
//! - Dedup is the `notifications_key` UNIQUE constraint: `INSERT … ON CONFLICT DO NOTHING`, and
//!   a read of the existing row only when the insert wrote nothing. Duplicates write nothing.
//! - Same key, equal fingerprint: `Duplicate` of the existing notification. Different
//!   fingerprint: `Conflict` naming the existing id; nothing changes.
//! - The library enqueues through the SQL entry points every language uses
//!   (`store::enqueue`): the database validates, fingerprints and decides, so an application
//!   needs no right on herald's tables, and no client can disagree with another about what a
//!   replay is. The library validates first too, for errors before any round trip, and refuses
//!   alike with the same messages.
//! - A refused `enqueue` leaves the caller's transaction usable: its refusal comes back as a
//!   row, not an error.
//! - `enqueue_many` is all or nothing: it runs in a transaction (a savepoint inside the caller's),
//!   rolled back if any item is refused, with one statement for the whole batch.
//! - Both join the caller's transaction when given `&mut *tx`: a rollback leaves no row.
//! - Behind a transaction-mode pooler ([`crate::set_transaction_pooling`]) their statements are
//!   unnamed; in the caller's transaction they stay in it, on `&pool` they run in one of their
//!   own (`crate::pooling`), group commits included.
//! - `enqueue(&pool, …)` calls of one process that overlap share a statement and a commit
//!   ([`group_commit`]); each caller still gets exactly its own result.

mod group_commit;
pub(crate) mod refusal;

use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::{Acquire, PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::error::EnqueueError;
use crate::notification::{Limits, Notification, Validated};
use crate::state::State;
use crate::store::enqueue::{self as sql, Decision, EnqueueRow};
use crate::wake;
use refusal::Refusal;

/// Where [`enqueue`] runs: `&pool` (a transaction of its own; calls that overlap share one
/// statement and one commit), or a connection: `&mut *tx` (the caller's transaction), `&mut tx`,
/// `&mut conn`. Implemented for those and nothing else.
pub trait EnqueueTarget<'a>: Acquire<'a, Database = Postgres> + Send + 'a + sealed::Sealed {
    /// The pool, when the enqueue runs on one (and may join others).
    #[doc(hidden)]
    fn pool(&self) -> Option<&PgPool> {
        None
    }
}

mod sealed {
    pub trait Sealed {}
}

impl sealed::Sealed for &PgPool {}
impl<'a> EnqueueTarget<'a> for &'a PgPool {
    fn pool(&self) -> Option<&PgPool> {
        Some(self)
    }
}
impl sealed::Sealed for &mut PgConnection {}
impl<'a> EnqueueTarget<'a> for &'a mut PgConnection {}
impl sealed::Sealed for &mut Transaction<'_, Postgres> {}
impl<'a> EnqueueTarget<'a> for &'a mut Transaction<'_, Postgres> {}
impl sealed::Sealed for &mut PoolConnection<Postgres> {}
impl<'a> EnqueueTarget<'a> for &'a mut PoolConnection<Postgres> {}

/// What an enqueue did.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), herald::EnqueueError> {
/// let n = herald::Notification::email("user-42", "welcome", "signup-42", "ann@example.com");
/// match herald::enqueue(&pool, &n).await? {
///     herald::Enqueued::Created { id, .. } => println!("new notification {id}"),
///     herald::Enqueued::Duplicate { id, state, .. } => println!("replay of {id}, {state}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A new notification was written; it is delivered once the transaction commits.
    #[non_exhaustive]
    Created {
        /// The new notification's id.
        id: Uuid,
        /// Its state: `pending`.
        state: State,
    },
    /// The same intent was already enqueued: nothing was written.
    #[non_exhaustive]
    Duplicate {
        /// The existing notification's id.
        id: Uuid,
        /// The existing notification's state.
        state: State,
    },
}

impl Enqueued {
    /// The notification's id, which is also its delivery id (`webhook-id`, the email's
    /// `Message-ID`).
    ///
    /// ```no_run
    /// # async fn demo(pool: sqlx::PgPool) -> Result<(), herald::EnqueueError> {
    /// let n = herald::Notification::email("user-42", "welcome", "signup-42", "ann@example.com");
    /// let first = herald::enqueue(&pool, &n).await?;
    /// let again = herald::enqueue(&pool, &n).await?;
    /// assert_eq!(first.id(), again.id());
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> Uuid {
        match self {
            Enqueued::Created { id, .. } | Enqueued::Duplicate { id, .. } => *id,
        }
    }

    /// The notification's state: `pending` when created, the existing one's for a duplicate.
    ///
    /// ```no_run
    /// # async fn demo(pool: sqlx::PgPool) -> Result<(), herald::EnqueueError> {
    /// let n = herald::Notification::email("user-42", "welcome", "signup-42", "ann@example.com");
    /// let done = herald::enqueue(&pool, &n).await?;
    /// println!("{} is {}", done.id(), done.state());
    /// # Ok(()) }
    /// ```
    pub fn state(&self) -> State {
        match self {
            Enqueued::Created { state, .. } | Enqueued::Duplicate { state, .. } => *state,
        }
    }

    /// Whether this call wrote the notification (`false` for a replay).
    ///
    /// ```no_run
    /// # async fn demo(pool: sqlx::PgPool) -> Result<(), herald::EnqueueError> {
    /// let n = herald::Notification::email("user-42", "welcome", "signup-42", "ann@example.com");
    /// if !herald::enqueue(&pool, &n).await?.is_created() {
    ///     println!("already enqueued: a replay");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_created(&self) -> bool {
        matches!(self, Enqueued::Created { .. })
    }
}

/// Enqueues one notification with the default [`Limits`].
///
/// `conn` is `&mut *tx` (joins the caller's transaction: a rollback leaves no notification) or
/// `&pool` (its own transaction). A replay of the same intent is [`Enqueued::Duplicate`]; the
/// same key with a different channel, destination or payload is [`EnqueueError::Conflict`]. A
/// refusal leaves the caller's transaction usable.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let mut tx = pool.begin().await?;
/// // … the application's own writes in `tx` …
/// let n = herald::Notification::email("user-42", "order_shipped", "order-1001", "ann@example.com")
///     .payload(serde_json::json!({ "order": "1001" }));
/// let first = herald::enqueue(&mut *tx, &n).await?;
/// let again = herald::enqueue(&mut *tx, &n).await?;
/// assert_eq!(first.id(), again.id());
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub fn enqueue<'a, A>(
    conn: A,
    notification: &'a Notification,
) -> BoxFuture<'a, Result<Enqueued, EnqueueError>>
where
    A: EnqueueTarget<'a>,
{
    Box::pin(enqueue_one(conn, notification, Limits::default()))
}

/// [`enqueue`] with explicit limits (the daemon's `[limits]` configuration, for example).
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), herald::EnqueueError> {
/// let limits = herald::Limits { max_payload_bytes: 16 * 1024 };
/// let n = herald::Notification::email("user-42", "welcome", "signup-42", "ann@example.com");
/// herald::enqueue_with_limits(&pool, &n, &limits).await?;
/// # Ok(()) }
/// ```
pub fn enqueue_with_limits<'a, A>(
    conn: A,
    notification: &'a Notification,
    limits: &Limits,
) -> BoxFuture<'a, Result<Enqueued, EnqueueError>>
where
    A: EnqueueTarget<'a>,
{
    Box::pin(enqueue_one(conn, notification, *limits))
}

/// Enqueues a batch with the default [`Limits`]: one insert statement for all of it, results
/// in input order. Repeats of a key inside the batch resolve to one notification. All or
/// nothing: if any item is refused, none is written, and the error names the item's index.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), herald::EnqueueError> {
/// let batch: Vec<_> = ["ann@example.com", "bob@example.com"]
///     .iter()
///     .map(|to| herald::Notification::email(*to, "digest", "2026-12-05", *to))
///     .collect();
/// let results = herald::enqueue_many(&pool, &batch).await?;
/// assert_eq!(results.len(), 2);
/// # Ok(()) }
/// ```
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
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool, batch: Vec<herald::Notification>) -> Result<(), herald::EnqueueError> {
/// let limits = herald::Limits { max_payload_bytes: 16 * 1024 };
/// herald::enqueue_many_with_limits(&pool, &batch, &limits).await?;
/// # Ok(()) }
/// ```
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
    A: EnqueueTarget<'a>,
{
    let item = notification.validate(&limits)?;
    if let Some(pool) = conn.pool() {
        return group_commit::enqueue(pool, item).await;
    }
    let mut conn = conn.acquire().await?;
    // Only transaction pooling wraps a single enqueue in a transaction of herald's own.
    if crate::pooling::transaction_pooling() {
        refuse_foreign_transaction(&mut conn).await?;
    }
    enqueue_validated(&mut conn, &item).await
}

/// Refuses a connection inside a transaction that sqlx did not open (a plain `BEGIN` sent as
/// SQL), where herald would otherwise begin and commit a transaction of its own and so commit
/// the caller's writes early. Nothing is written; the caller's transaction stays usable.
async fn refuse_foreign_transaction(conn: &mut PgConnection) -> Result<(), EnqueueError> {
    if crate::pooling::in_foreign_transaction(conn).await? {
        return Err(EnqueueError::Database(sqlx::Error::Configuration(
            "the connection is inside a transaction opened with a plain BEGIN, which herald \
             cannot join: open it with sqlx (`conn.begin()`) and pass `&mut *tx`"
                .into(),
        )));
    }
    Ok(())
}

/// Enqueues one validated notification on `conn`.
async fn enqueue_validated(
    conn: &mut PgConnection,
    item: &Validated,
) -> Result<Enqueued, EnqueueError> {
    // Claimed before the call, so that concurrent enqueues of this process do not all notify;
    // one that created nothing gives the window back.
    let wake_claim = wake::claim_window();
    let decision = sql::enqueue_one(conn, item, wake_claim.is_some())
        .await
        .map_err(|e| refusal(e, std::slice::from_ref(item)))?;
    if let Some(claim) = wake_claim
        && decision.status == "created"
    {
        claim.keep();
    }
    decide(item, decision)
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
    let mut conn = conn.acquire().await?;
    refuse_foreign_transaction(&mut conn).await?;
    let mut tx = crate::pooling::begin(&mut conn).await?;
    match sql::enqueue_many(&mut tx, &items).await {
        Ok(rows) => {
            tx.commit().await?;
            rows.into_iter().map(enqueued).collect()
        }
        Err(error) => {
            tx.rollback().await?;
            Err(refusal(error, &items))
        }
    }
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

fn decide(item: &Validated, decision: Decision) -> Result<Enqueued, EnqueueError> {
    let field = decision.field.as_deref().unwrap_or_default();
    match (decision.status.as_str(), decision.id, decision.state) {
        ("conflict", Some(existing_id), _) => Err(EnqueueError::Conflict {
            existing_id,
            key: Box::new(item.key.clone()),
            differs: known_field(field),
        }),
        ("invalid", _, _) => Err(EnqueueError::Invalid {
            field: known_field(field),
            message: decision.message.unwrap_or_default(),
        }),
        (status, Some(id), Some(state)) => enqueued(EnqueueRow {
            id,
            status: status.to_owned(),
            state,
        }),
        (status, ..) => Err(unexpected(format!(
            "enqueue decided {status:?} without a row"
        ))),
    }
}

fn enqueued(row: EnqueueRow) -> Result<Enqueued, EnqueueError> {
    let state: State = row
        .state
        .parse()
        .map_err(|e| EnqueueError::Database(sqlx::Error::Decode(Box::new(e))))?;
    match row.status.as_str() {
        "created" => Ok(Enqueued::Created { id: row.id, state }),
        "duplicate" => Ok(Enqueued::Duplicate { id: row.id, state }),
        other => Err(unexpected(format!("enqueue returned status {other:?}"))),
    }
}

/// Turns the SQL functions' refusals (`HR001` invalid, `HR002` conflict) into the library's
/// errors; anything else stays a database error.
fn refusal(error: sqlx::Error, items: &[Validated]) -> EnqueueError {
    match refusal::classify(error) {
        Refusal::Invalid { field, message, .. } => EnqueueError::Invalid {
            field: known_field(&field),
            message,
        },
        Refusal::Conflict {
            existing_id,
            differs,
            item,
            ..
        } => EnqueueError::Conflict {
            existing_id,
            key: Box::new(
                items
                    .get(item.unwrap_or(0))
                    .map(|item| item.key.clone())
                    .unwrap_or_else(|| items[0].key.clone()),
            ),
            differs: known_field(&differs),
        },
        Refusal::Database(error) => EnqueueError::Database(error),
    }
}

/// The fields the SQL functions name, as the `&'static str` of `EnqueueError`.
fn known_field(name: &str) -> &'static str {
    const FIELDS: [&str; 17] = [
        "tenant",
        "user_id",
        "type",
        "business_id",
        "destination",
        "email",
        "webhook",
        "endpoint",
        "payload",
        "run_at",
        "max_attempts",
        "max_payload_bytes",
        "batch",
        "notifications",
        "channel",
        "input",
        "key",
    ];
    FIELDS
        .into_iter()
        .find(|known| *known == name)
        .unwrap_or("input")
}

fn unexpected(message: String) -> EnqueueError {
    EnqueueError::Database(sqlx::Error::Protocol(message))
}
