//! The retention sweeper: exactly the expired finished rows go, with their attempts, in
//! batches, one sweeper at a time; the key is free afterwards.

use std::time::Duration;

use herald::Notification;
use herald::config::SweeperConfig;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::support::daemon::{Daemon, env_with};
use crate::support::{At, Rows, finish, finished_rows, herald, migrated, set_due, wait_for_sql};

fn config(batch_size: u32) -> SweeperConfig {
    SweeperConfig {
        batch_size,
        ..SweeperConfig::default()
    }
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrations = false)]
async fn only_finished_rows_past_their_window_are_deleted(pool: PgPool) {
    let pool = migrated(pool).await;
    finished_rows(&pool, 5, "welcome", "delivered", "31 days").await; // expired
    finished_rows(&pool, 4, "welcome", "dead", "40 days").await; // expired
    finished_rows(&pool, 3, "welcome", "cancelled", "30 days 1 minute").await; // expired
    finished_rows(&pool, 2, "welcome", "delivered", "29 days").await; // inside the window
    finished_rows(&pool, 6, "invoice", "delivered", "40 days").await; // kept: invoice keeps 1 year
    finished_rows(&pool, 7, "login_code", "delivered", "2 hours").await; // expired: 1 hour
    // Not finished, however old: never swept.
    herald::enqueue(
        &pool,
        &Notification::email("u", "welcome", "pending-1", "a@b.co"),
    )
    .await
    .unwrap();
    let pending = Rows::BusinessIds(&["pending-1"]);
    assert_eq!(set_due(&pool, pending, At::In("1 day")).await, 1);
    sqlx::query(
        "update herald.intents set created_at = now() - interval '400 days' where business_id = 'pending-1'",
    )
    .execute(&pool)
    .await
    .unwrap();

    let mut config = config(2);
    config
        .retention_by_type
        .insert("invoice".into(), Duration::from_secs(365 * 86400));
    config
        .retention_by_type
        .insert("LOGIN_CODE".into(), Duration::from_secs(3600));
    assert_eq!(herald::sweeper::dry_run(&pool, &config).await.unwrap(), 19);
    assert_eq!(
        count(&pool, "select count(*) from herald.notifications").await,
        28,
        "a dry run deletes nothing"
    );

    let report = herald::sweeper::sweep(&pool, &config, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.deleted, 19);
    assert_eq!(report.batches, 10, "batches of 2: nine full, one short");
    assert!(!report.yielded);
    let left: Vec<(String, String, i64)> = sqlx::query_as(
        "select type, state, count(*) from herald.notifications group by type, state order by type, state",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        left,
        [
            ("invoice".to_string(), "delivered".to_string(), 6),
            ("welcome".to_string(), "delivered".to_string(), 2),
            ("welcome".to_string(), "pending".to_string(), 1),
        ]
    );
    assert_eq!(
        count(&pool, "select count(*) from herald.attempts").await,
        8,
        "attempts went with their notifications"
    );
}

#[sqlx::test(migrations = false)]
async fn after_a_sweep_the_key_is_free(pool: PgPool) {
    let pool = migrated(pool).await;
    let n = Notification::email("u", "welcome", "b", "a@b.co");
    herald::enqueue(&pool, &n).await.unwrap();
    // Created and finished 31 days ago (its id moves back with it).
    finish(&pool, Rows::All, "delivered", At::Ago("31 days")).await;
    let held = herald::enqueue(&pool, &n).await.unwrap();
    assert!(!held.is_created(), "still held until swept: {held:?}");
    let first = held.id();
    assert_eq!(
        herald::sweeper::sweep(&pool, &config(100), &CancellationToken::new())
            .await
            .unwrap()
            .deleted,
        1
    );
    let again = herald::enqueue(&pool, &n).await.unwrap();
    assert!(again.is_created(), "{again:?}");
    assert_ne!(again.id(), first, "a new notification with a new id");
}

#[sqlx::test(migrations = false)]
async fn a_hundred_thousand_rows_two_sweepers_at_once(pool: PgPool) {
    let pool = migrated(pool).await;
    finished_rows(&pool, 100_000, "welcome", "delivered", "60 days").await;
    finished_rows(&pool, 10, "welcome", "delivered", "1 day").await;
    // Two sweeps at once, through the binary, with batches of 1,000.
    let env = [("HERALD_SWEEPER__BATCH_SIZE", "1000")];
    let (a, b) = tokio::join!(
        herald(&pool).args(&["sweep", "--json"]).envs(&env).run(),
        herald(&pool).args(&["sweep", "--json"]).envs(&env).run()
    );
    assert_eq!((a.code, b.code), (0, 0), "neither fails: {a:?} {b:?}");
    let deleted = a.json()["deleted"].as_u64().unwrap() + b.json()["deleted"].as_u64().unwrap();
    assert_eq!(deleted, 100_000, "no row counted twice, none missed");
    assert_eq!(
        count(&pool, "select count(*) from herald.notifications").await,
        10
    );
    assert_eq!(
        count(&pool, "select count(*) from herald.attempts").await,
        10
    );
}

#[sqlx::test(migrations = false)]
async fn sweep_through_the_binary_reports_counts(pool: PgPool) {
    let pool = migrated(pool).await;
    finished_rows(&pool, 3, "welcome", "dead", "31 days").await;
    let dry = herald(&pool)
        .args(&["sweep", "--dry-run", "--json"])
        .run()
        .await;
    assert_eq!(
        dry.json(),
        serde_json::json!({"dry_run": true, "would_delete": 3})
    );
    let human = herald(&pool).args(&["sweep", "--dry-run"]).run().await;
    assert_eq!(
        human.stdout,
        "would delete 3 finished notifications past their retention window\n"
    );
    let done = herald(&pool).arg("sweep").run().await;
    assert_eq!(
        done.stdout,
        "deleted 3 finished notifications past their retention window\n"
    );
    let shorter = herald(&pool)
        .args(&["sweep", "--json"])
        .env("HERALD_SWEEPER__RETENTION", "1h")
        .run()
        .await;
    assert_eq!(shorter.json()["deleted"], 0);
}

#[sqlx::test(migrations = false)]
async fn the_daemon_sweeps_on_its_schedule(pool: PgPool) {
    let pool = migrated(pool).await;
    finished_rows(&pool, 5, "welcome", "delivered", "31 days").await;
    let daemon = Daemon::spawn(
        &pool,
        &[],
        &env_with(&[("HERALD_SWEEPER__SCHEDULE", "* * * * * *")]),
    );
    wait_for_sql(
        &pool,
        "the scheduled sweep",
        "select count(*) = 0 from herald.notifications",
    )
    .await;
    daemon.terminate().await;
    let run = daemon.wait(Duration::from_secs(20)).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("sweeper scheduled (UTC)"),
        "{}",
        run.stderr
    );
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("sweeper scheduled"))
        .unwrap();
    assert_eq!(
        line.matches("Z").count(),
        4,
        "the next three fire times and the log's own: {line}"
    );
    assert!(
        run.stderr.contains("sweep done deleted=5"),
        "{}",
        run.stderr
    );
}

#[sqlx::test(migrations = false)]
async fn crontab_habits_are_refused_with_the_fix(pool: PgPool) {
    let pool = migrated(pool).await;
    let five = herald(&pool)
        .args(&["run", "--until-idle"])
        .env("HERALD_SWEEPER__SCHEDULE", "*/10 * * * *")
        .run()
        .await;
    five.assert_error(2, "use \"0 */10 * * * *\"");
    let numeric = herald(&pool)
        .arg("sweep")
        .env("HERALD_SWEEPER__SCHEDULE", "0 0 3 * * 1-5")
        .run()
        .await;
    numeric.assert_error(2, "write names instead: \"0 0 3 * * MON-FRI\"");
}

#[sqlx::test(migrations = false)]
async fn a_stopped_sweep_stops_between_batches(pool: PgPool) {
    let pool = migrated(pool).await;
    finished_rows(&pool, 10, "welcome", "delivered", "31 days").await;
    let stop = CancellationToken::new();
    stop.cancel();
    let report = herald::sweeper::sweep(&pool, &config(2), &stop)
        .await
        .unwrap();
    assert_eq!(
        (report.deleted, report.batches),
        (0, 0),
        "shutdown does not wait for a long sweep"
    );
    assert_eq!(
        count(&pool, "select count(*) from herald.notifications").await,
        10
    );
}
