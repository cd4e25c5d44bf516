//! SQL of the dispatcher: claim due work under a fresh lease, extend leases, record outcomes
//! fenced by the lease token, rescue expired leases, release leases at shutdown.
//!
//! Invariants:
//! - Every time written comes from the database clock (`now()`); durations are bound as
//!   seconds and added in SQL.
//! - A claim issues a new `lease_token`; every later change to a running row is conditional on
//!   `id` AND `lease_token` AND `state = 'running'`, so a worker whose lease expired and was
//!   taken over changes nothing.
//! - An attempt is counted when it is claimed, so a notification that crashes its daemon still
//!   runs out of attempts instead of looping forever.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::delivery::{Delivery, Endpoint, Target};
use crate::key::Key;
use crate::payload::Payload;
use crate::state::{AttemptKind, Channel, State};

/// A claimed row as the claim returns it; [`Delivery`] is what the rest of herald sees.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: Uuid,
    tenant: String,
    user_id: String,
    #[sqlx(rename = "type")]
    type_: String,
    business_id: String,
    #[sqlx(try_from = "String")]
    channel: Channel,
    destination: String,
    payload: Payload,
    attempts: i32,
    max_attempts: i32,
    created_at: DateTime<Utc>,
    lease_token: Uuid,
    claimed_at_unix: i64,
    // The webhook endpoint's columns: all null for email, or when the endpoint row is gone.
    endpoint_url: Option<String>,
    endpoint_secret: Option<String>,
    endpoint_previous_secret: Option<String>,
    endpoint_enabled: Option<bool>,
    endpoint_disabled_reason: Option<String>,
}

impl From<ClaimedRow> for Delivery {
    fn from(row: ClaimedRow) -> Self {
        let target = match row.channel {
            Channel::Email => Target::Email {
                address: row.destination,
            },
            Channel::Webhook => Target::Webhook {
                endpoint: match (row.endpoint_url, row.endpoint_secret, row.endpoint_enabled) {
                    (Some(url), Some(secret), Some(enabled)) => Some(Endpoint {
                        url,
                        secret,
                        previous_secret: row.endpoint_previous_secret,
                        enabled,
                        disabled_reason: row.endpoint_disabled_reason,
                    }),
                    _ => None,
                },
                endpoint_id: row.destination,
            },
        };
        Delivery {
            id: row.id,
            key: Key {
                tenant: row.tenant,
                user_id: row.user_id,
                type_: row.type_,
                business_id: row.business_id,
            },
            payload: row.payload,
            attempt: row.attempts,
            max_attempts: row.max_attempts,
            created_at: row.created_at,
            lease_token: row.lease_token,
            claimed_at_unix: row.claimed_at_unix,
            target,
        }
    }
}

/// The rows of held leases (`$1` ids, `$2` tokens) still running, locked in id order. A
/// matching token means running (the `notifications_lease_iff_running` CHECK); the statement
/// says no more on purpose: a `state = 'running'` condition lets the planner scan the whole
/// `notifications_lease_expiry` partial index, dead entries of every finished lease included,
/// instead of looking each id up by primary key. Every
/// statement that updates several of a daemon's leases locks them this way (`record_outcomes`
/// too), so they cannot deadlock one another.
macro_rules! locked_leases {
    () => {
        "
        with locked as (
            select n.id from herald.notifications n
            join unnest($1::uuid[], $2::uuid[]) as held(id, token)
              on n.id = held.id and n.lease_token = held.token
            order by n.id
            for update of n
        )"
    };
}

/// Claims up to `limit` due pending notifications, oldest `run_at` first, skipping rows other
/// daemons hold locked.
pub async fn claim_due(
    conn: &mut PgConnection,
    owner: &str,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Delivery>, sqlx::Error> {
    const SQL: &str = "
        with due as (
            select id from herald.notifications
            where state = 'pending' and run_at <= now()
            order by run_at
            limit $1
            for update skip locked
        ),
        claimed as (
            update herald.notifications n
            set state = 'running',
                attempts = n.attempts + 1,
                lease_token = gen_random_uuid(),
                lease_owner = $2,
                lease_expires_at = now() + make_interval(secs => $3),
                attempted_at = now()
            from due
            where n.id = due.id
            -- created_at within what chrono reads: only a plain-SQL writer stores `infinity`
            -- or a year past 262,000, and decoding it would panic the claim.
            returning n.id, n.tenant, n.user_id, n.type, n.business_id, n.channel, n.destination,
                      n.payload, n.attempts, n.max_attempts,
                      greatest(least(n.created_at, '9999-12-31 23:59:59.999999+00'::timestamptz),
                               '0001-01-01 00:00:00+00'::timestamptz) as created_at,
                      n.lease_token
        )
        select c.*, extract(epoch from now())::int8 as claimed_at_unix,
               e.url as endpoint_url, e.secret as endpoint_secret,
               case when e.previous_secret_expires_at > now() then e.previous_secret end
                   as endpoint_previous_secret,
               e.enabled as endpoint_enabled, e.disabled_reason as endpoint_disabled_reason
        from claimed c
        left join herald.webhook_endpoints e
               on e.tenant = c.tenant
              and e.id = case when c.channel = 'webhook' and c.destination ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                              then c.destination::uuid end";
    let rows: Vec<ClaimedRow> = sqlx::query_as(SQL)
        .bind(limit)
        .bind(owner)
        .bind(lease.as_secs_f64())
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(Delivery::from).collect())
}

/// Extends the leases still held; returns the tokens that were extended (a token missing from
/// the answer was lost: its lease expired and another daemon may have taken it over).
pub async fn extend_leases(
    conn: &mut PgConnection,
    held: &[(Uuid, Uuid)],
    lease: Duration,
) -> Result<Vec<Uuid>, sqlx::Error> {
    const SQL: &str = concat!(
        locked_leases!(),
        "
        update herald.notifications n
        set lease_expires_at = now() + make_interval(secs => $3)
        from locked
        where n.id = locked.id
        returning n.lease_token"
    );
    let (ids, tokens): (Vec<Uuid>, Vec<Uuid>) = held.iter().copied().unzip();
    sqlx::query_scalar(SQL)
        .bind(ids)
        .bind(tokens)
        .bind(lease.as_secs_f64())
        .fetch_all(conn)
        .await
}

/// One attempt's outcome to write, fenced by the lease it was made under (the dispatcher's
/// `Decision`, flattened into what the statement binds).
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeRow {
    pub id: Uuid,
    pub lease_token: Uuid,
    /// `Delivered`, `Pending` (a retry) or `Dead`.
    pub next_state: State,
    /// For a retry: how long from now until it is due.
    pub retry_in: Duration,
    pub outcome: AttemptKind,
    pub status: Option<i32>,
    /// The attempt's error, or the receiver's answer.
    pub error: Option<String>,
    /// The notification's `last_error` (None once delivered).
    pub last_error: Option<String>,
}

/// Records one attempt's outcome, fenced by the lease token: `false` when the lease was lost
/// and nothing was written.
pub async fn record_outcome(
    conn: &mut PgConnection,
    attempt: OutcomeRow,
) -> Result<bool, sqlx::Error> {
    let held = (attempt.id, attempt.lease_token);
    Ok(record_outcomes(conn, &[attempt]).await?.contains(&held))
}

/// Records many attempts in one statement (one commit), each fenced by its own lease token.
/// Returns the ids that were recorded; any other lost its lease and nothing was written for it.
/// Rows are locked in id order, as `extend_leases` does, so the two cannot deadlock.
pub async fn record_outcomes(
    conn: &mut PgConnection,
    attempts: &[OutcomeRow],
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    const SQL: &str = "
        with input as (
            select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::float8[], $5::text[],
                                 $6::text[], $7::int4[], $8::text[])
              as t(id, token, next_state, retry_secs, last_error, outcome, status, error)
        ),
        locked as (
            select i.* from herald.notifications n
            join input i on n.id = i.id and n.lease_token = i.token
            order by n.id
            for update of n
        ),
        -- Joins only `locked`, which carries the input: the planner guesses 10 rows for an
        -- unnest, and a second join with `input` becomes a nested loop over all of it for
        -- every row (quadratic in the batch).
        done as (
            update herald.notifications n
            set state = l.next_state,
                run_at = case when l.next_state = 'pending'
                              then now() + make_interval(secs => l.retry_secs) else n.run_at end,
                finished_at = case when l.next_state = 'pending' then null else now() end,
                last_error = l.last_error,
                lease_token = null, lease_owner = null, lease_expires_at = null
            from locked l
            where n.id = l.id and n.lease_token = l.token
            returning n.id, l.token, n.attempts, n.attempted_at, l.outcome, l.status, l.error
        ),
        logged as (
            insert into herald.attempts
                (notification_id, attempt, started_at, finished_at, outcome, status, error, lease_token)
            select id, herald.next_attempt_number(id), coalesce(attempted_at, now()), now(),
                   outcome, status, error, token
            from done
        )
        select id, token from done";
    let n = attempts.len();
    let (mut ids, mut tokens, mut states, mut retry) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut last_errors, mut outcomes, mut statuses, mut errors) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for a in attempts {
        ids.push(a.id);
        tokens.push(a.lease_token);
        states.push(a.next_state.as_str());
        retry.push(a.retry_in.as_secs_f64());
        last_errors.push(a.last_error.as_deref());
        outcomes.push(a.outcome.as_str());
        statuses.push(a.status);
        errors.push(a.error.as_deref());
    }
    sqlx::query_as(SQL)
        .bind(ids)
        .bind(tokens)
        .bind(states)
        .bind(retry)
        .bind(last_errors)
        .bind(outcomes)
        .bind(statuses)
        .bind(errors)
        .fetch_all(conn)
        .await
}

/// Whether an attempt made under this lease is in the log: after a write whose answer was lost
/// (the connection dropped after the commit), it tells "recorded" from "lease lost".
pub async fn attempt_logged(
    conn: &mut PgConnection,
    id: Uuid,
    lease_token: Uuid,
) -> Result<bool, sqlx::Error> {
    const SQL: &str = "
        select exists (select 1 from herald.attempts where notification_id = $1 and lease_token = $2)";
    sqlx::query_scalar(SQL)
        .bind(id)
        .bind(lease_token)
        .fetch_one(conn)
        .await
}

/// Returns running notifications whose lease expired (their daemon crashed or lost the
/// database) to `pending`, due at once, or to `dead` when that was their last attempt; each
/// gets an attempt row with outcome `unknown`. Returns how many were rescued.
pub async fn rescue_expired(conn: &mut PgConnection, limit: i64) -> Result<u64, sqlx::Error> {
    const SQL: &str = "
        with expired as (
            select id, lease_token from herald.notifications
            where state = 'running' and lease_expires_at < now()
            order by lease_expires_at
            limit $1
            for update skip locked
        ),
        rescued as (
            update herald.notifications n
            set state = case when n.attempts >= n.max_attempts then 'dead' else 'pending' end,
                finished_at = case when n.attempts >= n.max_attempts then now() end,
                run_at = now(),
                last_error = 'lease of ' || n.lease_owner || ' expired during attempt '
                             || n.attempts || ': the daemon stopped without recording an outcome',
                lease_token = null, lease_owner = null, lease_expires_at = null
            from expired
            where n.id = expired.id
            returning n.id, n.attempts, n.attempted_at, n.last_error, expired.lease_token
        )
        insert into herald.attempts
            (notification_id, attempt, started_at, finished_at, outcome, error, lease_token)
        select id, herald.next_attempt_number(id), coalesce(attempted_at, now()), now(), 'unknown',
               last_error, lease_token
        from rescued";
    Ok(sqlx::query(SQL)
        .bind(limit)
        .execute(conn)
        .await?
        .rows_affected())
}

/// Shutdown: hands unfinished claims back at once, without spending their attempt (the
/// delivery was interrupted by herald, not refused by the receiver; if it did reach the
/// receiver, the retry carries the same delivery id). Returns how many were released.
pub async fn release(conn: &mut PgConnection, held: &[(Uuid, Uuid)]) -> Result<u64, sqlx::Error> {
    const SQL: &str = concat!(
        locked_leases!(),
        "
        update herald.notifications n
        set state = 'pending', run_at = now(), attempts = n.attempts - 1,
            lease_token = null, lease_owner = null, lease_expires_at = null
        from locked
        where n.id = locked.id"
    );
    let (ids, tokens): (Vec<Uuid>, Vec<Uuid>) = held.iter().copied().unzip();
    Ok(sqlx::query(SQL)
        .bind(ids)
        .bind(tokens)
        .execute(conn)
        .await?
        .rows_affected())
}

/// Disables an endpoint (a receiver answered 410 Gone); returns whether it was enabled.
pub async fn disable_endpoint(
    conn: &mut PgConnection,
    id: Uuid,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    const SQL: &str = "
        update herald.webhook_endpoints set enabled = false, disabled_reason = $2
        where id = $1 and enabled";
    Ok(sqlx::query(SQL)
        .bind(id)
        .bind(reason)
        .execute(conn)
        .await?
        .rows_affected()
        == 1)
}

/// Whether any daemon has work left: a notification being delivered (or one whose daemon
/// stopped without finishing: its lease has yet to expire), or one due now.
pub async fn any_work_left(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    const SQL: &str = "
        select exists (select 1 from herald.notifications where state = 'running')
            or exists (select 1 from herald.notifications
                       where state = 'pending' and run_at <= now())";
    sqlx::query_scalar(SQL).fetch_one(conn).await
}

/// How many of `ids` are still waiting for a retry or being delivered.
pub async fn count_unfinished(conn: &mut PgConnection, ids: &[Uuid]) -> Result<i64, sqlx::Error> {
    const SQL: &str = "
        select count(*) from herald.notifications
        where id = any($1) and state in ('pending', 'running')";
    sqlx::query_scalar(SQL).bind(ids).fetch_one(conn).await
}
