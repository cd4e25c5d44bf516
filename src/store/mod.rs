//! The only place with SQL. Every function takes `&mut PgConnection` (a pooled connection or
//! the caller's transaction) and uses the database clock (`now()`) for every time it writes.
//!
//! Queries are runtime-checked `&'static str` constants; each is exercised by the tests in
//! `tests/` against a real PostgreSQL.
//!
//! Every statement is built with `crate::pooling`'s `query`, `query_as` or `query_scalar`
//! (unnamed behind a transaction-mode pooler) and runs in `pooling::in_transaction` or in a
//! transaction its function opened with `pooling::begin`, so that each function works through
//! PgBouncer in transaction mode whatever connection it is given.

#[macro_use]
pub mod notifications;
pub mod activity;
pub mod admin;
pub mod dispatch;
pub mod endpoints;
pub mod enqueue;
pub mod health;
pub mod schema;
pub mod settings;
pub mod sweep;
pub mod timestamp;
pub mod tokens;
