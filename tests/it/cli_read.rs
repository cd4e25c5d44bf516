//! `herald list` and `herald show` through the binary.

use serde_json::json;
use sqlx::PgPool;

use crate::support::{herald, migrated};

async fn seed(pool: &PgPool) -> Vec<uuid::Uuid> {
    let mut ids = Vec::new();
    for (user, type_, tenant) in [
        ("ann", "welcome", "default"),
        ("bob", "welcome", "default"),
        ("ann", "digest", "acme"),
    ] {
        let n = herald::Notification::email(user, type_, "b-1", "ann@example.com")
            .tenant(tenant)
            .payload(json!({"user": user}));
        ids.push(herald::enqueue(pool, &n).await.unwrap().id());
    }
    ids
}

#[sqlx::test(migrations = false)]
async fn list_is_newest_first_filtered_and_limited(pool: PgPool) {
    let pool = migrated(pool).await;
    let ids = seed(&pool).await;
    let ids_of = |run: &crate::support::Run| -> Vec<String> {
        run.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = herald(&pool).args(&["list", "--json"]).run().await;
    assert_eq!(all.code, 0, "{all:?}");
    let expected: Vec<String> = ids.iter().rev().map(|id| id.to_string()).collect();
    assert_eq!(ids_of(&all), expected, "newest first");

    let ann = herald(&pool)
        .args(&["list", "--user", "ann", "--json"])
        .run()
        .await;
    assert_eq!(ids_of(&ann), [ids[2].to_string(), ids[0].to_string()]);
    let digest = herald(&pool)
        .args(&["list", "--type", "digest", "--tenant", "acme", "--json"])
        .run()
        .await;
    assert_eq!(ids_of(&digest), [ids[2].to_string()]);
    let pending = herald(&pool)
        .args(&["list", "--state", "pending", "--limit", "1", "--json"])
        .run()
        .await;
    assert_eq!(ids_of(&pending), [ids[2].to_string()]);
    let delivered = herald(&pool)
        .args(&["list", "--state", "delivered", "--json"])
        .run()
        .await;
    assert_eq!(delivered.json(), json!([]));

    let first = &all.json()[0];
    let keys = crate::support::sorted_keys(first);
    assert_eq!(
        keys,
        [
            "attempts",
            "business_id",
            "channel",
            "created_at",
            "destination",
            "finished_at",
            "id",
            "last_error",
            "max_attempts",
            "payload",
            "run_at",
            "state",
            "tenant",
            "type",
            "user_id"
        ]
    );
    assert_eq!(first["payload"], json!({"user": "ann"}));
    assert_eq!(first["channel"], "email");
    assert_eq!(first["finished_at"], serde_json::Value::Null);
}

#[sqlx::test(migrations = false)]
async fn list_prints_an_aligned_table(pool: PgPool) {
    let pool = migrated(pool).await;
    let ids = seed(&pool).await;
    let out = herald(&pool).arg("list").run().await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three rows: {}", out.stdout);
    assert!(lines[0].starts_with("ID "), "{}", lines[0]);
    assert!(lines[1].starts_with(&ids[2].to_string()));
    // Every row's STATE column starts where the header's does.
    let state_at = lines[0].find("STATE").unwrap();
    for line in &lines[1..] {
        assert_eq!(&line[state_at..state_at + 7], "pending", "{line}");
    }
}

#[sqlx::test(migrations = false)]
async fn list_refuses_bad_filters(pool: PgPool) {
    let pool = migrated(pool).await;
    herald(&pool)
        .args(&["list", "--state", "done"])
        .run()
        .await
        .assert_error(2, "unknown state \"done\"");
    herald(&pool)
        .args(&["list", "--limit", "0"])
        .run()
        .await
        .assert_error(2, "--limit");
}

#[sqlx::test(migrations = false)]
async fn show_prints_one_notification_with_its_attempt_log(pool: PgPool) {
    let pool = migrated(pool).await;
    let ids = seed(&pool).await;
    // An attempt as the dispatcher records it.
    sqlx::query(
        "insert into herald.attempts (notification_id, attempt, started_at, finished_at, outcome, status, error)
         values ($1, 1, now(), now(), 'failed', 451, 'mailbox busy')",
    )
    .bind(ids[0])
    .execute(&pool)
    .await
    .unwrap();
    let out = herald(&pool)
        .args(&["show", &ids[0].to_string(), "--json"])
        .run()
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let shown = out.json();
    assert_eq!(shown["id"], ids[0].to_string());
    assert_eq!(shown["user_id"], "ann");
    assert_eq!(shown["attempt_log"][0]["attempt"], 1);
    assert_eq!(shown["attempt_log"][0]["outcome"], "failed");
    assert_eq!(shown["attempt_log"][0]["status"], 451);
    assert_eq!(shown["attempt_log"][0]["error"], "mailbox busy");
    let keys = crate::support::sorted_keys(&shown["attempt_log"][0]);
    assert_eq!(
        keys,
        [
            "attempt",
            "error",
            "finished_at",
            "outcome",
            "started_at",
            "status"
        ]
    );

    let human = herald(&pool)
        .args(&["show", &ids[1].to_string()])
        .run()
        .await;
    assert!(
        human.stdout.contains("user_id:     bob\n"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.ends_with("no attempts yet\n"),
        "{}",
        human.stdout
    );
}

#[sqlx::test(migrations = false)]
async fn show_reports_unknown_and_malformed_ids(pool: PgPool) {
    let pool = migrated(pool).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    herald(&pool)
        .args(&["show", &unknown])
        .run()
        .await
        .assert_error(4, &format!("notification {unknown} not found"));
    herald(&pool)
        .args(&["show", "nope"])
        .run()
        .await
        .assert_error(2, "invalid value 'nope'");
}

#[sqlx::test(migrations = false)]
async fn a_reader_that_goes_away_is_not_an_error(pool: PgPool) {
    let pool = migrated(pool).await;
    let batch: Vec<herald::Notification> = (0..400)
        .map(|i| {
            herald::Notification::email("u", "t", format!("b{i}"), "a@b.co")
                .payload(json!({"pad": "x".repeat(200)}))
        })
        .collect();
    herald::enqueue_many(&pool, &batch).await.unwrap();
    let mut child = herald(&pool)
        .args(&["list", "--limit", "400", "--json"])
        .command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    tokio::io::AsyncReadExt::read_exact(&mut stdout, &mut first)
        .await
        .unwrap();
    drop(stdout); // like `herald list --json | head -c 10`
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
