//! `herald tokens` through the binary: a token is printed once and stored only as its hash;
//! `list` never shows it; `revoke` keeps the row and its first revocation time; bad input
//! writes nothing; each database role sees what its job needs of the tokens table.

use herald::api::token;
use serde_json::Value;
use sqlx::PgPool;

use crate::support::logins::{Login, sqlstate};
use crate::support::{Cli, herald, migrated};

fn tokens(pool: &PgPool) -> Cli {
    herald(pool).arg("tokens")
}

async fn added(pool: &PgPool, args: &[&str]) -> Value {
    let run = tokens(pool).arg("add").args(args).arg("--json").run().await;
    assert_eq!(run.code, 0, "{run:?}");
    run.json()
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

async fn stored_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from herald.api_tokens")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn add_prints_the_token_once_and_stores_only_its_hash(pool: PgPool) {
    let pool = migrated(pool).await;
    let made = added(
        &pool,
        &[
            "--name",
            "billing service",
            "--role",
            "enqueue",
            "--tenant",
            "acme",
        ],
    )
    .await;
    assert_eq!(
        keys(&made),
        ["created_at", "id", "name", "role", "tenant", "token"]
    );
    assert_eq!(
        (&made["name"], &made["role"], &made["tenant"]),
        (
            &Value::from("billing service"),
            &Value::from("enqueue"),
            &Value::from("acme")
        )
    );
    let text = made["token"].as_str().unwrap().to_owned();
    assert!(text.starts_with(token::PREFIX), "{text}");
    let presented = token::parse(&text).expect("a well-formed token");
    assert_eq!(presented.id.to_string(), made["id"].as_str().unwrap());

    let (hash, everything): (Vec<u8>, String) = sqlx::query_as(
        "select secret_hash, row_to_json(t)::text from herald.api_tokens t where id = $1",
    )
    .bind(presented.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(presented.matches(&hash), "the stored hash is the secret's");
    let secret_part = &text[token::PREFIX.len() + 22..];
    assert!(
        !everything.contains(&text) && !everything.contains(secret_part),
        "the token is not stored: {everything}"
    );

    // Human output: the token once, with the warning that it will not be shown again.
    let run = tokens(&pool)
        .args(&["add", "--name", "ops", "--role", "admin"])
        .run()
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("token:  hrld_"), "{}", run.stdout);
    assert!(run.stdout.contains("tenant: *"), "{}", run.stdout);
    assert!(run.stdout.contains("shown only now"), "{}", run.stdout);
}

#[sqlx::test(migrations = false)]
async fn list_shows_every_token_but_never_a_token_or_its_hash(pool: PgPool) {
    let pool = migrated(pool).await;
    let first = added(&pool, &["--name", "a", "--role", "read"]).await;
    let second = added(&pool, &["--name", "b", "--role", "admin", "--tenant", "t"]).await;

    let run = tokens(&pool).args(&["list", "--json"]).run().await;
    assert_eq!(run.code, 0, "{run:?}");
    let listed = run.json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], first["id"]);
    assert_eq!(listed[1]["id"], second["id"]);
    for row in listed {
        assert_eq!(
            keys(row),
            ["created_at", "id", "name", "revoked_at", "role", "tenant"]
        );
    }
    assert_eq!(listed[0]["tenant"], Value::Null);

    let human = tokens(&pool).arg("list").run().await;
    assert_eq!(human.code, 0, "{human:?}");
    for made in [&first, &second] {
        let text = made["token"].as_str().unwrap();
        assert!(!run.stdout.contains(text) && !human.stdout.contains(text));
        assert!(human.stdout.contains(made["id"].as_str().unwrap()));
    }
}

#[sqlx::test(migrations = false)]
async fn revoke_keeps_the_row_and_its_first_revocation(pool: PgPool) {
    let pool = migrated(pool).await;
    let made = added(&pool, &["--name", "a", "--role", "read"]).await;
    let id = made["id"].as_str().unwrap();

    let first = tokens(&pool).args(&["revoke", id, "--json"]).run().await;
    assert_eq!(first.code, 0, "{first:?}");
    let revoked_at = first.json()["revoked_at"].clone();
    assert!(revoked_at.is_string(), "{revoked_at}");
    let again = tokens(&pool).args(&["revoke", id, "--json"]).run().await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        again.json()["revoked_at"],
        revoked_at,
        "the first time stays"
    );

    let listed = tokens(&pool).args(&["list", "--json"]).run().await.json();
    assert_eq!(listed[0]["revoked_at"], revoked_at);

    let human = tokens(&pool).args(&["revoke", id]).run().await;
    assert_eq!(human.stdout, format!("revoked {id}\n"));
}

#[sqlx::test(migrations = false)]
async fn revoking_an_unknown_token_exits_4_naming_it(pool: PgPool) {
    let pool = migrated(pool).await;
    let id = uuid::Uuid::now_v7().to_string();
    let run = tokens(&pool).args(&["revoke", &id]).run().await;
    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(run.stderr, format!("error: token {id} not found\n"));
    let run = tokens(&pool).args(&["revoke", "not-a-uuid"]).run().await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("'not-a-uuid'"), "{}", run.stderr);
}

#[sqlx::test(migrations = false)]
async fn bad_input_names_its_flag_exits_2_and_writes_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    let long = "t".repeat(256);
    let cases: [(&[&str], &str); 6] = [
        (&["--name", "x", "--role", "owner"], "--role"),
        (&["--name", "x", "--role", "Admin"], "--role"),
        (&["--name", "", "--role", "read"], "name"),
        (&["--name", "a\u{7}b", "--role", "read"], "name"),
        (&["--name", "x", "--role", "read", "--tenant", ""], "tenant"),
        (
            &["--name", "x", "--role", "read", "--tenant", long.as_str()],
            "tenant",
        ),
    ];
    for (args, field) in cases {
        let run = tokens(&pool).arg("add").args(args).run().await;
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(field), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
    let run = tokens(&pool).args(&["add", "--role", "read"]).run().await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--name"), "{}", run.stderr);
    assert_eq!(stored_rows(&pool).await, 0, "nothing written");
}

#[sqlx::test(migrations = false)]
async fn each_database_role_sees_what_its_job_needs_of_the_tokens(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = Login::create(&pool, Some("herald_admin")).await;
    let run = Cli::at(&admin.url)
        .args(&["tokens", "add", "--name", "a", "--role", "read", "--json"])
        .run()
        .await;
    assert_eq!(run.code, 0, "an operator adds tokens: {run:?}");
    let id = run.json()["id"].as_str().unwrap().to_owned();
    let run = Cli::at(&admin.url)
        .args(&["tokens", "revoke", &id])
        .run()
        .await;
    assert_eq!(run.code, 0, "and revokes them: {run:?}");
    let admin_pool = admin.pool().await;
    assert_eq!(
        sqlstate(
            sqlx::query("select secret_hash from herald.api_tokens")
                .execute(&admin_pool)
                .await
        ),
        "ok",
        "the server, as herald_admin, checks presented tokens"
    );
    admin_pool.close().await;

    let reader = Login::create(&pool, Some("herald_reader")).await;
    let reader_pool = reader.pool().await;
    let cases = [
        (
            "select id, name, role, tenant, created_at, revoked_at from herald.api_tokens",
            "ok",
        ),
        ("select secret_hash from herald.api_tokens", "42501"),
        ("update herald.api_tokens set revoked_at = null", "42501"),
    ];
    for (sql, expected) in cases {
        let got = sqlstate(sqlx::query(sql).execute(&reader_pool).await);
        assert_eq!(got, expected, "reader: {sql}");
    }
    reader_pool.close().await;

    let app = Login::create(&pool, Some("herald_enqueue")).await;
    let app_pool = app.pool().await;
    let got = sqlstate(
        sqlx::query("select id from herald.api_tokens")
            .execute(&app_pool)
            .await,
    );
    assert_eq!(got, "42501", "an application reads no token");
    app_pool.close().await;

    for login in [admin, reader, app] {
        login.drop(&pool).await;
    }
}
