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
/// library's checks (the schema's own constraints still apply).
pub async fn insert_raw(
    pool: &PgPool,
    user_id: &str,
    channel: &str,
    destination: &str,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "insert into herald.notifications (id, tenant, user_id, type, business_id, fingerprint, channel, destination, payload, max_attempts)
         values (gen_random_uuid(), 'default', $1, 't', 'raw-' || gen_random_uuid(), decode(repeat('00', 32), 'hex'), $2, $3, '{}', 3)
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
           insert into herald.notifications (id, tenant, user_id, type, business_id, fingerprint, channel, destination, payload, max_attempts, attempts, state, finished_at)
           select gen_random_uuid(), 'default', 'u', $2, $2 || '-' || $3 || '-' || $4 || '-' || g, decode(repeat('00', 32), 'hex'),
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
