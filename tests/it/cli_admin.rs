//! The admin commands through the binary: retry, cancel, stats, explain, endpoint management.

use herald::Notification;
use serde_json::json;
use sqlx::PgPool;

use crate::support::daemon::{FAST, run_until_idle};
use crate::support::receiver::{Receiver, Reply};
use crate::support::{At, Key, Rows, SECRET, endpoint_at, finish, herald, migrated};

async fn one(pool: &PgPool, business_id: &str) -> String {
    let n = Notification::email("ann", "order_shipped", business_id, "ann@example.com")
        .payload(json!({"order": business_id, "items": [{"sku": "a", "qty": 1}]}));
    herald::enqueue(pool, &n).await.unwrap().id().to_string()
}

/// Finishes the notification `id` in `state` now, with the last error `boom`.
async fn set_state(pool: &PgPool, id: &str, state: &str) {
    let id: uuid::Uuid = id.parse().unwrap();
    assert_eq!(finish(pool, id, state, At::Now).await, 1);
    sqlx::query("update herald.intents set last_error = 'boom' where id = $1")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test(migrations = false)]
async fn retry_brings_a_dead_notification_back_with_the_same_delivery_id(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![Reply::status(500)]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    let id = herald::enqueue(
        &pool,
        &Notification::webhook("u", "t", "b", hook).max_attempts(1),
    )
    .await
    .unwrap()
    .id()
    .to_string();
    run_until_idle(&pool, FAST).await;
    let dead = herald(&pool)
        .args(&["show", &id, "--json"])
        .run()
        .await
        .json();
    assert_eq!(dead["state"], "dead");

    let retried = herald(&pool).args(&["retry", &id, "--json"]).run().await;
    assert_eq!(retried.code, 0, "{retried:?}");
    let n = retried.json();
    assert_eq!(
        (
            n["id"].as_str(),
            n["state"].as_str(),
            n["attempts"].as_i64()
        ),
        (Some(id.as_str()), Some("pending"), Some(0))
    );
    assert_eq!(n["last_error"], serde_json::Value::Null);
    assert_eq!(n["finished_at"], serde_json::Value::Null);

    run_until_idle(&pool, FAST).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests.iter().all(|r| r.header("webhook-id") == id),
        "the same delivery id after a manual retry"
    );
    let shown = herald(&pool)
        .args(&["show", &id, "--json"])
        .run()
        .await
        .json();
    assert_eq!(shown["state"], "delivered");
    let attempts: Vec<i64> = shown["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2], "the log keeps its history and numbering");
}

#[sqlx::test(migrations = false)]
async fn retry_and_cancel_refuse_what_they_do_not_apply_to(pool: PgPool) {
    let pool = migrated(pool).await;
    let pending = one(&pool, "p").await;
    herald(&pool)
        .args(&["retry", &pending])
        .run()
        .await
        .assert_error(
            2,
            "it is pending; only dead or cancelled notifications can be retried",
        );
    let delivered = one(&pool, "d").await;
    set_state(&pool, &delivered, "delivered").await;
    herald(&pool)
        .args(&["cancel", &delivered])
        .run()
        .await
        .assert_error(
            2,
            "it is delivered; only pending notifications can be cancelled",
        );
    let unknown = uuid::Uuid::now_v7().to_string();
    herald(&pool)
        .args(&["retry", &unknown])
        .run()
        .await
        .assert_error(4, "not found");
    herald(&pool)
        .args(&["cancel", &unknown])
        .run()
        .await
        .assert_error(4, "not found");
    herald(&pool)
        .args(&["cancel", "nope"])
        .run()
        .await
        .assert_error(2, "invalid value 'nope'");
    let help = herald(&pool).args(&["retry", "--help"]).run().await;
    assert!(
        help.stdout.contains("same id") && help.stdout.contains("fresh budget"),
        "{}",
        help.stdout
    );
}

#[sqlx::test(migrations = false)]
async fn cancel_finishes_a_pending_notification(pool: PgPool) {
    let pool = migrated(pool).await;
    let id = one(&pool, "c").await;
    // Two attempts already failed; the notification waits for its retry.
    sqlx::query(
        "update herald.queue set attempts = 2, last_error = 'HTTP 503' where id = $1::uuid",
    )
    .bind(&id)
    .execute(&pool)
    .await
    .unwrap();
    let out = herald(&pool).args(&["cancel", &id]).run().await;
    assert_eq!(out.stdout, format!("cancelled {id}\n"));
    let n = herald(&pool)
        .args(&["show", &id, "--json"])
        .run()
        .await
        .json();
    assert_eq!(n["state"], "cancelled");
    assert!(n["finished_at"].is_string());
    assert_eq!(n["attempts"], 2, "the attempts spent stay on the record");
    let again = herald(&pool).args(&["cancel", &id, "--json"]).run().await;
    again.assert_error(2, "it is cancelled");
    let retried = herald(&pool).args(&["retry", &id]).run().await;
    assert!(
        retried
            .stdout
            .starts_with(&format!("retried {id}: pending again")),
        "{retried:?}"
    );
}

#[sqlx::test(migrations = false)]
async fn stats_counts_by_state_and_channel(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![Reply::status(503)]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    herald::enqueue(&pool, &Notification::webhook("u", "t", "w1", hook))
        .await
        .unwrap();
    run_until_idle(&pool, FAST).await; // one failed attempt, then delivered
    one(&pool, "e1").await;
    let dead = one(&pool, "e2").await;
    set_state(&pool, &dead, "dead").await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    herald::enqueue(
        &pool,
        &Notification::email("u", "t", "later", "a@b.co").run_at(later),
    )
    .await
    .unwrap();

    let stats = herald(&pool).args(&["stats", "--json"]).run().await;
    assert_eq!(stats.code, 0, "{stats:?}");
    let s = stats.json();
    assert_eq!(
        s["counts"]["pending"],
        json!({"email": 2, "webhook": 0, "total": 2})
    );
    assert_eq!(
        s["counts"]["delivered"],
        json!({"email": 0, "webhook": 1, "total": 1})
    );
    assert_eq!(s["counts"]["dead"]["total"], 1);
    assert_eq!(s["counts"]["running"]["total"], 0);
    assert!(
        s["oldest_due_age_seconds"].as_f64().unwrap() >= 0.0,
        "one email is due: {s}"
    );
    assert_eq!(s["last_hour"]["delivered"], 1);
    assert_eq!(s["last_hour"]["failed"], 1);
    assert_eq!(s["last_hour"]["unknown"], 0);
    assert!(s["last_hour"]["latency_p50_ms"].as_f64().unwrap() >= 0.0);
    assert!(
        s["last_hour"]["latency_p99_ms"].as_f64().unwrap()
            >= s["last_hour"]["latency_p50_ms"].as_f64().unwrap()
    );

    let human = herald(&pool).arg("stats").run().await;
    assert!(
        human
            .stdout
            .starts_with("STATE      EMAIL  WEBHOOK  TOTAL\npending    2      0        2\n"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("last hour:  1 delivered, 1 failed, 0 unknown attempts"),
        "{}",
        human.stdout
    );
}

#[sqlx::test(migrations = false)]
async fn explain_tells_who_holds_a_key_and_why_a_payload_conflicts(pool: PgPool) {
    let pool = migrated(pool).await;
    let key = Key::new("ann", "order_shipped", "o1");
    let explain = || herald(&pool).explain(&key);
    let free = explain()
        .args(&["--payload", "{}", "--json"])
        .run()
        .await
        .json();
    assert_eq!(
        (free["held"].as_bool(), free["verdict"].as_str()),
        (Some(false), Some("new"))
    );

    let id = one(&pool, "o1").await;
    let same = explain()
        .args(&[
            "--payload",
            r#"{"items":[{"qty":1,"sku":"a"}],"order":"o1"}"#,
            "--json",
        ])
        .run()
        .await
        .json();
    assert_eq!(
        same["verdict"], "duplicate",
        "key order does not matter: {same}"
    );
    assert_eq!(same["notification"]["id"], id);
    assert_eq!(
        same["dedup_window_ends_at"],
        serde_json::Value::Null,
        "open while pending"
    );

    let changed = explain()
        .args(&[
            "--payload",
            r#"{"order":"o1","items":[{"sku":"a","qty":2}],"gift":true}"#,
            "--json",
        ])
        .run()
        .await
        .json();
    assert_eq!(changed["verdict"], "conflict");
    assert_eq!(changed["compared"], "payload");
    assert_eq!(changed["differences"], json!(["$.gift", "$.items[0].qty"]));

    let elsewhere = explain()
        .args(&[
            "--payload",
            r#"{"order":"o1","items":[{"sku":"a","qty":1}]}"#,
            "--email",
            "bob@example.com",
            "--json",
        ])
        .run()
        .await
        .json();
    assert_eq!(
        (
            elsewhere["verdict"].as_str(),
            elsewhere["compared"].as_str()
        ),
        (Some("conflict"), Some("intent"))
    );
    assert_eq!(elsewhere["differences"], json!(["destination"]));

    // The conflict agrees with what enqueue does.
    let enq = herald(&pool)
        .enqueue(&key)
        .args(&[
            "--email",
            "ann@example.com",
            "--payload",
            r#"{"order":"o1","items":[{"sku":"a","qty":2}],"gift":true}"#,
        ])
        .run()
        .await;
    enq.assert_error(3, &id);

    let human = explain()
        .args(&[
            "--payload",
            r#"{"order":"o2","items":[{"sku":"a","qty":1}]}"#,
        ])
        .run()
        .await;
    assert!(
        human.stdout.contains(&format!(
            "held by:      {id} (pending, email to ann@example.com)"
        )),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("verdict:      conflict (payload compared; give --email or --webhook to judge the destination too): differs at $.order"), "{}", human.stdout);
}

#[sqlx::test(migrations = false)]
async fn explain_gives_the_end_of_the_dedup_window(pool: PgPool) {
    let pool = migrated(pool).await;
    let id = one(&pool, "o1").await;
    finish(
        &pool,
        Rows::All,
        "delivered",
        At::Time("2030-01-01T00:00:00Z"),
    )
    .await;
    let human = herald(&pool).explain(&Key::new("ann", "order_shipped", "o1"));
    let json = human.clone().arg("--json");
    let default = json.run().await.json();
    assert_eq!(default["notification"]["id"], id);
    assert_eq!(
        default["dedup_window_ends_at"], "2030-01-31T00:00:00Z",
        "finished_at + 30 days"
    );
    let by_type = json
        .env("HERALD_SWEEPER__RETENTION_BY_TYPE__ORDER_SHIPPED", "90d")
        .run()
        .await
        .json();
    assert_eq!(
        by_type["dedup_window_ends_at"], "2030-04-01T00:00:00Z",
        "the type's own retention"
    );
    assert_eq!(by_type["retention_seconds"], 90 * 86400);
    let human = human.run().await;
    assert!(
        human.stdout.contains(
            "dedup window: ends 2030-01-31T00:00:00Z (finished 2030-01-01T00:00:00Z + 30days)"
        ),
        "{}",
        human.stdout
    );
}

#[sqlx::test(migrations = false)]
async fn explain_refuses_bad_input(pool: PgPool) {
    let pool = migrated(pool).await;
    herald(&pool)
        .explain(&Key::new("", "t", "b"))
        .run()
        .await
        .assert_error(2, "invalid user_id (--user): must not be empty");
    let explain = || herald(&pool).explain(&Key::new("u", "t", "b"));
    explain()
        .args(&["--email", "a@b.co"])
        .run()
        .await
        .assert_error(2, "need --payload");
    explain()
        .args(&["--payload", "{"])
        .run()
        .await
        .assert_error(2, "--payload");
    herald(&pool)
        // No key without a business id.
        .args(&["explain", "--user", "u", "--type", "t"])
        .run()
        .await
        .assert_error(2, "--business-id");
}

#[sqlx::test(migrations = false)]
async fn endpoints_can_be_disabled_enabled_and_rotated(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url())
        .await
        .to_string();

    let disabled = herald(&pool)
        .args(&[
            "endpoints",
            "disable",
            &hook,
            "--reason",
            "receiver migrating",
            "--json",
        ])
        .run()
        .await
        .json();
    assert_eq!(
        (
            disabled["enabled"].as_bool(),
            disabled["disabled_reason"].as_str()
        ),
        (Some(false), Some("receiver migrating"))
    );
    let enqueue = herald(&pool)
        .enqueue(&Key::new("u", "t", "b1"))
        .args(&["--webhook", &hook]);
    enqueue
        .run()
        .await
        .assert_error(2, "is disabled: receiver migrating");
    let listed = herald(&pool).args(&["endpoints", "list"]).run().await;
    assert!(
        listed.stdout.contains("receiver migrating"),
        "{}",
        listed.stdout
    );

    let enabled = herald(&pool)
        .args(&["endpoints", "enable", &hook])
        .run()
        .await;
    assert_eq!(enabled.stdout, format!("enabled {hook}\n"));
    assert_eq!(enqueue.run().await.code, 0);

    let rotated = herald(&pool)
        .args(&[
            "endpoints",
            "rotate-secret",
            &hook,
            "--grace",
            "1h",
            "--json",
        ])
        .run()
        .await;
    assert_eq!(rotated.code, 0, "{rotated:?}");
    let r = rotated.json();
    let new_secret = r["secret"].as_str().unwrap().to_owned();
    assert!(new_secret.starts_with("whsec_") && new_secret != SECRET);
    let until =
        chrono::DateTime::parse_from_rfc3339(r["previous_secret_expires_at"].as_str().unwrap())
            .unwrap();
    let grace = until.to_utc() - chrono::Utc::now();
    assert!(
        grace > chrono::Duration::minutes(59) && grace <= chrono::Duration::minutes(60),
        "{grace}"
    );
    let listed = herald(&pool)
        .args(&["endpoints", "list", "--json"])
        .run()
        .await;
    assert!(
        !listed.stdout.contains(&new_secret),
        "the new secret is shown once"
    );

    // During the grace period deliveries carry both signatures.
    run_until_idle(&pool, FAST).await;
    let request = &receiver.wait_for_requests(1).await[0];
    for secret in [new_secret.as_str(), SECRET] {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&request.body, &request.headers)
            .expect("both secrets verify");
    }

    let unknown = uuid::Uuid::now_v7().to_string();
    herald(&pool)
        .args(&["endpoints", "disable", &unknown])
        .run()
        .await
        .assert_error(4, "webhook endpoint");
    herald(&pool)
        .args(&[
            "endpoints",
            "rotate-secret",
            &hook,
            "--secret",
            "whsec_short",
        ])
        .run()
        .await
        .assert_error(2, "secret:");
    herald(&pool)
        .args(&["endpoints", "rotate-secret", &hook, "--grace", "a while"])
        .run()
        .await
        .assert_error(2, "--grace");
    herald(&pool)
        .args(&["endpoints", "disable", &hook, "--reason", ""])
        .run()
        .await
        .assert_error(2, "reason");
}
