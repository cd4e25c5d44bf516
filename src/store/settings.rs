//! `herald.settings`: what the database enforces on every caller, whatever limit the caller
//! names (migration 0004). Only herald's owner writes it.

use sqlx::PgConnection;

use crate::pooling;

/// Records the configured `limits.max_payload_bytes` as the ceiling of every enqueue function.
/// `Ok(false)` when this login may not write it (not herald's owner): the ceiling stays.
pub async fn record_payload_ceiling(
    conn: &mut PgConnection,
    max_payload_bytes: usize,
) -> Result<bool, sqlx::Error> {
    let bytes = i32::try_from(max_payload_bytes).unwrap_or(i32::MAX);
    let update = pooling::in_transaction(conn, async |conn| {
        pooling::query("update herald.settings set max_payload_bytes = $1")
            .bind(bytes)
            .execute(conn)
            .await
    });
    match update.await {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42501") => Ok(false),
        Err(e) => Err(e),
    }
}

/// The ceiling in force, in bytes.
pub async fn payload_ceiling(conn: &mut PgConnection) -> Result<usize, sqlx::Error> {
    let bytes: i32 = pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar("select max_payload_bytes from herald.settings")
            .fetch_one(conn)
            .await
    })
    .await?;
    Ok(bytes.max(0) as usize)
}
