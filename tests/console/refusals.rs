//! What the console refuses, over plain HTTP so that the test can send what a browser would
//! not: forms without their CSRF field (403, nothing changed), actions by a `read` token (403),
//! bad input (400 naming the field, nothing written), and another tenant's notification or
//! endpoint (the same 404 as a missing one). Each refusal is checked against the database.

use sqlx::PgPool;
use uuid::Uuid;

use crate::client::{Session, post, set_cookie, sign_in_answer};
use crate::seed::{email, endpoint_enabled, finished, state_of};
use crate::support::api::{Server, token};
use crate::support::{endpoint, migrated};

#[sqlx::test(migrations = false)]
async fn a_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let dead = finished(&pool, "default", "order-1", "dead").await;
    let pending = email(&pool, "default", "bob", "welcome", "w-1").await;
    let hook = endpoint(&pool, "default").await;
    let server = Server::start(&pool, &[]).await;
    let session = Session::sign_in(&server, &admin).await;
    let other = Session::sign_in(&server, &token(&pool, "admin", None).await).await;
    assert_ne!(
        session.csrf, other.csrf,
        "each session has its own CSRF value"
    );

    let retry = format!("/notifications/{dead}/retry");
    let cancel = format!("/notifications/{pending}/cancel");
    let disable = format!("/endpoints/{hook}/disable");
    let rotate = format!("/endpoints/{hook}/rotate-secret");
    for (path, extra) in [
        (retry.as_str(), vec![]),
        (cancel.as_str(), vec![]),
        (disable.as_str(), vec![("reason", "down")]),
        (rotate.as_str(), vec![]),
        ("/logout", vec![]),
    ] {
        for csrf in [None, Some(""), Some("forged"), Some(other.csrf.as_str())] {
            let mut fields = extra.clone();
            if let Some(csrf) = csrf {
                fields.push(("csrf", csrf));
            }
            let answer = session.post(path, &fields).await;
            assert_eq!(answer.status, 403, "{path} with csrf {csrf:?}: {answer:?}");
            assert!(
                answer.text.contains("CSRF token is missing or wrong"),
                "{path}"
            );
            assert!(
                set_cookie(&answer, "herald_session").is_none(),
                "{path}: still signed in"
            );
        }
    }
    assert_eq!(state_of(&pool, dead).await, "dead");
    assert_eq!(state_of(&pool, pending).await, "pending");
    assert_eq!(endpoint_enabled(&pool, hook).await, (true, None));
    let secret_changed: bool = sqlx::query_scalar(
        "select previous_secret is not null from herald.webhook_endpoints where id = $1",
    )
    .bind(hook)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!secret_changed, "the secret was not rotated");

    // With the session's own value the same forms work.
    let answer = session.post(&retry, &[("csrf", &session.csrf)]).await;
    assert_eq!(answer.status, 303, "{answer:?}");
    assert_eq!(
        answer.header("location"),
        format!("/notifications/{dead}?done=retry")
    );
    assert_eq!(state_of(&pool, dead).await, "pending");
    // Once more, now that it is pending: a conflict with its state, shown on its page.
    let answer = session.post(&retry, &[("csrf", &session.csrf)]).await;
    assert_eq!(answer.status, 409, "{answer:?}");
    assert!(
        answer
            .text
            .contains("Cannot retry: the notification is pending")
    );

    // The sign-in form without its nonce cookie (a form posted from another site) signs no one in.
    let answer = post(
        &server.url("/login"),
        "",
        &[],
        &[("token", &admin), ("csrf", "anything")],
    )
    .await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(set_cookie(&answer, "herald_session").is_none());
    server.process.terminate().await;
}

#[sqlx::test(migrations = false)]
async fn a_read_token_may_look_but_its_actions_are_403(pool: PgPool) {
    let pool = migrated(pool).await;
    let reader = token(&pool, "read", None).await;
    let dead = finished(&pool, "default", "order-1", "dead").await;
    let hook = endpoint(&pool, "default").await;
    let server = Server::start(&pool, &[]).await;
    let session = Session::sign_in(&server, &reader).await;

    let page = session.get(&format!("/notifications/{dead}")).await;
    assert_eq!(page.status, 200);
    assert!(
        !page.text.contains("/retry"),
        "no action buttons for a reader"
    );
    let page = session.get("/endpoints").await;
    assert!(page.text.contains(&hook.to_string()));
    assert!(
        !page.text.contains("/disable"),
        "no action buttons for a reader"
    );

    for path in [
        format!("/notifications/{dead}/retry"),
        format!("/endpoints/{hook}/disable"),
        format!("/endpoints/{hook}/reset"),
    ] {
        let answer = session
            .post(&path, &[("csrf", &session.csrf), ("reason", "x")])
            .await;
        assert_eq!(answer.status, 403, "{path}: {answer:?}");
        assert!(answer.text.contains("this token may only read"), "{path}");
    }
    assert_eq!(state_of(&pool, dead).await, "dead");
    assert_eq!(endpoint_enabled(&pool, hook).await, (true, None));

    // An enqueue token may not read: it cannot sign in.
    let enqueuer = token(&pool, "enqueue", None).await;
    let answer = sign_in_answer(&server, &enqueuer, &[]).await;
    assert_eq!(answer.status, 403);
    assert!(answer.text.contains("this token may only enqueue"));
    assert!(set_cookie(&answer, "herald_session").is_none());
    server.process.terminate().await;
}

#[sqlx::test(migrations = false)]
async fn bad_input_is_a_400_naming_the_field_and_writes_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let hook = endpoint(&pool, "default").await;
    let server = Server::start(&pool, &[]).await;
    let session = Session::sign_in(&server, &admin).await;

    for (path, field) in [
        ("/notifications?state=lost", "state: must be one of"),
        ("/notifications?before=not-a-uuid", "before: is not a UUID"),
    ] {
        let page = session.get(path).await;
        assert_eq!(page.status, 400, "{path}");
        assert!(page.text.contains(field), "{path}: {}", page.text);
        assert!(!page.text.contains("panicked"), "{path}");
    }
    let csrf = session.csrf.as_str();
    for (fields, line) in [
        (
            vec![
                ("user_id", "u"),
                ("type", "t"),
                ("business_id", "b"),
                ("payload", "{nope"),
            ],
            "payload: is not JSON",
        ),
        (
            vec![("user_id", ""), ("type", "t"), ("business_id", "b")],
            "user_id: must not be empty",
        ),
        (
            vec![
                ("user_id", "u"),
                ("type", "t"),
                ("business_id", "b"),
                ("payload", "{}"),
                ("webhook", "x"),
            ],
            "webhook: is not a UUID",
        ),
    ] {
        let mut fields = fields;
        fields.push(("csrf", csrf));
        let page = session.post("/explain", &fields).await;
        assert_eq!(page.status, 400, "{fields:?}: {page:?}");
        assert!(page.text.contains(line), "{line}: {}", page.text);
    }
    let page = session
        .post(
            &format!("/endpoints/{hook}/disable"),
            &[("csrf", csrf), ("reason", " ")],
        )
        .await;
    assert_eq!(page.status, 400);
    assert!(page.text.contains("reason: say why"), "{}", page.text);
    assert_eq!(endpoint_enabled(&pool, hook).await, (true, None));

    let refused: i64 = sqlx::query_scalar("select count(*) from herald.notifications")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(refused, 0, "explain writes nothing");
    server.process.terminate().await;
}

#[sqlx::test(migrations = false)]
async fn another_tenants_notification_or_endpoint_is_the_same_404_as_a_missing_one(pool: PgPool) {
    let pool = migrated(pool).await;
    let acme = token(&pool, "admin", Some("acme")).await;
    let own = email(&pool, "acme", "ann", "welcome", "w-1").await;
    let theirs = finished(&pool, "globex", "order-9", "dead").await;
    let their_hook = endpoint(&pool, "globex").await;
    let server = Server::start(&pool, &[]).await;
    let session = Session::sign_in(&server, &acme).await;

    let missing = session
        .get(&format!("/notifications/{}", Uuid::now_v7()))
        .await;
    let other = session.get(&format!("/notifications/{theirs}")).await;
    assert_eq!(missing.status, 404);
    assert_eq!(other.status, 404);
    assert_eq!(other.text, missing.text, "nothing tells the two apart");
    assert!(!other.text.contains(&theirs.to_string()));

    let missing = session
        .post(
            &format!("/notifications/{}/retry", Uuid::now_v7()),
            &[("csrf", &session.csrf)],
        )
        .await;
    let other = session
        .post(
            &format!("/notifications/{theirs}/retry"),
            &[("csrf", &session.csrf)],
        )
        .await;
    assert_eq!((missing.status, other.status), (404, 404));
    assert_eq!(other.text, missing.text);
    assert_eq!(state_of(&pool, theirs).await, "dead", "not retried");

    let other = session
        .post(
            &format!("/endpoints/{their_hook}/disable"),
            &[("csrf", &session.csrf), ("reason", "x")],
        )
        .await;
    assert_eq!(other.status, 404);
    assert_eq!(endpoint_enabled(&pool, their_hook).await, (true, None));

    // Its lists show its tenant alone, whatever tenant the filter names.
    let list = session.get("/notifications?tenant=globex").await;
    assert_eq!(list.status, 200);
    assert!(list.text.contains(&own.to_string()));
    assert!(!list.text.contains(&theirs.to_string()));
    assert!(
        !session
            .get("/endpoints")
            .await
            .text
            .contains(&their_hook.to_string())
    );
    server.process.terminate().await;
}

#[sqlx::test(migrations = false)]
async fn a_form_too_large_or_too_slow_is_refused_and_does_nothing(pool: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let dead = finished(&pool, "default", "order-1", "dead").await;
    let server = Server::start(
        &pool,
        &[
            ("HERALD_API__BODY_TIMEOUT", "1s"),
            ("HERALD_API__MAX_BODY_BYTES", "4096"),
        ],
    )
    .await;
    let session = Session::sign_in(&server, &admin).await;
    let retry = format!("/notifications/{dead}/retry");

    let padding = "x".repeat(5000);
    let answer = session
        .post(&retry, &[("csrf", &session.csrf), ("padding", &padding)])
        .await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(state_of(&pool, dead).await, "dead");

    // The head arrives, then a body that stops short of its Content-Length.
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let body = format!("csrf={}", session.csrf);
    let head = format!(
        "POST {retry} HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        session.cookie,
        body.len() + 10
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        socket.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "the server ends the request: {answer}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(state_of(&pool, dead).await, "dead", "nothing done");
    server.process.terminate().await;
}
