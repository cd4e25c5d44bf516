//! Operational events on `alerts.endpoint`: a notification that goes dead by any path is
//! announced once, through the durable path, and the alerts endpoint never raises events about
//! its own notifications (no loops). Breaker and disable events are covered with the breaker in
//! `isolation_breaker.rs`.

use std::time::Duration;

use sqlx::PgPool;

use crate::support::daemon::{Daemon, env_with, run_until_idle};
use crate::support::db::{At, endpoint_at, lease, migrated, wait_for_sql};
use crate::support::receiver::{Receiver, Reply};

#[sqlx::test(migrations = false)]
async fn a_notification_dead_after_its_daemon_died_is_announced_once(pool: PgPool) {
    let pool = migrated(pool).await;
    let alerts = Receiver::start(vec![]).await;
    let alerts_endpoint = endpoint_at(&pool, "ops", &alerts.url()).await;
    let receiver = Receiver::start(vec![]).await;
    let endpoint = endpoint_at(&pool, "acme", &receiver.url()).await;
    let id = herald::enqueue(
        &pool,
        &herald::Notification::webhook("u", "t", "last-try", endpoint)
            .tenant("acme")
            .max_attempts(1),
    )
    .await
    .unwrap()
    .id();
    // Its one attempt was under way when its daemon died.
    lease(
        &pool,
        id,
        "gone:1:x",
        At::Ago("2 minutes"),
        At::Ago("1 minute"),
    )
    .await;

    let alerts_id = alerts_endpoint.to_string();
    let run = run_until_idle(
        &pool,
        &env_with(&[("HERALD_ALERTS__ENDPOINT", alerts_id.as_str())]),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");

    let events = alerts.wait_for_requests(1).await;
    assert_eq!(events.len(), 1, "announced once");
    let event = events[0].json();
    assert_eq!(event["type"], "herald.notification.dead");
    assert_eq!(event["data"]["id"], id.to_string());
    assert_eq!(event["data"]["tenant"], "acme");
    assert!(
        event["data"]["last_error"]
            .as_str()
            .unwrap()
            .contains("expired during attempt 1"),
        "{event}"
    );
    assert_eq!(receiver.requests().len(), 0, "the dead one is not sent");
    let key: (String, String, String) = sqlx::query_as(
        "select tenant, user_id, business_id from herald.notifications
         where type = 'herald.notification.dead'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(key, ("ops".to_owned(), "herald".to_owned(), id.to_string()));
}

#[sqlx::test(migrations = false)]
async fn the_alerts_endpoints_own_dead_notifications_raise_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    // The alerts receiver refuses everything for good: its events go dead at once.
    let alerts = Receiver::start(vec![]).await;
    alerts.reply_from_now_on(Reply::status(410));
    let alerts_endpoint = endpoint_at(&pool, "ops", &alerts.url()).await;
    let broken = Receiver::start(vec![]).await;
    broken.reply_from_now_on(Reply::status(400));
    let endpoint = endpoint_at(&pool, "acme", &broken.url()).await;
    herald::enqueue(
        &pool,
        &herald::Notification::webhook("u", "t", "doomed", endpoint)
            .tenant("acme")
            .max_attempts(1),
    )
    .await
    .unwrap();
    let alerts_id = alerts_endpoint.to_string();
    let daemon = Daemon::spawn(
        &pool,
        &[],
        &env_with(&[("HERALD_ALERTS__ENDPOINT", alerts_id.as_str())]),
    );
    // The customer's notification dies; its event goes to the alerts endpoint, which answers
    // 410: the event dies too, and the endpoint is disabled.
    wait_for_sql(
        &pool,
        "the event dead",
        "select count(*) = 2 from herald.notifications where state = 'dead'",
    )
    .await;
    daemon.terminate().await;
    let run = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(run.code, 0, "{run:?}");
    let events: i64 =
        sqlx::query_scalar("select count(*) from herald.notifications where tenant = 'ops'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        events, 1,
        "only the customer's notification was announced, not the event's own death"
    );
    assert_eq!(alerts.requests().len(), 1);
}
