//! `herald run` through PgBouncer: claims, outcomes, heartbeats and the rescuer's statements
//! through the pooler, LISTEN on the direct `database.listen_url`.

use std::collections::HashSet;
use std::time::Duration;

use herald::Notification;
use serde_json::json;
use sqlx::PgPool;

use super::{database_of, pooled, switch};
use crate::support::daemon::{Daemon, env_with};
use crate::support::pgbouncer::PgBouncer;
use crate::support::receiver::Receiver;
use crate::support::{endpoint_at, migrated, url_of, wait_for_sql, wait_until};

#[sqlx::test(migrations = false)]
async fn the_daemon_delivers_every_notification_once_through_pgbouncer_and_listens_directly(
    pool: PgPool,
) {
    let direct = migrated(pool).await;
    let bouncer = PgBouncer::start(3).await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint_at(&direct, "default", &receiver.url()).await;
    let _on = switch(true).await;
    let pool = pooled(&bouncer, &direct, 8).await;

    // Enqueued through the pooler before the daemon starts: its first claims drain them.
    const N: usize = 300;
    let batch: Vec<_> = (0..N)
        .map(|i| {
            Notification::webhook(
                format!("user-{i}"),
                "invoice.paid",
                format!("inv-{i}"),
                hook,
            )
            .payload(json!({"invoice": i}))
        })
        .collect();
    let ids: HashSet<String> = herald::enqueue_many(&pool, &batch)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id().to_string())
        .collect();

    // Polling once an hour: after the first drain only a NOTIFY, received on the direct
    // connection, can wake the daemon.
    let listen_url = url_of(&direct);
    let env = env_with(&[
        ("HERALD_DATABASE__LISTEN_URL", listen_url.as_str()),
        ("HERALD_DISPATCHER__POLL_INTERVAL", "1h"),
        ("HERALD_DISPATCHER__BATCH_SIZE", "16"),
        // The sweeper runs every second through the pooler too.
        ("HERALD_SWEEPER__SCHEDULE", "* * * * * *"),
    ]);
    let mut daemon = Daemon::spawn_url(&bouncer.url(&database_of(&direct)), &[], &env);
    let requests = receiver.wait_for_requests(N).await;
    wait_for_sql(
        &direct,
        "every notification delivered",
        "select count(*) filter (where state = 'delivered') = 300 from herald.notifications",
    )
    .await;
    let seen: Vec<String> = requests.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(seen.len(), N, "each notification sent exactly once");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), ids);

    // Idle now. One more, committed with a wake-up in the application's transaction (through
    // the pooler): it arrives long before the next poll, so the daemon's LISTEN works.
    let mut tx = pool.begin().await.unwrap();
    let late = Notification::webhook("user-late", "invoice.paid", "inv-late", hook);
    let late_id = herald::enqueue(&mut *tx, &late).await.unwrap().id();
    sqlx::query("select pg_notify('herald_wake', '')")
        .persistent(false)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let arrived = tokio::time::timeout(Duration::from_secs(20), receiver.wait_for_requests(N + 1))
        .await
        .expect("woken by NOTIFY on database.listen_url, not by the hourly poll");
    assert_eq!(arrived[N].header("webhook-id"), late_id.to_string());

    wait_until("the daemon's start line", || {
        daemon.log().contains("herald dispatcher started")
    })
    .await;
    let log = daemon.log();
    assert!(daemon.is_running(), "{log}");
    assert!(log.contains("transaction pooling"), "{log}");
    daemon.terminate().await;
    let run = daemon.wait(Duration::from_secs(60)).await;
    assert_eq!(run.code, 0, "{run:?}");
    // Nothing went wrong on the way: no warning but the one about email templates (there are
    // none here), no error.
    let trouble: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .filter(|line| !line.contains("no email templates found"))
        .collect();
    assert!(trouble.is_empty(), "{trouble:#?}");
    let attempts: i64 = sqlx::query_scalar("select count(*) from herald.attempts")
        .fetch_one(&direct)
        .await
        .unwrap();
    assert_eq!(attempts, N as i64 + 1, "one attempt per notification");
}
