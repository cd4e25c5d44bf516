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

/// Enables or disables an endpoint; `None` when there is no such endpoint.
pub async fn set_enabled(
    conn: &mut PgConnection,
    id: Uuid,
    disabled_reason: Option<&str>,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    const SQL: &str = "
        update herald.webhook_endpoints
        set enabled = $2::text is null, disabled_reason = $2
        where id = $1
        returning id, tenant, url, enabled, disabled_reason, created_at";
    sqlx::query_as(SQL)
        .bind(id)
        .bind(disabled_reason)
        .fetch_optional(conn)
        .await
}

/// Replaces the secret; the old one keeps signing (beside the new) for `grace`. `None` when
/// there is no such endpoint.
pub async fn rotate_secret(
    conn: &mut PgConnection,
    id: Uuid,
    new_secret: &str,
    grace: std::time::Duration,
) -> Result<Option<(EndpointRow, DateTime<Utc>)>, sqlx::Error> {
    // A SECURITY DEFINER function: moving the old secret aside reads it, and an operator's
    // role (herald_admin) may write secrets but not read them.
    const SQL: &str = "
        select r.id, r.tenant, r.url, r.enabled, r.disabled_reason, r.created_at,
               r.previous_secret_expires_at
        from herald.rotate_endpoint_secret($1::pg_catalog.uuid, $2::pg_catalog.text,
                                           $3::pg_catalog.float8) as r";
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        endpoint: EndpointRow,
        previous_secret_expires_at: DateTime<Utc>,
    }
    let row: Option<Row> = sqlx::query_as(SQL)
        .bind(id)
        .bind(new_secret)
        .bind(grace.as_secs_f64())
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| (r.endpoint, r.previous_secret_expires_at)))
}
