//! What every console response carries (a strict CSP, `nosniff`, `no-referrer`, `no-store` on
//! pages), the session cookie's attributes, and that the API's routes keep answering as the API.

use sqlx::PgPool;

use crate::client::{Session, get, set_cookie, sign_in_answer};
use crate::support::api::{Answer, Server, token};
use crate::support::migrated;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

fn assert_secure_headers(answer: &Answer, what: &str) {
    assert_eq!(answer.header("content-security-policy"), CSP, "{what}");
    assert_eq!(answer.header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(answer.header("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(answer.header("x-frame-options"), "DENY", "{what}");
}

#[sqlx::test(migrations = false)]
async fn every_console_response_carries_a_strict_csp_and_pages_are_not_stored(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;

    let unsigned = get(&server.url("/"), "", &[]).await;
    assert_eq!(unsigned.status, 303, "no session: sent to sign in");
    assert_eq!(unsigned.header("location"), "/login");
    assert_secure_headers(&unsigned, "the redirect to /login");

    let login = get(&server.url("/login"), "", &[]).await;
    assert_eq!(login.status, 200);
    assert_eq!(login.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(login.header("cache-control"), "no-store");
    assert_secure_headers(&login, "/login");
    assert!(!login.text.contains("<script"), "no script at all");
    assert!(!login.text.contains("style="), "no inline style");

    let css = get(&server.url("/console.css"), "", &[]).await;
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), "text/css; charset=utf-8");
    assert_secure_headers(&css, "/console.css");

    let session = Session::sign_in(&server, &admin).await;
    for path in [
        "/",
        "/notifications",
        "/endpoints",
        "/explain",
        "/notifications/nope",
    ] {
        let page = session.get(path).await;
        assert!([200, 404].contains(&page.status), "{path}: {page:?}");
        assert_secure_headers(&page, path);
        assert_eq!(page.header("cache-control"), "no-store", "{path}");
        assert!(!page.text.contains("<script"), "{path}");
        assert!(!page.text.contains("style="), "{path}");
    }
    let refused = session.post("/notifications/nope/retry", &[]).await;
    assert_eq!(refused.status, 403);
    assert_secure_headers(&refused, "a refusal");

    // The API's routes are the API's: problem documents, not pages.
    let unknown = get(&server.url("/v1/nothing-here"), &session.cookie, &[]).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.header("content-type"), "application/problem+json");
    let api = get(&server.url("/v1/notifications"), &session.cookie, &[]).await;
    assert_ne!(
        api.header("content-type"),
        "text/html; charset=utf-8",
        "{api:?}"
    );
    server.process.terminate().await;
}

#[sqlx::test(migrations = false)]
async fn the_session_cookie_is_httponly_strict_and_secure_behind_a_tls_proxy(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;

    let plain = sign_in_answer(&server, &admin, &[]).await;
    assert_eq!(plain.status, 303, "{plain:?}");
    assert_eq!(plain.header("location"), "/");
    let (value, header) = set_cookie(&plain, "herald_session").expect("a session cookie");
    assert_eq!(value, format!("herald_session={admin}"));
    assert_eq!(
        header,
        format!("herald_session={admin}; HttpOnly; SameSite=Strict; Path=/"),
        "on loopback without TLS: not Secure, or the browser would never send it back"
    );
    let (_, login) = set_cookie(&plain, "herald_login").expect("the nonce is cleared");
    assert!(login.contains("Max-Age=0"), "{login}");

    let proxied = sign_in_answer(&server, &admin, &[("x-forwarded-proto", "https")]).await;
    let (_, header) = set_cookie(&proxied, "herald_session").unwrap();
    assert_eq!(
        header,
        format!("herald_session={admin}; HttpOnly; SameSite=Strict; Path=/; Secure")
    );

    // Signing out clears it.
    let session = Session::sign_in(&server, &admin).await;
    let out = session.post("/logout", &[("csrf", &session.csrf)]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location"), "/login");
    let (_, cleared) = set_cookie(&out, "herald_session").unwrap();
    assert!(
        cleared.starts_with("herald_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    server.process.terminate().await;
    let log = server
        .process
        .wait(std::time::Duration::from_secs(60))
        .await;
    assert!(
        !log.stderr.contains(&admin[10..]) && !log.stdout.contains(&admin[10..]),
        "the token never reaches the log"
    );
}
