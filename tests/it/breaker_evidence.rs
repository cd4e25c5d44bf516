//! `breaker.disable_after` counts an unbroken run of failed probes, never lost ones: a probe
//! that ends without a verdict (its lease released or rescued, its daemon gone) starts the
//! count again, so daemons dying while they probe cannot get a healthy endpoint disabled.

use std::time::Duration;

use herald::Notification;
use herald::store::dispatch as store;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{endpoint_at, migrated};

const DISABLE_AFTER: Duration = Duration::from_secs(60);

/// One endpoint with one notification waiting, its breaker open for an hour with a probe due,
/// and its probes failing for `failing_for` (none: no probe judged yet).
async fn open_for_an_hour(pool: &PgPool, failing_for: Option<&str>) -> Uuid {
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
             probes_failing_since = now() - $2::interval
         where endpoint_id = $1",
    )
    .bind(endpoint)
    .bind(failing_for)
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
    let endpoint = open_for_an_hour(&pool, Some("2 minutes")).await;
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
    let endpoint = open_for_an_hour(&pool, Some("2 minutes")).await;
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
async fn a_closed_breaker_cannot_carry_a_run_of_failed_probes(pool: PgPool) {
    let pool = migrated(pool).await;
    let endpoint = endpoint_at(&pool, "acme", "http://127.0.0.1:9/").await;
    let refused = sqlx::query(
        "update herald.destinations set probes_failing_since = now() where endpoint_id = $1",
    )
    .bind(endpoint)
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("destinations_closed_has_no_failing_probes"),
        "{refused}"
    );
}
