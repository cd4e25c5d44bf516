//! No secret ever reaches a log line or an error message: the database password, the SMTP
//! password, webhook secrets. Checked with canaries at the most verbose log level.

use herald::Notification;
use sqlx::PgPool;

use crate::support::daemon::{Daemon, env_with};
use crate::support::receiver::{Receiver, Reply};
use crate::support::smtp::SmtpSink;
use crate::support::{SECRET, endpoint_at, migrated, url_of};

#[sqlx::test(migrations = false)]
async fn canaries_stay_out_of_the_logs(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![
        Reply::status(500).body("CANARY-RESPONSE-IS-FINE-TO-LOG"),
    ])
    .await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    herald::enqueue(&pool, &Notification::webhook("u", "t", "b", hook))
        .await
        .unwrap();
    let sink = SmtpSink::start("").await;
    herald::enqueue(
        &pool,
        &Notification::email("u", "welcome", "b", "ann@example.com"),
    )
    .await
    .unwrap();

    // Trust authentication ignores the password, so it can be a canary.
    let url = url_of(&pool).replacen("postgres://postgres@", "postgres://postgres:CANARY-DB@", 1);
    assert!(url.contains("CANARY-DB"));
    let port = sink.port.to_string();
    let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
    let env = env_with(&[
        ("RUST_LOG", "trace"),
        ("HERALD_SMTP__PORT", &port),
        ("HERALD_SMTP__USERNAME", "herald"),
        ("HERALD_SMTP__PASSWORD", "CANARY-SMTP"),
        ("HERALD_TEMPLATES__DIR", templates),
    ]);
    let daemon = Daemon::spawn_url(&url, &["--until-idle"], &env);
    let run = daemon.wait(std::time::Duration::from_secs(120)).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.len() > 1000, "trace logging was on");
    let base64_key = SECRET.trim_start_matches("whsec_");
    for canary in ["CANARY-DB", "CANARY-SMTP", base64_key] {
        assert!(!run.stderr.contains(canary), "{canary} reached the log");
        assert!(!run.stdout.contains(canary), "{canary} reached stdout");
    }
    let errors: Vec<Option<String>> = sqlx::query_scalar("select error from herald.attempts")
        .fetch_all(&pool)
        .await
        .unwrap();
    for error in errors.into_iter().flatten() {
        assert!(
            !error.contains("CANARY-SMTP") && !error.contains(base64_key),
            "{error}"
        );
    }
}
