//! Every validation rule through the library: `Invalid` naming the field, never a database
//! error, and nothing written.

use herald::{EnqueueError, Limits, Notification};
use serde_json::json;
use sqlx::PgPool;

use crate::support::{count_notifications, disable_endpoint, endpoint, migrated};

fn ok() -> Notification {
    Notification::email("u", "t", "b", "ann@example.com")
}

#[sqlx::test(migrations = false)]
async fn bad_input_is_refused_by_field_and_writes_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    let disabled = endpoint(&pool, "default").await;
    disable_endpoint(&pool, disabled, "disabled by operator").await;
    let long = "x".repeat(256);
    let cases: Vec<(Notification, &str)> = vec![
        (ok().tenant(""), "tenant"),
        (
            Notification::email("", "t", "b", "ann@example.com"),
            "user_id",
        ),
        (Notification::email("u", "", "b", "ann@example.com"), "type"),
        (
            Notification::email("u", "t", "", "ann@example.com"),
            "business_id",
        ),
        (ok().tenant(long.as_str()), "tenant"),
        (
            Notification::email(long.as_str(), "t", "b", "ann@example.com"),
            "user_id",
        ),
        (
            Notification::email("u", long.as_str(), "b", "ann@example.com"),
            "type",
        ),
        (
            Notification::email("u", "t", long.as_str(), "ann@example.com"),
            "business_id",
        ),
        (
            Notification::email("u\0", "t", "b", "ann@example.com"),
            "user_id",
        ),
        (
            Notification::email("u", "t\u{7}", "b", "ann@example.com"),
            "type",
        ),
        (
            Notification::email("u", "t", "b\r\n", "ann@example.com"),
            "business_id",
        ),
        (ok().tenant("a\tb"), "tenant"),
        (
            Notification::email("u", "t", "b", "not-an-address"),
            "email",
        ),
        (
            Notification::email("u", "t", "b", "ann@example.com\0"),
            "email",
        ),
        (ok().payload(json!({"note": "nul \u{0} inside"})), "payload"),
        (ok().payload(json!({"deep": [{"k\u{0}": 1}]})), "payload"),
        (ok().payload(json!("a string")), "payload"),
        (ok().payload(json!({"big": "x".repeat(70_000)})), "payload"),
        (
            Notification::webhook("u", "t", "b", uuid::Uuid::now_v7()),
            "endpoint",
        ),
        (Notification::webhook("u", "t", "b", disabled), "endpoint"),
        (ok().max_attempts(0), "max_attempts"),
        (ok().max_attempts(101), "max_attempts"),
    ];
    for (n, expected_field) in cases {
        match herald::enqueue(&pool, &n).await {
            Err(EnqueueError::Invalid { field, message }) => {
                assert_eq!(field, expected_field, "{message}");
                assert!(!message.is_empty());
            }
            other => panic!("{n:?}: expected Invalid({expected_field}), got {other:?}"),
        }
        // Behind a valid item of another key, in a batch.
        let other = Notification::email("u", "t", "other", "ann@example.com");
        match herald::enqueue_many(&pool, &[other, n.clone()]).await {
            Err(EnqueueError::Invalid { field, .. }) => assert_eq!(field, expected_field),
            other => panic!("{n:?} in a batch: expected Invalid({expected_field}), got {other:?}"),
        }
    }
    assert_eq!(count_notifications(&pool).await, 0);
}

#[sqlx::test(migrations = false)]
async fn the_payload_limit_is_configurable(pool: PgPool) {
    let pool = migrated(pool).await;
    let small = Limits {
        max_payload_bytes: 16,
    };
    // The limit counts jsonb's text form: `{"k": "1234567"}` is 16 bytes.
    let fits = ok().payload(json!({"k": "1234567"}));
    assert!(
        herald::enqueue_with_limits(&pool, &fits, &small)
            .await
            .unwrap()
            .is_created()
    );
    let over =
        Notification::email("u", "t", "b2", "ann@example.com").payload(json!({"k": "123456789"}));
    let err = herald::enqueue_with_limits(&pool, &over, &small)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid payload: is 18 bytes, over the limit of 16 bytes"
    );
    assert_eq!(count_notifications(&pool).await, 1);
}

#[sqlx::test(migrations = false)]
async fn limits_hold_at_the_edges(pool: PgPool) {
    let pool = migrated(pool).await;
    let edge = "é".repeat(255);
    let n = Notification::email(
        edge.as_str(),
        edge.as_str(),
        edge.as_str(),
        "ann@example.com",
    )
    .tenant(edge.as_str())
    .max_attempts(100)
    .payload(json!({"unicode": "🦀 ünïcödé", "null": null, "n": [1.5, -2, 1e300]}));
    let id = herald::enqueue(&pool, &n).await.unwrap().id();
    let payload: serde_json::Value =
        sqlx::query_scalar("select payload from herald.notifications where id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(payload["unicode"], "🦀 ünïcödé");
    // SQL-looking input is data, not SQL.
    let sneaky = Notification::email(
        "u",
        "t",
        "'); drop table herald.notifications;--",
        "ann@example.com",
    );
    assert!(herald::enqueue(&pool, &sneaky).await.unwrap().is_created());
    assert_eq!(count_notifications(&pool).await, 2);
}

/// The shared table of addresses (support/email_cases.rs), through the library; enqueue_sql runs
/// the same table through herald.enqueue.
#[test]
fn email_addresses_follow_the_shared_table() {
    for (address, expected) in crate::support::email_cases::EMAIL_CASES {
        let got = Notification::email("u", "t", "b", *address).validate(&Default::default());
        match (got, expected) {
            (Ok(_), None) => {}
            (Err(EnqueueError::Invalid { field, message }), Some(expected)) => {
                assert_eq!(field, "email", "{address:?}");
                assert_eq!(&message, expected, "{address:?}");
            }
            (got, _) => panic!("{address:?}: expected {expected:?}, got {got:?}"),
        }
    }
}
