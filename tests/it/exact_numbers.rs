//! A payload travels exact in meaning from enqueue to receiver, whichever entry point it came
//! in through: no number is rounded through floating point, and what one entry point accepts
//! the other accepts alike (jsonb may change only a number's spelling: `1e2` is `100`).

use herald::{EnqueueError, Limits, Notification};
use sqlx::PgPool;

use crate::support::daemon::{FAST, run_until_idle};
use crate::support::receiver::Receiver;
use crate::support::{Key, endpoint_at, herald, migrated};

const BIG: &str = "123456789012345678901234567890";
const PRECISE: &str = "0.1000000000000000055511151231257827";

fn exact_payload() -> String {
    format!(r#"{{"big": {BIG}, "precise": {PRECISE}, "huge": 1e400}}"#)
}

#[sqlx::test(migrations = false)]
async fn numbers_reach_the_receiver_exactly_from_the_library_and_from_sql(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    let raw = serde_json::from_str(&exact_payload()).unwrap();
    herald::enqueue(
        &pool,
        &Notification::webhook("u", "t", "lib", hook).payload_raw(raw),
    )
    .await
    .unwrap();
    sqlx::query(
        "select * from herald.enqueue('u', 't', 'sql', webhook => $1, payload => $2::jsonb)",
    )
    .bind(hook)
    .bind(exact_payload())
    .execute(&pool)
    .await
    .unwrap();
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");
    let huge = format!("1{}", "0".repeat(400));
    for request in receiver.wait_for_requests(2).await {
        let body = String::from_utf8(request.body.to_vec()).unwrap();
        for exact in [
            format!(r#""big": {BIG}"#),
            format!(r#""precise": {PRECISE}"#),
            format!(r#""huge": {huge}"#),
        ] {
            assert!(body.contains(&exact), "{exact} in {body}");
        }
    }
}

#[sqlx::test(migrations = false)]
async fn the_same_payload_through_sql_then_the_cli_is_a_duplicate(pool: PgPool) {
    let pool = migrated(pool).await;
    sqlx::query("select * from herald.enqueue('u', 't', 'b', email => 'ann@example.com', payload => $1::jsonb)")
        .bind(exact_payload())
        .execute(&pool)
        .await
        .unwrap();
    let payload = exact_payload();
    let run = herald(&pool)
        .enqueue(&Key::new("u", "t", "b"))
        .args(&[
            "--email",
            "ann@example.com",
            "--payload",
            &payload,
            "--json",
        ])
        .run()
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["status"], "duplicate");
    // The other way round, through the library.
    let lib = Notification::email("u", "t", "b", "ann@example.com")
        .payload_raw(serde_json::from_str(&payload).unwrap());
    assert!(!herald::enqueue(&pool, &lib).await.unwrap().is_created());
}

#[sqlx::test(migrations = false)]
async fn a_number_no_float_holds_is_listed_and_shown(pool: PgPool) {
    let pool = migrated(pool).await;
    let id: uuid::Uuid = sqlx::query_scalar(
        "select id from herald.enqueue('u', 't', 'b', email => 'ann@example.com', payload => '{\"a\": 1e400}')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let huge = format!("1{}", "0".repeat(400));
    let list = herald(&pool).args(&["list", "--json"]).run().await;
    assert_eq!(list.code, 0, "{list:?}");
    assert!(
        list.stdout.contains(&format!(r#""a": {huge}"#))
            || list.stdout.contains(&format!(r#""a":{huge}"#)),
        "{list:?}"
    );
    let show = herald(&pool).args(&["show", &id.to_string()]).run().await;
    assert_eq!(show.code, 0, "{show:?}");
    assert!(show.stdout.contains(&huge), "{show:?}");
}

/// The limit counts the bytes of jsonb's text form in both entry points: escapes, exponents
/// and spacing make that differ from the text given.
#[sqlx::test(migrations = false)]
async fn both_entry_points_agree_at_the_payload_limit(pool: PgPool) {
    let pool = migrated(pool).await;
    let payload = r#"{"n":1.50e1,"s":"\u00e9\u00e9","z":[1,2]}"#;
    let stored: i32 = sqlx::query_scalar("select octet_length($1::jsonb::text)")
        .bind(payload)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_ne!(
        stored as usize,
        payload.len(),
        "a payload whose two sizes differ"
    );
    for (limit, business_id) in [(stored, "fits"), (stored - 1, "over")] {
        let lib = herald::enqueue_with_limits(
            &pool,
            &Notification::email("u", "t", format!("lib-{business_id}"), "ann@example.com")
                .payload_raw(serde_json::from_str(payload).unwrap()),
            &Limits {
                max_payload_bytes: limit as usize,
            },
        )
        .await;
        let sql = sqlx::query(
            "select * from herald.enqueue('u', 't', $1, email => 'ann@example.com', payload => $2::jsonb, max_payload_bytes => $3)",
        )
        .bind(format!("sql-{business_id}"))
        .bind(payload)
        .bind(limit)
        .execute(&pool)
        .await;
        if business_id == "fits" {
            assert!(lib.is_ok(), "{lib:?}");
            assert!(sql.is_ok(), "{sql:?}");
        } else {
            let expected = format!("is {stored} bytes, over the limit of {limit} bytes");
            match lib {
                Err(EnqueueError::Invalid {
                    field: "payload",
                    message,
                }) => assert_eq!(message, expected),
                other => panic!("{other:?}"),
            }
            let error = sql.unwrap_err();
            let db = error.as_database_error().unwrap();
            assert_eq!(db.code().as_deref(), Some("HR001"));
            assert_eq!(db.message(), format!("invalid payload: {expected}"));
        }
    }
}

/// JSON that serde_json's syntax check accepts and jsonb refuses is invalid input (exit 2,
/// naming the payload), not a runtime failure that a client would retry.
#[sqlx::test(migrations = false)]
async fn json_that_jsonb_refuses_is_invalid_input(pool: PgPool) {
    let pool = migrated(pool).await;
    for (payload, why) in [
        (
            r#"{"a": "\ud800"}"#,
            "Unicode low surrogate must follow a high surrogate",
        ),
        (r#"{"a": 1e1000000000}"#, "value overflows numeric format"),
    ] {
        let run = herald(&pool)
            .enqueue(&Key::new("u", "t", "b"))
            .args(&["--email", "ann@example.com", "--payload", payload])
            .run()
            .await;
        run.assert_error(
            2,
            "invalid payload (--payload): PostgreSQL cannot store it: ",
        );
        assert!(run.stderr.contains(why), "{run:?}");
        let many = herald::enqueue_many(
            &pool,
            &[Notification::email("u", "t", "b", "ann@example.com")
                .payload_raw(serde_json::from_str(payload).unwrap())],
        )
        .await;
        assert!(
            matches!(
                many,
                Err(EnqueueError::Invalid {
                    field: "payload",
                    ..
                })
            ),
            "{many:?}"
        );
    }
    assert_eq!(crate::support::count_notifications(&pool).await, 0);
}
