//! SQL of the dispatcher: claim due work under a fresh lease, extend leases, record outcomes
//! fenced by the lease token, rescue expired leases, release leases at shutdown.
//!
//! Invariants:
//! - Every time written comes from the database clock (`now()`); durations are bound as
//!   seconds and added in SQL.
//! - Claims, outcomes, rescues and releases touch the narrow `herald.queue` row; the wide
//!   `herald.intents` row is read at the claim and written once, when the notification finishes.
//! - A claim issues a new `lease_token` (chosen by the claimer, random); every later change to a leased queue row is conditional
//!   on `id` AND `lease_token`, so a worker whose lease expired and was taken over changes
//!   nothing.
//! - What is in flight is the leased queue rows; no counter is kept. Destinations without a
//!   limit or a breaker that is not closed are not written on the way of a delivery.
//! - Claims lock destination rows with SKIP LOCKED and never wait; statements that end leases
//!   lock queue rows in id order, then the destination rows they change in key order. No cycle
//!   can form.
//! - An attempt is counted when it is claimed, so a notification that crashes its daemon still
//!   runs out of attempts instead of looping forever.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::delivery::{Delivery, Endpoint, Target};
use crate::key::Key;
use crate::payload::Payload;
use crate::pooling;
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
    probe: bool,
    /// The last lane in the rotation this claim served: the next claim starts after it.
    last_served_destination: Option<String>,
    last_served_tenant: Option<String>,
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
            probe: row.probe,
        }
    }
}

/// The queue rows of held leases (`$1` ids, `$2` tokens), locked in id order. Every statement
/// that updates several of a daemon's leases locks them this way (`record_outcomes` too), so
/// they cannot deadlock one another.
macro_rules! locked_leases {
    () => {
        "
        with locked as (
            select q.id, q.destination, q.lease_token from herald.queue q
            join unnest($1::uuid[], $2::uuid[]) as held(id, token)
              on q.id = held.id and q.lease_token = held.token
            order by q.id
            for update of q
        )"
    };
}

/// For the leases a statement ended without an attempt's verdict on the destination (a
/// rescue, a release; `ended` has one row per lease, with its `lease_token`): a half-open
/// breaker whose probe was one of them is open again and probes at once. Other leases of a
/// half-open destination (claimed before it opened) ending say nothing about it. Only such rows are
/// locked, in key order, so statements that end leases of several destinations cannot
/// deadlock one another.
macro_rules! reopen_unjudged_probes {
    ($ended:literal) => {
        concat!(
            "
        probing as (
            select d.key from herald.destinations d
            where d.breaker = 'half_open'
              and d.probe_lease in (select e.lease_token from ",
            $ended,
            " e)
            order by d.key
            for update of d
        ),
        reopened as (
            update herald.destinations d
            set breaker = 'open', next_probe_at = now(), probe_lease = null,
                probes_failing_since = null, probe_failed_at = null
            from probing p
            where d.key = p.key and d.breaker = 'half_open'
              and d.probe_lease in (select e.lease_token from ",
            $ended,
            " e)
        )"
        )
    };
}

/// A breaker that changed state in an outcome statement.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BreakerChange {
    /// `smtp`, or the endpoint id.
    pub destination: String,
    pub endpoint_id: Option<Uuid>,
    /// The endpoint's tenant (None for the relay).
    pub tenant: Option<String>,
    /// `closed`, `open` or `half_open`.
    pub from: String,
    pub to: String,
    pub at: DateTime<Utc>,
    pub consecutive_failures: i32,
    pub opened_at: Option<DateTime<Utc>>,
    pub next_probe_at: Option<DateTime<Utc>>,
}

/// When breakers open and probe (the `[breaker]` settings).
#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    pub failures: u32,
    pub probe_interval: Duration,
    pub max_probe_interval: Duration,
}

/// What an outcome statement wrote.
#[derive(Debug, Default)]
pub struct Recorded {
    /// The `(id, lease token)` pairs recorded; any other lost its lease.
    pub leases: Vec<(Uuid, Uuid)>,
    pub breakers: Vec<BreakerChange>,
}

/// Claims up to `limit` due notifications under fresh leases, sharing them fairly among the
/// destinations and tenants with due work, within each destination's limits.
///
/// How the share is decided, in one statement (`herald.claim`, migration 0006: planned once per
/// session, with the planner settings that keep every step an index probe):
/// - Lanes are the `(destination, tenant)` pairs of the queue. A claim looks at a window of
///   them: the next `max(2 × limit, 64)` lanes after `cursor` (the last lane this daemon's
///   previous claim served, wrapping around) that have work it could take now, found by
///   skipping through `queue_lanes` (an index probe or two a lane). Successive claims rotate
///   through all lanes, however many there are.
/// - What is in flight where is counted from the leased queue rows (`queue_leased`).
/// - A destination with a limit, a throttle or a breaker that is not closed is *guarded*: it
///   takes part only if its row can be locked now (SKIP LOCKED: another daemon's claim is
///   serving it) and no claim took work from it since this statement's snapshot (`claims`
///   unchanged), so the snapshot's in-flight count is exact, and only while its breaker admits
///   work (a probe when one is due), it is not throttled, and it has room under
///   `max_in_flight` and a token in its bucket. Other destinations are share-locked (claims do
///   not exclude one another) and never written on the way of a delivery; the lock makes a
///   claim that raced a breaker opening see it.
/// - Each lane offers at most the rows it could win (its in-flight counts bound the loads of
///   its rows from below), and each candidate gets a load: its destination's deliveries in flight plus its place in that
///   destination's line (lanes of one destination take turns), plus the same for its tenant.
///   The rows with the least load win, the next in the rotation first among equals: a
///   destination or tenant with little in flight is served before one with much, so a slow
///   endpoint or a bursting tenant never holds every worker while anyone else has due work,
///   and a destination alone still gets every worker. They are locked in that order, skipping
///   rows a concurrent claim holds.
///
/// The claim takes at most one row per token in `tokens` and leases each to `owner` under one
/// of them. The caller picks them so that it knows what to hand back ([`release`]) when the
/// answer is lost: the claim may have committed all the same.
pub async fn claim_from(
    conn: &mut PgConnection,
    owner: &str,
    tokens: &[Uuid],
    lease: Duration,
    cursor: &mut LaneCursor,
) -> Result<Vec<Delivery>, sqlx::Error> {
    // The statement is `herald.claim` (migration 0006), which carries its planner settings.
    const SQL: &str = "select * from herald.claim($1, $2, $3, $4, $5, $6)";
    let (after_destination, after_tenant) = match &cursor.0 {
        Some((destination, tenant)) => (Some(destination.as_str()), Some(tenant.as_str())),
        None => (None, None),
    };
    let rows: Vec<ClaimedRow> = pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL)
            .bind(tokens.len() as i64)
            .bind(owner)
            .bind(lease.as_secs_f64())
            .bind(after_destination)
            .bind(after_tenant)
            .bind(tokens)
            .fetch_all(conn)
            .await
    })
    .await?;
    if let Some(row) = rows.first()
        && let (Some(destination), Some(tenant)) =
            (&row.last_served_destination, &row.last_served_tenant)
    {
        cursor.0 = Some((destination.clone(), tenant.clone()));
    }
    Ok(rows.into_iter().map(Delivery::from).collect())
}

/// Claims up to `limit` rows as [`claim_from`] does, starting from the first lane, under new
/// random tokens.
pub async fn claim_due(
    conn: &mut PgConnection,
    owner: &str,
    limit: usize,
    lease: Duration,
) -> Result<Vec<Delivery>, sqlx::Error> {
    let tokens = lease_tokens(limit);
    claim_from(conn, owner, &tokens, lease, &mut LaneCursor::default()).await
}

/// `count` new lease tokens for a claim.
pub fn lease_tokens(count: usize) -> Vec<Uuid> {
    (0..count).map(|_| Uuid::new_v4()).collect()
}

/// Where the last claim's window of lanes ended: the next claim looks at the lanes after it.
#[derive(Debug, Clone, Default)]
pub struct LaneCursor(Option<(String, String)>);

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
        update herald.queue q
        set run_at = now() + make_interval(secs => $3)
        from locked
        where q.id = locked.id
        returning q.lease_token"
    );
    let (ids, tokens): (Vec<Uuid>, Vec<Uuid>) = held.iter().copied().unzip();
    pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar(SQL)
            .bind(ids)
            .bind(tokens)
            .bind(lease.as_secs_f64())
            .fetch_all(conn)
            .await
    })
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
    /// What the attempt says about its destination: `healthy`, `failing`, `throttled` or
    /// `neutral` (the dispatcher's `Signal`).
    pub signal: &'static str,
    /// For `throttled`: seconds to hold the destination back.
    pub throttle_secs: Option<f64>,
}

/// Records one attempt's outcome, fenced by the lease token: `false` when the lease was lost
/// and nothing was written.
pub async fn record_outcome(
    conn: &mut PgConnection,
    attempt: OutcomeRow,
    policy: BreakerPolicy,
) -> Result<bool, sqlx::Error> {
    let held = (attempt.id, attempt.lease_token);
    Ok(record_outcomes(conn, &[attempt], policy)
        .await?
        .leases
        .contains(&held))
}

/// Records many attempts in one statement (one commit), each fenced by its own lease token,
/// and what they say about their destinations: in-flight counts, breakers, throttles.
/// Rows are locked in id order, as `extend_leases` does, so the two cannot deadlock.
///
/// A destination's breaker, over the batch: any delivery closes it and zeroes its failures;
/// otherwise each `failing` attempt adds one, and `breaker.failures` in a row open it (probe
/// after `probe_interval`). A half-open breaker's probe that did not succeed opens it again:
/// a failure doubles the interval (up to the maximum), anything else probes again at once.
pub async fn record_outcomes(
    conn: &mut PgConnection,
    attempts: &[OutcomeRow],
    policy: BreakerPolicy,
) -> Result<Recorded, sqlx::Error> {
    const SQL: &str = "
        with input as (
            select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::float8[], $5::text[],
                                 $6::text[], $7::int4[], $8::text[], $9::text[], $10::float8[])
              as t(id, token, next_state, retry_secs, last_error, outcome, status, error,
                   signal, throttle_secs)
        ),
        locked as (
            select i.*, q.destination, q.attempts, q.attempted_at from herald.queue q
            join input i on q.id = i.id and q.lease_token = i.token
            order by q.id
            for update of q
        ),
        -- Each statement below joins only `locked`, which carries the input: the planner
        -- guesses 10 rows for an unnest, and a second join with `input` becomes a nested loop
        -- over all of it for every row (quadratic in the batch).
        retried as (
            update herald.queue q
            set run_at = now() + make_interval(secs => l.retry_secs),
                last_error = l.last_error,
                lease_token = null, lease_owner = null
            from locked l
            where q.id = l.id and l.next_state = 'pending'
        ),
        dequeued as (
            delete from herald.queue q using locked l
            where q.id = l.id and l.next_state <> 'pending'
        ),
        finished as (
            update herald.intents n
            set state = l.next_state, finished_at = now(), last_error = l.last_error,
                attempts = l.attempts, attempted_at = l.attempted_at
            from locked l
            where n.id = l.id and l.next_state <> 'pending'
        ),
        logged as (
            insert into herald.attempts
                (notification_id, attempt, started_at, finished_at, outcome, status, error, lease_token)
            select id, herald.next_attempt_number(id), coalesce(attempted_at, now()), now(),
                   outcome, status, error, token
            from locked
        ),
        verdicts as (
            select l.destination,
                   bool_or(l.signal = 'healthy') as healthy,
                   (count(*) filter (where l.signal = 'failing'))::int4 as failing,
                   max(l.throttle_secs) as throttle_secs
            from locked l group by l.destination
        ),
        -- The destinations whose row this batch changes, as the snapshot sees them: a delivery
        -- to a closed breaker with no failures counted changes nothing, and writes nothing.
        affected as (
            select v.destination from verdicts v
            join herald.destinations d on d.key = v.destination
            where v.failing > 0 or v.throttle_secs is not null or d.breaker <> 'closed'
               or (v.healthy and d.consecutive_failures > 0)
        ),
        -- In key order, so that outcome statements of several daemons cannot deadlock; the
        -- newest row versions, so that `before` is what this statement changes.
        before as (
            select d.key, d.breaker, d.consecutive_failures, d.probe_lease
            from herald.destinations d
            where d.key in (select a.destination from affected a)
            order by d.key
            for update of d
        ),
        -- A half-open breaker moves on with its probe's verdict only: the outcomes of other
        -- deliveries, claimed before it opened, count failures but do not reopen it.
        probes as (
            select b.key, l.signal = 'failing' as failed from before b
            join locked l on l.token = b.probe_lease
            where b.breaker = 'half_open'
        ),
        judged as (
            select b.key, v.healthy, v.failing, v.throttle_secs,
                   p.key is not null as probe_ended, coalesce(p.failed, false) as probe_failed,
                   case when v.healthy then 'closed'
                        when b.breaker = 'half_open' and p.key is not null then 'open'
                        when b.breaker = 'closed' and b.consecutive_failures + v.failing >= $11
                             and v.failing > 0 then 'open'
                        else b.breaker end as breaker,
                   b.breaker as was
            from before b
            join verdicts v on v.destination = b.key
            left join probes p on p.key = b.key
        ),
        changed as (
            update herald.destinations d
            set consecutive_failures = case when j.healthy then 0
                                            else d.consecutive_failures + j.failing end,
                breaker = j.breaker,
                -- The moment it opened is when this statement holds the row, after any claim
                -- that held it (and took work while it was closed) let go; not the start of
                -- the statement.
                breaker_opened_at = case when j.breaker = 'closed' then null
                                         when j.was = 'closed' then clock_timestamp()
                                         else d.breaker_opened_at end,
                probe_interval = case when j.breaker = 'closed' then null
                                      when j.was = 'closed' then $12
                                      when j.probe_failed then least(d.probe_interval * 2, $13)
                                      else d.probe_interval end,
                next_probe_at = case when j.breaker = 'closed' then null
                                     when j.was = 'closed' then now() + make_interval(secs => $12)
                                     when j.probe_failed
                                         then now() + make_interval(secs => least(d.probe_interval * 2, $13))
                                     when j.probe_ended then greatest(now(), d.throttled_until)
                                     else d.next_probe_at end,
                probe_lease = case when j.breaker = 'half_open' then d.probe_lease end,
                -- The run of failed probes `breaker.disable_after` measures: a failed verdict
                -- starts it or carries it on, any other verdict (or opening, or closing) ends it.
                probes_failing_since = case when j.breaker = 'closed' or j.was = 'closed' then null
                                            when j.probe_failed
                                                then coalesce(d.probes_failing_since, clock_timestamp())
                                            when j.probe_ended then null
                                            else d.probes_failing_since end,
                probe_failed_at = case when j.breaker = 'closed' or j.was = 'closed' then null
                                       when j.probe_failed then clock_timestamp()
                                       when j.probe_ended then null
                                       else d.probe_failed_at end,
                throttled_until = case when j.throttle_secs is null then d.throttled_until
                                       else greatest(d.throttled_until,
                                                     now() + make_interval(secs => j.throttle_secs)) end
            from judged j
            where d.key = j.key
            returning d.key, d.endpoint_id, d.tenant, j.was, d.breaker, d.consecutive_failures,
                      d.breaker_opened_at, d.next_probe_at
        )
        select l.id, l.token, null::text as destination, null::uuid as endpoint_id,
               null::text as tenant, null::text as was, null::text as breaker, null::int4 as failures,
               null::timestamptz as opened_at, null::timestamptz as next_probe_at, now() as at
        from locked l
        union all
        select null, null, c.key, c.endpoint_id, c.tenant, c.was, c.breaker, c.consecutive_failures,
               c.breaker_opened_at, c.next_probe_at, now()
        from changed c where c.was <> c.breaker";
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Option<Uuid>,
        token: Option<Uuid>,
        destination: Option<String>,
        endpoint_id: Option<Uuid>,
        tenant: Option<String>,
        was: Option<String>,
        breaker: Option<String>,
        failures: Option<i32>,
        opened_at: Option<DateTime<Utc>>,
        next_probe_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    }
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
    let (mut signals, mut throttles) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for a in attempts {
        ids.push(a.id);
        tokens.push(a.lease_token);
        states.push(a.next_state.as_str());
        retry.push(a.retry_in.as_secs_f64());
        last_errors.push(a.last_error.as_deref());
        outcomes.push(a.outcome.as_str());
        statuses.push(a.status);
        errors.push(a.error.as_deref());
        signals.push(a.signal);
        throttles.push(a.throttle_secs);
    }
    let rows: Vec<Row> = pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL)
            .bind(ids)
            .bind(tokens)
            .bind(states)
            .bind(retry)
            .bind(last_errors)
            .bind(outcomes)
            .bind(statuses)
            .bind(errors)
            .bind(signals)
            .bind(throttles)
            .bind(i32::try_from(policy.failures).unwrap_or(i32::MAX))
            .bind(policy.probe_interval.as_secs_f64())
            .bind(policy.max_probe_interval.as_secs_f64())
            .fetch_all(conn)
            .await
    })
    .await?;
    let mut recorded = Recorded::default();
    for row in rows {
        match (row.id, row.token, row.destination) {
            (Some(id), Some(token), _) => recorded.leases.push((id, token)),
            (_, _, Some(destination)) => recorded.breakers.push(BreakerChange {
                destination,
                endpoint_id: row.endpoint_id,
                tenant: row.tenant,
                from: row.was.unwrap_or_default(),
                to: row.breaker.unwrap_or_default(),
                at: row.at,
                consecutive_failures: row.failures.unwrap_or(0),
                opened_at: row.opened_at,
                next_probe_at: row.next_probe_at,
            }),
            _ => {}
        }
    }
    Ok(recorded)
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
    pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar(SQL)
            .bind(id)
            .bind(lease_token)
            .fetch_one(conn)
            .await
    })
    .await
}

/// Returns running notifications whose lease expired (their daemon crashed or lost the
/// database) to `pending`, due at once, or to `dead` when that was their last attempt; each
/// gets an attempt row with outcome `unknown`. Returns how many were rescued.
pub async fn rescue_expired(conn: &mut PgConnection, limit: i64) -> Result<Rescued, sqlx::Error> {
    const SQL: &str = concat!(
        "
        with expired as (
            select q.id, q.lease_token, q.attempts, q.attempted_at, q.destination,
                   q.attempts >= n.max_attempts as last,
                   'lease of ' || q.lease_owner || ' expired during attempt ' || q.attempts
                   || ': the daemon stopped without recording an outcome' as error
            from herald.queue q join herald.intents n on n.id = q.id
            where q.lease_token is not null and q.run_at < now()
            order by q.run_at
            limit $1
            for update of q skip locked
        ),
        requeued as (
            update herald.queue q
            set run_at = now(), last_error = e.error, lease_token = null, lease_owner = null
            from expired e
            where q.id = e.id and not e.last
        ),
        dequeued as (
            delete from herald.queue q using expired e where q.id = e.id and e.last
        ),
        finished as (
            update herald.intents n
            set state = 'dead', finished_at = now(), last_error = e.error,
                attempts = e.attempts, attempted_at = e.attempted_at
            from expired e
            where n.id = e.id and e.last
        ),",
        reopen_unjudged_probes!("expired"),
        ",
        logged as (
            insert into herald.attempts
                (notification_id, attempt, started_at, finished_at, outcome, error, lease_token)
            select id, herald.next_attempt_number(id), coalesce(attempted_at, now()), now(),
                   'unknown', error, lease_token
            from expired
        )
        select id, last from expired"
    );
    let rows: Vec<(Uuid, bool)> = pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).bind(limit).fetch_all(conn).await
    })
    .await?;
    Ok(Rescued {
        count: rows.len() as u64,
        dead: rows
            .into_iter()
            .filter_map(|(id, last)| last.then_some(id))
            .collect(),
    })
}

/// What a rescue did.
#[derive(Debug, Default)]
pub struct Rescued {
    /// Expired leases taken back.
    pub count: u64,
    /// Those that were on their last attempt, now dead.
    pub dead: Vec<Uuid>,
}

/// Hands leases back at once, without spending their attempt: at shutdown (the delivery was
/// interrupted by herald, not refused by the receiver; if it did reach the receiver, the retry
/// carries the same delivery id), and after a claim whose answer was lost (the database went
/// down between the claim's commit and its reply: the rows are leased to a daemon that never
/// learned of them, and nothing was sent). Returns how many were released.
pub async fn release(conn: &mut PgConnection, tokens: &[Uuid]) -> Result<u64, sqlx::Error> {
    const SQL: &str = concat!(
        "
        with locked as (
            select q.id, q.destination, q.lease_token from herald.queue q
            where q.lease_token = any($1)
            order by q.id
            for update of q
        ),
        released as (
            update herald.queue q
            set run_at = now(), attempts = q.attempts - 1, lease_token = null, lease_owner = null
            from locked
            where q.id = locked.id
        ),",
        reopen_unjudged_probes!("locked"),
        "
        select count(*) from locked"
    );
    let released: i64 = pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar(SQL)
            .bind(tokens)
            .fetch_one(conn)
            .await
    })
    .await?;
    Ok(u64::try_from(released).unwrap_or(0))
}

/// An endpoint disabled because its breaker stayed open too long.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DisabledEndpoint {
    pub id: Uuid,
    pub tenant: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// Disables the enabled endpoints whose probes have all failed for `disable_after` (an unbroken
/// run of failed verdicts from its first to its latest: a lost probe or any other verdict
/// starts the count again) with notifications waiting, and ends
/// their waiting notifications `dead` with `endpoint <id> disabled: <reason>` (deliveries in
/// flight finish as they will). The relay's breaker never disables anything. Returns the
/// endpoints and the notifications that went dead.
pub async fn disable_broken_endpoints(
    conn: &mut PgConnection,
    disable_after: Duration,
) -> Result<(Vec<DisabledEndpoint>, Vec<Uuid>), sqlx::Error> {
    const DISABLE: &str = "
        with broken as (
            select d.endpoint_id, d.breaker_opened_at, d.probes_failing_since
            from herald.destinations d
            where d.endpoint_id is not null and d.breaker = 'open'
              and d.probe_failed_at - d.probes_failing_since >= make_interval(secs => $1)
              -- Only with notifications due and waiting: with nothing due there is nothing to
              -- probe with, and no evidence the endpoint is still down. Never while a probe is
              -- out (half-open): it may be the one that succeeds.
              and exists (select 1 from herald.queue q
                          where q.destination = d.key and q.lease_token is null
                            and q.run_at <= now())
            order by d.key
            for update of d skip locked
        )
        update herald.webhook_endpoints e
        set enabled = false,
            disabled_reason = 'circuit breaker open since '
                || to_char(b.breaker_opened_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                || ', probes failing since '
                || to_char(b.probes_failing_since at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                || ' (breaker.disable_after)'
        from broken b
        where e.id = b.endpoint_id and e.enabled
        returning e.id, e.tenant, e.disabled_reason as reason, now() as at";
    const DEAD: &str = "
        with waiting as (
            select q.id, q.attempts, q.attempted_at, e.id as endpoint_id, e.disabled_reason
            from herald.queue q
            join herald.webhook_endpoints e on q.destination = e.id::text
            where e.id = any($1) and q.lease_token is null
            for update of q skip locked
        ),
        dequeued as (
            delete from herald.queue q using waiting w where q.id = w.id
        )
        update herald.intents n
        set state = 'dead', finished_at = now(), attempts = w.attempts,
            attempted_at = w.attempted_at,
            last_error = 'endpoint ' || w.endpoint_id || ' disabled: ' || w.disabled_reason
        from waiting w
        where n.id = w.id
        returning n.id";
    pooling::in_transaction(conn, async |conn| {
        let disabled: Vec<DisabledEndpoint> = pooling::query_as(DISABLE)
            .bind(disable_after.as_secs_f64())
            .fetch_all(&mut *conn)
            .await?;
        if disabled.is_empty() {
            return Ok((disabled, Vec::new()));
        }
        let ids: Vec<Uuid> = disabled.iter().map(|d| d.id).collect();
        let dead = pooling::query_scalar(DEAD)
            .bind(ids)
            .fetch_all(conn)
            .await?;
        Ok((disabled, dead))
    })
    .await
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
    let done = pooling::in_transaction(conn, async |conn| {
        pooling::query(SQL)
            .bind(id)
            .bind(reason)
            .execute(conn)
            .await
    })
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether any daemon has work left: a notification being delivered (or one whose daemon
/// stopped without finishing: its lease has yet to expire), or one due now at a destination
/// that would take it. Work held back by a limit, a 429 or an open breaker is not waited for.
pub async fn any_work_left(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    const SQL: &str = "
        select exists (select 1 from herald.queue where lease_token is not null)
            or exists (
                select 1 from herald.queue q
                left join herald.destinations d on d.key = q.destination
                where q.lease_token is null and q.run_at <= now()
                  and (d.key is null
                       or ((d.throttled_until is null or d.throttled_until <= now())
                           and (d.breaker = 'closed'
                                or (d.breaker = 'open' and d.next_probe_at <= now()))
                           and (d.max_in_flight is null
                                or d.max_in_flight > (select count(*) from herald.queue x
                                                      where x.destination = d.key
                                                        and x.lease_token is not null))
                           and (d.rate_count is null or d.tokens is null or d.tokens >= 1
                                or d.tokens + extract(epoch from now() - d.tokens_at)::float8
                                   * d.rate_count / (case d.rate_unit when 'm' then 60.0 else 1.0 end)
                                   >= 1))))";
    pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar(SQL).fetch_one(conn).await
    })
    .await
}

/// How many of `ids` are still waiting for a retry or being delivered, leaving out those held
/// by an open breaker: they wait for the destination, not for their retry.
pub async fn count_unfinished(conn: &mut PgConnection, ids: &[Uuid]) -> Result<i64, sqlx::Error> {
    const SQL: &str = "
        select count(*) from herald.queue q
        left join herald.destinations d on d.key = q.destination
        where q.id = any($1)
          and (q.lease_token is not null or d.key is null or d.breaker = 'closed')";
    pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar(SQL).bind(ids).fetch_one(conn).await
    })
    .await
}
