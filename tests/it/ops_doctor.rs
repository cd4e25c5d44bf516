//! `herald doctor`: every check in one table (or one JSON document), exit 0 when all pass,
//! else exit 1 with one line naming the checks that found a problem.

use serde_json::Value;
use sqlx::PgPool;

use crate::support::smtp::SmtpSink;
use crate::support::{Cli, Run, herald, migrated};

/// The `(status, detail)` of `check` in a `doctor --json` report.
fn check<'a>(report: &'a Value, name: &str) -> (&'a str, &'a str) {
    let found = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report}"));
    (
        found["status"].as_str().unwrap(),
        found["detail"].as_str().unwrap(),
    )
}

fn write(dir: &std::path::Path, path: &str, text: &str) {
    let full = dir.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, text).unwrap();
}

async fn doctor(pool: &PgPool, sink: &SmtpSink, templates: &str, extra: &[(&str, &str)]) -> Run {
    let port = sink.port.to_string();
    let mut env = vec![
        ("HERALD_SMTP__TLS", "none"),
        ("HERALD_SMTP__PORT", port.as_str()),
        ("HERALD_TEMPLATES__DIR", templates),
    ];
    env.extend_from_slice(extra);
    herald(pool)
        .args(&["doctor", "--json"])
        .envs(&env)
        .run()
        .await
}

#[sqlx::test(migrations = false)]
async fn a_healthy_setup_passes_every_check(pool: PgPool) {
    let pool = migrated(pool).await;
    let sink = SmtpSink::start("").await;
    let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
    let run = doctor(&pool, &sink, templates, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "", "{run:?}");
    let report = run.json();
    assert_eq!(report["ok"], true, "{report}");
    for name in ["config", "database", "migrations", "smtp", "cron"] {
        assert_eq!(check(&report, name).0, "ok", "{report}");
    }
    assert_eq!(check(&report, "config").1, "from built-in defaults");
    assert!(
        check(&report, "database").1.starts_with("PostgreSQL "),
        "{report}"
    );
    assert_eq!(check(&report, "migrations").1, "10 of 10 applied");
    let (status, detail) = check(&report, "template order_shipped");
    assert_eq!(status, "ok");
    assert!(
        detail.starts_with(
            "reads payload fields carrier, name, order, tracking_url; an empty payload fails: "
        ) && detail.contains("order_shipped/subject.txt"),
        "{detail}"
    );
    assert_eq!(
        check(&report, "template welcome").1,
        "reads payload fields name; renders with an empty payload"
    );
    let (_, cron) = check(&report, "cron");
    assert!(
        cron.starts_with("sweeper.schedule \"0 */10 * * * *\" fires next at "),
        "{cron}"
    );
    assert_eq!(cron.matches(", ").count(), 2, "three fire times: {cron}");

    // The same as a table for people.
    let port = sink.port.to_string();
    let table = herald(&pool)
        .arg("doctor")
        .envs(&[
            ("HERALD_SMTP__TLS", "none"),
            ("HERALD_SMTP__PORT", &port),
            ("HERALD_TEMPLATES__DIR", templates),
        ])
        .run()
        .await;
    assert_eq!(table.code, 0, "{table:?}");
    let first = table.stdout.lines().next().unwrap();
    assert!(first.starts_with("CHECK") && first.contains("STATUS") && first.contains("DETAIL"));
    assert!(table.stdout.contains("template welcome"), "{table:?}");
}

#[sqlx::test(migrations = false)]
async fn a_broken_template_and_a_bad_cron_are_reported(pool: PgPool) {
    let pool = migrated(pool).await;
    let sink = SmtpSink::start("").await;
    let dir = tempfile::tempdir().unwrap();
    // Renders with any payload, but the filter does not exist: no payload can fix that.
    write(dir.path(), "shouty/subject.txt", "{{ name | shout }}");
    write(dir.path(), "shouty/body.txt", "Hi");
    write(dir.path(), "fine/subject.txt", "Order {{ order.id }}");
    write(dir.path(), "fine/body.txt", "{{ herald.id }}");
    let templates = dir.path().to_str().unwrap();
    let run = doctor(
        &pool,
        &sink,
        templates,
        &[("HERALD_SWEEPER__SCHEDULE", "*/5 * * * *")],
    )
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr,
        "error: doctor found 3 problems: config, template shouty, cron\n"
    );
    let report = run.json();
    assert_eq!(report["ok"], false);
    let (status, detail) = check(&report, "template shouty");
    assert_eq!(status, "problem");
    assert!(
        detail.contains("shouty/subject.txt") && detail.contains("shout"),
        "{detail}"
    );
    assert_eq!(check(&report, "template fine").0, "ok", "{report}");
    assert!(
        check(&report, "template fine")
            .1
            .starts_with("reads payload fields order.id; an empty payload fails: "),
        "{report}"
    );
    let (status, detail) = check(&report, "cron");
    assert_eq!(status, "problem");
    assert!(
        detail.starts_with("sweeper.schedule: \"*/5 * * * *\" has 5 fields"),
        "{detail}"
    );
    let (status, detail) = check(&report, "config");
    assert_eq!(status, "problem");
    assert!(detail.starts_with("config: sweeper.schedule:"), "{detail}");
    // The checks that had nothing wrong still ran.
    for name in ["database", "migrations", "smtp"] {
        assert_eq!(check(&report, name).0, "ok", "{report}");
    }
}

#[sqlx::test(migrations = false)]
async fn a_template_that_does_not_compile_is_reported(pool: PgPool) {
    let pool = migrated(pool).await;
    let sink = SmtpSink::start("").await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "broken/subject.txt", "{{ unclosed");
    write(dir.path(), "broken/body.txt", "x");
    let run = doctor(&pool, &sink, dir.path().to_str().unwrap(), &[]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr, "error: doctor found 1 problem: templates\n");
    let report = run.json();
    let (status, detail) = check(&report, "templates");
    assert_eq!(status, "problem");
    assert!(detail.contains("broken/subject.txt"), "{detail}");
}

#[sqlx::test(migrations = false)]
async fn an_unmigrated_database_and_an_absent_smtp_server_are_problems(pool: PgPool) {
    // No migration applied; nothing listens on the SMTP port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let run = herald(&pool)
        .args(&["doctor", "--json"])
        .envs(&[("HERALD_SMTP__TLS", "none"), ("HERALD_SMTP__PORT", &port)])
        .run()
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    let report = run.json();
    let (status, detail) = check(&report, "migrations");
    assert_eq!(status, "problem");
    assert_eq!(
        detail,
        "0 of 10 applied; pending: 1 create herald, 2 enqueue in sql, 3 search path and entry points, 4 input rules, 5 queue and destinations, 6 claim function, 7 fewer writes, 8 probe evidence, 9 api tokens, 10 final revocation (run `herald migrate`)"
    );
    let (status, detail) = check(&report, "smtp");
    assert_eq!(status, "problem");
    assert!(
        detail.starts_with(&format!("127.0.0.1:{port}: ")),
        "{detail}"
    );
    assert_eq!(check(&report, "database").0, "ok");
    let schema: bool =
        sqlx::query_scalar("select exists (select 1 from pg_namespace where nspname = 'herald')")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!schema, "doctor writes nothing");
}

#[tokio::test]
async fn an_unreachable_database_skips_the_migrations_check() {
    let run = Cli::at("postgres://postgres@127.0.0.1:1/herald")
        .args(&["doctor", "--json"])
        .run()
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    let report = run.json();
    let (status, detail) = check(&report, "database");
    assert_eq!(status, "problem");
    assert!(
        detail.starts_with("cannot connect to PostgreSQL at 127.0.0.1:1"),
        "{detail}"
    );
    assert_eq!(
        check(&report, "migrations"),
        ("skipped", "no database connection")
    );
}

#[tokio::test]
async fn a_config_that_does_not_load_is_reported_and_the_rest_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "[smtp]\nprot = 25\n").unwrap();
    let run = Cli::new()
        .args(&["--config", file.to_str().unwrap(), "doctor", "--json"])
        .run()
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr, "error: doctor found 1 problem: config\n");
    let report = run.json();
    let (status, detail) = check(&report, "config");
    assert_eq!(status, "problem");
    assert!(detail.contains("prot"), "{detail}");
    for name in ["database", "migrations", "smtp", "templates", "cron"] {
        assert_eq!(check(&report, name).0, "skipped", "{report}");
    }
}
