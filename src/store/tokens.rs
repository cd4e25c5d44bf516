//! SQL of API tokens (`herald tokens`, and the server's check of a presented token).
//!
//! Invariants: the secret itself never reaches this module, only its SHA-256; a revoked token
//! keeps its row, and revoking one twice changes nothing (its first `revoked_at` stays).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::pooling;

/// A token as `tokens list` shows it: never its hash.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub tenant: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What the server needs to accept a presented token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredToken {
    pub role: String,
    pub tenant: Option<String>,
    pub secret_hash: Vec<u8>,
    pub revoked: bool,
}

/// The columns of a [`TokenRow`], for `concat!`.
macro_rules! token_columns {
    () => {
        "id, name, role, tenant, created_at, revoked_at"
    };
}

pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    name: &str,
    role: &str,
    tenant: Option<&str>,
    secret_hash: &[u8],
) -> Result<TokenRow, sqlx::Error> {
    const SQL: &str = concat!(
        "insert into herald.api_tokens (id, name, role, tenant, secret_hash)
         values ($1, $2, $3, $4, $5) returning ",
        token_columns!()
    );
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL)
            .bind(id)
            .bind(name)
            .bind(role)
            .bind(tenant)
            .bind(secret_hash)
            .fetch_one(conn)
            .await
    })
    .await
}

/// Every token, oldest first, revoked ones too.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<TokenRow>, sqlx::Error> {
    const SQL: &str = concat!(
        "select ",
        token_columns!(),
        " from herald.api_tokens order by created_at, id"
    );
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).fetch_all(conn).await
    })
    .await
}

/// Revokes a token from now on (a revoked one keeps its first `revoked_at`); `None` when there
/// is no such token.
pub async fn revoke(conn: &mut PgConnection, id: Uuid) -> Result<Option<TokenRow>, sqlx::Error> {
    const SQL: &str = concat!(
        "update herald.api_tokens set revoked_at = coalesce(revoked_at, now())
         where id = $1 returning ",
        token_columns!()
    );
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).bind(id).fetch_optional(conn).await
    })
    .await
}

/// Whether the connected role may check presented tokens (read their hashes): what serving the
/// API needs first, and what `herald_admin` grants.
pub async fn may_check_tokens(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar(
            "select has_column_privilege('herald.api_tokens', 'secret_hash', 'SELECT')",
        )
        .fetch_one(conn)
        .await
    })
    .await
}

/// The token with this id, for the server to check a presented secret against.
pub async fn find(conn: &mut PgConnection, id: Uuid) -> Result<Option<StoredToken>, sqlx::Error> {
    const SQL: &str = "
        select role, tenant, secret_hash, revoked_at is not null as revoked
        from herald.api_tokens where id = $1";
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).bind(id).fetch_optional(conn).await
    })
    .await
}
