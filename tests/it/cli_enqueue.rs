//! `herald enqueue` through the binary: created, duplicate, conflict, and every refusal with
//! exit code 2, one line naming the field, and nothing written.

use sqlx::PgPool;

use crate::support::{Cli, Key, count_notifications, disable_endpoint, endpoint, herald, migrated};

/// `herald enqueue` with the key the tests here share; the destination and the rest follow.
fn enqueue(pool: &PgPool) -> Cli {
    herald(pool).enqueue(&Key::new("user-42", "order_shipped", "order-1001"))
}

#[sqlx::test(migrations = false)]
async fn enqueue_then_replay(pool: PgPool) {
    let pool = migrated(pool).await;
    let human = enqueue(&pool).args(&[
        "--email",
        "ann@example.com",
        "--payload",
        r#"{"order":"1001"}"#,
    ]);
    let json = human.clone().arg("--json");
    let first = json.run().await;
    assert_eq!(first.code, 0, "{first:?}");
    let first_json = first.json();
    assert_eq!(first_json["status"], "created");
    assert_eq!(first_json["state"], "pending");
    let id = first_json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        first_json.as_object().unwrap().len(),
        3,
        "exactly id, status, state: {first_json}"
    );

    let again = json.run().await;
    assert_eq!(again.code, 0, "a duplicate is a success: {again:?}");
    assert_eq!(
        again.json(),
        serde_json::json!({"id": id, "status": "duplicate", "state": "pending"})
    );

    // Human output: one line with the status, id and state.
    let human = human.run().await;
    assert_eq!(human.stdout, format!("duplicate {id} (pending)\n"));
    assert_eq!(count_notifications(&pool).await, 1);
}

#[sqlx::test(migrations = false)]
async fn the_default_max_attempts_follows_the_retry_schedule(pool: PgPool) {
    let pool = migrated(pool).await;
    let out = enqueue(&pool)
        .args(&["--email", "ann@example.com"])
        .env("HERALD_RETRY__SCHEDULE", "1s,2s")
        .run()
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let max: i32 = sqlx::query_scalar("select max_attempts from herald.notifications")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(max, 3, "two retries: three attempts");
}

#[sqlx::test(migrations = false)]
async fn a_conflict_exits_3_naming_the_existing_id(pool: PgPool) {
    let pool = migrated(pool).await;
    let first = enqueue(&pool)
        .args(&["--email", "ann@example.com", "--json"])
        .run()
        .await;
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let out = enqueue(&pool)
        .args(&["--email", "bob@example.com"])
        .run()
        .await;
    out.assert_error(3, &id);
    assert!(out.stderr.contains("different destination"), "{out:?}");
    assert_eq!(count_notifications(&pool).await, 1);
}

#[sqlx::test(migrations = false)]
async fn bad_input_exits_2_with_one_line_and_writes_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    let disabled = endpoint(&pool, "default").await.to_string();
    disable_endpoint(&pool, disabled.parse().unwrap(), "disabled by operator").await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let long = "x".repeat(256);
    let e = "--email";
    let a = "ann@example.com";
    let with_key = |key: Key| herald(&pool).enqueue(&key).args(&[e, a]);
    let cases: Vec<(Cli, &str)> = vec![
        (
            with_key(Key::new("", "t", "b")),
            "user_id (--user): must not be empty",
        ),
        (
            with_key(Key::new("u", &long, "b")),
            "type (--type): must be at most 255 characters",
        ),
        (
            with_key(Key::new("u", "t", "b\u{1}")),
            "business_id (--business-id): must not contain control characters",
        ),
        (
            enqueue(&pool).args(&[e, a, "--tenant", ""]),
            "tenant (--tenant)",
        ),
        (
            enqueue(&pool).args(&[e, "not-an-address"]),
            "email (--email)",
        ),
        (
            enqueue(&pool).args(&[e, a, "--payload", r#"{"a":"x\u0000y"}"#]),
            "payload (--payload): must not contain NUL",
        ),
        (
            enqueue(&pool).args(&[e, a, "--payload", "[1,2]"]),
            "payload (--payload): must be a JSON object",
        ),
        (
            enqueue(&pool).args(&[e, a, "--payload", "{not json"]),
            "--payload",
        ),
        (
            enqueue(&pool).args(&["--webhook", &unknown]),
            "endpoint (--webhook)",
        ),
        (
            enqueue(&pool).args(&["--webhook", &disabled]),
            "is disabled: disabled by operator",
        ),
        (
            enqueue(&pool).args(&["--webhook", "not-a-uuid"]),
            "--webhook",
        ),
        (
            enqueue(&pool).args(&[e, a, "--max-attempts", "0"]),
            "max_attempts (--max-attempts): must be between 1 and 100, got 0",
        ),
        (
            enqueue(&pool).args(&[e, a, "--max-attempts", "101"]),
            "max_attempts (--max-attempts)",
        ),
        (
            enqueue(&pool).args(&[e, a, "--max-attempts", "-1"]),
            "--max-attempts",
        ),
        (
            enqueue(&pool).args(&[e, a, "--run-at", "tomorrow"]),
            "--run-at",
        ),
        (enqueue(&pool), "one of --email or --webhook is required"),
        (
            enqueue(&pool).args(&[e, a, "--webhook", &unknown]),
            "--email and --webhook cannot be used together",
        ),
        (
            // No key without a user.
            herald(&pool).args(&["enqueue", "--type", "t", "--business-id", "b", e, a]),
            "--user",
        ),
    ];
    for (cli, needle) in cases {
        let out = cli.run().await;
        out.assert_error(2, needle);
    }
    let over_limit = enqueue(&pool)
        .args(&[e, a, "--payload", r#"{"k":"0123456789"}"#])
        .env("HERALD_LIMITS__MAX_PAYLOAD_BYTES", "10")
        .run()
        .await;
    over_limit.assert_error(
        2,
        // jsonb's text form, `{"k": "0123456789"}`, is what the limit counts.
        "payload (--payload): is 19 bytes, over the limit of 10 bytes",
    );
    assert_eq!(count_notifications(&pool).await, 0);
}

#[sqlx::test(migrations = false)]
async fn run_at_and_tenant_reach_the_row(pool: PgPool) {
    let pool = migrated(pool).await;
    let out = enqueue(&pool)
        .args(&[
            "--email",
            "a@b.co",
            "--tenant",
            "acme",
            "--run-at",
            "2031-05-06T07:08:09+02:00",
            "--max-attempts",
            "2",
        ])
        .run()
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let (tenant, run_at, max): (String, chrono::DateTime<chrono::Utc>, i32) =
        sqlx::query_as("select tenant, run_at, max_attempts from herald.notifications")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(tenant, "acme");
    assert_eq!(run_at.to_rfc3339(), "2031-05-06T05:08:09+00:00");
    assert_eq!(max, 2);
}
