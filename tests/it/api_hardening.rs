//! What a hostile client tries against `herald serve`: bodies that stall or trickle (408, the
//! connection closed, the slot free again), payload numbers that a float would round, headers
//! given twice, a charset other than UTF-8, a method a route does not take, a NUL in a key
//! field, a revoked token brought back by SQL, and a server started as a role that cannot check
//! tokens. Each is refused with a problem naming its field, and nothing is written.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::api::{Server, assert_problem, send, token};
use crate::support::logins::Login;
use crate::support::{Cli, count_notifications, migrated};

/// Reads what the server sends until it closes the connection (or 30 s pass).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server kept the connection open: {answer:?}"
    );
    String::from_utf8_lossy(&answer).into_owned()
}

fn head(token: &str, length: usize) -> String {
    format!(
        "POST /v1/notifications HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

#[sqlx::test(migrations = false)]
async fn a_stalled_or_trickling_body_is_cut_at_body_timeout_and_frees_its_slot(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(
        &pool,
        &[
            ("HERALD_API__MAX_CONNECTIONS", "1"),
            ("HERALD_API__BODY_TIMEOUT", "1s"),
        ],
    )
    .await;

    // A body promised and never sent.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(head(&admin, 100).as_bytes())
        .await
        .unwrap();
    let answer = read_until_closed(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("api.body_timeout"), "{answer}");

    // A body sent a byte at a time, each within any idle timeout, never whole.
    let mut trickle = TcpStream::connect(server.addr).await.unwrap();
    trickle
        .write_all(head(&admin, 10_000).as_bytes())
        .await
        .unwrap();
    let (mut reader, mut writer) = trickle.into_split();
    let dripping = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(200));
        loop {
            interval.tick().await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut answer)).await;
    dripping.abort();
    assert!(read.is_ok(), "a trickling body held the connection");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // The only slot is free again.
    let health = send("GET", &server.url("/healthz"), None, &[], None).await;
    assert_eq!(health.status, 200);
    assert_eq!(count_notifications(&pool).await, 0);
}

#[sqlx::test(migrations = false)]
async fn payload_numbers_travel_exactly_as_sent(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let body = r#"{"user_id":"u","type":"t","business_id":"n","email":"a@example.com",
        "payload":{"big":123456789012345678901234567890,"precise":0.1000000000000000055511151231257827,"huge":1e400}}"#;
    let answer = send(
        "POST",
        &server.url("/v1/notifications"),
        Some(&admin),
        &[],
        Some(body.into()),
    )
    .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let stored: String = sqlx::query_scalar("select payload::text from herald.notifications")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        stored.contains("123456789012345678901234567890"),
        "{stored}"
    );
    assert!(
        stored.contains("0.1000000000000000055511151231257827"),
        "{stored}"
    );
    // A replay of the same text is a duplicate, not a conflict.
    let again = send(
        "POST",
        &server.url("/v1/notifications"),
        Some(&admin),
        &[],
        Some(body.into()),
    )
    .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.json()["status"], "duplicate");
}

#[sqlx::test(migrations = false)]
async fn headers_given_twice_a_foreign_charset_and_wrong_methods_are_refused(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let url = server.url("/v1/notifications");
    let item = json!({"user_id": "u", "type": "t", "business_id": "b", "email": "a@example.com"});
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for (name, first, second) in [
        ("idempotency-key", "k1", "k2"),
        ("content-type", "application/json", "text/plain"),
        ("authorization", "Bearer x", "Bearer y"),
    ] {
        let mut request = client.post(&url).body(item.to_string());
        if name != "authorization" {
            request = request.header("authorization", format!("Bearer {admin}"));
        }
        if name != "content-type" {
            request = request.header("content-type", "application/json");
        }
        let response = request
            .header(name, first)
            .header(name, second)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let problem: serde_json::Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(status, 400, "{name}: {problem}");
        assert_eq!(problem["field"], name, "{problem}");
    }
    let latin1 = send(
        "POST",
        &url,
        Some(&admin),
        &[("content-type", "application/json; charset=latin1")],
        Some(item.to_string()),
    )
    .await;
    assert_problem(&latin1, 415, None);
    for (method, path) in [
        ("PUT", "/v1/notifications"),
        ("POST", "/healthz"),
        ("DELETE", "/v1/stats"),
    ] {
        let answer = send(method, &server.url(path), Some(&admin), &[], None).await;
        assert_problem(&answer, 405, None);
    }
    assert_eq!(count_notifications(&pool).await, 0);
}

#[sqlx::test(migrations = false)]
async fn a_nul_is_refused_naming_its_field(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    for (body, field) in [
        (
            r#"{"user_id":"u\u0000","type":"t","business_id":"b","email":"a@example.com"}"#,
            "user_id",
        ),
        (
            r#"{"user_id":"u","type":"t\u0000","business_id":"b","email":"a@example.com"}"#,
            "type",
        ),
        (
            r#"{"user_id":"u","type":"t","business_id":"b","email":"a@example.com","payload":{"x":"\u0000"}}"#,
            "payload",
        ),
    ] {
        let answer = send(
            "POST",
            &server.url("/v1/notifications"),
            Some(&admin),
            &[],
            Some(body.into()),
        )
        .await;
        assert_problem(&answer, 400, Some(field));
    }
    assert_eq!(count_notifications(&pool).await, 0);
}

#[sqlx::test(migrations = false)]
async fn a_revocation_is_final_even_for_herald_admin(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let id: uuid::Uuid = sqlx::query_scalar("select id from herald.api_tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    let revoke = crate::support::herald(&pool)
        .args(&["tokens", "revoke", &id.to_string()])
        .run()
        .await;
    assert_eq!(revoke.code, 0, "{revoke:?}");
    let operator = Login::create(&pool, Some("herald_admin")).await;
    let as_admin = operator.pool().await;
    for sql in [
        "update herald.api_tokens set revoked_at = null",
        "update herald.api_tokens set revoked_at = revoked_at + interval '1 day'",
    ] {
        let refused = sqlx::query(sql).execute(&as_admin).await;
        assert!(refused.is_err(), "{sql} was allowed");
    }
    as_admin.close().await;
    let server = Server::start(&pool, &[]).await;
    let answer = send("GET", &server.url("/v1/stats"), Some(&admin), &[], None).await;
    assert_problem(&answer, 401, None);
    operator.drop(&pool).await;
}

#[sqlx::test(migrations = false)]
async fn serving_as_a_role_that_cannot_check_tokens_stops_the_start(pool: PgPool) {
    let pool = migrated(pool).await;
    let daemon = Login::create(&pool, Some("herald_daemon")).await;
    let run = Cli::at(&daemon.url)
        .arg("serve")
        .env(
            "HERALD_API__LISTEN",
            crate::support::scrape::free_addr().to_string(),
        )
        .run()
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("herald_admin"), "{}", run.stderr);
    daemon.drop(&pool).await;
}

#[sqlx::test(migrations = false)]
async fn unreadable_filters_are_400_and_problems_carry_no_page_rights(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    for (path, field) in [
        ("/v1/notifications?user=a%00b", "user"),
        ("/v1/notifications?type=%00", "type"),
        ("/v1/endpoints?tenant=%00", "tenant"),
    ] {
        let answer = send("GET", &server.url(path), Some(&admin), &[], None).await;
        assert_problem(&answer, 400, Some(field));
    }
    // Every problem, console routes' 405 included, forbids framing, sniffing and scripts.
    for (method, path) in [
        ("GET", "/logout"),
        ("PUT", "/login"),
        ("GET", "/v1/nothing"),
    ] {
        let answer = send(method, &server.url(path), Some(&admin), &[], None).await;
        assert!(answer.status == 404 || answer.status == 405, "{answer:?}");
        assert_eq!(
            answer.header("content-security-policy"),
            "default-src 'none'; frame-ancestors 'none'"
        );
        assert_eq!(answer.header("x-content-type-options"), "nosniff");
    }
}

#[sqlx::test(migrations = false)]
async fn a_list_that_runs_too_long_is_cut_and_says_so(pool: PgPool) {
    let pool = migrated(pool).await;
    let reader = token(&pool, "read", None).await;
    let server = Server::start(&pool, &[]).await;
    // A lock held elsewhere keeps the list waiting: the wait counts toward its timeout.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("lock table herald.intents in access exclusive mode")
        .execute(&mut *holder)
        .await
        .unwrap();
    let answer = send(
        "GET",
        &server.url("/v1/notifications"),
        Some(&reader),
        &[],
        None,
    )
    .await;
    assert_problem(&answer, 503, None);
    assert!(
        answer.json()["detail"]
            .as_str()
            .unwrap()
            .contains("narrow the filters"),
        "{answer:?}"
    );
    holder.rollback().await.unwrap();
    let after = send(
        "GET",
        &server.url("/v1/notifications"),
        Some(&reader),
        &[],
        None,
    )
    .await;
    assert_eq!(after.status, 200);
}

#[sqlx::test(migrations = false)]
async fn a_token_bound_to_the_alerts_tenant_may_not_act(pool: PgPool) {
    let pool = migrated(pool).await;
    let alerts = crate::support::endpoint(&pool, "ops").await.to_string();
    let ops = token(&pool, "admin", Some("ops")).await;
    let acme = token(&pool, "read", Some("acme")).await;
    let unbound = token(&pool, "read", None).await;
    let server = Server::start(&pool, &[("HERALD_ALERTS__ENDPOINT", &alerts)]).await;
    for path in ["/v1/notifications", &format!("/v1/endpoints/{alerts}")] {
        let refused = send("GET", &server.url(path), Some(&ops), &[], None).await;
        assert_problem(&refused, 403, None);
        assert!(
            refused.json()["detail"]
                .as_str()
                .unwrap()
                .contains("alerts.endpoint")
        );
    }
    let patch = send(
        "PATCH",
        &server.url(&format!("/v1/endpoints/{alerts}")),
        Some(&ops),
        &[],
        Some(json!({"url": "https://attacker.example.net/collect"}).to_string()),
    )
    .await;
    assert_problem(&patch, 403, None);
    let url: String = sqlx::query_scalar("select url from herald.webhook_endpoints")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(url, "https://hooks.example.com/herald");
    assert_eq!(
        send(
            "GET",
            &server.url("/v1/notifications"),
            Some(&acme),
            &[],
            None
        )
        .await
        .status,
        200
    );
    let shown = send(
        "GET",
        &server.url(&format!("/v1/endpoints/{alerts}")),
        Some(&unbound),
        &[],
        None,
    )
    .await;
    assert_eq!(shown.status, 200);
}
