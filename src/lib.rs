//! herald: a durable, idempotent notification dispatcher on PostgreSQL.
//!
//! Applications enqueue a notification keyed by `(tenant, user_id, type, business_id)` inside
//! their own transaction; a UNIQUE constraint makes any number of replays one notification, and
//! the same key with a different channel, destination or payload is refused as a conflict.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! let mut tx = pool.begin().await?;
//! // … the application's own writes in `tx` …
//! let n = herald::Notification::email("user-42", "order_shipped", "order-1001", "ann@example.com")
//!     .payload(serde_json::json!({ "order": "1001" }));
//! let out = herald::enqueue(&mut *tx, &n).await?;
//! tx.commit().await?;
//! println!("notification {}", out.id());
//! # Ok(()) }
//! ```
//!
//! The daemon (`herald run`), the admin CLI and the SQL entry points for other languages are
//! described in the repository's `docs/`; this crate's public API is what an application links:
//! [`enqueue`] and [`enqueue_many`] (with [`Notification`], [`Enqueued`], [`EnqueueError`]),
//! and [`migrate`] for applications that apply herald's schema themselves.
//!
//! The modules behind the `herald` binary are public only so that its tests and benches reach
//! them; they are hidden from these docs and are not a stable API. `ARCHITECTURE.md` maps them.

#![warn(missing_docs)]

mod enqueue;
mod error;
mod key;
mod migrate;
mod notification;
pub(crate) mod pooling;
mod state;

#[doc(hidden)]
pub mod admin;
#[doc(hidden)]
pub mod api;
#[doc(hidden)]
pub mod bench;
#[doc(hidden)]
pub mod canonical_json;
#[doc(hidden)]
pub mod channel;
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod console;
#[doc(hidden)]
pub mod delivery;
#[doc(hidden)]
pub mod dispatch;
#[doc(hidden)]
pub mod limits;
#[doc(hidden)]
pub mod metrics;
#[doc(hidden)]
pub mod net;
#[doc(hidden)]
pub mod store;
#[doc(hidden)]
pub mod sweeper;
#[doc(hidden)]
pub mod wake;

mod database;
mod json_diff;
mod payload;
mod raw_payload;
mod roles;

pub use enqueue::{
    EnqueueTarget, Enqueued, enqueue, enqueue_many, enqueue_many_with_limits, enqueue_with_limits,
};
pub use error::EnqueueError;
pub use key::Key;
#[doc(hidden)]
pub use migrate::MIGRATIONS_TABLE;
pub use migrate::migrate;
pub use notification::{
    DEFAULT_MAX_ATTEMPTS, DEFAULT_TENANT, Destination, Limits, MAX_PAYLOAD_DEPTH, Notification,
};
pub use pooling::{set_transaction_pooling, transaction_pooling};
pub use state::{Channel, State, UnknownName};
