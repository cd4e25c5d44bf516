//! Transaction pooling: herald behind PgBouncer in transaction mode.
//!
//! A transaction-mode pooler gives a client a server connection for one transaction at a time,
//! and between two transactions of the client that connection may go to someone else. Two things
//! that sqlx does by default break there: it names every statement it prepares (`sqlx_s_1`, …),
//! and a name made on one server connection is missing, or already taken, on the next one
//! (PgBouncer before 1.21 does not track them); and it sends a statement with parameters in two
//! round trips (Parse/Describe/Sync, then Bind/Execute/Sync), between which, outside a
//! transaction, the pooler may switch server connections.
//!
//! Invariant: while pooling is on ([`set_transaction_pooling`]), every statement herald sends
//! is unnamed (built with [`query`], [`query_as`] or [`query_scalar`]) and runs inside an
//! explicit transaction ([`in_transaction`], [`begin`], or the caller's own), which keeps one
//! server connection for both round trips; herald's transactions pin `search_path` for
//! themselves (`SET LOCAL`), since a session setting would land on whichever server connection
//! the pooler chose, and stay there for its other clients. While it is off, nothing changes:
//! statements are named and cached per connection, and no `BEGIN`/`COMMIT` is added.
//!
//! LISTEN and session advisory locks (sqlx's migrator takes one) cannot work through such a
//! pooler at all: they need a direct connection (`database.listen_url`).

use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Connection, FromRow, PgConnection, Postgres, SqlSafeStr, Transaction};

static POOLING: AtomicBool = AtomicBool::new(false);

/// Tells herald, for the whole process, that its connections go through a transaction-mode
/// pooler such as PgBouncer (`pool_mode = transaction`): from then on every statement is
/// unnamed and runs inside a transaction. Call it once at start-up, before the first enqueue.
///
/// An enqueue into the caller's own transaction (`&mut *tx`) stays in it; on `&pool` herald
/// opens a transaction of its own. [`migrate`](crate::migrate) needs a direct connection
/// whatever this says (sqlx's migrator holds a session advisory lock). Off by default: on a
/// direct connection, statements are prepared once per connection and cached, and nothing adds
/// round trips.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// herald::set_transaction_pooling(true);
/// let pool = sqlx::PgPool::connect("postgres://app@pgbouncer:6432/app").await?;
/// let n = herald::Notification::email("user-42", "welcome", "signup-42", "ann@example.com");
/// herald::enqueue(&pool, &n).await?;
/// # Ok(()) }
/// ```
pub fn set_transaction_pooling(on: bool) {
    POOLING.store(on, Ordering::Relaxed);
}

/// Whether [`set_transaction_pooling`] turned transaction pooling on.
pub fn transaction_pooling() -> bool {
    POOLING.load(Ordering::Relaxed)
}

/// Whether statements may be prepared under a name and cached on their connection.
pub(crate) fn persistent() -> bool {
    !transaction_pooling()
}

/// [`sqlx::query`], unnamed while pooling is on.
pub(crate) fn query<'q>(sql: impl SqlSafeStr) -> Query<'q, Postgres, PgArguments> {
    sqlx::query(sql).persistent(persistent())
}

/// [`sqlx::query_as`], unnamed while pooling is on.
pub(crate) fn query_as<'q, O>(sql: impl SqlSafeStr) -> QueryAs<'q, Postgres, O, PgArguments>
where
    O: for<'r> FromRow<'r, PgRow>,
{
    sqlx::query_as(sql).persistent(persistent())
}

/// [`sqlx::query_scalar`], unnamed while pooling is on.
pub(crate) fn query_scalar<'q, O>(sql: impl SqlSafeStr) -> QueryScalar<'q, Postgres, O, PgArguments>
where
    (O,): for<'r> FromRow<'r, PgRow>,
{
    sqlx::query_scalar(sql).persistent(persistent())
}

/// What opens herald's transactions while pooling is on: one simple-protocol message, so no
/// round trip is added for the path.
const BEGIN_PINNED: &str = "begin; set local search_path = pg_catalog, pg_temp";

/// Opens a transaction on `conn` (a savepoint when it is in one already); while pooling is on
/// it also pins `search_path` for the transaction, as [`crate::database::pool_options`] does
/// for a session.
pub(crate) async fn begin(
    conn: &mut PgConnection,
) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    if transaction_pooling() && !conn.is_in_transaction() {
        conn.begin_with(BEGIN_PINNED).await
    } else {
        conn.begin().await
    }
}

/// A transaction with `search_path` pinned for itself alone, pooling on or off: for a read
/// that must leave no session setting behind on a connection that may be a pooler's.
pub(crate) async fn begin_pinned(
    conn: &mut PgConnection,
) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    conn.begin_with(BEGIN_PINNED).await
}

/// Whether the server has `conn` inside a transaction block that sqlx did not open (a plain
/// `BEGIN` sent as SQL): sqlx counts only its own, and herald's [`begin`] there would open no
/// transaction of its own and its commit would end the caller's. One statement in the simple
/// protocol (safe through a pooler outside a transaction): inside a block, a statement starts
/// after its transaction did; on its own, a statement's transaction starts with it.
pub(crate) async fn in_foreign_transaction(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Row;
    if conn.is_in_transaction() {
        return Ok(false);
    }
    sqlx::raw_sql(
        "select pg_catalog.transaction_timestamp() \
         OPERATOR(pg_catalog.<>) pg_catalog.statement_timestamp()",
    )
    .fetch_one(conn)
    .await?
    .try_get(0)
}

/// Runs `statements` on `conn`: as they are while pooling is off or `conn` is in a transaction
/// already, otherwise inside a transaction of their own, committed when they succeed.
pub(crate) async fn in_transaction<T>(
    conn: &mut PgConnection,
    statements: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    if !transaction_pooling() || conn.is_in_transaction() {
        return statements(conn).await;
    }
    let mut tx = begin(conn).await?;
    let out = statements(&mut tx).await?;
    tx.commit().await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, into: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, into);
            } else if path.extension().is_some_and(|e| e == "rs") {
                into.push(path);
            }
        }
    }

    #[test]
    fn every_statement_is_built_here() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        sources(&root.join("src"), &mut files);
        let mut offenders = Vec::new();
        for file in files {
            let name = file
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            if name == "src/pooling.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                if ["sqlx::query(", "sqlx::query_as(", "sqlx::query_scalar("]
                    .iter()
                    .any(|call| code.contains(call))
                {
                    offenders.push(format!("{name}:{}: {}", n + 1, line.trim()));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "build statements with crate::pooling::{{query, query_as, query_scalar}}, so they are unnamed behind a transaction-mode pooler:\n{}",
            offenders.join("\n")
        );
    }
}
