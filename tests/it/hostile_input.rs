//! Hostile input, through the library and the binary: payloads nested absurdly deep, email
//! recipients that would break headers, bytes that are not UTF-8 in arguments, the
//! environment, a config file or a template. Each is one clear error naming what was wrong,
//! exit code 2, no panic, and nothing written. And a payload too deep to read, stored by a
//! plain-SQL writer, fails only its own notification.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use herald::MAX_PAYLOAD_DEPTH;
use herald::{EnqueueError, Notification};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::daemon::{FAST, env_with, run_until_idle};
use crate::support::receiver::Receiver;
use crate::support::{Cli, Key, count_notifications, endpoint_at, herald, migrated};

/// `{"a": {"a": … {}}}` with `depth` objects, built without recursion.
fn nested(depth: usize) -> Value {
    // Not `json!({"a": value})`: the macro serialises an embedded value, recursively.
    let mut value = json!({});
    for _ in 1..depth {
        value = Value::Object(serde_json::Map::from_iter([("a".to_owned(), value)]));
    }
    value
}

/// `depth` nested JSON arrays as text: `[[[…]]]`.
fn nested_text(depth: usize) -> String {
    format!(
        "{{\"a\":{}{}}}",
        "[".repeat(depth - 1),
        "]".repeat(depth - 1)
    )
}

/// `enqueue` of an email to ann, for `herald` invocations `cli` starts; more arguments follow.
fn enqueue_to_ann(cli: Cli) -> Cli {
    cli.enqueue(&Key::new("u", "t", "b"))
        .args(&["--email", "ann@example.com"])
}

#[sqlx::test(migrations = false)]
async fn deep_payloads_are_refused_by_the_library(pool: PgPool) {
    let pool = migrated(pool).await;
    let edge =
        Notification::email("u", "t", "edge", "ann@example.com").payload(nested(MAX_PAYLOAD_DEPTH));
    assert!(herald::enqueue(&pool, &edge).await.unwrap().is_created());
    for depth in [MAX_PAYLOAD_DEPTH + 1, 100_000] {
        let n = Notification::email("u", "t", "deep", "ann@example.com").payload(nested(depth));
        let single = herald::enqueue(&pool, &n).await;
        let batch = herald::enqueue_many(&pool, std::slice::from_ref(&n)).await;
        for result in [single.map(|_| ()), batch.map(|_| ())] {
            match result {
                Err(EnqueueError::Invalid { field, message }) => {
                    assert_eq!(field, "payload");
                    assert!(message.contains("nested at most 64 levels"), "{message}");
                }
                other => panic!("depth {depth}: expected Invalid, got {other:?}"),
            }
        }
        // `Value`'s `Drop` recurses and would overflow on the deep one: leak it instead.
        std::mem::forget(n);
    }
    assert_eq!(count_notifications(&pool).await, 1, "only the edge case");
}

#[sqlx::test(migrations = false)]
async fn deep_payloads_are_refused_by_the_binary(pool: PgPool) {
    let pool = migrated(pool).await;
    // Past the limit but readable by serde_json, and far past what its reader accepts (as far
    // as one argument may go: Linux caps each at 128 KiB).
    for depth in [MAX_PAYLOAD_DEPTH + 1, 50_000] {
        let payload = nested_text(depth);
        let out = enqueue_to_ann(herald(&pool))
            .args(&["--payload", &payload])
            .run()
            .await;
        out.assert_error(
            2,
            "invalid payload (--payload): must be nested at most 64 levels deep",
        );
        assert!(
            out.stderr.len() < 200,
            "the payload is not echoed: {}",
            out.stderr.len()
        );
    }
    let edge = nested_text(MAX_PAYLOAD_DEPTH);
    let edge_case = enqueue_to_ann(herald(&pool)).args(&["--payload", &edge]);
    assert_eq!(edge_case.run().await.code, 0);
    assert_eq!(count_notifications(&pool).await, 1, "only the edge case");
}

/// Recipients that would add a header, a recipient or a line if they reached a message.
const HEADER_BREAKING: [&str; 9] = [
    "ann@example.com\r\nBcc: eve@example.com",
    "ann@example.com\nBcc: eve@example.com",
    "ann@example.com\r",
    "ann@example.com, eve@example.com",
    "ann@example.com;eve@example.com",
    "Ann <ann@example.com>",
    "ann@example.com>\r\nX-Evil: 1",
    "ann\u{2028}@example.com",
    "\"ann\r\n\"@example.com",
];

#[sqlx::test(migrations = false)]
async fn header_breaking_recipients_are_refused_naming_email(pool: PgPool) {
    let pool = migrated(pool).await;
    for address in HEADER_BREAKING {
        let n = Notification::email("u", "t", "b", address);
        match herald::enqueue(&pool, &n).await {
            Err(EnqueueError::Invalid { field, .. }) => assert_eq!(field, "email", "{address:?}"),
            other => panic!("{address:?}: expected Invalid(email), got {other:?}"),
        }
        herald(&pool)
            .enqueue(&Key::new("u", "t", "b"))
            .args(&["--email", address])
            .run()
            .await
            .assert_error(2, "invalid email (--email)");
    }
    assert_eq!(count_notifications(&pool).await, 0);
}

#[sqlx::test(migrations = false)]
async fn arguments_that_are_not_utf8_are_named(pool: PgPool) {
    let pool = migrated(pool).await;
    let bad = OsStr::from_bytes(b"user-\xff\xfe");
    let cases = [
        (
            herald(&pool).args(&["enqueue", "--user"]).arg(bad),
            "error: argument 5 (after --user) is not valid UTF-8",
        ),
        (
            herald(&pool)
                .arg("enqueue")
                .arg(OsStr::from_bytes(b"--type=t\xff")),
            "error: the value of --type is not valid UTF-8",
        ),
        (
            herald(&pool).arg("show").arg(bad),
            "error: argument 4 is not valid UTF-8",
        ),
    ];
    for (cli, expected) in cases {
        cli.run().await.assert_error(2, expected);
    }
    // The environment: DATABASE_URL (read by the argument parser) and herald's own variables.
    Cli::new()
        .arg("list")
        .env("DATABASE_URL", bad)
        .run()
        .await
        .assert_error(
            2,
            "error: environment variable DATABASE_URL is not valid UTF-8",
        );
    let list = herald(&pool).arg("list");
    list.clone()
        .env("HERALD_SMTP__PASSWORD", bad)
        .run()
        .await
        .assert_error(
            2,
            "error: environment variable HERALD_SMTP__PASSWORD is not valid UTF-8",
        );
    // Anyone else's variable is none of herald's business (it used to panic).
    let out = list.env("SOME_OTHER_TOOL", bad).run().await;
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    assert_eq!(count_notifications(&pool).await, 0);
}

#[sqlx::test(migrations = false)]
async fn a_config_file_that_is_not_utf8_is_named(pool: PgPool) {
    let pool = migrated(pool).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, b"[smtp]\nhost = \"mail\xff.example\"\n").unwrap();
    let with_config = herald(&pool).args(&["--config", file.to_str().unwrap()]);
    let out = enqueue_to_ann(with_config).run().await;
    out.assert_error(
        2,
        &format!(
            "config file {}: stream did not contain valid UTF-8",
            file.display()
        ),
    );
    assert_eq!(count_notifications(&pool).await, 0);
}

/// `/dev/zero` never ends: herald used to read it until the kernel killed it.
#[tokio::test]
async fn a_config_file_that_never_ends_is_refused_after_1_mib() {
    let out = Cli::new()
        .args(&["--config", "/dev/zero", "migrate"])
        .run()
        .await;
    out.assert_error(2, "config file /dev/zero: larger than 1 MiB");
}

#[sqlx::test(migrations = false)]
async fn a_template_that_is_not_utf8_stops_the_daemon_naming_it(pool: PgPool) {
    let pool = migrated(pool).await;
    let dir = tempfile::tempdir().unwrap();
    let type_dir = dir.path().join("welcome");
    std::fs::create_dir_all(&type_dir).unwrap();
    std::fs::write(type_dir.join("subject.txt"), b"Welcome \xff").unwrap();
    std::fs::write(type_dir.join("body.txt"), b"Hi").unwrap();
    let n = Notification::email("u", "welcome", "b", "ann@example.com");
    let id = herald::enqueue(&pool, &n).await.unwrap().id();
    let templates = dir.path().to_str().unwrap();
    let run = run_until_idle(&pool, &env_with(&[("HERALD_TEMPLATES__DIR", templates)])).await;
    let path = type_dir.join("subject.txt");
    run.assert_error(2, &format!("template {}: ", path.display()));
    assert!(run.stderr.contains("valid UTF-8"), "{run:?}");
    let (state, attempts): (String, i32) =
        sqlx::query_as("select state, attempts from herald.notifications where id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), attempts),
        ("pending", 0),
        "nothing was claimed"
    );
}

#[sqlx::test(migrations = false)]
async fn a_payload_too_deep_to_read_fails_only_its_own_notification(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    // Only a plain-SQL writer can store this: jsonb takes it, serde_json will not read it.
    let deep = nested_text(200);
    let insert = "insert into herald.intents
            (id, tenant, user_id, type, business_id, fingerprint, channel, destination, payload, max_attempts)
        values (herald.uuid_v7(), 'default', 'u', 't', $1, decode(repeat('00', 32), 'hex'),
                'webhook', $2, $3::jsonb, 3)
        returning id";
    let mut ids = Vec::new();
    for (business_id, payload) in [("deep", deep.as_str()), ("fine", r#"{"order": "1001"}"#)] {
        let id: uuid::Uuid = sqlx::query_scalar(insert)
            .bind(business_id)
            .bind(hook.to_string())
            .bind(payload)
            .fetch_one(&pool)
            .await
            .unwrap();
        ids.push(id);
    }
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");
    let row = |id: uuid::Uuid| {
        sqlx::query_as::<_, (String, i32, Option<String>)>(
            "select state, attempts, last_error from herald.notifications where id = $1",
        )
        .bind(id)
        .fetch_one(&pool)
    };
    let (state, attempts, error) = row(ids[0]).await.unwrap();
    assert_eq!((state.as_str(), attempts), ("dead", 1), "given up at once");
    let error = error.unwrap();
    assert!(
        error.starts_with("the stored payload cannot be delivered: it is nested too deep"),
        "{error}"
    );
    let (state, attempts, _) = row(ids[1]).await.unwrap();
    assert_eq!(
        (state.as_str(), attempts),
        ("delivered", 1),
        "its neighbour is unharmed"
    );
    assert_eq!(receiver.requests().len(), 1);
}

/// A creation time that chrono cannot hold, which only a plain-SQL writer can store, neither
/// panics the daemon nor stops the delivery.
#[sqlx::test(migrations = false)]
async fn a_created_at_chrono_cannot_hold_is_still_delivered(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    let id: uuid::Uuid = sqlx::query_scalar(
        "insert into herald.intents
            (id, tenant, user_id, type, business_id, fingerprint, channel, destination, payload,
             max_attempts, created_at)
         values (herald.uuid_v7(), 'default', 'u', 't', 'b', decode(repeat('00', 32), 'hex'),
                 'webhook', $1, '{}', 3, 'infinity')
         returning id",
    )
    .bind(hook.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    let state: String = sqlx::query_scalar("select state from herald.notifications where id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "delivered");
    assert_eq!(receiver.requests().len(), 1);
}
