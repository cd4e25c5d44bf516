//! `herald serve` and `POST /v1/notifications` against a real server process: tokens (401 alike
//! for every bad one, revocation at once), roles and tenants (403, nothing written), the
//! enqueue's statuses (201, 200 for a replay, 422 for a conflict, 400 naming the field, 413,
//! 415), the `Idempotency-Key` header, concurrent replays of one key, and the probes.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::api::{Answer, Server, assert_problem, send, token};
use crate::support::{herald, migrated};

fn item(business_id: &str) -> Value {
    json!({"user_id": "u1", "type": "order_shipped", "business_id": business_id,
           "email": "ann@example.com", "payload": {"order": 1}})
}

async fn post(
    server: &Server,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &Value,
) -> Answer {
    send(
        "POST",
        &server.url("/v1/notifications"),
        token,
        headers,
        Some(body.to_string()),
    )
    .await
}

async fn rows(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as("select tenant, business_id from herald.notifications order by created_at")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn serve_without_api_listen_exits_2_and_bad_api_keys_are_named(pool: PgPool) {
    let pool = migrated(pool).await;
    let run = herald(&pool).arg("serve").run().await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.starts_with("error: api.listen is empty"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1);
    for (key, value) in [
        ("HERALD_API__LISTEN", "localhost"),
        ("HERALD_API__MAX_BODY_BYTES", "0"),
        ("HERALD_API__MAX_CONNECTIONS", "0"),
        ("HERALD_API__HEADER_TIMEOUT", "0s"),
    ] {
        let run = herald(&pool).arg("serve").env(key, value).run().await;
        assert_eq!(run.code, 2, "{key}={value}: {run:?}");
        let named = key.trim_start_matches("HERALD_API__").to_lowercase();
        assert!(
            run.stderr.contains(&format!("api.{named}")),
            "{key}: {}",
            run.stderr
        );
    }
}

#[sqlx::test(migrations = false)]
async fn every_bad_token_is_the_same_401_and_revocation_is_immediate(pool: PgPool) {
    let pool = migrated(pool).await;
    let good = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let body = item("b1");

    let mut unknown = good.clone();
    unknown.replace_range(5..10, "AAAAA");
    let mut wrong_secret = good.clone();
    let last = wrong_secret.len() - 3;
    let flipped = if &wrong_secret[last..last + 1] == "A" {
        "B"
    } else {
        "A"
    };
    wrong_secret.replace_range(last..last + 1, flipped);
    let mut details = Vec::new();
    for (what, token) in [
        ("none", None),
        ("malformed", Some("hrld_nope")),
        ("another id", Some(unknown.as_str())),
        ("a wrong secret", Some(wrong_secret.as_str())),
    ] {
        let answer = post(&server, token, &[], &body).await;
        assert_problem(&answer, 401, None);
        assert_eq!(
            answer.header("www-authenticate"),
            "Bearer realm=\"herald\"",
            "{what}"
        );
        details.push(answer.text);
    }
    details.dedup();
    assert_eq!(
        details.len(),
        1,
        "one answer for every bad token: {details:?}"
    );
    assert!(rows(&pool).await.is_empty(), "nothing written");

    assert_eq!(post(&server, Some(&good), &[], &body).await.status, 201);
    let id = herald::api::token::parse(&good).unwrap().id.to_string();
    let run = herald(&pool).args(&["tokens", "revoke", &id]).run().await;
    assert_eq!(run.code, 0, "{run:?}");
    let after = post(&server, Some(&good), &[], &item("b2")).await;
    assert_problem(&after, 401, None);
    assert_eq!(
        rows(&pool).await.len(),
        1,
        "the revoked token wrote nothing"
    );
}

#[sqlx::test(migrations = false)]
async fn an_enqueue_is_created_then_a_duplicate_then_a_conflict(pool: PgPool) {
    let pool = migrated(pool).await;
    let token = token(&pool, "enqueue", None).await;
    let server = Server::start(&pool, &[]).await;

    let created = post(&server, Some(&token), &[], &item("order-1")).await;
    assert_eq!(created.status, 201, "{created:?}");
    let body = created.json();
    assert_eq!(
        (&body["status"], &body["state"]),
        (&json!("created"), &json!("pending"))
    );
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        format!("/v1/notifications/{id}")
    );
    assert_eq!(created.header("content-type"), "application/json");

    let replay = post(&server, Some(&token), &[], &item("order-1")).await;
    assert_eq!(replay.status, 200, "{replay:?}");
    assert_eq!(
        replay.json(),
        json!({"id": id, "status": "duplicate", "state": "pending"})
    );
    assert_eq!(replay.header("location"), format!("/v1/notifications/{id}"));

    let mut changed = item("order-1");
    changed["payload"] = json!({"order": 2});
    let conflict = post(&server, Some(&token), &[], &changed).await;
    assert_problem(&conflict, 422, None);
    let problem = conflict.json();
    assert_eq!(
        (&problem["existing_id"], &problem["differs"]),
        (&json!(id), &json!("payload"))
    );
    assert_eq!(
        rows(&pool).await,
        [("default".to_owned(), "order-1".to_owned())]
    );
}

#[sqlx::test(migrations = false)]
async fn the_idempotency_key_header_is_the_business_id(pool: PgPool) {
    let pool = migrated(pool).await;
    let token = token(&pool, "enqueue", None).await;
    let server = Server::start(&pool, &[]).await;
    let mut without = item("unused");
    without.as_object_mut().unwrap().remove("business_id");

    let first = post(
        &server,
        Some(&token),
        &[("Idempotency-Key", "order-7")],
        &without,
    )
    .await;
    assert_eq!(first.status, 201, "{first:?}");
    let same = post(
        &server,
        Some(&token),
        &[("Idempotency-Key", "order-7")],
        &item("order-7"),
    )
    .await;
    assert_eq!(same.status, 200, "header and body alike: {same:?}");
    assert_eq!(same.json()["id"], first.json()["id"]);

    let differ = post(
        &server,
        Some(&token),
        &[("Idempotency-Key", "order-8")],
        &item("order-9"),
    )
    .await;
    assert_problem(&differ, 400, Some("business_id"));
    let mut numeric = item("unused");
    numeric["business_id"] = json!(8);
    let numeric = post(
        &server,
        Some(&token),
        &[("Idempotency-Key", "order-8")],
        &numeric,
    )
    .await;
    assert_problem(&numeric, 400, Some("business_id"));
    let bearer = format!("bearer {token}");
    let lower = send(
        "POST",
        &server.url("/v1/notifications"),
        None,
        &[
            ("authorization", bearer.as_str()),
            ("Idempotency-Key", "order-7"),
        ],
        Some(without.to_string()),
    )
    .await;
    assert_eq!(
        lower.status, 200,
        "the scheme is case-insensitive: {lower:?}"
    );
    assert_eq!(
        rows(&pool).await,
        [("default".to_owned(), "order-7".to_owned())]
    );
}

#[sqlx::test(migrations = false)]
async fn roles_and_tenants_bound_what_a_token_may_enqueue(pool: PgPool) {
    let pool = migrated(pool).await;
    let reader = token(&pool, "read", None).await;
    let acme = token(&pool, "enqueue", Some("acme")).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;

    assert_problem(
        &post(&server, Some(&reader), &[], &item("r")).await,
        403,
        None,
    );
    let mut elsewhere = item("x");
    elsewhere["tenant"] = json!("globex");
    assert_problem(
        &post(&server, Some(&acme), &[], &elsewhere).await,
        403,
        Some("tenant"),
    );
    assert!(rows(&pool).await.is_empty(), "nothing written");

    assert_eq!(
        post(&server, Some(&acme), &[], &item("a1")).await.status,
        201
    );
    let mut null_tenant = item("a2");
    null_tenant["tenant"] = Value::Null;
    assert_eq!(
        post(&server, Some(&acme), &[], &null_tenant).await.status,
        201
    );
    let mut own = item("a3");
    own["tenant"] = json!("acme");
    assert_eq!(post(&server, Some(&acme), &[], &own).await.status, 201);
    assert_eq!(
        post(&server, Some(&admin), &[], &item("d1")).await.status,
        201
    );
    assert_eq!(
        post(&server, Some(&admin), &[], &elsewhere).await.status,
        201
    );
    assert_eq!(
        rows(&pool).await,
        [
            ("acme".to_owned(), "a1".to_owned()),
            ("acme".to_owned(), "a2".to_owned()),
            ("acme".to_owned(), "a3".to_owned()),
            ("default".to_owned(), "d1".to_owned()),
            ("globex".to_owned(), "x".to_owned()),
        ]
    );
}

#[sqlx::test(migrations = false)]
async fn bad_bodies_are_refused_naming_the_field_and_write_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    let token = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[("HERALD_API__MAX_BODY_BYTES", "2048")]).await;
    let url = server.url("/v1/notifications");
    let raw = |body: &str| Some(body.to_owned());

    let malformed = send("POST", &url, Some(&token), &[], raw("{\"user_id\": ")).await;
    assert_problem(&malformed, 400, Some("body"));
    let array = send("POST", &url, Some(&token), &[], raw("[]")).await;
    assert_problem(&array, 400, Some("body"));
    let mut empty_user = item("b");
    empty_user["user_id"] = json!("");
    assert_problem(
        &post(&server, Some(&token), &[], &empty_user).await,
        400,
        Some("user_id"),
    );
    let mut unknown = item("b");
    unknown["colour"] = json!("red");
    let answer = post(&server, Some(&token), &[], &unknown).await;
    assert_problem(&answer, 400, None);
    assert!(
        answer.json()["detail"].as_str().unwrap().contains("colour"),
        "{answer:?}"
    );
    let mut numeric_tenant = item("b");
    numeric_tenant["tenant"] = json!(7);
    assert_problem(
        &post(&server, Some(&token), &[], &numeric_tenant).await,
        400,
        Some("tenant"),
    );
    let text = send(
        "POST",
        &url,
        Some(&token),
        &[("content-type", "text/plain")],
        raw("{}"),
    )
    .await;
    assert_problem(&text, 415, None);
    let mut huge = item("b");
    huge["payload"] = json!({"text": "x".repeat(4096)});
    assert_problem(&post(&server, Some(&token), &[], &huge).await, 413, None);
    assert!(rows(&pool).await.is_empty(), "nothing written");
}

#[sqlx::test(migrations = false)]
async fn concurrent_posts_of_one_key_make_one_notification(pool: PgPool) {
    let pool = migrated(pool).await;
    let token = token(&pool, "enqueue", None).await;
    let server = Server::start(&pool, &[]).await;
    let url = server.url("/v1/notifications");
    let body = item("order-42").to_string();
    let posts = (0..16).map(|_| {
        let (url, token, body) = (url.clone(), token.clone(), body.clone());
        tokio::spawn(async move { send("POST", &url, Some(&token), &[], Some(body)).await })
    });
    let mut statuses = Vec::new();
    let mut ids = Vec::new();
    for post in posts {
        let answer = post.await.unwrap();
        statuses.push(answer.status);
        ids.push(answer.json()["id"].clone());
    }
    statuses.sort();
    let mut expected = vec![200; 15];
    expected.push(201);
    assert_eq!(statuses, expected);
    ids.dedup();
    assert_eq!(ids.len(), 1, "one id for all: {ids:?}");
    assert_eq!(rows(&pool).await.len(), 1);
}

#[sqlx::test(migrations = false)]
async fn probes_answer_without_a_token_and_unknown_routes_are_problems(pool: PgPool) {
    let pool = migrated(pool).await;
    let server = Server::start(&pool, &[]).await;
    let ready = send("GET", &server.url("/readyz"), None, &[], None).await;
    assert_eq!((ready.status, ready.text.as_str()), (200, "ready\n"));
    let missing = send("GET", &server.url("/v2/nothing"), None, &[], None).await;
    assert_problem(&missing, 404, None);

    server.process.terminate().await;
    let run = server.process.wait(Duration::from_secs(30)).await;
    assert_eq!(run.code, 0, "SIGTERM stops it cleanly: {run:?}");
}

#[sqlx::test(migrations = false)]
async fn herald_run_serves_the_api_when_api_listen_is_set(pool: PgPool) {
    let pool = migrated(pool).await;
    let token = token(&pool, "enqueue", None).await;
    let addr = crate::support::scrape::free_addr();
    let listen = addr.to_string();
    let daemon = crate::support::daemon::Daemon::spawn(
        &pool,
        &[],
        &crate::support::daemon::env_with(&[("HERALD_API__LISTEN", listen.as_str())]),
    );
    crate::support::scrape::wait_for_status(addr, "/readyz", 200).await;
    let url = format!("http://{addr}/v1/notifications");
    let answer = send(
        "POST",
        &url,
        Some(&token),
        &[],
        Some(item("r1").to_string()),
    )
    .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    daemon.terminate().await;
    let run = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(run.code, 0, "{run:?}");
}

#[sqlx::test(migrations = false)]
async fn an_api_address_in_use_stops_the_start_with_one_line(pool: PgPool) {
    let pool = migrated(pool).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for command in ["serve", "run"] {
        let run = herald(&pool)
            .arg(command)
            .env("HERALD_API__LISTEN", &addr)
            .run()
            .await;
        assert_eq!(run.code, 1, "{command}: {run:?}");
        assert!(
            run.stderr
                .contains(&format!("api.listen: cannot listen on {addr}")),
            "{command}: {}",
            run.stderr
        );
        assert_eq!(run.stderr.lines().count(), 1, "{command}: {}", run.stderr);
    }
}
