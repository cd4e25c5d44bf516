//! The library's error: why an enqueue was refused.

use uuid::Uuid;

use crate::key::Key;

/// Why an enqueue was refused. Nothing was written in any case.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) {
/// let n = herald::Notification::email("user-42", "welcome", "signup-42", "not an address");
/// match herald::enqueue(&pool, &n).await {
///     Err(herald::EnqueueError::Invalid { field, message }) => eprintln!("{field}: {message}"),
///     Err(herald::EnqueueError::Conflict { existing_id, differs, .. }) => {
///         eprintln!("key held by {existing_id} with a different {differs}")
///     }
///     Err(e) => eprintln!("{e}"),
///     Ok(done) => println!("{}", done.id()),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    /// Bad input; `field` names it (`tenant`, `user_id`, `type`, `business_id`, `email`,
    /// `endpoint`, `payload`, `max_attempts`, `run_at`; `batch` for two items of one
    /// `enqueue_many` that share a key but not an intent). Batch messages end with the item's index.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it, quoting at most 64 characters of the input.
        message: String,
    },
    /// The key is held by a notification with a different channel, destination or payload.
    #[error("conflict: key {key} is held by notification {existing_id} with a different {differs}")]
    Conflict {
        /// The notification that holds the key.
        existing_id: Uuid,
        /// The key both share.
        key: Box<Key>,
        /// `"channel"`, `"destination"` or `"payload"`: the first that differs.
        differs: &'static str,
    },
    /// The database failed or refused for another reason (connection, permissions, a
    /// schema that is not migrated); the caller's transaction may be aborted.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}
