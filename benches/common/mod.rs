//! What the benchmarks share: a freshly created, migrated database and the base URL.

use sqlx::PgPool;

/// `BENCH_DATABASE_URL`, else the local server's `postgres` database.
pub fn base_url() -> String {
    std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Drops and creates `database` on the server of `base`, checkpoints (so an earlier phase's
/// dirty pages are not flushed inside the next measurement), and migrates it.
pub async fn fresh_database(
    base: &str,
    database: &str,
    connections: u32,
) -> Result<PgPool, Box<dyn std::error::Error>> {
    let admin = PgPool::connect(base).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database if exists {database} with (force)"
    )))
    .execute(&admin)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {database}")))
        .execute(&admin)
        .await?;
    sqlx::query("checkpoint").execute(&admin).await?;
    admin.close().await;
    let mut url = url::Url::parse(base)?;
    url.set_path(database);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .connect(url.as_str())
        .await?;
    herald::migrate(&pool).await?;
    Ok(pool)
}
