//! `breaker.disable_after` measures an unbroken run of failed probes, from its first verdict to
//! its latest, never lost ones: a probe that ends without a verdict (its lease released or
//! rescued, its daemon gone) starts the count again, so daemons dying while they probe cannot
//! get a healthy endpoint disabled, and time with no probe sent proves nothing. The previous
//! release, still running during a rolling upgrade, keeps closing breakers.

use std::time::Duration;

use herald::Notification;
use herald::store::dispatch as store;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{endpoint_at, migrated};

const DISABLE_AFTER: Duration = Duration::from_secs(60);

/// One endpoint with one notification waiting, its breaker open for an hour with a probe due,
/// and a run of failed probes whose first and latest verdicts were `run` ago (none: no probe
/// judged yet).
async fn open_for_an_hour(pool: &PgPool, run: Option<(&str, &str)>) -> Uuid {
    let endpoint = endpoint_at(pool, "acme", "http://127.0.0.1:9/").await;
    herald::enqueue(
        pool,
        &Notification::webhook("u", "t", "b", endpoint).tenant("acme"),
    )
    .await
    .unwrap();
    sqlx::query(
        "update herald.destinations
         set breaker = 'open', breaker_opened_at = now() - interval '1 hour',
             next_probe_at = now(), probe_interval = 60,
             probes_failing_since = now() - $2::interval, probe_failed_at = now() - $3::interval
         where endpoint_id = $1",
    )
    .bind(endpoint)
    .bind(run.map(|r| r.0))
    .bind(run.map(|r| r.1))
    .execute(pool)
    .await
    .unwrap();
    endpoint
}

async fn disable(pool: &PgPool) -> Vec<Uuid> {
    let mut conn = pool.acquire().await.unwrap();
    let (disabled, _dead) = store::disable_broken_endpoints(&mut conn, DISABLE_AFTER)
        .await
        .unwrap();
    disabled.into_iter().map(|d| d.id).collect()
}

async fn enabled_and_waiting(pool: &PgPool, endpoint: Uuid) -> (bool, String) {
    sqlx::query_as(
        "select e.enabled, n.state from herald.webhook_endpoints e
         join herald.notifications n on n.destination = e.id::text where e.id = $1",
    )
    .bind(endpoint)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = false)]
async fn probes_failing_longer_than_disable_after_disable_the_endpoint(pool: PgPool) {
    let pool = migrated(pool).await;
    let endpoint = open_for_an_hour(&pool, Some(("2 minutes", "1 second"))).await;
    assert_eq!(disable(&pool).await, vec![endpoint]);
    let (enabled, state) = enabled_and_waiting(&pool, endpoint).await;
    assert_eq!((enabled, state.as_str()), (false, "dead"));
}

#[sqlx::test(migrations = false)]
async fn open_an_hour_without_a_failed_probe_disables_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    let endpoint = open_for_an_hour(&pool, None).await;
    assert_eq!(disable(&pool).await, Vec::<Uuid>::new());
    let (enabled, state) = enabled_and_waiting(&pool, endpoint).await;
    assert_eq!((enabled, state.as_str()), (true, "pending"));
}

#[sqlx::test(migrations = false)]
async fn a_lost_probe_starts_the_count_again(pool: PgPool) {
    let pool = migrated(pool).await;
    let endpoint = open_for_an_hour(&pool, Some(("2 minutes", "1 second"))).await;
    let mut conn = pool.acquire().await.unwrap();
    let claimed = store::claim_due(&mut conn, "daemon-a", 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(claimed.len() == 1 && claimed[0].probe, "{claimed:?}");
    // The daemon holding the probe goes away without a verdict.
    assert_eq!(
        store::release(&mut conn, &[claimed[0].lease_token])
            .await
            .unwrap(),
        1
    );
    let breaker: (String, Option<f64>) = sqlx::query_as(
        "select breaker, extract(epoch from probes_failing_since)::float8
         from herald.destinations where endpoint_id = $1",
    )
    .bind(endpoint)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(breaker, ("open".to_owned(), None), "open, the count gone");
    assert_eq!(disable(&pool).await, Vec::<Uuid>::new());
    let (enabled, state) = enabled_and_waiting(&pool, endpoint).await;
    assert_eq!((enabled, state.as_str()), (true, "pending"));
}

#[sqlx::test(migrations = false)]
async fn a_run_shorter_than_disable_after_disables_nothing_however_long_ago_it_began(pool: PgPool) {
    let pool = migrated(pool).await;
    // Two failed probes 30 s apart, an hour ago; then no daemon ran, and nothing was probed.
    let endpoint = open_for_an_hour(&pool, Some(("1 hour", "59 minutes 30 seconds"))).await;
    assert_eq!(disable(&pool).await, Vec::<Uuid>::new());
    let (enabled, state) = enabled_and_waiting(&pool, endpoint).await;
    assert_eq!((enabled, state.as_str()), (true, "pending"));
}

/// The SQL with which the release before migration 0008 closed a breaker (`endpoints reset`
/// and `enable`; its recorder on a healthy verdict wrote the same columns).
const PREVIOUS_RELEASE_CLOSES: &str = "
    update herald.destinations d set breaker = 'closed', consecutive_failures = 0,
        breaker_opened_at = null, next_probe_at = null, probe_interval = null, probe_lease = null
    where d.endpoint_id = $1";

#[sqlx::test(migrations = false)]
async fn the_previous_release_still_closes_a_breaker_open_at_upgrade(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir("migrations").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0008" {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    let mut previous = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    previous.create_schema("herald");
    previous.dangerous_set_table_name(herald::MIGRATIONS_TABLE);
    previous.run(&pool).await.unwrap();
    let endpoint = endpoint_at(&pool, "acme", "http://127.0.0.1:9/").await;
    sqlx::query(
        "update herald.destinations set breaker = 'half_open',
             breaker_opened_at = now() - interval '1 minute', next_probe_at = now(),
             probe_interval = 30, probe_lease = gen_random_uuid() where endpoint_id = $1",
    )
    .bind(endpoint)
    .execute(&pool)
    .await
    .unwrap();
    let pool = migrated(pool).await;
    let run: (Option<f64>, Option<f64>) = sqlx::query_as(
        "select extract(epoch from probes_failing_since)::float8,
                extract(epoch from probe_failed_at)::float8
         from herald.destinations where endpoint_id = $1",
    )
    .bind(endpoint)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        run,
        (None, None),
        "no run of failed probes is assumed at upgrade"
    );
    sqlx::query(PREVIOUS_RELEASE_CLOSES)
        .bind(endpoint)
        .execute(&pool)
        .await
        .expect("a daemon or CLI of the previous release closes the breaker");
}

#[sqlx::test(migrations = false)]
async fn a_run_left_on_a_closed_breaker_is_forgotten_when_it_opens(pool: PgPool) {
    let pool = migrated(pool).await;
    let endpoint = open_for_an_hour(&pool, Some(("2 minutes", "1 second"))).await;
    // The previous release closes it and leaves the run behind.
    sqlx::query(PREVIOUS_RELEASE_CLOSES)
        .bind(endpoint)
        .execute(&pool)
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let claimed = store::claim_due(&mut conn, "daemon-a", 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let policy = store::BreakerPolicy {
        failures: 1,
        probe_interval: Duration::from_secs(60),
        max_probe_interval: Duration::from_secs(60),
    };
    let failed = store::OutcomeRow {
        id: claimed[0].id,
        lease_token: claimed[0].lease_token,
        next_state: herald::State::Pending,
        retry_in: Duration::from_secs(60),
        outcome: herald::channel::AttemptKind::Failed,
        status: Some(503),
        error: Some("503".into()),
        last_error: Some("503".into()),
        signal: "failing",
        throttle_secs: None,
    };
    store::record_outcomes(&mut conn, &[failed], policy)
        .await
        .unwrap();
    let after: (String, Option<f64>, Option<f64>) = sqlx::query_as(
        "select breaker, extract(epoch from probes_failing_since)::float8,
                extract(epoch from probe_failed_at)::float8
         from herald.destinations where endpoint_id = $1",
    )
    .bind(endpoint)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        after,
        ("open".to_owned(), None, None),
        "opened afresh, no run"
    );
    assert_eq!(disable(&pool).await, Vec::<Uuid>::new());
}
