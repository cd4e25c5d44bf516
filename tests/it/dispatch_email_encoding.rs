//! The `Subject` as a mail reader decodes it is exactly the rendered subject: a long run
//! without spaces is folded into encoded-words rather than sent as one line the SMTP server
//! refuses, payload text that looks like an encoded-word stays literal, and non-ASCII text
//! round-trips. Checked on the message as the real SMTP server (aiosmtpd) received it, decoded
//! by Python's `email` package.

use herald::Notification;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::daemon::run_until_idle;
use crate::support::smtp::{SmtpSink, decode, email_env, templates};
use crate::support::{insert_raw, migrated};

/// Delivers one email whose subject template is `{{ subject }}` with `subject` as the payload
/// value, and asserts it was delivered; returns the raw message and its decoded headers.
async fn deliver_subject(pool: &PgPool, subject: &str) -> (String, Value) {
    migrated(pool.clone()).await;
    let dir = templates(&[
        ("note/subject.txt", "{{ subject }}"),
        ("note/body.txt", "Hello\n"),
    ]);
    let n = Notification::email("u", "note", "b", "ann@example.com")
        .payload(json!({ "subject": subject }))
        .max_attempts(1);
    let id = herald::enqueue(pool, &n).await.unwrap().id();

    let sink = SmtpSink::start("").await;
    let port = sink.port.to_string();
    let mut env = email_env(&port, dir.path());
    env.push(("HERALD_SMTP__FROM", "Shop <shop@herald.test>"));
    let run = run_until_idle(pool, &env).await;
    assert_eq!(run.code, 0, "{run:?}");
    let (state, error): (String, Option<String>) =
        sqlx::query_as("select state, last_error from herald.notifications where id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "state {state}, error {error:?}");
    assert_eq!(state, "delivered");
    let decoded = decode(&messages[0]).await;
    (messages[0].clone(), decoded)
}

/// Asserts that no header line of the message is longer than 78 characters.
fn assert_folded(raw: &str, decoded: &Value) {
    assert!(
        decoded["longest_header_line"].as_u64().unwrap() <= 78,
        "{raw}"
    );
}

#[sqlx::test(migrations = false)]
async fn a_300_character_subject_without_spaces_is_delivered_whole(pool: PgPool) {
    let subject: String = ('a'..='z').cycle().take(300).collect();
    let (raw, decoded) = deliver_subject(&pool, &subject).await;
    assert_eq!(decoded["subject"], subject.as_str(), "{raw}");
    assert_eq!(decoded["subject_legacy"], subject.as_str(), "{raw}");
    assert_folded(&raw, &decoded);
}

/// Longer than the 1000-octet line SMTP allows (RFC 5321 §4.5.3.1.6): sent unfolded, the
/// server answers "500 Line too long" and the notification is dead.
#[sqlx::test(migrations = false)]
async fn a_subject_longer_than_an_smtp_line_is_delivered_whole(pool: PgPool) {
    let subject: String = ('0'..='9').cycle().take(1200).collect();
    let (raw, decoded) = deliver_subject(&pool, &subject).await;
    assert_eq!(decoded["subject"], subject.as_str(), "{raw}");
    assert_folded(&raw, &decoded);
}

#[sqlx::test(migrations = false)]
async fn payload_text_that_looks_encoded_stays_literal(pool: PgPool) {
    let subject = "=?utf-8?b?QmNjOiBldmlsQHguY29t?=";
    let (raw, decoded) = deliver_subject(&pool, subject).await;
    assert_eq!(
        decoded["subject"], subject,
        "not \"Bcc: evil@x.com\": {raw}"
    );
    assert_eq!(decoded["subject_legacy"], subject, "{raw}");
}

#[sqlx::test(migrations = false)]
async fn non_ascii_subjects_round_trip(pool: PgPool) {
    let subject = format!(
        "Commande «1001» expédiée 🚚 — 漢字 {}",
        "ünïcödé🥳".repeat(20)
    );
    let (raw, decoded) = deliver_subject(&pool, &subject).await;
    assert_eq!(decoded["subject"], subject.as_str(), "{raw}");
    assert_eq!(decoded["subject_legacy"], subject.as_str(), "{raw}");
    assert_folded(&raw, &decoded);
}

/// A destination written with plain SQL bypasses the library's address check, so it may hold
/// a display name; lettre encodes one that looks like an encoded-word, and it reads as the
/// literal text (Python decodes encoded-words even inside quotes).
#[sqlx::test(migrations = false)]
async fn a_display_name_in_the_destination_stays_literal(pool: PgPool) {
    let pool = migrated(pool).await;
    let dir = templates(&[("t/subject.txt", "Hi"), ("t/body.txt", "Hello")]);
    for destination in [
        "\"=?utf-8?b?QmNjOiBldmlsQHguY29t?=\" <ann@example.com>",
        "=?utf-8?b?QmNjOiBldmlsQHguY29t?=<ann@example.com>",
    ] {
        insert_raw(&pool, "u", "email", destination).await.unwrap();
    }
    let sink = SmtpSink::start("").await;
    let port = sink.port.to_string();
    let run = run_until_idle(&pool, &email_env(&port, dir.path())).await;
    assert_eq!(run.code, 0, "{run:?}");
    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    for message in messages {
        let to = decode(&message).await["to"].as_str().unwrap().to_owned();
        assert_eq!(
            to, "=?utf-8?b?QmNjOiBldmlsQHguY29t?= <ann@example.com>",
            "{message}"
        );
    }
}
