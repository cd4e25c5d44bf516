//! The admin CLI through PgBouncer, with `database.listen_url` set.

use sqlx::PgPool;

use super::database_of;
use crate::support::pgbouncer::PgBouncer;
use crate::support::{Cli, Key, url_of};

/// `herald` through `bouncer`, with `database.listen_url` the direct URL of `pool`'s database.
fn through(bouncer: &PgBouncer, pool: &PgPool) -> Cli {
    Cli::at(&bouncer.url(&database_of(pool))).env("HERALD_DATABASE__LISTEN_URL", url_of(pool))
}

/// Runs `args`, expects exit 0, returns stdout as JSON when `--json` is among them.
async fn ok(cli: Cli, args: &[&str]) -> serde_json::Value {
    let out = cli.args(args).run().await;
    assert_eq!(out.code, 0, "{args:?}: {out:?}");
    if args.contains(&"--json") {
        out.json()
    } else {
        serde_json::Value::Null
    }
}

#[sqlx::test(migrations = false)]
async fn admin_commands_work_through_pgbouncer(pool: PgPool) {
    // Not migrated: `herald migrate` does it, through database.listen_url.
    let bouncer = PgBouncer::start(2).await;
    let cli = || through(&bouncer, &pool);
    ok(cli(), &["migrate"]).await;

    let key = Key::new("user-1", "welcome", "signup-1");
    let created = ok(
        cli().enqueue(&key),
        &["--email", "ann@example.com", "--json"],
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let replay = ok(
        cli().enqueue(&key),
        &["--email", "ann@example.com", "--json"],
    )
    .await;
    assert_eq!(replay["id"], created["id"]);
    let conflict = cli()
        .enqueue(&key)
        .args(&["--email", "bob@example.com"])
        .run()
        .await;
    assert_eq!(conflict.code, 3, "{conflict:?}");

    let listed = ok(cli(), &["list", "--json"]).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let shown = ok(cli(), &["show", &id, "--json"]).await;
    assert_eq!(shown["state"], "pending", "{shown}");
    ok(
        cli().explain(&key),
        &["--email", "ann@example.com", "--payload", "{}", "--json"],
    )
    .await;
    ok(cli(), &["stats", "--json"]).await;
    ok(cli(), &["cancel", &id, "--json"]).await;
    ok(cli(), &["retry", &id, "--json"]).await;

    let added = ok(
        cli(),
        &[
            "endpoints",
            "add",
            "--url",
            "https://hooks.example.com/in",
            "--tenant",
            "acme",
            "--rate",
            "5/s",
            "--json",
        ],
    )
    .await;
    let endpoint = added["id"].as_str().unwrap().to_owned();
    ok(cli(), &["endpoints", "list", "--json"]).await;
    ok(cli(), &["endpoints", "show", &endpoint, "--json"]).await;
    ok(cli(), &["endpoints", "show", "smtp", "--json"]).await;
    ok(
        cli(),
        &[
            "endpoints",
            "set",
            &endpoint,
            "--max-in-flight",
            "3",
            "--json",
        ],
    )
    .await;
    ok(cli(), &["endpoints", "reset", &endpoint, "--json"]).await;
    ok(cli(), &["endpoints", "disable", &endpoint, "--json"]).await;
    ok(cli(), &["endpoints", "enable", &endpoint, "--json"]).await;
    ok(cli(), &["endpoints", "rotate-secret", &endpoint, "--json"]).await;

    // No SMTP server here, so doctor exits 1 for that; the database rows are fine.
    let doctor = cli().args(&["doctor", "--json"]).run().await;
    let report: serde_json::Value = doctor.json();
    let status = |check: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == check)
            .unwrap_or_else(|| panic!("a {check} row: {report}"))["status"]
            .clone()
    };
    for check in ["config", "database", "migrations", "listen_url"] {
        assert_eq!(status(check), "ok", "{check}: {report}");
    }
}

/// `herald bench` behind PgBouncer: its scratch database is created, migrated and dropped
/// through `database.listen_url`, and every phase's statements go through the pooler.
#[sqlx::test(migrations = false)]
async fn bench_runs_through_pgbouncer(pool: PgPool) {
    let bouncer = PgBouncer::start(4).await;
    let out = through(&bouncer, &pool)
        .args(&["bench", "--json", "--notifications", "40", "--clients", "4"])
        .run()
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    for rate in [
        "enqueue_single_per_s",
        "enqueue_batch_per_s",
        "enqueue_sql_batch_per_s",
        "dispatch_null_per_s",
        "dispatch_webhook_per_s",
    ] {
        assert!(report[rate].as_f64().unwrap() > 0.0, "{rate}: {report}");
    }
    let scratch = report["database"].as_str().unwrap();
    let left: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(scratch)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!left, "the scratch database {scratch} is dropped");
}

#[sqlx::test(migrations = false)]
async fn sweep_through_pgbouncer(pool: PgPool) {
    let bouncer = PgBouncer::start(2).await;
    assert_eq!(through(&bouncer, &pool).arg("migrate").run().await.code, 0);
    crate::support::finished_rows(&pool, 3, "welcome", "delivered", "31 days").await;
    crate::support::finished_rows(&pool, 2, "welcome", "delivered", "1 day").await;
    let dry = ok(through(&bouncer, &pool), &["sweep", "--dry-run", "--json"]).await;
    assert_eq!(dry["would_delete"], 3, "{dry}");
    let swept = ok(through(&bouncer, &pool), &["sweep", "--json"]).await;
    assert_eq!(swept["deleted"], 3, "{swept}");
    let left: i64 = sqlx::query_scalar("select count(*) from herald.notifications")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 2);
}
