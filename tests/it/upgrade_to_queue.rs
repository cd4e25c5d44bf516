//! Upgrading a working database to the narrow due queue (migration 0005): rows in every state,
//! attempt logs, a lease whose daemon crashed and a lease whose daemon is still delivering,
//! endpoints. After the upgrade readers see what they saw before, the live lease's outcome is
//! still accepted under its token, and a daemon finishes the rest with nothing lost or sent
//! twice.

use std::time::Duration;

use herald::State;
use herald::channel::AttemptKind;
use herald::store::dispatch::{OutcomeRow, record_outcome};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use uuid::Uuid;

use crate::support::daemon::{FAST, run_until_idle};
use crate::support::db::{SECRET, migrated};
use crate::support::receiver::{Receiver, Reply};

/// The database as migrations 0001–0004 left it.
async fn before_the_queue(pool: &PgPool) {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir("migrations").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0005" {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    let mut old = Migrator::new(dir.path()).await.unwrap();
    old.create_schema("herald");
    old.dangerous_set_table_name(herald::MIGRATIONS_TABLE);
    old.run(pool).await.unwrap();
}

/// A notification row as release 0004 wrote it, in `state`, with `attempts` logged.
#[allow(clippy::too_many_arguments)]
async fn old_row(
    pool: &PgPool,
    business_id: &str,
    endpoint: Uuid,
    state: &str,
    attempts: i32,
    lease: Option<(Uuid, &str)>,
) -> Uuid {
    let id = Uuid::now_v7();
    let finished = matches!(state, "delivered" | "dead" | "cancelled");
    sqlx::query(
        "insert into herald.notifications
             (id, tenant, user_id, type, business_id, fingerprint, channel, destination, payload,
              state, attempts, max_attempts, run_at, lease_token, lease_owner, lease_expires_at,
              attempted_at, finished_at, last_error)
         values ($1, 'default', 'u', 'upgrade', $2,
                 herald.fingerprint('webhook', $3::text, '{\"n\": 1}'), 'webhook', $3::text,
                 '{\"n\": 1}', $4, $5, 5, now() - interval '1 minute', $6, $7,
                 case when $6::uuid is null then null else $8 end,
                 case when $5 > 0 then now() - interval '2 minutes' end,
                 case when $9 then now() end,
                 case when $5 > 0 and $4 <> 'delivered' then 'HTTP 503' end)",
    )
    .bind(id)
    .bind(business_id)
    .bind(endpoint)
    .bind(state)
    .bind(attempts)
    .bind(lease.map(|(token, _)| token))
    .bind(lease.map(|(_, owner)| owner))
    .bind(if business_id == "crashed" {
        chrono::Utc::now() - chrono::Duration::minutes(1)
    } else {
        chrono::Utc::now() + chrono::Duration::hours(1)
    })
    .bind(finished)
    .execute(pool)
    .await
    .unwrap();
    for attempt in 1..=attempts {
        sqlx::query(
            "insert into herald.attempts (notification_id, attempt, started_at, finished_at, outcome, status)
             values ($1, $2, now() - interval '2 minutes', now() - interval '2 minutes',
                     case when $3 = 'delivered' and $2 = $4 then 'delivered' else 'failed' end,
                     case when $3 = 'delivered' and $2 = $4 then 200 else 503 end)",
        )
        .bind(id)
        .bind(attempt)
        .bind(state)
        .bind(attempts)
        .execute(pool)
        .await
        .unwrap();
    }
    id
}

/// What a reader sees of every notification: business id, state, attempts, last_error, and
/// whether it holds a lease.
async fn seen(pool: &PgPool) -> Vec<(String, String, i32, Option<String>, bool)> {
    sqlx::query_as(
        "select business_id, state, attempts, last_error, lease_token is not null
         from herald.notifications order by business_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_working_database_upgrades_and_finishes_its_work_once(pool: PgPool) {
    before_the_queue(&pool).await;
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let endpoint = Uuid::now_v7();
    sqlx::query(
        "insert into herald.webhook_endpoints (id, tenant, url, secret) values ($1, 'default', $2, $3)",
    )
    .bind(endpoint)
    .bind(receiver.url())
    .bind(SECRET)
    .execute(&pool)
    .await
    .unwrap();
    let live_token = Uuid::new_v4();
    let pending = old_row(&pool, "pending", endpoint, "pending", 0, None).await;
    let retrying = old_row(&pool, "retrying", endpoint, "pending", 2, None).await;
    let crashed = old_row(
        &pool,
        "crashed",
        endpoint,
        "running",
        1,
        Some((Uuid::new_v4(), "daemon-gone")),
    )
    .await;
    let live = old_row(
        &pool,
        "live",
        endpoint,
        "running",
        1,
        Some((live_token, "daemon-delivering")),
    )
    .await;
    for state in ["delivered", "dead", "cancelled"] {
        old_row(&pool, state, endpoint, state, 1, None).await;
    }
    let before = seen(&pool).await;

    let pool = migrated(pool).await;

    assert_eq!(
        seen(&pool).await,
        before,
        "readers see every notification as before"
    );
    let in_flight: i64 = sqlx::query_scalar(
        "select count(*) from herald.queue where destination = $1::text and lease_token is not null",
    )
            .bind(endpoint)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(in_flight, 2, "both leases count as in flight");

    // The daemon that was delivering when the upgrade ran records its outcome under its token.
    let mut conn = pool.acquire().await.unwrap();
    let recorded = record_outcome(
        &mut conn,
        OutcomeRow {
            id: live,
            lease_token: live_token,
            next_state: State::Delivered,
            retry_in: Duration::ZERO,
            outcome: AttemptKind::Delivered,
            status: Some(200),
            error: None,
            last_error: None,
            signal: "healthy",
            throttle_secs: None,
        },
        herald::config::Config::default().breaker_policy(),
    )
    .await
    .unwrap();
    assert!(recorded, "the live lease survives the upgrade");
    drop(conn);

    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");

    let mut sent: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.header("webhook-id"))
        .collect();
    sent.sort();
    let mut expected: Vec<String> = [pending, retrying, crashed]
        .iter()
        .map(Uuid::to_string)
        .collect();
    expected.sort();
    assert_eq!(
        sent, expected,
        "each unfinished notification is sent once; the live one and the finished ones never"
    );
    let after: Vec<(String, String, i32)> = sqlx::query_as(
        "select business_id, state, attempts from herald.notifications order by business_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        after,
        [
            ("cancelled", "cancelled", 1),
            ("crashed", "delivered", 2),
            ("dead", "dead", 1),
            ("delivered", "delivered", 1),
            ("live", "delivered", 1),
            ("pending", "delivered", 1),
            ("retrying", "delivered", 3),
        ]
        .map(|(b, s, a)| (b.to_owned(), s.to_owned(), a))
    );
    let crashed_log: Vec<String> = sqlx::query_scalar(
        "select outcome from herald.attempts where notification_id = $1 order by attempt",
    )
    .bind(crashed)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        crashed_log,
        ["failed", "unknown", "delivered"],
        "the crashed lease is rescued as an unknown attempt, then delivered"
    );
    let queued: i64 = sqlx::query_scalar("select count(*) from herald.queue")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(queued, 0, "nothing is left queued or in flight");
}
