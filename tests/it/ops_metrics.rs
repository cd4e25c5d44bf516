//! `metrics.listen`: the daemon's Prometheus metrics after real deliveries, `/healthz`, and the
//! listener's start-up errors.

use std::time::Duration;

use herald::Notification;
use sqlx::PgPool;

use crate::support::daemon::Daemon;
use crate::support::receiver::{Receiver, Reply};
use crate::support::scrape::{get, sample, wait_for_status};
use crate::support::smtp::SmtpSink;
use crate::support::{
    At, Cli, Rows, endpoint_at, finish, lease, migrated, set_due, url_for, wait_for_sql,
};

#[sqlx::test(migrations = false)]
async fn a_scrape_after_deliveries_counts_them(pool: PgPool) {
    let pool = migrated(pool).await;
    let ok = Receiver::start(vec![]).await;
    let failing = Receiver::start(vec![Reply::status(500); 3]).await;
    let ok_hook = endpoint_at(&pool, "default", &ok.url()).await;
    let failing_hook = endpoint_at(&pool, "default", &failing.url()).await;
    let sink = SmtpSink::start("").await;
    herald::enqueue_many(
        &pool,
        &[
            Notification::webhook("u", "order_shipped", "b1", ok_hook),
            Notification::webhook("u", "order_shipped", "b2", ok_hook),
            Notification::webhook("u", "order_shipped", "b3", failing_hook).max_attempts(1),
            Notification::email("u", "welcome", "b4", "ann@example.com"),
        ],
    )
    .await
    .unwrap();
    // A notification whose daemon died mid-delivery: its lease expired a minute ago.
    let leased = lease(
        &pool,
        Rows::BusinessIds(&["b2"]),
        "gone:1:x",
        At::Ago("2 minutes"),
        At::Ago("1 minute"),
    )
    .await;
    assert_eq!(leased.len(), 1);

    let port = sink.port.to_string();
    let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
    let (daemon, addr) = Daemon::listening(
        &pool,
        &[],
        &[
            ("HERALD_SMTP__PORT", &port),
            ("HERALD_TEMPLATES__DIR", templates),
        ],
    );
    wait_for_sql(
        &pool,
        "every notification finished",
        "select count(*) = 4 from herald.notifications where state in ('delivered', 'dead')",
    )
    .await;
    let (status, text) = get(addr, "/metrics").await.expect("/metrics answers");
    assert_eq!(status, 200, "{text}");

    let value = |series: &str| sample(&text, series);
    let attempts = |channel: &str, type_: &str, outcome: &str| {
        value(&format!(
            "herald_delivery_attempts_total{{channel=\"{channel}\",type=\"{type_}\",outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!(
        attempts("webhook", "order_shipped", "delivered"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        attempts("webhook", "order_shipped", "failed"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        attempts("email", "welcome", "delivered"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            "herald_delivery_attempt_duration_seconds_count{channel=\"webhook\",outcome=\"delivered\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value("herald_delivery_lag_seconds_count{channel=\"webhook\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value("herald_delivery_lag_seconds_count{channel=\"email\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(value("herald_leases_rescued_total"), Some(1.0), "{text}");
    let state = |state: &str, channel: &str| {
        value(&format!(
            "herald_notifications{{state=\"{state}\",channel=\"{channel}\"}}"
        ))
    };
    assert_eq!(state("delivered", "webhook"), Some(2.0), "{text}");
    assert_eq!(state("dead", "webhook"), Some(1.0), "{text}");
    assert_eq!(state("delivered", "email"), Some(1.0), "{text}");
    assert_eq!(state("pending", "webhook"), Some(0.0), "{text}");
    assert_eq!(value("herald_oldest_due_age_seconds"), Some(0.0), "{text}");
    assert!(
        !text.contains("herald_database_errors_total{"),
        "no database error happened: {text}"
    );
    assert!(text.contains("herald_build_info{version=\""), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");

    assert_eq!(get(addr, "/healthz").await, Some((200, "ok\n".into())));
    assert_eq!(get(addr, "/readyz").await, Some((200, "ready\n".into())));

    daemon.terminate().await;
    let run = daemon.wait(Duration::from_secs(60)).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        get(addr, "/healthz").await.is_none(),
        "the listener closes with the daemon"
    );
}

#[sqlx::test(migrations = false)]
async fn the_sweeper_and_the_state_gauges_are_counted(pool: PgPool) {
    let pool = migrated(pool).await;
    let hook = endpoint_at(&pool, "default", "https://hooks.example.com/h").await;
    let batch: Vec<Notification> = (0..5)
        .map(|i| Notification::webhook("u", "t", format!("b{i}"), hook))
        .collect();
    herald::enqueue_many(&pool, &batch).await.unwrap();
    // Three finished two days ago (past a retention of one day), two just now.
    let old = Rows::BusinessIds(&["b0", "b1", "b2"]);
    assert_eq!(finish(&pool, old, "delivered", At::Ago("2 days")).await, 3);
    let new = Rows::BusinessIds(&["b3", "b4"]);
    assert_eq!(finish(&pool, new, "cancelled", At::Now).await, 2);

    let (daemon, addr) = Daemon::listening(
        &pool,
        &[],
        &[
            ("HERALD_SWEEPER__SCHEDULE", "* * * * * *"),
            ("HERALD_SWEEPER__RETENTION", "1d"),
            ("HERALD_METRICS__STATE_REFRESH", "100ms"),
        ],
    );
    wait_for_sql(
        &pool,
        "the sweep",
        "select count(*) = 2 from herald.notifications",
    )
    .await;
    // The sweep's counter moves before its commit is visible; wait for the exposition.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = wait_for_status(addr, "/metrics", 200).await;
        if sample(&text, "herald_sweeper_deleted_total") == Some(3.0)
            && sample(
                &text,
                "herald_notifications{state=\"delivered\",channel=\"webhook\"}",
            ) == Some(0.0)
        {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    assert_eq!(
        sample(
            &text,
            "herald_notifications{state=\"cancelled\",channel=\"webhook\"}"
        ),
        Some(2.0),
        "{text}"
    );
    daemon.terminate().await;
    assert_eq!(daemon.wait(Duration::from_secs(60)).await.code, 0);
}

#[sqlx::test(migrations = false)]
async fn the_oldest_due_age_is_exposed(pool: PgPool) {
    let pool = migrated(pool).await;
    let hook = endpoint_at(&pool, "default", "https://hooks.example.com/h").await;
    herald::enqueue(&pool, &Notification::webhook("u", "t", "b", hook))
        .await
        .unwrap();
    set_due(&pool, Rows::All, At::Ago("10 minutes")).await;
    // Held locked here, so the daemon's claims (SKIP LOCKED) pass it by and it stays due.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("select id from herald.queue for update")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let (daemon, addr) = Daemon::listening(&pool, &[], &[]);
    let text = wait_for_status(addr, "/metrics", 200).await;
    let age = sample(&text, "herald_oldest_due_age_seconds").expect("the age is exposed");
    assert!((600.0..700.0).contains(&age), "{age}: {text}");
    assert_eq!(
        sample(
            &text,
            "herald_notifications{state=\"pending\",channel=\"webhook\"}"
        ),
        Some(1.0),
        "{text}"
    );
    blocker.rollback().await.unwrap();
    daemon.terminate().await;
    assert_eq!(daemon.wait(Duration::from_secs(60)).await.code, 0);
}

#[tokio::test]
async fn a_bad_listen_address_is_refused_naming_the_key() {
    let run = Cli::new()
        .arg("run")
        .env("HERALD_METRICS__LISTEN", "localhost:9464")
        .run()
        .await;
    run.assert_error(2, "metrics.listen");
    assert!(run.stderr.contains("\"localhost:9464\""), "{run:?}");
}

#[tokio::test]
async fn a_listen_address_in_use_stops_the_start_before_the_database_is_touched() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let database = format!("herald_metrics_in_use_{}", std::process::id());
    let url = url_for(&database);
    let run = Cli::at(&url)
        .arg("run")
        .env("HERALD_METRICS__LISTEN", &listen)
        .run()
        .await;
    run.assert_error(1, &format!("metrics.listen: cannot listen on {listen}"));
    // `herald run` creates a missing database; it never got that far.
    let server = PgPool::connect(&url_for("postgres")).await.unwrap();
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&database)
            .fetch_one(&server)
            .await
            .unwrap();
    assert!(!exists, "nothing was created");
    drop(taken);
}
