//! `herald endpoints` through the binary: `add` and `list`, limits (`--rate`,
//! `--max-in-flight`, `set`), `show`, and closing breakers (`reset`, `enable`).

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::logins::Login;
use crate::support::{Cli, Key, endpoint, herald, migrated};

/// The members of an endpoint object (DESIGN.md, "Endpoint JSON"), sorted.
const ENDPOINT_KEYS: [&str; 13] = [
    "breaker",
    "breaker_opened_at",
    "consecutive_failures",
    "created_at",
    "disabled_reason",
    "enabled",
    "id",
    "in_flight",
    "max_in_flight",
    "next_probe_at",
    "rate",
    "tenant",
    "url",
];

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
    assert_eq!(crate::support::sorted_keys(endpoint), ENDPOINT_KEYS);
    assert_eq!(endpoint["id"], added["id"]);
    let mut keys = ENDPOINT_KEYS.to_vec();
    keys.push("secret");
    keys.sort_unstable();
    assert_eq!(crate::support::sorted_keys(&added), keys);
    assert_eq!(
        (&added["rate"], &added["max_in_flight"], &added["breaker"]),
        (&Value::Null, &Value::Null, &json!("closed"))
    );

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

/// Every row of herald.destinations, to compare before and after a refused command.
async fn destinations(pool: &PgPool) -> Value {
    sqlx::query_scalar("select jsonb_agg(to_jsonb(d) order by d.key) from herald.destinations d")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Runs `herald endpoints <args> --json` and returns its JSON, failing on any exit but 0.
async fn endpoints_json(pool: &PgPool, args: &[&str]) -> Value {
    let out = herald(pool)
        .arg("endpoints")
        .args(args)
        .arg("--json")
        .run()
        .await;
    assert_eq!(out.code, 0, "{args:?}: {out:?}");
    out.json()
}

/// Opens `key`'s breaker as the dispatcher would, with failures counted and a probe due.
async fn open_breaker(pool: &PgPool, key: &str) {
    sqlx::query(
        "update herald.destinations
         set breaker = 'open', consecutive_failures = 7, breaker_opened_at = now(),
             next_probe_at = now() + interval '1 minute', probe_interval = 60
         where key = $1",
    )
    .bind(key)
    .execute(pool)
    .await
    .unwrap();
}

/// The breaker columns of `key`'s row, probe_interval included (no output shows it).
async fn breaker_row(pool: &PgPool, key: &str) -> (String, i32, bool, bool, Option<f64>) {
    sqlx::query_as(
        "select breaker, consecutive_failures, breaker_opened_at is null, next_probe_at is null,
                probe_interval
         from herald.destinations where key = $1",
    )
    .bind(key)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = false)]
async fn bad_limits_are_refused_naming_the_flag_and_nothing_is_written(pool: PgPool) {
    let pool = migrated(pool).await;
    let id = endpoint(&pool, "default").await.to_string();
    endpoints_json(
        &pool,
        &["set", &id, "--rate", "5/s", "--max-in-flight", "3"],
    )
    .await;
    let before = destinations(&pool).await;
    let cases = [
        ("--rate", "0/s", "at least 1/s"),
        ("--rate", "fast", "expected N/s, N/m or none"),
        ("--rate", "200000/s", "at most 100000/s (6000000/m)"),
        ("--rate", "6000001/m", "at most 100000/s (6000000/m)"),
        ("--rate", "10/h", "the unit must be /s or /m"),
        ("--rate", "-1/s", "expected N/s, N/m or none"),
        ("--max-in-flight", "0", "from 1 to 10000"),
        ("--max-in-flight", "-1", "from 1 to 10000"),
        ("--max-in-flight", "10001", "from 1 to 10000"),
        ("--max-in-flight", "abc", "from 1 to 10000"),
    ];
    for (flag, value, why) in cases {
        for command in [
            vec!["endpoints", "set", &id, flag, value],
            vec![
                "endpoints",
                "add",
                "--url",
                "https://hooks.example.com/new",
                flag,
                value,
            ],
        ] {
            let out = herald(&pool).args(&command).run().await;
            out.assert_error(2, &format!("'{flag} "));
            assert!(out.stderr.contains(why), "{command:?}: {out:?}");
            assert!(
                out.stderr.contains(&format!("'{value}'")),
                "names the value: {out:?}"
            );
        }
    }
    // `set` needs something to set.
    herald(&pool)
        .args(&["endpoints", "set", &id])
        .run()
        .await
        .assert_error(2, "--rate");
    herald(&pool)
        .args(&["endpoints", "set", &id, "--json"])
        .run()
        .await
        .assert_error(2, "--max-in-flight");
    // An unknown endpoint, well-formed limits: not found, nothing written.
    let unknown = Uuid::now_v7().to_string();
    for command in [
        vec!["endpoints", "set", &unknown, "--rate", "10/s"],
        vec!["endpoints", "set", &unknown, "--max-in-flight", "none"],
        vec!["endpoints", "reset", &unknown],
    ] {
        herald(&pool)
            .args(&command)
            .run()
            .await
            .assert_error(4, &unknown);
    }
    assert_eq!(destinations(&pool).await, before);
    let endpoints: i64 = sqlx::query_scalar("select count(*) from herald.webhook_endpoints")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(endpoints, 1, "add wrote nothing");
}

#[sqlx::test(migrations = false)]
async fn limits_round_trip_through_show_keeping_their_unit(pool: PgPool) {
    let pool = migrated(pool).await;
    let added = endpoints_json(
        &pool,
        &[
            "add",
            "--url",
            "https://hooks.example.com/in",
            "--rate",
            "600/m",
            "--max-in-flight",
            "5",
        ],
    )
    .await;
    assert_eq!(
        (&added["rate"], &added["max_in_flight"]),
        (&json!("600/m"), &json!(5))
    );
    let id = added["id"].as_str().unwrap().to_owned();
    let shown = endpoints_json(&pool, &["show", &id]).await;
    assert_eq!(crate::support::sorted_keys(&shown), ENDPOINT_KEYS);
    assert!(!shown.to_string().contains("whsec_"), "never the secret");
    assert_eq!(
        shown,
        json!({
            "id": id,
            "tenant": "default",
            "url": "https://hooks.example.com/in",
            "enabled": true,
            "disabled_reason": null,
            "created_at": shown["created_at"],
            "rate": "600/m",
            "max_in_flight": 5,
            "breaker": "closed",
            "consecutive_failures": 0,
            "breaker_opened_at": null,
            "next_probe_at": null,
            "in_flight": 0,
        })
    );
    let stored: (i32, String) = sqlx::query_as(
        "select rate_count, rate_unit from herald.destinations where endpoint_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored, (600, "m".to_owned()));

    // Setting a rate refills the bucket in the same statement.
    sqlx::query(
        "update herald.destinations set tokens = 0, tokens_at = now()
         where endpoint_id = $1::uuid",
    )
    .bind(&id)
    .execute(&pool)
    .await
    .unwrap();
    let set = endpoints_json(&pool, &["set", &id, "--rate", "10/s"]).await;
    assert_eq!(
        (&set["rate"], &set["max_in_flight"]),
        (&json!("10/s"), &json!(5)),
        "the other limit stays"
    );
    let bucket: (Option<f64>, bool) = sqlx::query_as(
        "select tokens, tokens_at is null from herald.destinations where endpoint_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(bucket, (None, true), "a full bucket");

    let set = endpoints_json(&pool, &["set", &id, "--max-in-flight", "none"]).await;
    assert_eq!(
        (&set["rate"], &set["max_in_flight"]),
        (&json!("10/s"), &Value::Null)
    );
    endpoints_json(
        &pool,
        &["set", &id, "--rate", "none", "--max-in-flight", "10000"],
    )
    .await;
    let shown = endpoints_json(&pool, &["show", &id]).await;
    assert_eq!(
        (&shown["rate"], &shown["max_in_flight"]),
        (&Value::Null, &json!(10000))
    );
    let listed = endpoints_json(&pool, &["list"]).await;
    assert_eq!(listed, json!([shown]));

    // People get the same, as a block and a table.
    let out = herald(&pool)
        .args(&["endpoints", "set", &id, "--rate", "100000/s"])
        .run()
        .await;
    assert_eq!(
        out.stdout,
        format!("limits of {id}: rate 100000/s, max_in_flight 10000\n")
    );
    let out = herald(&pool).args(&["endpoints", "show", &id]).run().await;
    assert_eq!(out.code, 0, "{out:?}");
    for line in [
        "rate:                 100000/s\n",
        "max_in_flight:        10000\n",
        "breaker:              closed\n",
        "breaker_opened_at:    -\n",
    ] {
        assert!(out.stdout.contains(line), "{line:?} in {}", out.stdout);
    }
    let table = herald(&pool).args(&["endpoints", "list"]).run().await;
    let mut lines = table.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID",
            "TENANT",
            "URL",
            "ENABLED",
            "RATE",
            "IN_FLIGHT",
            "BREAKER",
            "DISABLED_REASON",
            "CREATED_AT"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[4..8], ["100000/s", "0/10000", "closed", "-"]);
}

#[sqlx::test(migrations = false)]
async fn reset_and_enable_close_a_breaker(pool: PgPool) {
    let pool = migrated(pool).await;
    let id = endpoint(&pool, "default").await.to_string();

    open_breaker(&pool, &id).await;
    let shown = endpoints_json(&pool, &["show", &id]).await;
    assert_eq!(
        (&shown["breaker"], &shown["consecutive_failures"]),
        (&json!("open"), &json!(7))
    );
    assert!(shown["breaker_opened_at"].is_string() && shown["next_probe_at"].is_string());
    let reset = endpoints_json(&pool, &["reset", &id]).await;
    assert_eq!(crate::support::sorted_keys(&reset), ENDPOINT_KEYS);
    assert_eq!(
        (
            &reset["breaker"],
            &reset["consecutive_failures"],
            &reset["breaker_opened_at"],
            &reset["next_probe_at"]
        ),
        (&json!("closed"), &json!(0), &Value::Null, &Value::Null)
    );
    assert_eq!(
        breaker_row(&pool, &id).await,
        ("closed".into(), 0, true, true, None)
    );

    // `enable` closes it too, with the endpoint.
    open_breaker(&pool, &id).await;
    endpoints_json(&pool, &["disable", &id, "--reason", "breaker open for 5d"]).await;
    let disabled = endpoints_json(&pool, &["show", &id]).await;
    assert_eq!(
        (&disabled["enabled"], &disabled["breaker"]),
        (&json!(false), &json!("open")),
        "disabling leaves the breaker as it is"
    );
    let enabled = endpoints_json(&pool, &["enable", &id]).await;
    assert_eq!(crate::support::sorted_keys(&enabled), ENDPOINT_KEYS);
    assert_eq!(
        (
            &enabled["enabled"],
            &enabled["breaker"],
            &enabled["consecutive_failures"]
        ),
        (&json!(true), &json!("closed"), &json!(0))
    );
    assert_eq!(
        breaker_row(&pool, &id).await,
        ("closed".into(), 0, true, true, None)
    );

    // `smtp` names the relay.
    open_breaker(&pool, "smtp").await;
    let relay = endpoints_json(&pool, &["reset", "smtp"]).await;
    assert_eq!(
        relay,
        json!({
            "destination": "smtp",
            "breaker": "closed",
            "consecutive_failures": 0,
            "breaker_opened_at": null,
            "next_probe_at": null,
            "in_flight": 0,
        })
    );
    assert_eq!(
        breaker_row(&pool, "smtp").await,
        ("closed".into(), 0, true, true, None)
    );
    let out = herald(&pool)
        .args(&["endpoints", "reset", "smtp"])
        .run()
        .await;
    assert_eq!(out.stdout, "closed the breaker of smtp\n", "{out:?}");
    herald(&pool)
        .args(&["endpoints", "reset", "relay"])
        .run()
        .await
        .assert_error(2, "expected an endpoint id or smtp");
}

#[sqlx::test(migrations = false)]
async fn show_smtp_is_the_relays_breaker(pool: PgPool) {
    let pool = migrated(pool).await;
    let closed = endpoints_json(&pool, &["show", "smtp"]).await;
    assert_eq!(
        (
            &closed["destination"],
            &closed["breaker"],
            &closed["in_flight"]
        ),
        (&json!("smtp"), &json!("closed"), &json!(0))
    );
    open_breaker(&pool, "smtp").await;
    let open = endpoints_json(&pool, &["show", "smtp"]).await;
    assert_eq!(
        (&open["breaker"], &open["consecutive_failures"]),
        (&json!("open"), &json!(7))
    );
    assert!(open["next_probe_at"].is_string(), "{open}");
    let out = herald(&pool)
        .args(&["endpoints", "show", "smtp"])
        .run()
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let breaker_line = out.stdout.lines().find(|l| l.starts_with("breaker:"));
    assert!(
        breaker_line.is_some_and(|l| l.trim_end().ends_with("open")),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("url"),
        "the relay has no URL: {}",
        out.stdout
    );
    herald(&pool)
        .args(&["endpoints", "show", "relay"])
        .run()
        .await
        .assert_error(2, "expected an endpoint id or smtp");
}

#[sqlx::test(migrations = false)]
async fn show_of_a_missing_endpoint_is_not_found(pool: PgPool) {
    let pool = migrated(pool).await;
    let unknown = Uuid::now_v7().to_string();
    for json in [false, true] {
        let mut cli = herald(&pool).args(&["endpoints", "show", &unknown]);
        if json {
            cli = cli.arg("--json");
        }
        cli.run().await.assert_error(4, &unknown);
    }
    herald(&pool)
        .args(&["endpoints", "show", "nope"])
        .run()
        .await
        .assert_error(2, "'nope'");
}

#[sqlx::test(migrations = false)]
async fn an_operator_sets_limits_and_resets_breakers_without_reading_secrets(pool: PgPool) {
    let pool = migrated(pool).await;
    let id = endpoint(&pool, "default").await.to_string();
    open_breaker(&pool, &id).await;
    let login = Login::create(&pool, Some("herald_admin")).await;
    let admin = |args: &[&str]| {
        Cli::at(&login.url)
            .arg("endpoints")
            .args(args)
            .arg("--json")
    };
    for args in [
        vec!["set", &id, "--rate", "600/m", "--max-in-flight", "4"],
        vec!["show", &id],
        vec!["list"],
        vec!["reset", &id],
        vec!["reset", "smtp"],
        vec!["disable", &id],
        vec!["enable", &id],
        vec![
            "add",
            "--url",
            "https://hooks.example.com/b",
            "--rate",
            "1/s",
        ],
    ] {
        let out = admin(&args).run().await;
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
    }
    let shown = endpoints_json(&pool, &["show", &id]).await;
    assert_eq!(
        (&shown["rate"], &shown["max_in_flight"], &shown["breaker"]),
        (&json!("600/m"), &json!(4), &json!("closed"))
    );
    login.drop(&pool).await;

    // A reader (no SELECT on secrets) reads endpoints with their limits and breakers.
    let login = Login::create(&pool, Some("herald_reader")).await;
    for args in [vec!["show", &id], vec!["list"]] {
        let out = Cli::at(&login.url)
            .arg("endpoints")
            .args(&args)
            .arg("--json")
            .run()
            .await;
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        assert!(out.stdout.contains("\"rate\": \"600/m\""), "{out:?}");
    }
    login.drop(&pool).await;
}
