//! `herald enqueue` through the binary: created, duplicate, conflict, and every refusal with
//! exit code 2, one line naming the field, and nothing written.

use sqlx::PgPool;

use crate::support::{count_notifications, disable_endpoint, endpoint, herald, migrated};

const BASE: [&str; 7] = [
    "enqueue",
    "--user",
    "user-42",
    "--type",
    "order_shipped",
    "--business-id",
    "order-1001",
];

fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = BASE.to_vec();
    args.extend_from_slice(extra);
    args
}

#[sqlx::test(migrations = false)]
async fn enqueue_then_replay(pool: PgPool) {
    migrated(&pool).await;
    let args = with(&[
        "--email",
        "ann@example.com",
        "--payload",
        r#"{"order":"1001"}"#,
        "--json",
    ]);
    let first = herald(&pool).args(&args).run().await;
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

    let again = herald(&pool).args(&args).run().await;
    assert_eq!(again.code, 0, "a duplicate is a success: {again:?}");
    assert_eq!(
        again.json(),
        serde_json::json!({"id": id, "status": "duplicate", "state": "pending"})
    );

    // Human output: one line with the status, id and state.
    let human = herald(&pool)
        .args(&with(&[
            "--email",
            "ann@example.com",
            "--payload",
            r#"{"order":"1001"}"#,
        ]))
        .run()
        .await;
    assert_eq!(human.stdout, format!("duplicate {id} (pending)\n"));
    assert_eq!(count_notifications(&pool).await, 1);
}

#[sqlx::test(migrations = false)]
async fn the_default_max_attempts_follows_the_retry_schedule(pool: PgPool) {
    migrated(&pool).await;
    let out = herald(&pool)
        .args(&with(&["--email", "ann@example.com"]))
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
    migrated(&pool).await;
    let first = herald(&pool)
        .args(&with(&["--email", "ann@example.com", "--json"]))
        .run()
        .await;
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let out = herald(&pool)
        .args(&with(&["--email", "bob@example.com"]))
        .run()
        .await;
    out.assert_error(3, &id);
    assert!(out.stderr.contains("different destination"), "{out:?}");
    assert_eq!(count_notifications(&pool).await, 1);
}

#[sqlx::test(migrations = false)]
async fn bad_input_exits_2_with_one_line_and_writes_nothing(pool: PgPool) {
    migrated(&pool).await;
    let disabled = endpoint(&pool, "default").await.to_string();
    disable_endpoint(&pool, disabled.parse().unwrap(), "disabled by operator").await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let long = "x".repeat(256);
    let e = "--email";
    let a = "ann@example.com";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "enqueue",
                "--user",
                "",
                "--type",
                "t",
                "--business-id",
                "b",
                e,
                a,
            ],
            "user_id (--user): must not be empty",
        ),
        (
            vec![
                "enqueue",
                "--user",
                "u",
                "--type",
                &long,
                "--business-id",
                "b",
                e,
                a,
            ],
            "type (--type): must be at most 255 characters",
        ),
        (
            vec![
                "enqueue",
                "--user",
                "u",
                "--type",
                "t",
                "--business-id",
                "b\u{1}",
                e,
                a,
            ],
            "business_id (--business-id): must not contain control characters",
        ),
        (with(&[e, a, "--tenant", ""]), "tenant (--tenant)"),
        (with(&[e, "not-an-address"]), "email (--email)"),
        (
            with(&[e, a, "--payload", r#"{"a":"x\u0000y"}"#]),
            "payload (--payload): must not contain NUL",
        ),
        (
            with(&[e, a, "--payload", "[1,2]"]),
            "payload (--payload): must be a JSON object",
        ),
        (with(&[e, a, "--payload", "{not json"]), "--payload"),
        (with(&["--webhook", &unknown]), "endpoint (--webhook)"),
        (
            with(&["--webhook", &disabled]),
            "is disabled: disabled by operator",
        ),
        (with(&["--webhook", "not-a-uuid"]), "--webhook"),
        (
            with(&[e, a, "--max-attempts", "0"]),
            "max_attempts (--max-attempts): must be between 1 and 100, got 0",
        ),
        (
            with(&[e, a, "--max-attempts", "101"]),
            "max_attempts (--max-attempts)",
        ),
        (with(&[e, a, "--max-attempts", "-1"]), "--max-attempts"),
        (with(&[e, a, "--run-at", "tomorrow"]), "--run-at"),
        (with(&[]), "one of --email or --webhook is required"),
        (
            with(&[e, a, "--webhook", &unknown]),
            "--email and --webhook cannot be used together",
        ),
        (
            vec!["enqueue", "--type", "t", "--business-id", "b", e, a],
            "--user",
        ),
    ];
    for (args, needle) in cases {
        let out = herald(&pool).args(&args).run().await;
        out.assert_error(2, needle);
    }
    let over_limit = herald(&pool)
        .args(&with(&[e, a, "--payload", r#"{"k":"0123456789"}"#]))
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
    migrated(&pool).await;
    let out = herald(&pool)
        .args(&with(&[
            "--email",
            "a@b.co",
            "--tenant",
            "acme",
            "--run-at",
            "2031-05-06T07:08:09+02:00",
            "--max-attempts",
            "2",
        ]))
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
