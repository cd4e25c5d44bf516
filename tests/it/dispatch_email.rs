//! Email delivery end to end: the `herald` daemon against a real SMTP server (aiosmtpd).

use std::path::Path;

use herald::Notification;
use serde_json::json;
use sqlx::PgPool;

use crate::support::daemon::run_until_idle;
use crate::support::smtp::{self, SmtpSink, email_env, silent_server};
use crate::support::{migrated, states};

fn templates() -> tempfile::TempDir {
    smtp::templates(&[
        ("order_shipped/subject.txt", "Order {{ order }} shipped\n"),
        (
            "order_shipped/body.txt",
            "Hi {{ name }}, your order {{ order }} is on its way.\n",
        ),
        (
            "order_shipped/body.html",
            "<p>Hi {{ name }}, your order <b>{{ order }}</b> is on its way.</p>\n",
        ),
    ])
}

async fn enqueue_email(pool: &PgPool, type_: &str, max_attempts: u32) -> uuid::Uuid {
    let n = Notification::email("user-42", type_, "order-1001", "ann@example.com")
        .payload(json!({"order": "1001", "name": "Ann <script>"}))
        .max_attempts(max_attempts);
    herald::enqueue(pool, &n).await.unwrap().id()
}

fn smtp_env<'a>(port: &'a str, templates: &'a Path) -> Vec<(&'a str, &'a str)> {
    let mut env = email_env(port, templates);
    env.extend([
        ("HERALD_SMTP__MESSAGE_ID_DOMAIN", "mail.herald.test"),
        ("HERALD_SMTP__FROM", "Shop <shop@herald.test>"),
    ]);
    env
}

async fn attempts(pool: &PgPool, id: uuid::Uuid) -> Vec<(String, Option<i32>, Option<String>)> {
    sqlx::query_as("select outcome, status, error from herald.attempts where notification_id = $1 order by attempt")
        .bind(id)
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn an_email_arrives_rendered_with_a_stable_message_id(pool: PgPool) {
    let pool = migrated(pool).await;
    let sink = SmtpSink::start("").await;
    let dir = templates();
    let id = enqueue_email(&pool, "order_shipped", 8).await;
    let port = sink.port.to_string();
    let run = run_until_idle(&pool, &smtp_env(&port, dir.path())).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("email template loaded") && run.stderr.contains("order_shipped"),
        "start lists templates: {}",
        run.stderr
    );

    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let raw = &messages[0];
    assert!(
        raw.contains(&format!("Message-ID: <{id}@mail.herald.test>")),
        "{raw}"
    );
    assert!(raw.contains("Subject: Order 1001 shipped"), "{raw}");
    assert!(raw.contains("From: Shop <shop@herald.test>"), "{raw}");
    assert!(raw.contains("To: ann@example.com"), "{raw}");
    assert!(
        raw.contains("multipart/alternative"),
        "text and html parts: {raw}"
    );
    assert!(
        raw.contains("Hi Ann <script>, your order 1001 is on its way."),
        "text body, unescaped: {raw}"
    );
    assert!(
        raw.contains("Ann &lt;script&gt;"),
        "html body, escaped: {raw}"
    );
    assert_eq!(states(&pool).await, [("delivered".to_string(), 1)]);
    assert_eq!(attempts(&pool, id).await[0].1, Some(250));
}

#[sqlx::test(migrations = false)]
async fn a_451_is_retried_with_the_same_message_id(pool: PgPool) {
    let pool = migrated(pool).await;
    let sink = SmtpSink::start("451").await;
    let dir = templates();
    let id = enqueue_email(&pool, "order_shipped", 8).await;
    let port = sink.port.to_string();
    let run = run_until_idle(&pool, &smtp_env(&port, dir.path())).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(sink.answers(), ["451", "250"]);
    let log = attempts(&pool, id).await;
    assert_eq!((log[0].0.as_str(), log[0].1), ("failed", Some(451)));
    assert_eq!((log[1].0.as_str(), log[1].1), ("delivered", Some(250)));
    assert!(sink.messages()[0].contains(&format!("<{id}@mail.herald.test>")));
}

#[sqlx::test(migrations = false)]
async fn a_550_is_dead_at_once(pool: PgPool) {
    let pool = migrated(pool).await;
    let sink = SmtpSink::start("550,550,550").await;
    let dir = templates();
    let id = enqueue_email(&pool, "order_shipped", 8).await;
    let port = sink.port.to_string();
    run_until_idle(&pool, &smtp_env(&port, dir.path())).await;
    assert_eq!(
        sink.answers(),
        ["550"],
        "a permanent refusal is not retried"
    );
    let (state, error): (String, String) =
        sqlx::query_as("select state, last_error from herald.notifications where id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(state, "dead");
    assert!(error.contains("550"), "{error}");
}

#[sqlx::test(migrations = false)]
async fn a_missing_template_is_dead_naming_the_path(pool: PgPool) {
    let pool = migrated(pool).await;
    let sink = SmtpSink::start("").await;
    let dir = templates();
    let id = enqueue_email(&pool, "password_reset", 8).await;
    let port = sink.port.to_string();
    run_until_idle(&pool, &smtp_env(&port, dir.path())).await;
    let (state, attempts, error): (String, i32, String) = sqlx::query_as(
        "select state, attempts, last_error from herald.notifications where id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((state.as_str(), attempts), ("dead", 1));
    let expected = dir.path().join("password_reset/subject.txt");
    assert_eq!(error, format!("missing template {}", expected.display()));
    assert!(sink.answers().is_empty(), "nothing was sent");
}

#[sqlx::test(migrations = false)]
async fn a_server_that_never_greets_is_unknown_within_the_timeout(pool: PgPool) {
    let pool = migrated(pool).await;
    let (port, _server) = silent_server().await;
    let dir = templates();
    let id = enqueue_email(&pool, "order_shipped", 2).await;
    let port = port.to_string();
    let mut env = smtp_env(&port, dir.path());
    env.push(("HERALD_SMTP__TIMEOUT", "500ms"));
    let run = run_until_idle(&pool, &env).await;
    assert_eq!(run.code, 0, "{run:?}");
    let log = attempts(&pool, id).await;
    assert_eq!(log.len(), 2, "retried, then out of attempts: {log:?}");
    for (outcome, status, error) in &log {
        assert_eq!((outcome.as_str(), *status), ("unknown", None));
        assert_eq!(
            error.as_deref(),
            Some("no answer from the SMTP server within 500ms (smtp.timeout)")
        );
    }
    let state: String = sqlx::query_scalar("select state from herald.notifications")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "dead");
}

/// The sink offers no AUTH mechanism (aiosmtpd offers none without TLS), so lettre stops after
/// EHLO: nothing was sent, the attempts are `failed`, not `unknown`.
#[sqlx::test(migrations = false)]
async fn no_compatible_auth_mechanism_is_failed(pool: PgPool) {
    let pool = migrated(pool).await;
    let sink = SmtpSink::start("").await;
    let dir = templates();
    let id = enqueue_email(&pool, "order_shipped", 2).await;
    let port = sink.port.to_string();
    let mut env = smtp_env(&port, dir.path());
    env.extend([
        ("HERALD_SMTP__USERNAME", "herald"),
        ("HERALD_SMTP__PASSWORD", "hunter2"),
    ]);
    let run = run_until_idle(&pool, &env).await;
    assert_eq!(run.code, 0, "{run:?}");
    let log = attempts(&pool, id).await;
    assert_eq!(log.len(), 2, "retried, then out of attempts: {log:?}");
    for (outcome, status, error) in &log {
        assert_eq!((outcome.as_str(), *status), ("failed", None), "{log:?}");
        let error = error.as_deref().unwrap_or_default();
        assert!(
            error.contains("No compatible authentication mechanism"),
            "{error}"
        );
    }
    assert!(sink.answers().is_empty(), "nothing was sent");
}
