//! herald behind PgBouncer in transaction mode: the library, the daemon and the admin CLI
//! through a real PgBouncer (`tests/support/src/pgbouncer.rs`, a small pool, so clients share
//! server connections), with LISTEN and migrations on the direct `database.listen_url`.
//!
//! A test binary of its own: the library's switch (`herald::set_transaction_pooling`) is
//! process-wide, and the integration suite (`tests/it`), whose tests share one process, must
//! keep herald's statements as they are. Here the tests that use the library in-process hold
//! the switch ([`switch`]) in turn; the `herald` processes the tests start turn it on from
//! `database.listen_url`.

use herald_test_support as support;

mod cli;
mod daemon;
mod hostile;
mod library;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use support::pgbouncer::PgBouncer;

/// The name of the database behind `pool`.
fn database_of(pool: &PgPool) -> String {
    pool.connect_options()
        .get_database()
        .expect("test pools name a database")
        .to_owned()
}

/// Holds the process's transaction-pooling switch for a test: the tests that use the library
/// in this process take turns, so that one that turns it off never runs beside one that needs
/// it on.
async fn switch(on: bool) -> tokio::sync::MutexGuard<'static, ()> {
    static SWITCH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let guard = SWITCH.lock().await;
    herald::set_transaction_pooling(on);
    guard
}

/// A pool of `pool`'s database through `bouncer`, as an application behind PgBouncer has one.
async fn pooled(bouncer: &PgBouncer, pool: &PgPool, connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(connections)
        .connect(&bouncer.url(&database_of(pool)))
        .await
        .expect("a connection through PgBouncer")
}
