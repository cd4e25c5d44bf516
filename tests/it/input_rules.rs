//! The input rules of migration 0004 as a user meets them: run_at within years 1 to 9999,
//! enqueue_many's run_at read as RFC 3339 to the letter, `explain` refusing what enqueue refuses,
//! admin commands that read any stored time, and error lines that quote a short prefix of
//! the input.

use herald::{EnqueueError, Notification};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{At, Key, count_notifications, finish, herald, insert_raw, migrated, set_due};

const RANGE: &str = "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z";

/// The SQLSTATE, message and COLUMN of a failed statement.
async fn refusal(pool: &PgPool, sql: &str, bind: &str) -> (String, String, Option<String>) {
    let err = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(bind)
        .execute(pool)
        .await
        .unwrap_err();
    let db = err.as_database_error().expect("a database error");
    let pg = db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .unwrap();
    (
        db.code().unwrap_or_default().into_owned(),
        db.message().to_owned(),
        pg.column().map(str::to_owned),
    )
}

/// Asserts that `sql` refuses each of `values` (its `$1`) with HR001, `message` and the COLUMN
/// `run_at`.
async fn assert_run_at_refused(pool: &PgPool, sql: &str, values: &[&str], message: &str) {
    for value in values {
        let got = refusal(pool, sql, value).await;
        let expected = ("HR001".into(), message.to_owned(), Some("run_at".into()));
        assert_eq!(got, expected, "{value}");
    }
}

#[sqlx::test(migrations = false)]
async fn an_out_of_range_run_at_is_refused_by_every_entry_point(pool: PgPool) {
    let pool = migrated(pool).await;
    // The library.
    for text in ["0000-12-31T23:59:59Z", "9999-12-31T23:30:00-01:00"] {
        let at = chrono::DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        let n = Notification::email("u", "t", "b", "ann@example.com").run_at(at);
        match herald::enqueue(&pool, &n).await {
            Err(EnqueueError::Invalid { field, message }) => {
                assert_eq!((field, message.as_str()), ("run_at", RANGE), "{text}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    // herald.enqueue(...).
    assert_run_at_refused(
        &pool,
        "select * from herald.enqueue('u', 't', 'b', email => 'ann@example.com', run_at => $1::timestamptz)",
        &[
            "-infinity",
            "infinity",
            "294000-01-01",
            "0001-01-01 00:00:00+01",
            "4713-01-01 BC",
        ],
        &format!("invalid run_at: {RANGE}"),
    )
    .await;
    // herald.enqueue_many(jsonb): RFC 3339 allows years 0000 and offsets that carry 9999 past
    // the end.
    assert_run_at_refused(
        &pool,
        "select * from herald.enqueue_many(jsonb_build_array(jsonb_build_object(
             'user_id', 'u', 'type', 't', 'business_id', 'b', 'email', 'ann@example.com',
             'run_at', $1::text)))",
        &[
            "0000-06-01T00:00:00Z",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:30:00-01:00",
        ],
        &format!("invalid run_at: {RANGE} (item 0)"),
    )
    .await;
    // Plain SQL.
    for value in ["-infinity", "infinity", "294000-01-01"] {
        let (code, message, _) = refusal(
            &pool,
            "insert into herald.intents (id, tenant, user_id, type, business_id, fingerprint,
                 channel, destination, payload, max_attempts, run_at)
             values (herald.uuid_v7(), 'default', 'u', 't', 'b', decode(repeat('00', 32), 'hex'),
                 'email', 'ann@example.com', '{}', 3, $1::timestamptz)",
            value,
        )
        .await;
        assert_eq!(code, "23514", "{value}: {message}");
        assert!(
            message.contains("notifications_run_at_in_range"),
            "{message}"
        );
    }
    // The binary: exit 2, one line naming the field.
    for (value, needle) in [
        (
            "9999-12-31T23:30:00-01:00",
            "invalid run_at (--run-at): must be between",
        ),
        (
            "0001-01-01T00:00:00+00:01",
            "invalid run_at (--run-at): must be between",
        ),
        (
            "2026-12-01T09:00:60Z",
            "invalid run_at (--run-at): must not be a leap second",
        ),
        ("2026-12-01T24:00:00Z", "--run-at"),
        ("infinity", "--run-at"),
    ] {
        herald(&pool)
            .enqueue(&Key::new("u", "t", "b"))
            .args(&["--email", "ann@example.com", "--run-at", value])
            .run()
            .await
            .assert_error(2, needle);
    }
    // Both bounds are accepted.
    for (business_id, value) in [
        ("lo", "0001-01-01T00:00:00Z"),
        ("hi", "9999-12-31T23:59:59.999999Z"),
    ] {
        let (status,): (String,) = sqlx::query_as(
            "select status from herald.enqueue('u', 't', $1, email => 'ann@example.com', run_at => $2::timestamptz)",
        )
        .bind(business_id)
        .bind(value)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(status, "created");
    }
    assert_eq!(count_notifications(&pool).await, 2);
}

/// The value of a `key: value` line of human output.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} line: {text}"))
}

/// Rows stored before migration 0004 (or by plain SQL without the CHECK) may hold any
/// timestamptz: the admin commands read, print, cancel and retry them, no panic.
#[sqlx::test(migrations = false)]
async fn admin_commands_survive_any_stored_run_at(pool: PgPool) {
    let pool = migrated(pool).await;
    let empty = herald(&pool).args(&["stats", "--json"]).run().await.json();
    assert_eq!(
        empty["oldest_due_age_seconds"],
        Value::Null,
        "nothing is due: {empty}"
    );
    sqlx::query("alter table herald.intents drop constraint notifications_run_at_in_range")
        .execute(&pool)
        .await
        .unwrap();
    let mut stored = Vec::new();
    for (value, text) in [
        ("-infinity", "-infinity"),
        ("infinity", "infinity"),
        ("294000-01-01", "294000-01-01T00:00:00Z"),
        ("4713-01-01 BC", "-4712-01-01T00:00:00Z"),
    ] {
        let id = insert_raw(&pool, "u", "email", "ann@example.com")
            .await
            .unwrap();
        assert_eq!(set_due(&pool, id, At::Time(value)).await, 1);
        stored.push((id, text));
    }
    // A delivered one in the last hour, for the latency figures of `stats`.
    let delivered = insert_raw(&pool, "u", "email", "ann@example.com")
        .await
        .unwrap();
    set_due(&pool, delivered, At::Time("-infinity")).await;
    assert_eq!(finish(&pool, delivered, "delivered", At::Now).await, 1);
    // Its attempt; and one whose times chrono cannot hold, as only plain SQL writes one.
    sqlx::query(
        "insert into herald.attempts (notification_id, attempt, started_at, finished_at, outcome)
         values ($1, 1, now(), now(), 'delivered'), ($2, 1, '-infinity', 'infinity', 'failed')",
    )
    .bind(delivered)
    .bind(stored[0].0)
    .execute(&pool)
    .await
    .unwrap();

    let ok = |run: &crate::support::Run| {
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.stderr, "", "{run:?}");
    };
    let list = herald(&pool).arg("list").run().await;
    ok(&list);
    let listed = herald(&pool).args(&["list", "--json"]).run().await;
    ok(&listed);
    let run_ats: Vec<Value> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["run_at"].clone())
        .collect();
    for (id, text) in &stored {
        assert!(list.stdout.contains(&format!("{id}")), "{list:?}");
        assert!(list.stdout.contains(text), "{text}: {list:?}");
        assert!(run_ats.contains(&Value::from(*text)), "{text}: {run_ats:?}");
        let show = herald(&pool).args(&["show", &id.to_string()]).run().await;
        ok(&show);
        assert_eq!(field(&show.stdout, "run_at:"), *text, "{show:?}");
        let show = herald(&pool)
            .args(&["show", &id.to_string(), "--json"])
            .run()
            .await;
        ok(&show);
        assert_eq!(show.json()["run_at"], *text);
        let business_id: String =
            sqlx::query_scalar("select business_id from herald.notifications where id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        let key = Key::new("u", "t", &business_id);
        let explain = herald(&pool)
            .explain(&key)
            .args(&["--payload", "{}"])
            .run()
            .await;
        ok(&explain);
        assert!(explain.stdout.contains("duplicate of"), "{explain:?}");
        let explain = herald(&pool).explain(&key).arg("--json").run().await;
        ok(&explain);
        assert_eq!(explain.json()["notification"]["run_at"], *text);
    }
    for args in [&["stats"][..], &["stats", "--json"]] {
        let stats = herald(&pool).args(args).run().await;
        ok(&stats);
    }
    let stats = herald(&pool).args(&["stats", "--json"]).run().await.json();
    assert_eq!(stats["counts"]["pending"]["total"], 4);
    assert_eq!(stats["last_hour"]["delivered"], 1);
    assert!(
        stats["oldest_due_age_seconds"].as_f64().unwrap() > 6.0e10,
        "{stats}"
    );
    let shown = herald(&pool)
        .args(&["show", &delivered.to_string()])
        .run()
        .await;
    ok(&shown);
    assert_eq!(field(&shown.stdout, "run_at:"), "-infinity", "{shown:?}");

    for (id, text) in &stored {
        let id = id.to_string();
        let cancel = herald(&pool).args(&["cancel", &id, "--json"]).run().await;
        ok(&cancel);
        assert_eq!(cancel.json()["state"], "cancelled");
        assert_eq!(cancel.json()["run_at"], *text);
        let retry = herald(&pool).args(&["retry", &id]).run().await;
        ok(&retry);
    }
    // Retried: due now, within range again.
    let out_of_range: i64 = sqlx::query_scalar(
        "select count(*) from herald.notifications
         where state = 'pending' and not (run_at between '0001-01-01Z' and '9999-12-31 23:59:59.999999Z')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(out_of_range, 0);
}

/// enqueue_many's run_at: hour 00-23, minute and second 00-59, offsets up to ±23:59 (RFC 3339,
/// as chrono reads it for the library and the binary).
#[sqlx::test(migrations = false)]
async fn enqueue_many_reads_run_at_as_rfc3339_to_the_letter(pool: PgPool) {
    let pool = migrated(pool).await;
    let batch = "select * from herald.enqueue_many(jsonb_build_array(jsonb_build_object(
                     'user_id', 'u', 'type', 't', 'business_id', 'b', 'email', 'ann@example.com',
                     'run_at', $1::text)))";
    for value in [
        "2026-12-01T09:00:00+99:99",
        "2026-12-01T09:00:00+24:00",
        "2026-12-01T09:00:00+01:60",
        "2026-12-01T24:00:00Z",
        "2026-12-01T09:60:00Z",
        "2026-12-01T09:00:60Z",
        "2026-12-01T09:00:00.Z",
        "٢٠٢٦-12-01T09:00:00Z",
    ] {
        let got = refusal(&pool, batch, value).await;
        let message = format!(
            "invalid run_at: {} is not an RFC 3339 timestamp with an offset (item 0)",
            serde_json::to_string(value).unwrap()
        );
        assert_eq!(
            got,
            ("HR001".into(), message, Some("run_at".into())),
            "{value}"
        );
        assert!(
            chrono::DateTime::parse_from_rfc3339(value).is_err() || value.contains(":60"),
            "{value}"
        );
    }
    assert_eq!(count_notifications(&pool).await, 0);
    // What RFC 3339 allows is read as chrono reads it, offsets PostgreSQL's input refuses
    // (beyond ±15:59) included; fractions are cut to microseconds, as the library's are stored.
    for (n, value) in [
        "2026-12-01T09:00:00+23:59",
        "2026-12-01T09:00:00-23:59",
        "2026-12-01t09:00:00.1234567z",
        "0001-01-01T23:59:59+23:59",
        "9999-12-31 00:00:00-23:59",
    ]
    .into_iter()
    .enumerate()
    {
        let id: Uuid = sqlx::query_scalar(
            "select id from herald.enqueue_many(jsonb_build_array(jsonb_build_object(
                 'user_id', 'u', 'type', 't', 'business_id', $2::text, 'email', 'ann@example.com',
                 'run_at', $1::text)))",
        )
        .bind(value)
        .bind(format!("ok{n}"))
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{value}: {e}"));
        let stored: chrono::DateTime<chrono::Utc> =
            sqlx::query_scalar("select run_at from herald.notifications where id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        let expected = chrono::DateTime::parse_from_rfc3339(value)
            .unwrap()
            .to_utc();
        let expected =
            chrono::DateTime::from_timestamp_micros(expected.timestamp_micros()).unwrap();
        assert_eq!(stored, expected, "{value}");
    }
}

/// `explain` judges a candidate only if enqueue would take it: the same refusals, in the same
/// words, exit 2.
#[sqlx::test(migrations = false)]
async fn explain_refuses_what_enqueue_refuses(pool: PgPool) {
    let pool = migrated(pool).await;
    // 122,889 bytes in jsonb's text form, which the limit counts.
    let big = format!(r#"{{"s": "{}"}}"#, "x".repeat(120 * 1024));
    let key = Key::new("u", "t", "b");
    for (extra, needle) in [
        (
            vec!["--payload", "[1]", "--email", "bad addr"],
            "invalid email (--email): must not contain whitespace",
        ),
        (
            vec!["--payload", "[1]"],
            "invalid payload (--payload): must be a JSON object",
        ),
        (
            vec!["--payload", big.as_str()],
            "invalid payload (--payload): is 122889 bytes, over the limit of 65536 bytes",
        ),
        (
            vec!["--payload", "{}", "--email", r#""a,b"@c.com"#],
            "quoted local parts are not accepted",
        ),
        (
            vec!["--payload", "{"],
            "invalid payload (--payload): not valid JSON",
        ),
    ] {
        let refused = herald(&pool).explain(&key).args(&extra).run().await;
        refused.assert_error(2, needle);
        let mut enqueue = herald(&pool).enqueue(&key).args(&extra);
        if !extra.contains(&"--email") {
            enqueue = enqueue.args(&["--email", "ann@example.com"]);
        }
        let by_enqueue = enqueue.run().await;
        by_enqueue.assert_error(2, needle);
        assert_eq!(refused.stderr, by_enqueue.stderr);
    }
    assert_eq!(count_notifications(&pool).await, 0);
    // A valid candidate is still judged.
    let new = herald(&pool)
        .explain(&key)
        .args(&["--payload", "{}", "--email", "ann@example.com", "--json"])
        .run()
        .await;
    assert_eq!(new.code, 0, "{new:?}");
    assert_eq!(new.json()["verdict"], "new");
}

/// Error lines quote at most 64 characters of what the user typed.
#[sqlx::test(migrations = false)]
async fn error_lines_quote_a_short_prefix_of_the_input(pool: PgPool) {
    let pool = migrated(pool).await;
    let junk = format!("[{}", "7,".repeat(10_000));
    let id = Uuid::new_v4().to_string();
    let long_address = format!("{}@example.com", "a".repeat(200));
    let key = Key::new("u", "t", "b");
    let to_ann = || {
        herald(&pool)
            .enqueue(&key)
            .args(&["--email", "ann@example.com"])
    };
    let cases = [
        herald(&pool).explain(&key).args(&["--payload", &junk]),
        to_ann().args(&["--payload", &junk]),
        to_ann().args(&["--run-at", &junk]),
        herald(&pool)
            .enqueue(&key)
            .args(&["--email", &long_address]),
        herald(&pool).args(&["list", "--limit", &junk]),
        herald(&pool).args(&["show", &junk]),
        herald(&pool).args(&["cancel", &id, &junk]),
    ];
    for cli in cases {
        let run = cli.run().await;
        assert_eq!(run.code, 2, "{run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
        assert!(run.stderr.chars().count() < 400, "{cli:?}: {}", run.stderr);
        assert!(!run.stderr.contains(&"7,".repeat(40)), "{}", run.stderr);
    }
    assert_eq!(count_notifications(&pool).await, 0);
}
