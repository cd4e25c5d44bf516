//! `/readyz` follows the database: not ready while it is down (a throwaway cluster, crashed
//! and restarted) or while a migration this binary needs is missing; `/healthz` stays up.

use std::time::Duration;

use sqlx::PgPool;

use crate::support::cluster::Cluster;
use crate::support::daemon::Daemon;
use crate::support::migrated;
use crate::support::scrape::{get, wait_for_status};

#[tokio::test]
async fn readiness_goes_false_while_the_database_is_down() {
    let cluster = Cluster::start();
    let url = cluster.url("herald");
    // `herald run` creates and migrates the database on the fresh cluster.
    let (daemon, addr) = Daemon::listening_url(&url, &[], &[]);
    assert_eq!(wait_for_status(addr, "/readyz", 200).await, "ready\n");

    cluster.crash();
    let body = wait_for_status(addr, "/readyz", 503).await;
    assert!(
        body.starts_with("not ready: database unreachable"),
        "{body:?}"
    );
    assert_eq!(body.lines().count(), 1, "{body:?}");
    assert_eq!(
        get(addr, "/healthz").await,
        Some((200, "ok\n".into())),
        "the process itself is alive"
    );

    cluster.start_again();
    assert_eq!(wait_for_status(addr, "/readyz", 200).await, "ready\n");
    daemon.terminate().await;
    let run = daemon.wait(Duration::from_secs(60)).await;
    assert_eq!(run.code, 0, "{run:?}");
}

#[sqlx::test(migrations = false)]
async fn readiness_needs_every_migration(pool: PgPool) {
    let pool = migrated(pool).await;
    let (daemon, addr) = Daemon::listening(&pool, &["--no-migrate"], &[]);
    assert_eq!(wait_for_status(addr, "/readyz", 200).await, "ready\n");
    // As if the database had been restored from before the migration.
    sqlx::query("delete from herald._sqlx_migrations")
        .execute(&pool)
        .await
        .unwrap();
    let body = wait_for_status(addr, "/readyz", 503).await;
    assert!(
        body.starts_with("not ready: migrations pending: 1 create herald"),
        "{body:?}"
    );
    assert!(body.ends_with("(run `herald migrate`)\n"), "{body:?}");
    daemon.terminate().await;
    assert_eq!(daemon.wait(Duration::from_secs(60)).await.code, 0);
}
