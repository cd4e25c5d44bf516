//! `herald bench`: a small run reports every figure and leaves no database behind; bad flags
//! and an unreachable server are one-line errors; an interrupted run drops its database too,
//! also mid-phase.

use std::process::Stdio;
use std::time::Duration;

use sqlx::PgPool;

use crate::support::{Cli, url_for};

/// Runs of the bench one at a time: they share the server's list of scratch databases (and
/// the 2 cores).
static ONE_BENCH_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The server's scratch databases of `herald bench`.
async fn scratch_databases(admin: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "select datname::text from pg_database where datname ~ '^herald_bench_[0-9a-f]{8}$' order by 1",
    )
    .fetch_all(admin)
    .await
    .unwrap()
}

async fn admin() -> PgPool {
    PgPool::connect(&url_for("postgres")).await.unwrap()
}

/// `herald bench` on the server of the tests (it makes a scratch database of its own there);
/// flags follow.
fn bench() -> Cli {
    Cli::at(&url_for("postgres")).arg("bench")
}

#[tokio::test]
async fn a_small_run_reports_every_figure_and_drops_its_database() {
    let _alone = ONE_BENCH_AT_A_TIME.lock().await;
    let out = bench()
        .args(&[
            "--json",
            "--notifications",
            "40",
            "--clients",
            "4",
            "--console-rows",
            "20000",
        ])
        .run()
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    for rate in [
        "enqueue_single_per_s",
        "api_enqueue_per_s",
        "enqueue_batch_per_s",
        "enqueue_sql_batch_per_s",
        "dispatch_null_per_s",
        "dispatch_webhook_per_s",
        "rss_mb",
    ] {
        let value = report[rate]
            .as_f64()
            .unwrap_or_else(|| panic!("{rate} is a number: {report}"));
        assert!(value > 0.0, "{rate} is positive: {report}");
    }
    let overhead = report["enqueue_in_tx_overhead"].as_f64().expect("a ratio");
    assert!(
        overhead > 1.0,
        "an enqueue adds to the application's transaction: {report}"
    );
    let (p50, p99) = (
        report["latency_ms"]["p50"].as_f64().unwrap(),
        report["latency_ms"]["p99"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p99 >= p50, "{report}");
    // Isolation: measured (positive) and bounded, whether or not the healthy endpoint got
    // through its neighbours within the bound.
    let isolation = &report["isolation"];
    let bound = isolation["bound_ms"].as_f64().expect("a bound");
    for (p50, p99) in [
        ("healthy_p50_ms", "healthy_p99_ms"),
        ("alone_p50_ms", "alone_p99_ms"),
    ] {
        let number = |field: &str| {
            isolation[field]
                .as_f64()
                .unwrap_or_else(|| panic!("isolation.{field} is a number: {report}"))
        };
        let (p50, p99) = (number(p50), number(p99));
        assert!(p50 > 0.0 && p99 >= p50 && p99 <= bound, "{report}");
    }
    for count in ["samples", "slow_backlog", "burst"] {
        assert!(
            isolation[count].as_u64().is_some_and(|count| count > 0),
            "isolation.{count} is a positive count: {report}"
        );
    }
    assert_eq!(
        isolation["alone_late"], 0,
        "alone, nothing is late: {report}"
    );
    // The console's page over the rows asked for: timed under each filter, none failing.
    let console = &report["console"];
    assert_eq!(console["rows"], 20000, "{report}");
    let p99 = report["console_p99_ms"].as_f64().expect("console_p99_ms");
    assert!(
        p99 > 0.0 && p99 >= console["page_ms"]["p50"].as_f64().unwrap(),
        "{report}"
    );
    assert!(console["worst_filter"].is_string(), "{report}");
    assert_eq!(report["notifications"], 40);
    let database = report["database"]
        .as_str()
        .expect("names its scratch database");
    assert!(database.starts_with("herald_bench_"), "{report}");
    assert!(
        !scratch_databases(&admin().await)
            .await
            .contains(&database.to_owned()),
        "{database} was dropped"
    );
}

#[tokio::test]
async fn the_human_output_is_a_table_of_phases() {
    let _alone = ONE_BENCH_AT_A_TIME.lock().await;
    let out = bench()
        .args(&[
            "--notifications",
            "10",
            "--clients",
            "2",
            "--console-rows",
            "1000",
        ])
        .run()
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    for phase in [
        "enqueue_single",
        "api_enqueue",
        "enqueue_batch",
        "dispatch_null",
        "dispatch_webhook",
        "latency_p99",
        "isolation_healthy_p50",
        "isolation_healthy_p99",
        "isolation_alone_p50",
        "isolation_alone_p99",
        "rss",
        "console_p50",
        "console_p99",
    ] {
        assert!(
            out.stdout.lines().any(|line| line.starts_with(phase)),
            "a row for {phase}: {out:?}"
        );
    }
}

#[tokio::test]
async fn bad_flags_are_usage_errors_naming_the_flag() {
    let _alone = ONE_BENCH_AT_A_TIME.lock().await;
    let before = scratch_databases(&admin().await).await;
    for (args, flag) in [
        (vec!["--notifications", "0"], "--notifications"),
        (vec!["--notifications", "many"], "--notifications"),
        (vec!["--clients", "0"], "--clients"),
        (vec!["--clients", "5000"], "--clients"),
        (vec!["--history", "-1"], "--history"),
        (vec!["--console-rows", "-1"], "--console-rows"),
        (vec!["--speed", "fast"], "--speed"),
    ] {
        bench().args(&args).run().await.assert_error(2, flag);
    }
    assert_eq!(
        scratch_databases(&admin().await).await,
        before,
        "nothing was created"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_one_line() {
    Cli::at("postgres://ann:CANARY-PW@127.0.0.1:1/app")
        .arg("bench")
        .run()
        .await
        .assert_error(1, "cannot connect to PostgreSQL at 127.0.0.1:1");
}

#[tokio::test]
async fn an_interrupted_run_drops_its_database() {
    interrupted_run_drops_its_database(false).await;
}

/// Mid-phase, sixteen enqueue clients still hold connections that reconnect while the drop
/// ends them; the drop must still happen.
#[tokio::test]
async fn a_run_interrupted_while_enqueueing_drops_its_database() {
    interrupted_run_drops_its_database(true).await;
}

/// Interrupts a run once its scratch database exists (and, with `mid_enqueue`, holds rows).
async fn interrupted_run_drops_its_database(mid_enqueue: bool) {
    let _alone = ONE_BENCH_AT_A_TIME.lock().await;
    let admin = admin().await;
    let before = scratch_databases(&admin).await;
    let child = bench()
        .args(&["--notifications", "10000000"])
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("herald bench starts");
    // Its scratch database appears…
    let mut created = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while created.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scratch database appeared"
        );
        created = scratch_databases(&admin)
            .await
            .into_iter()
            .find(|name| !before.contains(name));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let created = created.unwrap();
    if mid_enqueue {
        let scratch = PgPool::connect(&url_for(&created)).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        // Before migration the table is missing: that reads as no rows yet.
        while sqlx::query_scalar::<_, i64>("select count(*) from herald.notifications")
            .fetch_one(&scratch)
            .await
            .unwrap_or(0)
            < 100
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the bench never enqueued"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        scratch.close().await;
    }
    // …and goes with the run when it is interrupted.
    let pid = child.id().expect("running").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the bench stops when interrupted")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // The drop happens before the exit.
    assert!(
        !scratch_databases(&admin).await.contains(&created),
        "{created} was dropped"
    );
}
