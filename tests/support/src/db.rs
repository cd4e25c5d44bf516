//! Test databases: the migrated pool most tests start from, URLs of the server under test,
//! and the small queries many tests make.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

/// The fixture most tests start from: the fresh database that
/// `#[sqlx::test(migrations = false)]` hands a test, with herald's schema applied by
/// `herald::migrate`, handed back:
///
/// ```ignore
/// #[sqlx::test(migrations = false)]
/// async fn a_test(pool: PgPool) {
///     let pool = migrated(pool).await;
/// ```
///
/// Not `#[sqlx::test(migrator = …)]`: sqlx would run a bare `Migrator`, which skips what
/// `herald::migrate` does besides (the grants to herald's roles, the hand-over to
/// `herald_owner`, the refusal of a schema someone else prepared), so the tests would not meet
/// the schema users get.
pub async fn migrated(pool: PgPool) -> PgPool {
    herald::migrate(&pool)
        .await
        .expect("herald migrations apply");
    pool
}

/// A URL for the same server as `DATABASE_URL`, pointing at `database`.
pub fn url_for(database: &str) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let mut url = url::Url::parse(&base).expect("DATABASE_URL is a URL");
    url.set_path(database);
    url.to_string()
}

/// The URL of the database behind `pool`.
pub fn url_of(pool: &PgPool) -> String {
    let database = pool
        .connect_options()
        .get_database()
        .expect("test pools name a database")
        .to_owned();
    url_for(&database)
}

/// Waits until `sql` (a scalar boolean query) is true; fails the test after 60 s.
pub async fn wait_for_sql(pool: &PgPool, what: &str, sql: &'static str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done: Option<bool> = sqlx::query_scalar(sql).fetch_one(pool).await.unwrap();
        if done == Some(true) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Inserts a notification with plain SQL, as a writer in another language would, bypassing the
/// library's checks (the schema's own constraints still apply): a pending intent, whose queue
/// row the schema's trigger adds.
pub async fn insert_raw(
    pool: &PgPool,
    user_id: &str,
    channel: &str,
    destination: &str,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "insert into herald.intents (id, tenant, user_id, type, business_id, fingerprint, channel, destination, payload, max_attempts)
         values (herald.uuid_v7(), 'default', $1, 't', 'raw-' || gen_random_uuid(), decode(repeat('00', 32), 'hex'), $2, $3, '{}', 3)
         returning id",
    )
    .bind(user_id)
    .bind(channel)
    .bind(destination)
    .fetch_one(pool)
    .await
}

/// Counts of notifications by state, sorted by state.
pub async fn states(pool: &PgPool) -> Vec<(String, i64)> {
    sqlx::query_as("select state, count(*) from herald.notifications group by state order by state")
        .fetch_all(pool)
        .await
        .unwrap()
}

pub async fn count_notifications(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from herald.notifications")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Inserts `n` finished notifications of `type_`, finished `age` ago, each with one attempt.
pub async fn finished_rows(pool: &PgPool, n: i64, type_: &str, state: &str, age: &str) {
    sqlx::query(
        "with made as (
           insert into herald.intents (id, tenant, user_id, type, business_id, fingerprint, channel, destination, payload, max_attempts, attempts, state, finished_at)
           select herald._uuid_v7_at(now() - $4::interval), 'default', 'u', $2, $2 || '-' || $3 || '-' || $4 || '-' || g, decode(repeat('00', 32), 'hex'),
                  'email', 'a@b.co', '{}', 3, 1, $3, now() - $4::interval
           from generate_series(1, $1) g
           returning id)
         insert into herald.attempts (notification_id, attempt, started_at, finished_at, outcome)
         select id, 1, now() - $4::interval, now() - $4::interval, 'delivered' from made",
    )
    .bind(n)
    .bind(type_)
    .bind(state)
    .bind(age)
    .execute(pool)
    .await
    .unwrap();
}

/// Which notifications a state-setting helper ([`finish`], [`set_due`], [`lease`]) changes.
#[derive(Clone, Copy, Debug)]
pub enum Rows<'a> {
    All,
    Id(Uuid),
    /// The notifications with these business ids.
    BusinessIds(&'a [&'a str]),
}

impl From<Uuid> for Rows<'_> {
    fn from(id: Uuid) -> Self {
        Rows::Id(id)
    }
}

impl Rows<'_> {
    /// `$1` and `$2` of the helpers' statements (see `target!`).
    fn binds(self) -> (Option<Uuid>, Option<Vec<String>>) {
        match self {
            Rows::All => (None, None),
            Rows::Id(id) => (Some(id), None),
            Rows::BusinessIds(ids) => (None, Some(ids.iter().map(|&b| b.to_owned()).collect())),
        }
    }
}

/// A time the helpers write, as the database reads it (its clock, its input syntax).
#[derive(Clone, Copy, Debug)]
pub enum At<'a> {
    Now,
    /// `now()` less an interval, e.g. `Ago("31 days")`.
    Ago(&'a str),
    /// `now()` plus an interval, e.g. `In("1 day")`.
    In(&'a str),
    /// A timestamptz, e.g. `Time("2030-01-01T00:00:00Z")` or `Time("-infinity")`.
    Time(&'a str),
}

impl At<'_> {
    /// The two parameters of a time in the helpers' statements,
    /// `coalesce($n::timestamptz, now() + $m::interval)`: the time, or the interval to add.
    fn binds(self) -> (Option<String>, Option<String>) {
        match self {
            At::Now => (None, Some("0".to_owned())),
            At::Ago(interval) => (None, Some(format!("{interval} ago"))),
            At::In(interval) => (None, Some(interval.to_owned())),
            At::Time(time) => (Some(time.to_owned()), None),
        }
    }
}

/// The CTE `target(id)` of the helpers' statements: the intents that `$1` (an id, or null)
/// and `$2` (business ids, or null) choose, locked in id order.
macro_rules! target {
    () => {
        "with target as (
            select i.id from herald.intents i
            where ($1::uuid is null or i.id = $1)
              and ($2::text[] is null or i.business_id = any($2))
            order by i.id
            for update of i
        )"
    };
}

/// Finishes `rows` as the daemon or an operator would: `state` (`delivered`, `dead` or
/// `cancelled`) and `finished_at` on the intent, and its queue row gone. What the queue row
/// counted (attempts, the start of the latest one, the last error) stays on the intent. Returns
/// how many notifications it finished.
///
/// A notification finished before it was created was created then too: its `created_at` and
/// its id (a UUIDv7, whose time the sweep relies on) move back to `finished_at`, so a test can
/// finish a notification as if weeks had passed. Such a row must have no attempts yet.
pub async fn finish(
    pool: &PgPool,
    rows: impl Into<Rows<'_>>,
    state: &str,
    finished_at: At<'_>,
) -> u64 {
    const SQL: &str = concat!(
        target!(),
        ",
        dequeued as (
            delete from herald.queue q using target t where q.id = t.id
            returning q.id, q.destination, q.attempts, q.attempted_at, q.last_error, q.lease_token
        )
        update herald.intents i
        set state = $3, finished_at = coalesce($4::timestamptz, now() + $5::interval),
            id = case when coalesce($4::timestamptz, now() + $5::interval) < i.created_at
                      then herald._uuid_v7_at(coalesce($4::timestamptz, now() + $5::interval))
                      else i.id end,
            created_at = least(i.created_at, coalesce($4::timestamptz, now() + $5::interval)),
            attempts = coalesce(q.attempts, i.attempts),
            attempted_at = coalesce(q.attempted_at, i.attempted_at),
            last_error = case when q.id is null then i.last_error else q.last_error end
        from target t left join dequeued q on q.id = t.id
        where i.id = t.id"
    );
    assert!(
        ["delivered", "dead", "cancelled"].contains(&state),
        "{state} is not a finished state"
    );
    let (id, business_ids) = rows.into().binds();
    let (time, offset) = finished_at.binds();
    sqlx::query(SQL)
        .bind(id)
        .bind(business_ids)
        .bind(state)
        .bind(time)
        .bind(offset)
        .execute(pool)
        .await
        .unwrap()
        .rows_affected()
}

/// Makes the pending (unleased) notifications among `rows` due at `run_at`: their queue rows'
/// `run_at`, and the intents' too, as a row stored before migration 0005 has both. Returns how
/// many notifications it changed.
pub async fn set_due(pool: &PgPool, rows: impl Into<Rows<'_>>, run_at: At<'_>) -> u64 {
    const SQL: &str = concat!(
        target!(),
        ",
        queued as (
            update herald.queue q set run_at = coalesce($3::timestamptz, now() + $4::interval)
            from target t where q.id = t.id and q.lease_token is null
            returning q.id, q.run_at
        )
        update herald.intents i set run_at = q.run_at
        from queued q where i.id = q.id"
    );
    let (id, business_ids) = rows.into().binds();
    let (time, offset) = run_at.binds();
    sqlx::query(SQL)
        .bind(id)
        .bind(business_ids)
        .bind(time)
        .bind(offset)
        .execute(pool)
        .await
        .unwrap()
        .rows_affected()
}

/// Leases the pending (unleased) notifications among `rows` as a claim by `owner` would (one
/// more attempt, started at `attempted_at`; a fresh token; the lease expiring at `expires_at`,
/// in the past for one a crashed daemon left behind), so that they are `running`. Returns
/// `(id, lease token)` by id.
pub async fn lease(
    pool: &PgPool,
    rows: impl Into<Rows<'_>>,
    owner: &str,
    attempted_at: At<'_>,
    expires_at: At<'_>,
) -> Vec<(Uuid, Uuid)> {
    const SQL: &str = concat!(
        target!(),
        ",
        leased as (
            update herald.queue q
            set attempts = q.attempts + 1, lease_token = gen_random_uuid(), lease_owner = $3,
                attempted_at = coalesce($4::timestamptz, now() + $5::interval),
                run_at = coalesce($6::timestamptz, now() + $7::interval)
            from target t where q.id = t.id and q.lease_token is null
            returning q.id, q.lease_token, q.destination
        )
        select id, lease_token from leased order by id"
    );
    let (id, business_ids) = rows.into().binds();
    let (attempted, attempted_offset) = attempted_at.binds();
    let (expires, expires_offset) = expires_at.binds();
    sqlx::query_as(SQL)
        .bind(id)
        .bind(business_ids)
        .bind(owner)
        .bind(attempted)
        .bind(attempted_offset)
        .bind(expires)
        .bind(expires_offset)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The secret of endpoints registered by [`endpoint`] and [`endpoint_at`].
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Registers an enabled endpoint of `tenant` directly, as `endpoints add` would.
pub async fn endpoint(pool: &PgPool, tenant: &str) -> Uuid {
    endpoint_at(pool, tenant, "https://hooks.example.com/herald").await
}

/// Registers an endpoint with `url` without the registration check (the SSRF tests need
/// targets that `endpoints add` would refuse).
pub async fn endpoint_at(pool: &PgPool, tenant: &str, url: &str) -> Uuid {
    let id = Uuid::now_v7();
    herald::store::endpoints::insert(&mut pool.acquire().await.unwrap(), id, tenant, url, SECRET)
        .await
        .unwrap();
    id
}

pub async fn disable_endpoint(pool: &PgPool, id: Uuid, reason: &str) {
    sqlx::query(
        "update herald.webhook_endpoints set enabled = false, disabled_reason = $2 where id = $1",
    )
    .bind(id)
    .bind(reason)
    .execute(pool)
    .await
    .unwrap();
}
