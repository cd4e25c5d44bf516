//! No command's output shows a webhook secret (except `endpoints add` and `rotate-secret`,
//! once), and no output of any command shows the database password, however the URL was
//! given: `--database-url`, `DATABASE_URL`, `database.url` in the config file, or
//! `HERALD_DATABASE__URL`. Checked with canaries on stdout and stderr, human and `--json`.

use herald::Notification;
use sqlx::PgPool;

use crate::support::{Cli, Key, Run, SECRET, endpoint, herald, migrated, url_of};

/// Arguments and environment of one run.
type Invocation<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);
/// Arguments, environment and the expected exit code of one run.
type Expected<'a> = (Vec<&'a str>, &'a [(&'a str, &'a str)], i32);

/// Trust authentication ignores the password, so it can be a canary.
const DB_CANARY: &str = "CANARY-DB-PW";

fn assert_clean(run: &Run, canaries: &[&str], what: &str) {
    for canary in canaries {
        assert!(
            !run.stdout.contains(canary) && !run.stderr.contains(canary),
            "{what} shows {canary}: {run:?}"
        );
    }
}

#[sqlx::test(migrations = false)]
async fn reading_commands_never_show_a_webhook_secret(pool: PgPool) {
    let pool = migrated(pool).await;
    let hook = endpoint(&pool, "default").await;
    let n = Notification::webhook("u", "order_shipped", "b", hook);
    let id = herald::enqueue(&pool, &n).await.unwrap().id().to_string();
    let hook = hook.to_string();
    let key = SECRET.trim_start_matches("whsec_");
    let explained = Key::new("u", "order_shipped", "b");
    for cli in [
        herald(&pool).arg("list"),
        herald(&pool).args(&["list", "--json"]),
        herald(&pool).args(&["show", &id]),
        herald(&pool).args(&["show", &id, "--json"]),
        herald(&pool).args(&["endpoints", "list"]),
        herald(&pool).args(&["endpoints", "list", "--json"]),
        herald(&pool).args(&["endpoints", "disable", &hook, "--json"]),
        herald(&pool).args(&["endpoints", "enable", &hook]),
        herald(&pool).args(&["stats", "--json"]),
        herald(&pool).explain(&explained).arg("--json"),
    ] {
        let run = cli.run().await;
        assert_eq!(run.code, 0, "{cli:?}: {run:?}");
        assert_clean(&run, &[SECRET, key], &format!("{cli:?}"));
    }
    // A rotation prints the new secret once; afterwards neither secret shows.
    let rotated = herald(&pool)
        .args(&["endpoints", "rotate-secret", &hook, "--json"])
        .run()
        .await;
    assert_eq!(rotated.code, 0, "{rotated:?}");
    let new_secret = rotated.json()["secret"].as_str().unwrap().to_owned();
    let new_key = new_secret.trim_start_matches("whsec_").to_owned();
    for args in [
        vec!["endpoints", "list", "--json"],
        vec!["endpoints", "list"],
    ] {
        let run = herald(&pool).args(&args).run().await;
        assert_clean(&run, &[SECRET, key, &new_secret, &new_key], &args.join(" "));
    }
}

#[sqlx::test(migrations = false)]
async fn the_database_password_never_appears_in_any_output(pool: PgPool) {
    let pool = migrated(pool).await;
    let id = herald::enqueue(
        &pool,
        &Notification::email("u", "t", "b", "ann@example.com"),
    )
    .await
    .unwrap()
    .id()
    .to_string();
    let url = url_of(&pool).replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{DB_CANARY}@"),
        1,
    );
    assert!(url.contains(DB_CANARY));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(&config, format!("[database]\nurl = \"{url}\"\n")).unwrap();
    let config = config.to_str().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        format!("[database]\nurl = \"{url}\"\n[smtp]\nprot = 25\n"),
    )
    .unwrap();
    let broken = broken.to_str().unwrap();
    let misplaced = dir.path().join("misplaced.toml");
    std::fs::write(&misplaced, format!("database = \"{url}\"\n")).unwrap();
    let misplaced = misplaced.to_str().unwrap();
    let unreachable = format!("postgres://postgres:{DB_CANARY}@127.0.0.1:1/app");

    // Each way of giving the URL, with commands that succeed.
    let ways: [Invocation; 4] = [
        (vec!["--database-url", &url], vec![]),
        (vec![], vec![("DATABASE_URL", &url)]),
        (vec!["--config", config], vec![]),
        (vec![], vec![("HERALD_DATABASE__URL", &url)]),
    ];
    for (prefix, env) in &ways {
        for command in [
            vec!["list"],
            vec!["list", "--json"],
            vec!["show", &id],
            vec!["show", &id, "--json"],
            vec!["stats"],
            vec!["endpoints", "list"],
            vec!["sweep", "--dry-run"],
            vec!["migrate"],
        ] {
            let args = [&prefix[..], &command[..]].concat();
            let run = Cli::new().args(&args).envs(env).run().await;
            assert_eq!(run.code, 0, "{args:?}: {run:?}");
            assert_clean(&run, &[DB_CANARY], &format!("{args:?} {env:?}"));
        }
    }
    // Help, usage errors, not found, a URL typed where a command belongs, bad configs, an
    // unreachable server.
    let url_env: &[(&str, &str)] = &[("DATABASE_URL", url.as_str())];
    let none: &[(&str, &str)] = &[];
    let failing: Vec<Expected> = vec![
        (vec!["--help"], url_env, 0),
        (vec!["enqueue", "--help"], url_env, 0),
        (vec!["run", "--help"], url_env, 0),
        (vec!["list", "--limit", "0"], url_env, 2),
        (vec!["list", "--bogus"], url_env, 2),
        (
            vec!["show", "00000000-0000-7000-8000-000000000000"],
            url_env,
            4,
        ),
        (vec!["list", &url], none, 2),
        (vec![&url], none, 2),
        (vec!["--config", broken, "list"], none, 2),
        (vec!["--config", misplaced, "list"], none, 2),
        (vec!["--database-url", &unreachable, "list"], none, 1),
        (vec!["--database-url", &unreachable, "migrate"], none, 1),
    ];
    for (args, env, code) in failing {
        let run = Cli::new().args(&args).envs(env).run().await;
        assert_eq!(run.code, code, "{args:?}: {run:?}");
        assert_clean(&run, &[DB_CANARY], &format!("{args:?}"));
    }
    // `doctor` names the database it checks; its exit code depends on what else it finds
    // (an SMTP server, say), so only the output is checked.
    for (args, env) in [
        (vec!["doctor"], url_env),
        (vec!["doctor", "--json"], url_env),
        (vec!["--database-url", &unreachable, "doctor"], none),
    ] {
        let run = Cli::new().args(&args).envs(env).run().await;
        assert!(matches!(run.code, 0 | 1), "{args:?}: {run:?}");
        assert!(run.stdout.contains("database"), "{args:?}: {run:?}");
        assert_clean(&run, &[DB_CANARY], &format!("{args:?}"));
    }
}
