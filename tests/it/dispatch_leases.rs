//! Leases, concurrency and shutdown: fencing of stale workers, expired leases, several daemons
//! at once, SIGTERM with deliveries in flight, draining with `--until-idle`, wake-up.

use std::collections::HashMap;
use std::time::Duration;

use herald::Notification;
use herald::State;
use herald::channel::AttemptKind;
use herald::store::dispatch::{self as store, OutcomeRow};
use serde_json::json;
use sqlx::PgPool;

use crate::support::daemon::{Daemon, FAST, env_with, run_until_idle};
use crate::support::receiver::{Receiver, Reply};
use crate::support::{endpoint_at, migrated, states, wait_for_sql};

fn delivered(id: uuid::Uuid, lease_token: uuid::Uuid) -> OutcomeRow {
    OutcomeRow {
        id,
        lease_token,
        next_state: State::Delivered,
        retry_in: Duration::ZERO,
        outcome: AttemptKind::Delivered,
        status: Some(200),
        error: None,
        last_error: None,
        signal: "healthy",
        throttle_secs: None,
    }
}

fn policy() -> store::BreakerPolicy {
    herald::config::Config::default().breaker_policy()
}

#[sqlx::test(migrations = false)]
async fn a_worker_whose_lease_was_taken_over_changes_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    let n = Notification::email("u", "t", "b", "ann@example.com");
    let id = herald::enqueue(&pool, &n).await.unwrap().id();
    let mut conn = pool.acquire().await.unwrap();

    let first = store::claim_due(&mut conn, "daemon-a", 10, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!((first.len(), first[0].attempt), (1, 1));
    let again = store::claim_due(&mut conn, "daemon-b", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(again.is_empty(), "a live lease is not claimable");

    // Daemon A stalls; its lease expires and the rescue hands the notification back.
    wait_for_sql(
        &pool,
        "the lease to expire",
        "select bool_and(lease_expires_at < now()) from herald.notifications",
    )
    .await;
    assert_eq!(
        store::rescue_expired(&mut conn, 100).await.unwrap().count,
        1
    );
    let second = store::claim_due(&mut conn, "daemon-b", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_ne!(
        second[0].lease_token, first[0].lease_token,
        "every claim issues a fresh token"
    );
    assert_eq!(second[0].attempt, 2);

    // A wakes up: it can neither extend nor record.
    let held = [(id, first[0].lease_token)];
    assert!(
        store::extend_leases(&mut conn, &held, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store::record_outcome(&mut conn, delivered(id, first[0].lease_token), policy())
            .await
            .unwrap()
    );
    let (state, owner): (String, String) =
        sqlx::query_as("select state, lease_owner from herald.notifications")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), owner.as_str()),
        ("running", "daemon-b"),
        "B's claim is untouched"
    );

    // B records; the log shows A's lost attempt as unknown and B's as delivered.
    assert!(
        store::record_outcome(&mut conn, delivered(id, second[0].lease_token), policy())
            .await
            .unwrap()
    );
    let log: Vec<(i32, String)> =
        sqlx::query_as("select attempt, outcome from herald.attempts order by attempt")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        log,
        [(1, "unknown".to_string()), (2, "delivered".to_string())]
    );
}

#[sqlx::test(migrations = false)]
async fn an_expired_lease_on_the_last_attempt_is_dead(pool: PgPool) {
    let pool = migrated(pool).await;
    let n = Notification::email("u", "t", "b", "ann@example.com").max_attempts(1);
    herald::enqueue(&pool, &n).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    store::claim_due(&mut conn, "crashing-daemon", 1, Duration::from_millis(100))
        .await
        .unwrap();
    wait_for_sql(
        &pool,
        "the lease to expire",
        "select bool_and(lease_expires_at < now()) from herald.notifications",
    )
    .await;
    store::rescue_expired(&mut conn, 100).await.unwrap();
    let (state, error): (String, String) =
        sqlx::query_as("select state, last_error from herald.notifications")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        state, "dead",
        "a notification that keeps crashing daemons runs out of attempts"
    );
    assert!(
        error.contains("lease of crashing-daemon expired during attempt 1"),
        "{error}"
    );
}

#[sqlx::test(migrations = false)]
async fn three_daemons_deliver_a_thousand_notifications_exactly_once(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    let batch: Vec<Notification> = (0..1000)
        .map(|i| {
            Notification::webhook(format!("user-{i}"), "tick", format!("b-{i}"), hook)
                .payload(json!({"i": i}))
        })
        .collect();
    let ids: Vec<String> = herald::enqueue_many(&pool, &batch)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id().to_string())
        .collect();

    let env = env_with(&[("HERALD_DATABASE__MAX_CONNECTIONS", "4")]);
    let daemons: Vec<Daemon> = (0..3)
        .map(|_| Daemon::spawn(&pool, &["--until-idle", "--workers", "8"], &env))
        .collect();
    for daemon in daemons {
        let run = daemon.wait(Duration::from_secs(120)).await;
        assert_eq!(run.code, 0, "{run:?}");
    }
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for request in receiver.requests() {
        *per_id.entry(request.header("webhook-id")).or_default() += 1;
    }
    assert_eq!(per_id.len(), 1000, "every notification arrived");
    assert!(per_id.values().all(|&n| n == 1), "none arrived twice");
    assert!(ids.iter().all(|id| per_id.contains_key(id)));
    assert_eq!(states(&pool).await, [("delivered".to_string(), 1000)]);
}

#[sqlx::test(migrations = false)]
async fn sigterm_lets_in_flight_deliveries_finish(pool: PgPool) {
    let pool = migrated(pool).await;
    let slow = Reply::status(200).after(Duration::from_millis(800));
    let receiver = Receiver::start(vec![slow; 20]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    let batch: Vec<Notification> = (0..20)
        .map(|i| Notification::webhook("u", "t", format!("b{i}"), hook))
        .collect();
    herald::enqueue_many(&pool, &batch).await.unwrap();

    let daemon = Daemon::spawn(&pool, &["--workers", "4"], FAST);
    receiver.wait_for_requests(1).await;
    daemon.terminate().await;
    let run = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(run.code, 0, "{run:?}");

    let counts: HashMap<String, i64> = states(&pool).await.into_iter().collect();
    assert_eq!(
        counts.get("running"),
        None,
        "nothing left running: {counts:?}"
    );
    let delivered = counts.get("delivered").copied().unwrap_or(0);
    assert!(
        delivered >= 1,
        "the deliveries in flight finished: {counts:?}"
    );
    assert_eq!(
        delivered + counts.get("pending").copied().unwrap_or(0),
        20,
        "nothing lost: {counts:?}"
    );
    assert_eq!(
        receiver.requests().len() as i64,
        delivered,
        "nothing sent without being recorded"
    );

    // Another daemon finishes the rest.
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(states(&pool).await, [("delivered".to_string(), 20)]);
}

#[sqlx::test(migrations = false)]
async fn sigterm_past_the_grace_hands_deliveries_back_unspent(pool: PgPool) {
    let pool = migrated(pool).await;
    let stuck = Reply::status(200).after(Duration::from_secs(30));
    let receiver = Receiver::start(vec![stuck.clone(), stuck]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    for i in 0..2 {
        herald::enqueue(
            &pool,
            &Notification::webhook("u", "t", format!("b{i}"), hook),
        )
        .await
        .unwrap();
    }
    let env = env_with(&[
        ("HERALD_DISPATCHER__SHUTDOWN_GRACE", "300ms"),
        ("HERALD_WEBHOOK__TIMEOUT", "40s"),
    ]);
    let daemon = Daemon::spawn(&pool, &[], &env);
    receiver.wait_for_requests(2).await;
    daemon.terminate().await;
    let run = daemon.wait(Duration::from_secs(20)).await;
    assert_eq!(run.code, 0, "{run:?}");
    let rows: Vec<(String, i32, Option<uuid::Uuid>)> =
        sqlx::query_as("select state, attempts, lease_token from herald.notifications")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![("pending".to_string(), 0, None); 2],
        "released at once, attempt not spent"
    );
    assert!(
        run.stderr.contains("handed unfinished deliveries back"),
        "{}",
        run.stderr
    );
}

/// A claim that committed while its answer was lost (the database went down in between)
/// leased rows to a daemon that never heard of them; the daemon hands them back by the tokens
/// it chose, unspent, and nothing else.
#[sqlx::test(migrations = false)]
async fn a_claim_whose_answer_was_lost_is_handed_back_by_its_tokens(pool: PgPool) {
    let pool = migrated(pool).await;
    let probed = endpoint_at(&pool, "default", "http://127.0.0.1:9/").await;
    let healthy = endpoint_at(&pool, "default", "http://127.0.0.1:9/").await;
    for (i, hook) in [probed, healthy, healthy].into_iter().enumerate() {
        herald::enqueue(
            &pool,
            &Notification::webhook("u", "t", format!("b{i}"), hook),
        )
        .await
        .unwrap();
    }
    // One endpoint's breaker is open with a probe due: the lost claim takes the probe.
    sqlx::query(
        "update herald.destinations set breaker = 'open', next_probe_at = now(),
                breaker_opened_at = now() where endpoint_id = $1",
    )
    .bind(probed)
    .execute(&pool)
    .await
    .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let lost = store::lease_tokens(2);
    let lease = Duration::from_secs(60);
    let mut cursor = store::LaneCursor::default();
    let answer = store::claim_from(&mut conn, "daemon-a", &lost, lease, &mut cursor)
        .await
        .unwrap();
    let mut tokens: Vec<_> = answer.iter().map(|d| d.lease_token).collect();
    tokens.sort();
    let mut chosen = lost.clone();
    chosen.sort();
    assert_eq!(tokens, chosen, "leased under the tokens the claimer chose");
    let probe = answer.iter().find(|d| d.probe).expect("the probe");
    // Another daemon's lease is not this daemon's to hand back.
    let other = store::claim_due(&mut conn, "daemon-b", 1, lease)
        .await
        .unwrap();
    assert_eq!(other.len(), 1);

    assert_eq!(store::release(&mut conn, &lost).await.unwrap(), 2);
    let rows: Vec<(uuid::Uuid, String, i32, Option<String>)> = sqlx::query_as(
        "select id, state, attempts, lease_owner from herald.notifications order by id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for row in &rows {
        let expected = if row.0 == other[0].id {
            ("running", 1, Some("daemon-b"))
        } else {
            ("pending", 0, None)
        };
        assert_eq!(
            (row.1.as_str(), row.2, row.3.as_deref()),
            expected,
            "handed back unspent, the other daemon's lease kept: {rows:?}"
        );
    }
    let breaker: (String, bool, Option<uuid::Uuid>) = sqlx::query_as(
        "select breaker, next_probe_at <= now(), probe_lease from herald.destinations
         where key = $1",
    )
    .bind(probe.destination())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        breaker,
        ("open".to_owned(), true, None),
        "the unsent probe leaves the breaker open with a probe due at once"
    );
    assert_eq!(
        store::release(&mut conn, &lost).await.unwrap(),
        0,
        "handing back twice changes nothing"
    );
}

#[sqlx::test(migrations = false)]
async fn until_idle_exits_at_once_when_there_is_nothing_to_do(pool: PgPool) {
    let pool = migrated(pool).await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    herald::enqueue(
        &pool,
        &Notification::email("u", "t", "b", "a@b.co").run_at(later),
    )
    .await
    .unwrap();
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        states(&pool).await,
        [("pending".to_string(), 1)],
        "a notification not yet due is left alone"
    );
}

#[sqlx::test(migrations = false)]
async fn an_idle_daemon_is_woken_by_enqueue_not_by_polling(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    // Polling every 10 minutes: only the NOTIFY can bring the delivery within the test's wait.
    let daemon = Daemon::spawn(
        &pool,
        &[],
        &env_with(&[("HERALD_DISPATCHER__POLL_INTERVAL", "10m")]),
    );
    wait_for_sql(&pool, "the daemon to listen", "select exists (select 1 from pg_stat_activity where datname = current_database() and query ilike 'listen%')").await;
    let mut tx = pool.begin().await.unwrap();
    let id = herald::enqueue(&mut *tx, &Notification::webhook("u", "t", "b", hook))
        .await
        .unwrap()
        .id();
    tx.commit().await.unwrap();
    let requests = receiver.wait_for_requests(1).await;
    assert_eq!(requests[0].header("webhook-id"), id.to_string());
    daemon.terminate().await;
    assert_eq!(daemon.wait(Duration::from_secs(20)).await.code, 0);
}

#[sqlx::test(migrations = false)]
async fn until_idle_with_one_worker_drains_everything(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    let batch: Vec<Notification> = (0..60)
        .map(|i| Notification::webhook("u", "t", format!("b{i}"), hook))
        .collect();
    herald::enqueue_many(&pool, &batch).await.unwrap();
    let daemon = Daemon::spawn(&pool, &["--until-idle", "--workers", "1"], FAST);
    let run = daemon.wait(Duration::from_secs(120)).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        states(&pool).await,
        [("delivered".to_string(), 60)],
        "idle means nothing left to do"
    );
    assert_eq!(receiver.requests().len(), 60);
}

#[sqlx::test(migrations = false)]
async fn a_stale_and_a_current_outcome_in_one_batch_record_only_the_current(pool: PgPool) {
    let pool = migrated(pool).await;
    let id = herald::enqueue(&pool, &Notification::email("u", "t", "b", "a@b.co"))
        .await
        .unwrap()
        .id();
    let mut conn = pool.acquire().await.unwrap();
    let stale = store::claim_due(&mut conn, "a", 1, Duration::from_millis(100))
        .await
        .unwrap()
        .remove(0);
    wait_for_sql(
        &pool,
        "the lease to expire",
        "select bool_and(lease_expires_at < now()) from herald.notifications",
    )
    .await;
    store::rescue_expired(&mut conn, 10).await.unwrap();
    let current = store::claim_due(&mut conn, "b", 1, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    let retry = OutcomeRow {
        id,
        lease_token: current.lease_token,
        next_state: State::Pending,
        retry_in: Duration::from_secs(60),
        outcome: AttemptKind::Failed,
        status: Some(503),
        error: Some("receiver answered 503".into()),
        last_error: Some("receiver answered 503".into()),
        signal: "failing",
        throttle_secs: None,
    };
    // The stale one says delivered; the current one says retry. Both in one statement, stale first.
    let batch = [delivered(id, stale.lease_token), retry];
    let recorded = store::record_outcomes(&mut conn, &batch, policy())
        .await
        .unwrap();
    assert_eq!(recorded.leases, [(id, current.lease_token)]);
    let (state, status): (String, Option<i32>) = sqlx::query_as(
        "select n.state, a.status from herald.notifications n join herald.attempts a on a.notification_id = n.id and a.outcome = 'failed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (state.as_str(), status),
        ("pending", Some(503)),
        "the current lease's outcome, not the stale one's"
    );
}

#[sqlx::test(migrations = false)]
async fn a_webhook_row_naming_another_tenants_endpoint_is_not_sent(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let foreign = endpoint_at(&pool, "other-tenant", &receiver.url()).await;
    // Written with plain SQL, bypassing enqueue's tenant check.
    crate::support::insert_raw(&pool, "u", "webhook", &foreign.to_string())
        .await
        .unwrap();
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(receiver.requests().len(), 0);
    let error: String = sqlx::query_scalar("select last_error from herald.notifications")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        error,
        format!("webhook endpoint {foreign} no longer exists")
    );
}

#[sqlx::test(migrations = false)]
async fn until_idle_drains_what_a_crashed_daemon_left_running(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    let id = herald::enqueue(&pool, &Notification::webhook("u", "t", "b", hook))
        .await
        .unwrap()
        .id();
    // A daemon claims it and dies (kill -9): the row stays running until its lease expires.
    let mut conn = pool.acquire().await.unwrap();
    let claimed = store::claim_due(&mut conn, "killed-daemon", 1, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        states(&pool).await,
        [("delivered".to_string(), 1)],
        "it waited for the lease, then delivered"
    );
    assert_eq!(receiver.requests()[0].header("webhook-id"), id.to_string());
    // The log names both attempts and the claims they were made under.
    let logged: Vec<(String, Option<uuid::Uuid>)> =
        sqlx::query_as("select outcome, lease_token from herald.attempts order by attempt")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        logged[0],
        ("unknown".to_string(), Some(claimed[0].lease_token))
    );
    assert_eq!(logged[1].0, "delivered");
    assert!(
        !store::attempt_logged(&mut conn, id, uuid::Uuid::now_v7())
            .await
            .unwrap()
    );
    assert!(
        store::attempt_logged(&mut conn, id, claimed[0].lease_token)
            .await
            .unwrap()
    );
}

/// `--until-idle` does not exit while a row the rescuer made due is pending, however the
/// rescue and the idle check interleave (each round's lease expires at a different moment of
/// the run; the race it guards against showed in a few rounds of a hundred).
#[sqlx::test(migrations = false)]
async fn until_idle_never_exits_with_a_rescued_row_pending(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    let env = env_with(&[("HERALD_DISPATCHER__POLL_INTERVAL", "10ms")]);
    let mut left_behind = Vec::new();
    for round in 0..30u64 {
        let n = Notification::webhook("u", "t", format!("r{round}"), hook);
        herald::enqueue(&pool, &n).await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let lease = Duration::from_millis(80 + (round * 37) % 200);
        let claimed = store::claim_due(&mut conn, "killed-daemon", 1, lease)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        drop(conn);
        let run = run_until_idle(&pool, &env).await;
        assert_eq!(run.code, 0, "{run:?}");
        let unfinished: i64 = sqlx::query_scalar(
            "select count(*) from herald.notifications where state in ('pending', 'running')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if unfinished > 0 {
            // What was left, and what the daemon said, for the report.
            let rows: Vec<(String, i32, Option<String>, Option<String>)> = sqlx::query_as(
                "select state, attempts, lease_owner, last_error from herald.notifications
                 where state in ('pending', 'running')",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            let log: Vec<&str> = run.stderr.lines().rev().take(20).collect();
            left_behind.push(format!(
                "round {round}: {rows:?}; daemon log (last lines first): {log:#?}"
            ));
            assert_eq!(run_until_idle(&pool, &env).await.code, 0);
        }
    }
    assert!(
        left_behind.is_empty(),
        "--until-idle exited with a rescued row pending: {left_behind:#?}"
    );
}
