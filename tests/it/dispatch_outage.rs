//! A database that crashes and comes back under a running daemon: the daemon logs, backs off,
//! resumes, and nothing is lost. Runs on a throwaway cluster, never the shared server.

use std::collections::HashMap;
use std::time::Duration;

use herald::Notification;
use sqlx::PgPool;

use crate::support::cluster::Cluster;
use crate::support::daemon::{Daemon, env_with};
use crate::support::receiver::{Receiver, Reply};
use crate::support::{Cli, wait_until};

#[tokio::test]
async fn a_database_crash_does_not_kill_the_daemon() {
    let cluster = Cluster::start();
    let url = cluster.url("herald");
    let receiver = Receiver::start(vec![
        Reply::status(204).after(Duration::from_millis(20));
        300
    ])
    .await;

    // `herald migrate` creates the database on the fresh cluster.
    let migrate = Cli::at(&url).arg("migrate").run().await;
    assert_eq!(migrate.code, 0, "{migrate:?}");
    let pool = PgPool::connect(&url).await.unwrap();
    let hook = crate::support::endpoint_at(&pool, "default", &receiver.url()).await;
    let batch: Vec<Notification> = (0..300)
        .map(|i| Notification::webhook("u", "t", format!("b{i}"), hook))
        .collect();
    herald::enqueue_many(&pool, &batch).await.unwrap();
    pool.close().await;

    let mut daemon = Daemon::spawn_url(&url, &["--workers", "4"], &env_with(&[]));
    receiver.wait_for_requests(20).await;
    cluster.crash();
    wait_until("the daemon to notice the outage", || {
        daemon.log().contains("cannot")
    })
    .await;
    assert!(
        daemon.is_running(),
        "the daemon survives the outage:\n{}",
        daemon.log()
    );
    cluster.start_again();

    let pool = PgPool::connect(&url).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let left: i64 = sqlx::query_scalar(
            "select count(*) from herald.notifications where state <> 'delivered'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} not delivered after the restart:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.terminate().await;
    let run = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(run.code, 0, "{run:?}");

    let mut per_id: HashMap<String, usize> = HashMap::new();
    for request in receiver.requests() {
        *per_id.entry(request.header("webhook-id")).or_default() += 1;
    }
    assert_eq!(per_id.len(), 300, "every notification arrived");
    // Deliveries in flight at the crash could not be recorded and were sent again, with the
    // same delivery id; no more than one per worker.
    let repeated = per_id.values().filter(|&&n| n > 1).count();
    assert!(
        repeated <= 4,
        "{repeated} notifications arrived more than once"
    );
}
