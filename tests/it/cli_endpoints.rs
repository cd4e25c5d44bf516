//! `herald endpoints add` and `list` through the binary.

use sqlx::PgPool;

use crate::support::{Cli, Key, herald, migrated};

/// `herald endpoints add`; the URL and the rest follow.
fn add(pool: &PgPool) -> Cli {
    herald(pool).args(&["endpoints", "add"])
}

#[sqlx::test(migrations = false)]
async fn add_prints_the_generated_secret_once(pool: PgPool) {
    let pool = migrated(pool).await;
    let out = add(&pool)
        .args(&[
            "--url",
            "https://hooks.example.com/in",
            "--tenant",
            "acme",
            "--json",
        ])
        .run()
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let added = out.json();
    let secret = added["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(
        herald::channel::signature::WebhookSecret::parse(&secret).is_ok(),
        "a valid secret"
    );
    assert_eq!(added["tenant"], "acme");
    assert_eq!(added["url"], "https://hooks.example.com/in");
    assert_eq!(added["enabled"], true);
    assert_eq!(added["disabled_reason"], serde_json::Value::Null);

    let listed = herald(&pool)
        .args(&["endpoints", "list", "--json"])
        .run()
        .await;
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(
        !listed.stdout.contains(&secret),
        "list never shows the secret"
    );
    let endpoint = &listed.json()[0];
    let keys = crate::support::sorted_keys(endpoint);
    assert_eq!(
        keys,
        [
            "created_at",
            "disabled_reason",
            "enabled",
            "id",
            "tenant",
            "url"
        ]
    );
    assert_eq!(endpoint["id"], added["id"]);

    // The endpoint works as a destination of its tenant.
    let id = added["id"].as_str().unwrap();
    let enq = herald(&pool)
        .enqueue(&Key::new("u", "t", "b").tenant("acme"))
        .args(&["--webhook", id])
        .run()
        .await;
    assert_eq!(enq.code, 0, "{enq:?}");
}

#[sqlx::test(migrations = false)]
async fn add_keeps_a_given_secret_and_prints_a_human_block(pool: PgPool) {
    let pool = migrated(pool).await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let out = add(&pool)
        .args(&["--url", "http://hooks.example.com/in", "--secret", secret])
        .run()
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!("secret: {secret}\n")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("tenant: default\n"), "{}", out.stdout);
    let stored: String = sqlx::query_scalar("select secret from herald.webhook_endpoints")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, secret);
    let table = herald(&pool).args(&["endpoints", "list"]).run().await;
    assert!(table.stdout.starts_with("ID "), "{}", table.stdout);
    assert!(table.stdout.contains("http://hooks.example.com/in"));
    assert!(!table.stdout.contains(secret));
}

#[sqlx::test(migrations = false)]
async fn add_refuses_bad_urls_and_secrets(pool: PgPool) {
    let pool = migrated(pool).await;
    let cases = [
        (vec!["--url", "ftp://hooks.example.com/"], "url: "),
        (vec!["--url", "http://127.0.0.1:8080/hook"], "loopback"),
        (vec!["--url", "http://10.1.2.3/hook"], "private"),
        (vec!["--url", "http://169.254.169.254/latest"], "link-local"),
        (vec!["--url", "http://[::ffff:127.0.0.1]/"], "127.0.0.1"),
        (vec!["--url", "https://user:pw@hooks.example.com/"], "url: "),
        (vec!["--url", "not a url"], "url: "),
        (
            vec!["--url", "https://hooks.example.com/", "--secret", "nope"],
            "secret: must start with \"whsec_\"",
        ),
        (
            vec![
                "--url",
                "https://hooks.example.com/",
                "--secret",
                "whsec_c2hvcnQ=",
            ],
            "secret: key must decode to 24 to 64 bytes",
        ),
        (
            vec!["--url", "https://hooks.example.com/", "--tenant", ""],
            "tenant: must not be empty",
        ),
    ];
    for (extra, needle) in cases {
        add(&pool).args(&extra).run().await.assert_error(2, needle);
    }
    let https_only = add(&pool)
        .args(&["--url", "http://hooks.example.com/"])
        .env("HERALD_WEBHOOK__HTTPS_ONLY", "true")
        .run()
        .await;
    https_only.assert_error(2, "url: ");
    let count: i64 = sqlx::query_scalar("select count(*) from herald.webhook_endpoints")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test(migrations = false)]
async fn allowed_networks_admit_private_targets(pool: PgPool) {
    let pool = migrated(pool).await;
    let out = add(&pool)
        .args(&["--url", "http://127.0.0.1:8080/hook", "--json"])
        .env("HERALD_WEBHOOK__ALLOWED_NETWORKS", "127.0.0.0/8")
        .run()
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["url"], "http://127.0.0.1:8080/hook");
}
