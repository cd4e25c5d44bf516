//! Circuit breakers, throttles and per-endpoint limits, against real daemons and loopback
//! receivers:
//! - an outage opens the breaker, after which only probes reach the endpoint (one at a time,
//!   further apart after each failure) and no other attempt is spent; recovery delivers
//!   everything, nothing dead;
//! - probes failing for `breaker.disable_after` disable the endpoint and end its waiting
//!   notifications dead with the reason, announcing it on the alerts endpoint (lost probes:
//!   `breaker_evidence`);
//! - `--until-idle` does not wait for what an open breaker holds;
//! - a `429` slows the endpoint and never counts toward its breaker;
//! - `max_in_flight` and `rate` hold across three daemons together.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::support::daemon::{Daemon, env_with, run_until_idle};
use crate::support::db::{endpoint_at, migrated, wait_for_sql};
use crate::support::receiver::{Receiver, Reply};

async fn enqueue(pool: &PgPool, endpoint: Uuid, n: usize, max_attempts: u32, prefix: &str) {
    let items: Vec<herald::Notification> = (0..n)
        .map(|i| {
            herald::Notification::webhook("u", "isolation", format!("{prefix}-{i}"), endpoint)
                .max_attempts(max_attempts)
        })
        .collect();
    herald::enqueue_many(pool, &items).await.unwrap();
}

async fn scalar<T>(pool: &PgPool, sql: &str, endpoint: Uuid) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(endpoint)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn an_outage_opens_the_breaker_and_only_probes_reach_the_endpoint(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    receiver.reply_from_now_on(Reply::status(503));
    let endpoint = endpoint_at(&pool, "default", &receiver.url()).await;
    enqueue(&pool, endpoint, 10, 20, "outage").await;
    let env = env_with(&[
        ("HERALD_BREAKER__FAILURES", "3"),
        ("HERALD_BREAKER__PROBE_INTERVAL", "300ms"),
        ("HERALD_BREAKER__MAX_PROBE_INTERVAL", "1s"),
    ]);
    let daemon = Daemon::spawn(&pool, &["--workers", "16"], &env);

    // Two probes failed: the interval doubled from 300 ms to 600 ms, then to the 1 s cap.
    wait_for_sql(
        &pool,
        "two failed probes",
        "select probe_interval = 1 from herald.destinations where endpoint_id is not null",
    )
    .await;
    // Attempts are stamped with the claim's database time: every one that started after the
    // breaker opened was a probe. (This endpoint is the test's only one.)
    let (opened, while_open, before): (String, i64, i64) = sqlx::query_as(
        "select d.breaker,
                (select count(*) from herald.attempts where started_at >= d.breaker_opened_at),
                (select count(*) from herald.attempts where started_at < d.breaker_opened_at)
         from herald.destinations d where d.endpoint_id = $1",
    )
    .bind(endpoint)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(opened, "open");
    assert_eq!(
        while_open, 2,
        "only the two probes were sent while open (retries every 100 ms would have sent dozens)"
    );
    assert!(
        (10..=14).contains(&before),
        "the first ten attempts (and any retry due before the third failure was recorded) opened it: {before}"
    );
    assert_eq!(receiver.requests().len() as i64, before + while_open);
    let running: i64 =
        scalar(&pool, "select count(*) from herald.notifications where destination = $1::text and state = 'running'", endpoint).await;
    assert_eq!(running, 0, "nothing is running while the breaker is open");

    receiver.reply_from_now_on(Reply::status(200));
    wait_for_sql(
        &pool,
        "every notification delivered",
        "select count(*) = 10 from herald.notifications where state = 'delivered'",
    )
    .await;
    daemon.terminate().await;
    let run = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        receiver.requests().len() as i64,
        before + while_open + 10,
        "the third probe succeeded and closed the breaker; the nine others followed once each"
    );
    let closed: (String, i32) = sqlx::query_as(
        "select breaker, consecutive_failures from herald.destinations where endpoint_id = $1",
    )
    .bind(endpoint)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(closed, ("closed".to_owned(), 0));
    assert!(
        run.stderr.contains("circuit breaker open"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("circuit breaker closed"),
        "{}",
        run.stderr
    );
}

#[sqlx::test(migrations = false)]
async fn a_breaker_open_too_long_disables_the_endpoint_and_announces_it(pool: PgPool) {
    let pool = migrated(pool).await;
    let broken = Receiver::start(vec![]).await;
    broken.reply_from_now_on(Reply::status(503));
    let alerts = Receiver::start(vec![]).await;
    let endpoint = endpoint_at(&pool, "acme", &broken.url()).await;
    let alerts_endpoint = endpoint_at(&pool, "ops", &alerts.url()).await;
    enqueue_in(&pool, "acme", endpoint, 5).await;
    let alerts_id = alerts_endpoint.to_string();
    let env = env_with(&[
        ("HERALD_BREAKER__FAILURES", "2"),
        ("HERALD_BREAKER__PROBE_INTERVAL", "200ms"),
        ("HERALD_BREAKER__MAX_PROBE_INTERVAL", "200ms"),
        ("HERALD_BREAKER__DISABLE_AFTER", "1s"),
        ("HERALD_ALERTS__ENDPOINT", alerts_id.as_str()),
    ]);
    let daemon = Daemon::spawn(&pool, &[], &env);
    wait_for_sql(
        &pool,
        "the endpoint disabled",
        "select count(*) = 1 from herald.webhook_endpoints where not enabled",
    )
    .await;
    let events = alerts.wait_for_requests(7).await;
    daemon.terminate().await;
    let run = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(run.code, 0, "{run:?}");

    // While open, only probes reached the endpoint: one at a time, each failing, for longer
    // than `disable_after` from the first.
    let probes: Vec<(f64, f64, String)> = sqlx::query_as(
        "select extract(epoch from a.started_at)::float8, extract(epoch from a.finished_at)::float8,
                a.outcome
         from herald.attempts a, herald.destinations d
         where d.endpoint_id = $1 and a.started_at >= d.breaker_opened_at
           and a.notification_id in (select id from herald.notifications
                                     where destination = $1::text)
         order by a.started_at",
    )
    .bind(endpoint)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(probes.len() >= 2, "a run of failed probes: {probes:?}");
    assert!(probes.iter().all(|p| p.2 == "failed"), "{probes:?}");
    assert!(
        probes.windows(2).all(|w| w[1].0 >= w[0].1),
        "one probe at a time: {probes:?}"
    );
    assert!(broken.requests().len() >= 5);
    let dead: Vec<(String, String)> =
        sqlx::query_as("select state, last_error from herald.notifications where tenant = 'acme'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(dead.len(), 5);
    for (state, last_error) in &dead {
        assert_eq!(state, "dead");
        assert!(
            last_error.starts_with(&format!(
                "endpoint {endpoint} disabled: circuit breaker open since "
            )),
            "{last_error}"
        );
    }
    let mut types: Vec<String> = events
        .iter()
        .map(|e| e.json()["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "herald.endpoint.breaker_opened",
            "herald.endpoint.disabled",
            "herald.notification.dead",
            "herald.notification.dead",
            "herald.notification.dead",
            "herald.notification.dead",
            "herald.notification.dead",
        ]
    );
    let opened = events
        .iter()
        .find(|e| e.json()["type"] == "herald.endpoint.breaker_opened")
        .unwrap()
        .json();
    assert_eq!(opened["data"]["endpoint_id"], endpoint.to_string());
    assert_eq!(opened["data"]["tenant"], "acme");
    let keys: Vec<(String, String)> = sqlx::query_as(
        "select user_id, business_id from herald.notifications
         where tenant = 'ops' and type = 'herald.endpoint.breaker_opened'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].0, "herald");
    assert!(
        keys[0].1.starts_with(&format!("{endpoint}:")),
        "{:?}",
        keys[0]
    );
}

async fn enqueue_in(pool: &PgPool, tenant: &str, endpoint: Uuid, n: usize) {
    let items: Vec<herald::Notification> = (0..n)
        .map(|i| {
            herald::Notification::webhook("u", "isolation", format!("t-{i}"), endpoint)
                .tenant(tenant)
        })
        .collect();
    herald::enqueue_many(pool, &items).await.unwrap();
}

#[sqlx::test(migrations = false)]
async fn until_idle_does_not_wait_for_what_an_open_breaker_holds(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    receiver.reply_from_now_on(Reply::status(503));
    let endpoint = endpoint_at(&pool, "default", &receiver.url()).await;
    enqueue(&pool, endpoint, 1, 5, "held").await;
    let run = run_until_idle(
        &pool,
        &env_with(&[
            ("HERALD_BREAKER__FAILURES", "1"),
            ("HERALD_BREAKER__PROBE_INTERVAL", "1h"),
            ("HERALD_BREAKER__MAX_PROBE_INTERVAL", "1h"),
        ]),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let (state, attempts): (String, i32) =
        sqlx::query_as("select state, attempts from herald.notifications")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), attempts),
        ("pending", 1),
        "held by the breaker, not retried"
    );
    assert_eq!(receiver.requests().len(), 1);
}

#[sqlx::test(migrations = false)]
async fn a_429_slows_the_endpoint_and_never_opens_its_breaker(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![
        Reply::status(429).retry_after("1"),
        Reply::status(429).retry_after("1"),
        Reply::status(200),
    ])
    .await;
    let endpoint = endpoint_at(&pool, "default", &receiver.url()).await;
    enqueue(&pool, endpoint, 1, 5, "slow-down").await;
    let env = env_with(&[("HERALD_BREAKER__FAILURES", "1")]);
    let daemon = Daemon::spawn(&pool, &[], &env);
    wait_for_sql(
        &pool,
        "the notification delivered",
        "select state = 'delivered' from herald.notifications",
    )
    .await;
    daemon.terminate().await;
    let run = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(run.code, 0, "{run:?}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    for pair in requests.windows(2) {
        assert!(
            pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(900),
            "Retry-After: 1 is honoured"
        );
    }
    let (breaker, failures): (String, i32) = sqlx::query_as(
        "select breaker, consecutive_failures from herald.destinations where endpoint_id = $1",
    )
    .bind(endpoint)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((breaker.as_str(), failures), ("closed", 0));
    assert!(!run.stderr.contains("circuit breaker"), "{}", run.stderr);
}

/// Three daemons, 16 workers each, one endpoint that takes 200 ms an answer.
async fn three_daemons_against(pool: &PgPool, limit_sql: &'static str, n: usize) -> Receiver {
    let receiver = Receiver::start(vec![]).await;
    receiver.reply_from_now_on(Reply::status(200).after(Duration::from_millis(200)));
    let endpoint = endpoint_at(pool, "default", &receiver.url()).await;
    sqlx::query(limit_sql)
        .bind(endpoint)
        .execute(pool)
        .await
        .unwrap();
    enqueue(pool, endpoint, n, 5, "limited").await;
    let env = env_with(&[]);
    let daemons: Vec<Daemon> = (0..3)
        .map(|_| Daemon::spawn(pool, &["--workers", "16"], &env))
        .collect();
    let _ = receiver.wait_for_requests(n).await;
    for daemon in daemons {
        daemon.terminate().await;
        let run = daemon.wait(Duration::from_secs(30)).await;
        assert_eq!(run.code, 0, "{run:?}");
    }
    receiver
}

#[sqlx::test(migrations = false)]
async fn max_in_flight_holds_across_three_daemons(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = three_daemons_against(
        &pool,
        "update herald.destinations set max_in_flight = 2 where endpoint_id = $1",
        30,
    )
    .await;
    assert_eq!(
        receiver.most_at_once(),
        2,
        "48 workers, yet never more than two requests at once, and the cap is used"
    );
}

#[sqlx::test(migrations = false)]
async fn a_rate_holds_across_three_daemons(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = three_daemons_against(
        &pool,
        "update herald.destinations set rate_count = 5, rate_unit = 's' where endpoint_id = $1",
        20,
    )
    .await;
    let times: Vec<std::time::Instant> = receiver.requests().iter().map(|r| r.at).collect();
    // A bucket of one second's worth (5), refilled at 5 a second: any second sees at most 10.
    for (i, start) in times.iter().enumerate() {
        let within = times[i..]
            .iter()
            .take_while(|t| t.duration_since(*start) < Duration::from_secs(1))
            .count();
        assert!(within <= 10, "{within} requests within one second");
    }
    let span = times.last().unwrap().duration_since(times[0]);
    assert!(
        span >= Duration::from_millis(2500),
        "20 requests at 5/s after a burst of 5 take at least 3 s, took {span:?}"
    );
}
