//! The bench's scratch database: `herald_bench_<random>` on the configured server, created and
//! migrated at start, dropped (with its connections) at the end.
//!
//! Behind a transaction-mode pooler (`database.listen_url` set), CREATE, DROP and the
//! migrations go to the server directly through `listen_url`, and the phases' traffic through
//! the configured URL with the scratch database's name: the pooler must route that name to the
//! same server (PgBouncer: a `*` fallback entry in `[databases]`).

use sqlx::migrate::MigrateDatabase;
use sqlx::{PgPool, Postgres};

use crate::database::{self, ConnectError};

pub struct Scratch {
    /// A database on the same server to run CREATE and DROP from.
    admin_url: String,
    pub name: String,
    /// The scratch database, directly: CREATE, DROP, migrations, LISTEN.
    pub url: String,
    /// The scratch database as the phases reach it: through the pooler when there is one.
    pub traffic_url: String,
}

impl Scratch {
    /// Creates the database on the server of `configured_url`, which the phases use too. The
    /// configured database need not exist: the server's `postgres` database serves for CREATE
    /// and DROP then.
    pub async fn create(configured_url: &str) -> Result<Scratch, ConnectError> {
        Self::create_beside(configured_url, configured_url).await
    }

    /// [`Self::create`] through `direct_url` (`database.listen_url`), with the phases' traffic
    /// through `configured_url` (a transaction-mode pooler in front of the same server).
    pub async fn create_beside(
        configured_url: &str,
        direct_url: &str,
    ) -> Result<Scratch, ConnectError> {
        let (_, target) = database::parse_url(direct_url)?;
        let admin_url = match database::connect(direct_url, 1, false).await {
            Ok(pool) => {
                pool.close().await;
                direct_url.to_owned()
            }
            Err(ConnectError::MissingDatabase { .. }) => with_database(direct_url, "postgres")?,
            Err(e) => return Err(e),
        };
        let mut random = [0u8; 4];
        getrandom::fill(&mut random).map_err(|e| refused(&target, e.to_string()))?;
        let name = format!(
            "herald_bench_{}",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let url = with_database(direct_url, &name)?;
        let traffic_url = with_database(configured_url, &name)?;
        // sqlx's own CREATE DATABASE quotes the name, so no SQL is spliced here (herald's
        // sources never use `AssertSqlSafe`: see tests/it/sql_injection.rs).
        Postgres::create_database(&url).await.map_err(|e| {
            refused(
                &target,
                format!(
                    "cannot create a scratch database: {}",
                    database::reason_of(&e)
                ),
            )
        })?;
        Ok(Scratch {
            admin_url,
            name,
            url,
            traffic_url,
        })
    }

    /// A pool of the scratch database for the phases (through the pooler when there is one).
    pub async fn pool(&self, max_connections: u32) -> Result<PgPool, ConnectError> {
        database::connect(&self.traffic_url, max_connections, false).await
    }

    /// A pool of the scratch database that bypasses any pooler, for the migrations.
    pub async fn direct_pool(&self) -> Result<PgPool, ConnectError> {
        database::connect(&self.url, 2, false).await
    }

    /// Drops the database, ending whatever connections still use it. The phases abort their
    /// tasks when interrupted, so nothing reconnects in between.
    pub async fn drop(self) -> Result<(), ConnectError> {
        let (_, target) = database::parse_url(&self.admin_url)?;
        // DROP DATABASE IF EXISTS … WITH (FORCE), the name quoted by sqlx.
        Postgres::force_drop_database(&self.url).await.map_err(|e| {
            refused(
                &target,
                format!(
                    "cannot drop the scratch database {}: {}",
                    self.name,
                    database::reason_of(&e)
                ),
            )
        })
    }
}

fn with_database(url: &str, database: &str) -> Result<String, ConnectError> {
    let mut parsed = url::Url::parse(url).map_err(|e| ConnectError::InvalidUrl(e.to_string()))?;
    parsed.set_path(database);
    Ok(parsed.to_string())
}

fn refused(target: &database::Target, reason: String) -> ConnectError {
    ConnectError::Refused {
        target: target.clone(),
        reason,
    }
}

/// Rows inserted per statement by [`load_in_chunks`].
const LOAD_CHUNK: u64 = 250_000;

/// Runs `sql`, an insert over `generate_series($1::int8, $2::int8)`, for `0 .. rows` in chunks
/// of `LOAD_CHUNK` rows, each its own transaction (a million rows in one would hold their WAL and
/// locks to the end).
pub async fn load_in_chunks(
    pool: &sqlx::PgPool,
    sql: &'static str,
    rows: u64,
) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut from = 0;
    while from < rows {
        let to = (from + LOAD_CHUNK).min(rows);
        crate::pooling::in_transaction(&mut conn, async |conn| {
            crate::pooling::query(sql)
                .bind(from as i64)
                .bind(to as i64 - 1)
                .execute(conn)
                .await
        })
        .await?;
        from = to;
    }
    Ok(())
}
