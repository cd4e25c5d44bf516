//! `log.format`: JSON logs chosen in the config file, and every delivery log line carrying the
//! notification id, type, channel, attempt and outcome as fields of its own.

use std::time::Duration;

use herald::Notification;
use serde_json::Value;
use sqlx::PgPool;

use crate::support::daemon::{Daemon, env_with, run_until_idle};
use crate::support::receiver::{Receiver, Reply};
use crate::support::{endpoint_at, migrated};

/// The lines of a JSON log, each read as a value; fails the test on a line that is not JSON.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[sqlx::test(migrations = false)]
async fn every_delivery_line_carries_the_delivery_fields(pool: PgPool) {
    let pool = migrated(pool).await;
    // Delivered; failed then delivered; gone (410: dead, and the endpoint disabled).
    let ok = Receiver::start(vec![]).await;
    let flaky = Receiver::start(vec![Reply::status(503)]).await;
    let gone = Receiver::start(vec![Reply::status(410)]).await;
    let mut ids = Vec::new();
    for (business_id, url) in [("b1", ok.url()), ("b2", flaky.url()), ("b3", gone.url())] {
        let hook = endpoint_at(&pool, "default", &url).await;
        let n = Notification::webhook("u", "order_shipped", business_id, hook);
        ids.push(herald::enqueue(&pool, &n).await.unwrap().id().to_string());
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "[log]\nformat = \"json\"\n").unwrap();
    let daemon = Daemon::spawn(
        &pool,
        &["--until-idle", "--config", file.to_str().unwrap()],
        &env_with(&[]),
    );
    let run = daemon.wait(Duration::from_secs(120)).await;
    assert_eq!(run.code, 0, "{run:?}");

    let lines = json_lines(&run.stderr);
    let delivery_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "herald::dispatch::worker")
        .collect();
    let messages: Vec<&str> = delivery_lines
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert_eq!(
        messages.iter().filter(|m| **m == "attempt").count(),
        4,
        "{messages:?}"
    );
    assert!(
        messages.contains(&"webhook endpoint disabled"),
        "{messages:?}"
    );
    for line in &delivery_lines {
        assert!(
            ids.contains(&line["id"].as_str().unwrap_or_default().to_owned()),
            "{line}"
        );
        assert_eq!(line["type"], "order_shipped", "{line}");
        assert_eq!(line["channel"], "webhook", "{line}");
        assert!(line["attempt"].is_u64(), "{line}");
        assert!(
            ["delivered", "failed", "unknown"].contains(&line["outcome"].as_str().unwrap_or("")),
            "{line}"
        );
    }
    let flaky_attempts: Vec<(u64, &str)> = delivery_lines
        .iter()
        .filter(|l| l["id"] == ids[1] && l["message"] == "attempt")
        .map(|l| {
            (
                l["attempt"].as_u64().unwrap(),
                l["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(flaky_attempts, [(1, "failed"), (2, "delivered")]);
}

#[sqlx::test(migrations = false)]
async fn text_is_the_default_and_carries_the_same_fields(pool: PgPool) {
    let pool = migrated(pool).await;
    let ok = Receiver::start(vec![]).await;
    let hook = endpoint_at(&pool, "default", &ok.url()).await;
    let n = Notification::webhook("u", "order_shipped", "b", hook);
    let id = herald::enqueue(&pool, &n).await.unwrap().id();
    let daemon = Daemon::spawn(&pool, &["--until-idle"], &env_with(&[]));
    let run = daemon.wait(Duration::from_secs(120)).await;
    assert_eq!(run.code, 0, "{run:?}");
    let attempt = run
        .stderr
        .lines()
        .find(|l| l.contains(" attempt "))
        .unwrap_or_else(|| panic!("an attempt line: {}", run.stderr));
    assert!(serde_json::from_str::<Value>(attempt).is_err(), "{attempt}");
    for field in [
        format!("id={id}"),
        "type=order_shipped".into(),
        "channel=webhook".into(),
        "attempt=1".into(),
        "outcome=\"delivered\"".into(),
    ] {
        assert!(attempt.contains(&field), "{field} missing: {attempt}");
    }
}

#[sqlx::test(migrations = false)]
async fn a_bad_log_format_is_refused_naming_the_key(pool: PgPool) {
    let pool = migrated(pool).await;
    let run = crate::support::herald(&pool)
        .arg("run")
        .env("HERALD_LOG__FORMAT", "yaml")
        .run()
        .await;
    run.assert_error(2, "log.format");
}

#[sqlx::test(migrations = false)]
async fn the_old_variable_still_works_and_says_it_is_deprecated(pool: PgPool) {
    let pool = migrated(pool).await;
    let run = run_until_idle(&pool, &env_with(&[("HERALD_LOG_FORMAT", "json")])).await;
    assert_eq!(run.code, 0, "{run:?}");
    let lines = json_lines(&run.stderr);
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["message"]
                == "HERALD_LOG_FORMAT is deprecated: use HERALD_LOG__FORMAT or log.format"),
        "{}",
        run.stderr
    );
}
