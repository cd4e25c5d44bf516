//! Webhook endpoints and their delivery limits. The secret is written here and read only by
//! the dispatcher; no row type that reaches output carries it.
//!
//! Invariants:
//! - Every read of an endpoint joins `herald.webhook_endpoints` (its non-secret columns only:
//!   `herald_reader` may read no other) with its row of `herald.destinations` (limits, breaker,
//!   in flight), which the insert trigger creates.
//! - Setting or clearing a rate refills its token bucket (`tokens` null: full) in the same
//!   statement.
//! - Closing a breaker (`reset`, `enable`) clears every breaker column together, as the
//!   `destinations_breaker_times` constraint requires.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use crate::pooling;
use uuid::Uuid;

/// The columns of [`EndpointRow`], from `e` (the endpoint's public columns) and `d` (its
/// destination row, possibly absent).
macro_rules! endpoint_columns {
    () => {
        "e.id, e.tenant, e.url, e.enabled, e.disabled_reason, e.created_at,
         case when d.rate_count is null then null
              else d.rate_count::text || '/' || d.rate_unit end as rate,
         d.max_in_flight,
         coalesce(d.breaker, 'closed') as breaker,
         coalesce(d.consecutive_failures, 0) as consecutive_failures,
         d.breaker_opened_at, d.next_probe_at,
         (select count(*)::int4 from herald.queue q
          where q.destination = e.id::text and q.lease_token is not null) as in_flight"
    };
}

/// The assignments that close a destination's breaker.
macro_rules! close_breaker {
    () => {
        "breaker = 'closed', consecutive_failures = 0, breaker_opened_at = null,
         next_probe_at = null, probe_interval = null, probe_lease = null,
         probes_failing_since = null, probe_failed_at = null"
    };
}

/// An endpoint as the CLI shows it (DESIGN.md, "Endpoint JSON"): never the secret.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = Endpoint)]
pub struct EndpointRow {
    pub id: Uuid,
    pub tenant: String,
    pub url: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    /// `"10/s"` or `"600/m"` (the unit as it was set); `None`: no rate limit.
    pub rate: Option<String>,
    pub max_in_flight: Option<i32>,
    /// `closed`, `open` or `half_open`.
    pub breaker: String,
    pub consecutive_failures: i32,
    pub breaker_opened_at: Option<DateTime<Utc>>,
    pub next_probe_at: Option<DateTime<Utc>>,
    pub in_flight: i32,
}

/// The SMTP relay's breaker, as `endpoints reset smtp` shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RelayRow {
    /// Always `smtp`.
    pub destination: String,
    pub breaker: String,
    pub consecutive_failures: i32,
    pub breaker_opened_at: Option<DateTime<Utc>>,
    pub next_probe_at: Option<DateTime<Utc>>,
    pub in_flight: i32,
}

/// Changes to an endpoint's limits: for each, `None` keeps it as it is and `Some(None)` removes
/// it. Values are within the schema's bounds (the caller checked them).
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitChanges<'a> {
    /// `(count, unit)`, the unit `"s"` or `"m"`.
    pub rate: Option<Option<(i32, &'a str)>>,
    pub max_in_flight: Option<Option<i32>>,
}

impl LimitChanges<'_> {
    pub fn is_empty(&self) -> bool {
        self.rate.is_none() && self.max_in_flight.is_none()
    }
}

/// Registers an endpoint without limits; its destination row follows from the insert trigger.
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    tenant: &str,
    url: &str,
    secret: &str,
) -> Result<EndpointRow, sqlx::Error> {
    insert_with_limits(conn, id, tenant, url, secret, LimitChanges::default()).await
}

/// Registers an endpoint with `limits`, in one transaction: the endpoint, then its limits on
/// the destination row the insert trigger made (a statement sees that row only after the
/// insert's).
pub async fn insert_with_limits(
    conn: &mut PgConnection,
    id: Uuid,
    tenant: &str,
    url: &str,
    secret: &str,
    limits: LimitChanges<'_>,
) -> Result<EndpointRow, sqlx::Error> {
    const SQL: &str = "
        insert into herald.webhook_endpoints (id, tenant, url, secret)
        values ($1, $2, $3, $4)";
    let mut tx = pooling::begin(conn).await?;
    pooling::query(SQL)
        .bind(id)
        .bind(tenant)
        .bind(url)
        .bind(secret)
        .execute(&mut *tx)
        .await?;
    let row = if limits.is_empty() {
        get(&mut tx, id).await?
    } else {
        set_limits(&mut tx, id, limits).await?
    };
    let row = row.ok_or(sqlx::Error::RowNotFound)?;
    tx.commit().await?;
    Ok(row)
}

/// One endpoint; `None` when there is no such endpoint.
/// The tenant an endpoint belongs to; `None` when there is no such endpoint.
pub async fn tenant_of(conn: &mut PgConnection, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar("select tenant from herald.webhook_endpoints where id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await
    })
    .await
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<EndpointRow>, sqlx::Error> {
    const SQL: &str = concat!(
        "select ",
        endpoint_columns!(),
        "
        from herald.webhook_endpoints e
        left join herald.destinations d on d.endpoint_id = e.id
        where e.id = $1"
    );
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).bind(id).fetch_optional(conn).await
    })
    .await
}

/// Oldest first, optionally of one tenant.
pub async fn list(
    conn: &mut PgConnection,
    tenant: Option<&str>,
) -> Result<Vec<EndpointRow>, sqlx::Error> {
    const SQL: &str = concat!(
        "select ",
        endpoint_columns!(),
        "
        from herald.webhook_endpoints e
        left join herald.destinations d on d.endpoint_id = e.id
        where $1::text is null or e.tenant = $1
        order by e.created_at, e.id"
    );
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).bind(tenant).fetch_all(conn).await
    })
    .await
}

/// Changes an endpoint's limits in one statement; setting or clearing the rate refills its
/// bucket. `None` when there is no such endpoint.
pub async fn set_limits(
    conn: &mut PgConnection,
    id: Uuid,
    limits: LimitChanges<'_>,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    const SQL: &str = concat!(
        "
        update herald.destinations d
        set rate_count = case when $2 then $3::int4 else d.rate_count end,
            rate_unit = case when $2 then $4::text else d.rate_unit end,
            tokens = case when $2 then null else d.tokens end,
            tokens_at = case when $2 then null else d.tokens_at end,
            max_in_flight = case when $5 then $6::int4 else d.max_in_flight end
        from herald.webhook_endpoints e
        where e.id = $1 and d.endpoint_id = e.id
        returning ",
        endpoint_columns!()
    );
    let rate = limits.rate.flatten();
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL)
            .bind(id)
            .bind(limits.rate.is_some())
            .bind(rate.map(|(count, _)| count))
            .bind(rate.map(|(_, unit)| unit))
            .bind(limits.max_in_flight.is_some())
            .bind(limits.max_in_flight.flatten())
            .fetch_optional(conn)
            .await
    })
    .await
}

/// Closes an endpoint's breaker and forgets its failures. `None` when there is no such
/// endpoint.
pub async fn reset_breaker(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    const SQL: &str = concat!(
        "update herald.destinations d set ",
        close_breaker!(),
        "
        from herald.webhook_endpoints e
        where e.id = $1 and d.endpoint_id = e.id
        returning ",
        endpoint_columns!()
    );
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).bind(id).fetch_optional(conn).await
    })
    .await
}

/// The relay's columns of a [`RelayRow`], from `herald.destinations d`.
macro_rules! relay_columns {
    () => {
        "d.key as destination, d.breaker, d.consecutive_failures, d.breaker_opened_at,
         d.next_probe_at,
         (select count(*)::int4 from herald.queue q
          where q.destination = 'smtp' and q.lease_token is not null) as in_flight"
    };
}

/// The SMTP relay's breaker and what it has in flight. `None` only when its row is missing
/// (the schema creates it).
pub async fn get_relay(conn: &mut PgConnection) -> Result<Option<RelayRow>, sqlx::Error> {
    const SQL: &str = concat!(
        "select ",
        relay_columns!(),
        " from herald.destinations d where d.key = 'smtp'"
    );
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).fetch_optional(conn).await
    })
    .await
}

/// Closes the SMTP relay's breaker and forgets its failures. `None` only when its row is
/// missing (the schema creates it).
pub async fn reset_relay_breaker(conn: &mut PgConnection) -> Result<Option<RelayRow>, sqlx::Error> {
    const SQL: &str = concat!(
        "update herald.destinations d set ",
        close_breaker!(),
        "
        where d.key = 'smtp'
        returning ",
        relay_columns!()
    );
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).fetch_optional(conn).await
    })
    .await
}

/// Enables (`disabled_reason` `None`) or disables an endpoint; enabling also closes its breaker,
/// in the same transaction (the destination row first, as the dispatcher locks them). `None`
/// when there is no such endpoint.
pub async fn set_enabled(
    conn: &mut PgConnection,
    id: Uuid,
    disabled_reason: Option<&str>,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    const CLOSE: &str = concat!(
        "update herald.destinations d set ",
        close_breaker!(),
        " where d.endpoint_id = $1"
    );
    const SQL: &str = concat!(
        "
        with e as (
            update herald.webhook_endpoints
            set enabled = $2::text is null, disabled_reason = $2
            where id = $1
            returning id, tenant, url, enabled, disabled_reason, created_at
        )
        select ",
        endpoint_columns!(),
        "
        from e
        left join herald.destinations d on d.endpoint_id = e.id"
    );
    let mut tx = pooling::begin(conn).await?;
    if disabled_reason.is_none() {
        pooling::query(CLOSE).bind(id).execute(&mut *tx).await?;
    }
    let row = pooling::query_as(SQL)
        .bind(id)
        .bind(disabled_reason)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row)
}

/// Points an endpoint at `url` and closes its breaker, in one transaction (the destination row
/// first, as the dispatcher locks them): what the breaker knew was about the old URL. `None`
/// when there is no such endpoint.
pub async fn set_url(
    conn: &mut PgConnection,
    id: Uuid,
    url: &str,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    const CLOSE: &str = concat!(
        "update herald.destinations d set ",
        close_breaker!(),
        " where d.endpoint_id = $1"
    );
    const SQL: &str = concat!(
        "
        with e as (
            update herald.webhook_endpoints set url = $2 where id = $1
            returning id, tenant, url, enabled, disabled_reason, created_at
        )
        select ",
        endpoint_columns!(),
        "
        from e
        left join herald.destinations d on d.endpoint_id = e.id"
    );
    let mut tx = pooling::begin(conn).await?;
    pooling::query(CLOSE).bind(id).execute(&mut *tx).await?;
    let row = pooling::query_as(SQL)
        .bind(id)
        .bind(url)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row)
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
    const SQL: &str = concat!(
        "select ",
        endpoint_columns!(),
        ", e.previous_secret_expires_at
        from herald.rotate_endpoint_secret($1::pg_catalog.uuid, $2::pg_catalog.text,
                                           $3::pg_catalog.float8) as e
        left join herald.destinations d on d.endpoint_id = e.id"
    );
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        endpoint: EndpointRow,
        previous_secret_expires_at: DateTime<Utc>,
    }
    let row: Option<Row> = pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL)
            .bind(id)
            .bind(new_secret)
            .bind(grace.as_secs_f64())
            .fetch_optional(conn)
            .await
    })
    .await?;
    Ok(row.map(|r| (r.endpoint, r.previous_secret_expires_at)))
}
