//! Webhook endpoints. The secret is written here and read only by the dispatcher; no row type
//! that reaches output carries it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// An endpoint as the CLI shows it (DESIGN.md, "Endpoint JSON"): never the secret.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: Uuid,
    pub tenant: String,
    pub url: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    tenant: &str,
    url: &str,
    secret: &str,
) -> Result<EndpointRow, sqlx::Error> {
    const SQL: &str = "
        insert into herald.webhook_endpoints (id, tenant, url, secret)
        values ($1, $2, $3, $4)
        returning id, tenant, url, enabled, disabled_reason, created_at";
    sqlx::query_as(SQL)
        .bind(id)
        .bind(tenant)
        .bind(url)
        .bind(secret)
        .fetch_one(conn)
        .await
}

/// Oldest first, optionally of one tenant.
pub async fn list(
    conn: &mut PgConnection,
    tenant: Option<&str>,
) -> Result<Vec<EndpointRow>, sqlx::Error> {
    const SQL: &str = "
        select id, tenant, url, enabled, disabled_reason, created_at
        from herald.webhook_endpoints
        where $1::text is null or tenant = $1
        order by created_at, id";
    sqlx::query_as(SQL).bind(tenant).fetch_all(conn).await
}
