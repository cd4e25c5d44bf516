//! Failures before any command runs: the database, the configuration, the command line.

use sqlx::PgPool;

use crate::support::{Cli, Key, herald, migrated, url_for};

/// Arguments, environment, and the prefix naming where the URL came from.
type Way<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test]
async fn an_unreachable_database_is_one_line_without_the_password() {
    // Nothing listens on port 1.
    let out = Cli::at("postgres://ann:CANARY-PW@127.0.0.1:1/app")
        .arg("list")
        .run()
        .await;
    out.assert_error(
        1,
        "cannot connect to PostgreSQL at 127.0.0.1:1, database \"app\"",
    );
    assert!(
        out.stderr.contains("pg_ctlcluster"),
        "says how to start PostgreSQL: {out:?}"
    );
    assert!(!out.stderr.contains("CANARY"), "{out:?}");
}

#[tokio::test]
async fn database_url_comes_from_the_environment_too() {
    let out = Cli::new()
        .arg("list")
        .env("DATABASE_URL", "postgres://ann:CANARY-PW@127.0.0.1:1/envdb")
        .run()
        .await;
    out.assert_error(1, "database \"envdb\"");
    assert!(!out.stderr.contains("CANARY"));
}

#[tokio::test]
async fn a_malformed_database_url_is_a_usage_error() {
    Cli::at("mysql://h/db")
        .arg("list")
        .run()
        .await
        .assert_error(2, "invalid database URL");
}

/// Without a database name PostgreSQL would use the user's own (`postgres`), and `migrate` would
/// install herald there. Port 1, where nothing listens: refused before any connection is tried.
#[tokio::test]
async fn a_database_url_without_a_database_name_is_refused_naming_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "postgres://postgres:CANARY-PW@127.0.0.1:1/",
        "postgres://postgres:CANARY-PW@127.0.0.1:1",
        "postgres://postgres:CANARY-PW@127.0.0.1:1/?sslmode=disable",
    ] {
        let file = dir.path().join("herald.toml");
        std::fs::write(&file, format!("[database]\nurl = \"{url}\"\n")).unwrap();
        let file = file.to_str().unwrap();
        let ways: [Way; 4] = [
            (vec!["--database-url", url], vec![], "--database-url: "),
            (vec![], vec![("DATABASE_URL", url)], "DATABASE_URL: "),
            (vec!["--config", file], vec![], "config: database.url: "),
            (
                vec![],
                vec![("HERALD_DATABASE__URL", url)],
                "config: database.url: ",
            ),
        ];
        for (prefix, env, origin) in &ways {
            for command in ["migrate", "run", "list"] {
                let args = [&prefix[..], &[command]].concat();
                let out = Cli::new().args(&args).envs(env).run().await;
                out.assert_error(2, origin);
                assert!(
                    out.stderr
                        .contains("no database name: add one after the host and port"),
                    "{args:?} {env:?}: {out:?}"
                );
                assert!(!out.stderr.contains("CANARY"), "{out:?}");
            }
        }
    }
}

/// `database.listen_url` is checked like `database.url`, before anything connects: from the
/// file or the environment, a bad one is one line naming the key, exit 2, no password.
#[tokio::test]
async fn a_bad_listen_url_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (url, problem) in [
        (
            "mysql://ann:CANARY-PW@127.0.0.1:1/app",
            "must start with postgres:// or postgresql://",
        ),
        (
            "postgres://ann:CANARY-PW@127.0.0.1:1/",
            "no database name: add one after the host and port",
        ),
    ] {
        let file = dir.path().join("herald.toml");
        std::fs::write(&file, format!("[database]\nlisten_url = \"{url}\"\n")).unwrap();
        let file = file.to_str().unwrap();
        let ways: [Way; 2] = [
            (vec!["--config", file], vec![], "the file"),
            (
                vec![],
                vec![("HERALD_DATABASE__LISTEN_URL", url)],
                "the environment",
            ),
        ];
        for (prefix, env, from) in &ways {
            for command in ["migrate", "run", "list"] {
                let args = [
                    &prefix[..],
                    &["--database-url", "postgres://127.0.0.1:1/app", command],
                ]
                .concat();
                let out = Cli::new().args(&args).envs(env).run().await;
                out.assert_error(2, &format!("config: database.listen_url: {problem}"));
                assert!(!out.stderr.contains("CANARY"), "from {from}: {out:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_missing_database_points_at_migrate() {
    let url = url_for("herald_no_such_database");
    Cli::at(&url)
        .arg("list")
        .run()
        .await
        .assert_error(1, "`herald migrate` creates it");
}

#[sqlx::test(migrations = false)]
async fn an_unmigrated_database_points_at_migrate(pool: PgPool) {
    herald::migrate(&pool).await.unwrap();
    sqlx::query("drop schema herald cascade")
        .execute(&pool)
        .await
        .unwrap();
    herald(&pool)
        .arg("list")
        .run()
        .await
        .assert_error(1, "run `herald migrate` first");
}

#[sqlx::test(migrations = false)]
async fn run_without_migrating_refuses_a_database_without_the_schema(pool: PgPool) {
    herald(&pool)
        .args(&["run", "--no-migrate", "--until-idle"])
        .run()
        .await
        .assert_error(1, "run `herald migrate` first");
}

#[sqlx::test(migrations = false)]
async fn unknown_ids_are_not_found_everywhere(pool: PgPool) {
    let pool = migrated(pool).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    for command in [
        vec!["show", &unknown],
        vec!["retry", &unknown],
        vec!["cancel", &unknown],
        vec!["endpoints", "enable", &unknown],
        vec!["endpoints", "disable", &unknown],
        vec!["endpoints", "rotate-secret", &unknown],
    ] {
        herald(&pool)
            .args(&command)
            .run()
            .await
            .assert_error(4, &unknown);
    }
}

#[tokio::test]
async fn every_command_reports_an_unreachable_database_the_same_way() {
    let url = "postgres://ann:CANARY-PW@127.0.0.1:1/app";
    let id = uuid::Uuid::now_v7().to_string();
    let herald = || Cli::at(url);
    let key = Key::new("u", "t", "b");
    for command in [
        herald().arg("migrate"),
        herald().args(&["run", "--until-idle"]),
        herald().arg("list"),
        herald().args(&["show", &id]),
        herald().arg("stats"),
        herald().arg("sweep"),
        herald().explain(&key),
        herald().args(&["endpoints", "list"]),
        herald().enqueue(&key).args(&["--email", "a@b.co"]),
    ] {
        let out = command.run().await;
        out.assert_error(
            1,
            "cannot connect to PostgreSQL at 127.0.0.1:1, database \"app\"",
        );
        assert!(!out.stderr.contains("CANARY"));
    }
}

#[tokio::test]
async fn migrate_creates_the_database_and_is_idempotent() {
    let name = format!("herald_it_{}", uuid::Uuid::now_v7().simple());
    let url = url_for(&name);
    for _ in 0..2 {
        let out = Cli::at(&url).arg("migrate").run().await;
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(
            out.stdout,
            format!("migrations applied to database \"{name}\"\n")
        );
    }
    let listed = Cli::at(&url).args(&["list", "--json"]).run().await;
    assert_eq!(listed.stdout.trim(), "[]");
    let admin = sqlx::PgPool::connect(&url_for("postgres")).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database \"{name}\" with (force)"
    )))
    .execute(&admin)
    .await
    .unwrap();
}

#[tokio::test]
async fn configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "[smtp]\nprot = 25\n").unwrap();
    let path = file.to_str().unwrap();
    Cli::new()
        .args(&["--config", path, "list"])
        .run()
        .await
        .assert_error(2, "unknown field `prot`");
    Cli::new()
        .arg("list")
        .env("HERALD_CONFIG", path)
        .run()
        .await
        .assert_error(2, "unknown field `prot`");
    Cli::new()
        .arg("list")
        .env("HERALD_DISPATCHER__LEASE", "1s")
        .run()
        .await
        .assert_error(2, "dispatcher.lease");
    Cli::new()
        .args(&["--config", "/nonexistent.toml", "list"])
        .run()
        .await
        .assert_error(2, "config file /nonexistent.toml");
}

#[tokio::test]
async fn usage_errors_are_one_line_and_help_succeeds() {
    Cli::new()
        .arg("frobnicate")
        .run()
        .await
        .assert_error(2, "unrecognized subcommand 'frobnicate'");
    Cli::new()
        .run()
        .await
        .assert_error(2, "requires a subcommand");
    let help = Cli::new().args(&["enqueue", "--help"]).run().await;
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("--business-id"), "{help:?}");
    let version = Cli::new().arg("--version").run().await;
    assert_eq!(
        version.stdout,
        format!("herald {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[sqlx::test(migrations = false)]
async fn migrate_through_the_binary_on_an_existing_database(pool: PgPool) {
    let out = herald(&pool).arg("migrate").run().await;
    assert_eq!(out.code, 0, "{out:?}");
    let pool = migrated(pool).await; // and the library agrees nothing is left to do
    let tables: Vec<(String, String)> = sqlx::query_as(
        "select table_name::text, table_type::text from information_schema.tables
         where table_schema = 'herald' order by table_name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let table = |name: &str, kind: &str| (name.to_owned(), kind.to_owned());
    assert_eq!(
        tables,
        [
            table("_sqlx_migrations", "BASE TABLE"),
            table("api_tokens", "BASE TABLE"),
            table("attempts", "BASE TABLE"),
            table("destinations", "BASE TABLE"),
            table("intents", "BASE TABLE"),
            table("notifications", "VIEW"),
            table("queue", "BASE TABLE"),
            table("settings", "BASE TABLE"),
            table("webhook_endpoints", "BASE TABLE"),
        ]
    );
}
