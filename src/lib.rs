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
//! # Layout
//! - [`notification`]: the `Notification` builder, its key, and validation.
//! - [`canonical_json`]: the payload in canonical JSON (the fingerprint itself is computed by
//!   PostgreSQL, `herald.fingerprint()`, for every client alike);
//!   [`json_diff`]: the JSON paths where two payloads differ.
//! - [`enqueue`]: `enqueue` / `enqueue_many`, the `Enqueued` result and `EnqueueError`.
//! - [`store`]: all SQL, as functions over `&mut PgConnection`.
//! - [`wake`]: the debounced NOTIFY that wakes an idle dispatcher.
//! - [`migrate`]: the schema, with bookkeeping apart from the host application's.
//! - [`config`]: defaults < file < environment, validated once.
//! - [`dispatch`]: the daemon: claim loop, workers, heartbeat, wake-up listener, retry policy.
//! - [`channel`]: webhook (Standard Webhooks) and email (SMTP, templates) delivery.
//! - [`sweeper`]: retention on a cron schedule, one sweeper at a time.
//! - [`net`]: the SSRF guard for webhook targets.
//! - [`metrics`]: Prometheus metrics, `/healthz` and `/readyz` on `metrics.listen`.
//! - [`bench`]: `herald bench`, phase by phase.
//! - [`cli`]: the `herald` binary's commands; `main.rs` only calls [`cli::main`].

pub mod bench;
pub mod canonical_json;
pub mod channel;
pub mod cli;
pub mod config;
pub mod database;
pub mod delivery;
pub mod dispatch;
pub mod enqueue;
pub mod json_diff;
pub mod metrics;
pub mod migrate;
pub mod net;
pub mod notification;
pub mod payload;
pub mod raw_payload;
pub mod roles;
pub mod state;
pub mod store;
pub mod sweeper;
pub mod wake;

pub use enqueue::{
    EnqueueError, Enqueued, enqueue, enqueue_many, enqueue_many_with_limits, enqueue_with_limits,
};
pub use migrate::migrate;
pub use notification::{Destination, Key, Limits, Notification};
pub use state::{Channel, State};
