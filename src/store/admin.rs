//! Operator actions on single notifications (`retry`, `cancel`), the numbers behind `stats`,
//! and the lookup behind `explain`.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use super::notifications::NotificationRow;
use crate::key::Key;
use crate::pooling;
use crate::state::{Channel, State};

/// What an operator action found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Done; the notification is now in the target state.
    Done,
    /// The notification is in a state the action does not apply to.
    Refused(State),
    NotFound,
}

/// `dead` or `cancelled` → `pending`, due now, with a fresh attempt budget (the attempt log keeps
/// its history and numbering). Wakes listening dispatchers.
pub async fn retry(conn: &mut PgConnection, id: Uuid) -> Result<Transition, sqlx::Error> {
    const SQL: &str = "
        with target as (
            select id, state from herald.intents where id = $1 for update
        ),
        retried as (
            update herald.intents n
            set state = 'pending', attempts = 0, run_at = now(), finished_at = null, last_error = null
            from target
            where n.id = target.id and target.state in ('dead', 'cancelled')
            returning n.id, n.channel, n.destination, n.tenant
        ),
        queued as (
            insert into herald.queue (id, destination, tenant, run_at)
            select r.id, herald.destination_key(r.channel, r.destination), r.tenant, now()
            from retried r
            returning herald.wake() as woke
        )
        select target.state, exists (select 1 from queued) as done from target";
    transition(conn, SQL, id).await
}

/// `pending` → `cancelled`.
pub async fn cancel(conn: &mut PgConnection, id: Uuid) -> Result<Transition, sqlx::Error> {
    // The queue row is locked first, as every dispatcher statement locks a queue row before
    // its intent (a claim, an outcome): the other order could deadlock with an outcome. A
    // claim that took it first has committed its lease by the time this statement reads it,
    // and the notification is then running.
    const SQL: &str = "
        with target as (
            select id, state from herald.intents where id = $1 for update
        ),
        queued as (
            select id, lease_token from herald.queue where id = $1 for update
        ),
        current as (
            select t.id, case when q.lease_token is not null then 'running' else t.state end as state
            from target t left join queued q on q.id = t.id
        ),
        dequeued as (
            delete from herald.queue q using current c
            where q.id = c.id and c.state = 'pending'
            returning q.id, q.attempts, q.attempted_at
        ),
        -- The attempts spent so far stay on the record, as they would on any finished row.
        cancelled as (
            update herald.intents n
            set state = 'cancelled', finished_at = now(), last_error = 'cancelled by an operator',
                attempts = d.attempts, attempted_at = d.attempted_at
            from dequeued d
            where n.id = d.id
            returning n.id
        )
        select current.state, exists (select 1 from cancelled) as done from current";
    let mut tx = pooling::begin(conn).await?;
    pooling::query("select 1 from herald.queue where id = $1 for update")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let done = transition(&mut tx, SQL, id).await?;
    tx.commit().await?;
    Ok(done)
}

async fn transition(
    conn: &mut PgConnection,
    sql: &'static str,
    id: Uuid,
) -> Result<Transition, sqlx::Error> {
    let row: Option<(String, bool)> = pooling::in_transaction(conn, async |conn| {
        pooling::query_as(sql).bind(id).fetch_optional(conn).await
    })
    .await?;
    Ok(match row {
        None => Transition::NotFound,
        Some((_, true)) => Transition::Done,
        Some((state, false)) => Transition::Refused(
            state
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        ),
    })
}

/// How many notifications are in one state on one channel.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StateCount {
    #[sqlx(try_from = "String")]
    pub state: State,
    #[sqlx(try_from = "String")]
    pub channel: Channel,
    pub count: i64,
}

/// Counts by state and channel (pairs with no notification are left out).
pub async fn counts(conn: &mut PgConnection) -> Result<Vec<StateCount>, sqlx::Error> {
    const SQL: &str = "
        select state, channel, count(*) as count from herald.notifications
        group by state, channel";
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).fetch_all(conn).await
    })
    .await
}

/// The last hour, and the oldest due notification.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Recent {
    /// Seconds since the oldest pending notification became due; None when nothing is due.
    pub oldest_due_age_seconds: Option<f64>,
    pub delivered: i64,
    pub failed: i64,
    pub unknown: i64,
    /// From due to delivered, for notifications delivered in the last hour.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

pub async fn recent(conn: &mut PgConnection) -> Result<Recent, sqlx::Error> {
    // The latencies read the intents that a recent attempt delivered, by id: no index covers
    // `finished_at` (it would make every terminal update rewrite the indexes).
    const SQL: &str = "
        with recent as (
            select notification_id, outcome from herald.attempts
            where finished_at > now() - interval '1 hour'),
        latency as (
            select extract(epoch from n.finished_at - n.run_at) * 1000 as ms
            from herald.intents n
            where n.id in (select notification_id from recent where outcome = 'delivered')
              and n.state = 'delivered' and n.finished_at > now() - interval '1 hour'
              and isfinite(n.run_at) and isfinite(n.finished_at))
        select
            -- An infinite run_at (stored before migration 0004) cannot be subtracted: it
            -- counts as due since the earliest time herald accepts.
            (select extract(epoch from now() - case when min(run_at) < timestamptz '0001-01-01 00:00:00+00'
                 then timestamptz '0001-01-01 00:00:00+00' else min(run_at) end)::float8
               from herald.queue where lease_token is null and run_at <= now())
                as oldest_due_age_seconds,
            (select count(*) from recent where outcome = 'delivered') as delivered,
            (select count(*) from recent where outcome = 'failed') as failed,
            (select count(*) from recent where outcome = 'unknown') as unknown,
            (select percentile_cont(0.5) within group (order by ms) from latency) as latency_p50_ms,
            (select percentile_cont(0.99) within group (order by ms) from latency) as latency_p99_ms";
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).fetch_one(conn).await
    })
    .await
}

/// A destination whose breaker is open or half-open.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct OpenBreaker {
    /// `smtp`, or the endpoint id.
    pub destination: String,
    pub opened_at: Option<DateTime<Utc>>,
    pub next_probe_at: Option<DateTime<Utc>>,
}

/// Open (and half-open) breakers, longest open first.
pub async fn open_breakers(conn: &mut PgConnection) -> Result<Vec<OpenBreaker>, sqlx::Error> {
    const SQL: &str = "
        select key as destination, breaker_opened_at as opened_at, next_probe_at
        from herald.destinations where breaker <> 'closed'
        order by breaker_opened_at, key";
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).fetch_all(conn).await
    })
    .await
}

/// An endpoint with notifications waiting (due or not, not being delivered).
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Busiest {
    pub id: String,
    pub waiting: i64,
}

/// The `limit` endpoints with the most notifications waiting.
pub async fn busiest_endpoints(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<Busiest>, sqlx::Error> {
    const SQL: &str = "
        select destination as id, count(*) as waiting from herald.queue
        where lease_token is null and destination <> 'smtp'
        group by destination
        order by waiting desc, destination
        limit $1";
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).bind(limit).fetch_all(conn).await
    })
    .await
}

/// The notification holding `key`, with the fingerprint the decision needs.
pub async fn holder_of(
    conn: &mut PgConnection,
    key: &Key,
) -> Result<Option<(NotificationRow, Vec<u8>)>, sqlx::Error> {
    const SQL: &str = concat!(
        "select ",
        notification_columns!(),
        ", fingerprint from herald.notifications
          where tenant = $1 and user_id = $2 and type = $3 and business_id = $4"
    );
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        notification: NotificationRow,
        fingerprint: Vec<u8>,
    }
    let row: Option<Row> = pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL)
            .bind(&key.tenant)
            .bind(&key.user_id)
            .bind(&key.type_)
            .bind(&key.business_id)
            .fetch_optional(conn)
            .await
    })
    .await?;
    Ok(row.map(|r| (r.notification, r.fingerprint)))
}

/// Whether `stored` is the fingerprint of this intent, by `herald.fingerprint()`: the function
/// every enqueue uses.
pub async fn is_fingerprint_of(
    conn: &mut PgConnection,
    stored: &[u8],
    channel: crate::state::Channel,
    destination: &str,
    payload: &RawValue,
) -> Result<bool, sqlx::Error> {
    pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar("select herald.fingerprint($1, $2, $3) = $4")
            .bind(channel.as_str())
            .bind(destination)
            .bind(Json(payload))
            .bind(stored)
            .fetch_one(conn)
            .await
    })
    .await
}

/// Whether notification `id` holds `payload`, as jsonb compares them: numbers by value, keys
/// in any order (the fingerprint's notion of the same payload).
pub async fn holds_payload(
    conn: &mut PgConnection,
    id: Uuid,
    payload: &RawValue,
) -> Result<bool, sqlx::Error> {
    const SQL: &str = "select n.payload = $2::jsonb from herald.notifications n where n.id = $1";
    let same: Option<bool> = pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar(SQL)
            .bind(id)
            .bind(Json(payload))
            .fetch_optional(conn)
            .await
    })
    .await?;
    Ok(same.unwrap_or(false))
}

/// The size of `payload` in jsonb's text form: what the payload limit counts.
pub async fn payload_size(
    conn: &mut PgConnection,
    payload: &RawValue,
) -> Result<usize, sqlx::Error> {
    let size: i32 = pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar("select octet_length($1::jsonb::text)")
            .bind(Json(payload))
            .fetch_one(conn)
            .await
    })
    .await?;
    Ok(size as usize)
}

/// The database's clock, for answers that compare times.
pub async fn now(conn: &mut PgConnection) -> Result<DateTime<Utc>, sqlx::Error> {
    pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar("select now()").fetch_one(conn).await
    })
    .await
}
