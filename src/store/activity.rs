//! Delivery activity over the last hour, minute by minute, and the numbers of the console's
//! overview for a token bound to one tenant (whose overview must not show other tenants').
//!
//! Invariant: every query here reads a bounded window or one tenant's rows; nothing writes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use super::admin::StateCount;
use crate::pooling;

/// One minute of the last hour: the attempts that finished in it, by outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Minute {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    pub delivered: i64,
    pub failed: i64,
    pub unknown: i64,
}

/// The 60 minutes up to and including the current one, oldest first, every minute present
/// (zeros where nothing finished); of one tenant's notifications when `tenant` is given.
///
/// One pass over the attempts that finished in the last hour (the same window `herald stats`
/// reads), joined to their notification only for a tenant.
pub async fn last_hour_by_minute(
    conn: &mut PgConnection,
    tenant: Option<&str>,
) -> Result<Vec<Minute>, sqlx::Error> {
    const SQL: &str = "
        with minutes as (
            select generate_series(date_trunc('minute', now()) - interval '59 minutes',
                                   date_trunc('minute', now()), interval '1 minute') as minute),
        recent as (
            select date_trunc('minute', a.finished_at) as minute, a.outcome
            from herald.attempts a
            where a.finished_at >= date_trunc('minute', now()) - interval '59 minutes'
              and ($1::text is null or exists (
                  select 1 from herald.intents n where n.id = a.notification_id and n.tenant = $1)))
        select m.minute,
               count(r.outcome) filter (where r.outcome = 'delivered') as delivered,
               count(r.outcome) filter (where r.outcome = 'failed') as failed,
               count(r.outcome) filter (where r.outcome = 'unknown') as unknown
        from minutes m left join recent r on r.minute = m.minute
        group by m.minute
        order by m.minute";
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).bind(tenant).fetch_all(conn).await
    })
    .await
}

/// Counts by state and channel of one tenant's notifications (pairs with none are left out).
pub async fn tenant_counts(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<Vec<StateCount>, sqlx::Error> {
    const SQL: &str = "
        select state, channel, count(*) as count from herald.notifications
        where tenant = $1
        group by state, channel";
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).bind(tenant).fetch_all(conn).await
    })
    .await
}

/// Seconds since one tenant's oldest due pending notification became due; `None` when none
/// is due. An infinite `run_at` counts as due since 0001-01-01, as in `herald stats`.
pub async fn tenant_oldest_due_age(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<Option<f64>, sqlx::Error> {
    const SQL: &str = "
        select extract(epoch from now() - case when min(run_at) < timestamptz '0001-01-01 00:00:00+00'
                 then timestamptz '0001-01-01 00:00:00+00' else min(run_at) end)::float8
        from herald.queue where tenant = $1 and lease_token is null and run_at <= now()";
    pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar(SQL)
            .bind(tenant)
            .fetch_one(conn)
            .await
    })
    .await
}
