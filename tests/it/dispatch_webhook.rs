//! Webhook delivery end to end: the `herald` daemon against a real HTTP receiver on loopback.

use std::time::Duration;

use herald::Notification;
use serde_json::json;
use sqlx::PgPool;

use crate::support::daemon::{FAST, env_with, run_until_idle};
use crate::support::receiver::{Receiver, Reply, hanging_up_receiver};
use crate::support::{SECRET, endpoint_at, migrated, states};

/// Enqueues one webhook notification to `url`; returns its id.
async fn enqueue_to(pool: &PgPool, url: &str, max_attempts: u32) -> (uuid::Uuid, uuid::Uuid) {
    let hook = endpoint_at(pool, "default", url).await;
    let n = Notification::webhook("user-42", "invoice.paid", "inv-77", hook)
        .payload(json!({"invoice": "inv-77", "amount": 1200}))
        .max_attempts(max_attempts);
    (herald::enqueue(pool, &n).await.unwrap().id(), hook)
}

#[derive(Debug, sqlx::FromRow)]
struct AttemptRow {
    attempt: i32,
    outcome: String,
    status: Option<i32>,
    error: Option<String>,
}

async fn attempt_log(pool: &PgPool, id: uuid::Uuid) -> Vec<AttemptRow> {
    sqlx::query_as("select attempt, outcome, status, error from herald.attempts where notification_id = $1 order by attempt")
        .bind(id)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn state_and_error(pool: &PgPool, id: uuid::Uuid) -> (String, Option<String>) {
    sqlx::query_as("select state, last_error from herald.notifications where id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn delivered_once_with_standard_webhooks_headers_and_a_valid_signature(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let (id, _) = enqueue_to(&pool, &receiver.url(), 8).await;
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "delivered exactly once");
    let request = &requests[0];
    assert_eq!(request.header("webhook-id"), id.to_string());
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(
        request.header("user-agent"),
        format!("herald/{}", env!("CARGO_PKG_VERSION"))
    );
    let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
    assert!(
        (timestamp - chrono::Utc::now().timestamp()).abs() < 60,
        "a current Unix timestamp"
    );
    let body = request.json();
    assert_eq!(body["type"], "invoice.paid");
    assert_eq!(body["data"], json!({"invoice": "inv-77", "amount": 1200}));
    assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok());
    // An independent implementation of the spec accepts the signature over the bytes received.
    standardwebhooks::Webhook::new(SECRET)
        .unwrap()
        .verify(&request.body, &request.headers)
        .expect("signature verifies");

    assert_eq!(states(&pool).await, [("delivered".to_string(), 1)]);
    let log = attempt_log(&pool, id).await;
    assert_eq!(
        (log.len(), log[0].outcome.as_str(), log[0].status),
        (1, "delivered", Some(204))
    );
    assert!(
        run.stderr.contains("attempt") && run.stderr.contains(&id.to_string()),
        "one log line per attempt: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(SECRET),
        "the secret never reaches the log"
    );
}

#[sqlx::test(migrations = false)]
async fn a_500_is_retried_with_the_same_webhook_id(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![Reply::status(500).body("database down")]).await;
    let (id, _) = enqueue_to(&pool, &receiver.url(), 8).await;
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "--until-idle waits for its own retry: {run:?}");

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("webhook-id"), id.to_string());
    assert_eq!(
        requests[1].header("webhook-id"),
        id.to_string(),
        "the same delivery id on the retry"
    );
    assert_eq!(requests[0].body, requests[1].body);
    let log = attempt_log(&pool, id).await;
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].attempt, log[0].outcome.as_str(), log[0].status),
        (1, "failed", Some(500))
    );
    assert_eq!(
        log[0].error.as_deref(),
        Some("receiver answered 500 Internal Server Error: database down")
    );
    assert_eq!(
        (log[1].attempt, log[1].outcome.as_str(), log[1].status),
        (2, "delivered", Some(204))
    );
    assert_eq!(state_and_error(&pool, id).await, ("delivered".into(), None));
}

#[sqlx::test(migrations = false)]
async fn retry_after_is_honoured(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![Reply::status(429).retry_after("1")]).await;
    enqueue_to(&pool, &receiver.url(), 8).await;
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    assert!(
        waited >= Duration::from_secs(1),
        "the retry waited {waited:?}, less than Retry-After: 1"
    );
}

#[sqlx::test(migrations = false)]
async fn a_410_kills_the_notification_and_disables_the_endpoint(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![Reply::status(410)]).await;
    let (id, hook) = enqueue_to(&pool, &receiver.url(), 8).await;
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(receiver.requests().len(), 1, "no retry after 410");
    let (state, error) = state_and_error(&pool, id).await;
    assert_eq!(state, "dead");
    assert!(error.unwrap().contains("410 Gone"));
    let (enabled, reason): (bool, Option<String>) = sqlx::query_as(
        "select enabled, disabled_reason from herald.webhook_endpoints where id = $1",
    )
    .bind(hook)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (enabled, reason.as_deref()),
        (false, Some("receiver answered 410 Gone"))
    );

    // Later notifications to the disabled endpoint go dead with that reason, unsent. (Enqueue
    // refuses new ones, so this one was accepted before the 410.)
    let later = crate::support::insert_raw(&pool, "u", "webhook", &hook.to_string())
        .await
        .unwrap();
    run_until_idle(&pool, FAST).await;
    let (state, error) = state_and_error(&pool, later).await;
    assert_eq!(state, "dead");
    assert_eq!(
        error.unwrap(),
        format!("webhook endpoint {hook} is disabled: receiver answered 410 Gone")
    );
    assert_eq!(receiver.requests().len(), 1);
}

#[sqlx::test(migrations = false)]
async fn a_receiver_slower_than_the_timeout_is_unknown_then_dead(pool: PgPool) {
    let pool = migrated(pool).await;
    let slow = Reply::status(200).after(Duration::from_secs(5));
    let receiver = Receiver::start(vec![slow.clone(), slow.clone(), slow]).await;
    let (id, _) = enqueue_to(&pool, &receiver.url(), 3).await;
    let run = run_until_idle(&pool, &env_with(&[("HERALD_WEBHOOK__TIMEOUT", "300ms")])).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        receiver.requests().len(),
        3,
        "retried until attempts ran out"
    );
    let log = attempt_log(&pool, id).await;
    assert!(
        log.iter()
            .all(|a| a.outcome == "unknown" && a.status.is_none()),
        "{log:?}"
    );
    assert_eq!(
        log[0].error.as_deref(),
        Some("no answer within 300ms (webhook.timeout)")
    );
    let (state, error) = state_and_error(&pool, id).await;
    assert_eq!(state, "dead");
    assert_eq!(
        error.unwrap(),
        "attempts exhausted (3 of 3): no answer within 300ms (webhook.timeout)"
    );
    let ids: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.header("webhook-id"))
        .collect();
    assert!(
        ids.iter().all(|i| *i == id.to_string()),
        "one delivery id: {ids:?}"
    );
}

#[sqlx::test(migrations = false)]
async fn a_receiver_that_hangs_up_is_unknown_then_delivered(pool: PgPool) {
    let pool = migrated(pool).await;
    let (addr, seen) = hanging_up_receiver(1).await;
    let (id, _) = enqueue_to(&pool, &format!("http://{addr}/hook"), 8).await;
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 2);
    let log = attempt_log(&pool, id).await;
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[0].outcome, "unknown",
        "the request was read, so it may have been processed"
    );
    assert_eq!(log[1].outcome, "delivered");
}

#[sqlx::test(migrations = false)]
async fn a_refused_connection_is_a_plain_failure(pool: PgPool) {
    let pool = migrated(pool).await;
    // Bind and drop: nothing listens on this port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (id, _) = enqueue_to(&pool, &format!("http://127.0.0.1:{port}/hook"), 2).await;
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");
    let log = attempt_log(&pool, id).await;
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|a| a.outcome == "failed"), "{log:?}");
    assert!(
        log[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("could not connect"),
        "{log:?}"
    );
    assert!(
        !log[0].error.as_deref().unwrap().contains("127.0.0.1"),
        "no URL in errors: {log:?}"
    );
}

#[sqlx::test(migrations = false)]
async fn during_a_rotation_both_secrets_sign(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let (_, hook) = enqueue_to(&pool, &receiver.url(), 8).await;
    let new_secret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    sqlx::query(
        "update herald.webhook_endpoints set previous_secret = secret, previous_secret_expires_at = now() + interval '1 hour', secret = $2 where id = $1",
    )
    .bind(hook)
    .bind(new_secret)
    .execute(&pool)
    .await
    .unwrap();
    run_until_idle(&pool, FAST).await;
    let request = &receiver.wait_for_requests(1).await[0];
    let signatures: Vec<&str> = request.headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .collect();
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    for secret in [new_secret, SECRET] {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&request.body, &request.headers)
            .expect("each secret verifies");
    }
}

#[sqlx::test(migrations = false)]
async fn redirects_are_not_followed(pool: PgPool) {
    let pool = migrated(pool).await;
    let elsewhere = Receiver::start(vec![]).await;
    let redirecting = Receiver::start(vec![Reply::status(302).location(&elsewhere.url())]).await;
    let (id, _) = enqueue_to(&pool, &redirecting.url(), 1).await;
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        elsewhere.requests().len(),
        0,
        "the redirect target was never contacted"
    );
    let log = attempt_log(&pool, id).await;
    assert_eq!(
        (log[0].outcome.as_str(), log[0].status),
        ("failed", Some(302))
    );
}

#[sqlx::test(migrations = false)]
async fn a_huge_answer_is_read_only_in_part_and_stored_truncated(pool: PgPool) {
    let pool = migrated(pool).await;
    let huge = "x".repeat(5 * 1024 * 1024);
    let receiver = Receiver::start(vec![Reply::status(500).body(&huge)]).await;
    let (id, _) = enqueue_to(&pool, &receiver.url(), 2).await;
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");
    let error = attempt_log(&pool, id).await[0].error.clone().unwrap();
    assert!(
        error.starts_with("receiver answered 500 Internal Server Error: xxx"),
        "{error}"
    );
    assert_eq!(
        error.chars().count(),
        herald::channel::MAX_DETAIL_CHARS + 1,
        "truncated, with an ellipsis"
    );
}

#[sqlx::test(migrations = false)]
async fn json_logs_give_one_object_per_attempt(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let (id, _) = enqueue_to(&pool, &receiver.url(), 8).await;
    let run = run_until_idle(&pool, &env_with(&[("HERALD_LOG_FORMAT", "json")])).await;
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let attempt = lines
        .iter()
        .find(|l| l["message"] == "attempt")
        .expect("an attempt line");
    assert_eq!(attempt["id"], id.to_string());
    assert_eq!(attempt["channel"], "webhook");
    assert_eq!(attempt["outcome"], "delivered");
    assert_eq!(attempt["attempt"], 1);
    assert!(attempt["duration_ms"].is_u64());
}
