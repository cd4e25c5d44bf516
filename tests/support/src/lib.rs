//! What herald's test suites share (the integration tests, `tests/it`, the console's browser
//! tests, `tests/console`, and the chaos suite, `tests/chaos`): migrated test databases and
//! small queries ([`db`]), the `herald` binary as a user runs it ([`cli`]), daemons
//! ([`daemon`]), HTTP receivers and SMTP sinks that behave or misbehave on purpose, a headless
//! Chromium ([`browser`]), throwaway PostgreSQL clusters, a PgBouncer in transaction mode
//! ([`pgbouncer`]), and waiting on conditions (never on fixed sleeps).
//!
//! A library rather than a module each suite includes: each suite uses the part it needs, and
//! nothing here needs `#[allow(dead_code)]`.

pub mod api;
pub mod browser;
pub mod cli;
pub mod cluster;
pub mod daemon;
pub mod db;
pub mod email_cases;
pub mod logins;
pub mod pgbouncer;
pub mod raw_http;
pub mod receiver;
pub mod scrape;
pub mod smtp;

use std::time::Duration;

use serde_json::Value;

pub use cli::{Cli, Key, Run, herald};
pub use db::{
    At, Rows, SECRET, count_notifications, disable_endpoint, endpoint, endpoint_at, finish,
    finished_rows, insert_raw, lease, migrated, set_due, states, url_for, url_of, wait_for_sql,
};

/// Waits until `condition` holds, checking every 20 ms; fails the test after 60 s.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The member names of a JSON object, sorted.
pub fn sorted_keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}
