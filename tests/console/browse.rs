//! What an operator does in the console, in headless Chromium: each test signs in through the
//! form, clicks what a person would click and asserts what the page then shows. Screenshots of
//! every page land in `target/console-screenshots/`.

use std::time::Duration;

use herald::Notification;
use serde_json::json;
use sqlx::PgPool;

use crate::seed::{attempt, email, endpoint_enabled, finished, state_of};
use crate::support::api::{Server, token};
use crate::support::browser::Browser;
use crate::support::daemon::{Daemon, FAST, run_until_idle};
use crate::support::receiver::{Receiver, Reply};
use crate::support::{endpoint_at, herald, migrated, wait_for_sql};

/// Signs in through the form and waits for the overview.
async fn sign_in(browser: &Browser, server: &Server, token: &str) {
    browser.goto(&server.url("/login")).await;
    browser.fill("#token", token).await;
    browser.click("#sign-in").await;
    browser.find("#counts").await;
}

#[sqlx::test(migrations = false)]
async fn an_admin_signs_in_and_sees_the_counts_and_the_last_hour(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    for i in 0..3 {
        email(&pool, "default", "ann", "welcome", &format!("w-{i}")).await;
    }
    let mut minute = 0;
    for i in 0..7 {
        let id = finished(&pool, "default", &format!("order-{i}"), "delivered").await;
        attempt(&pool, id, 1, "delivered", minute % 50 + 2).await;
        minute += 7;
    }
    for i in 0..2 {
        let id = finished(&pool, "default", &format!("late-{i}"), "dead").await;
        attempt(&pool, id, 1, "failed", 12 + i).await;
        attempt(&pool, id, 2, "failed", 5 + i).await;
    }
    let server = Server::start(&pool, &[]).await;
    let browser = Browser::start().await;

    browser.goto(&server.url("/")).await;
    browser.find("#login").await;
    assert_eq!(
        browser.path().await,
        "/login",
        "no session: the sign-in form"
    );
    browser.screenshot("login").await;
    sign_in(&browser, &server, &admin).await;
    assert_eq!(browser.path().await, "/");
    assert_eq!(browser.text("#count-pending .tile-number").await, "3");
    assert_eq!(browser.text("#count-delivered .tile-number").await, "7");
    assert_eq!(browser.text("#count-dead .tile-number").await, "2");
    assert_eq!(browser.text("#count-cancelled .tile-number").await, "0");
    assert_eq!(browser.text("#last-hour-delivered").await, "7");
    assert_eq!(browser.text("#last-hour-failed").await, "4");
    assert!(
        browser
            .text("#oldest-due")
            .await
            .contains("has been due for")
    );
    assert_eq!(browser.text("#role").await, "admin");
    browser.screenshot("overview").await;

    // A tile leads to its notifications.
    browser.click("#count-dead").await;
    browser.find("#notifications").await;
    assert_eq!(browser.count("#notifications tbody tr").await, 2);

    browser.click("#sign-out").await;
    browser.find("#login").await;
    browser.goto(&server.url("/")).await;
    browser.find("#login").await;
    assert_eq!(browser.path().await, "/login", "signed out");
    browser.close().await;
    server.process.terminate().await;
}

#[sqlx::test(migrations = false)]
async fn a_notification_is_found_by_filters_and_by_its_key(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let wanted = finished(&pool, "default", "order-1002", "dead").await;
    finished(&pool, "default", "order-1003", "delivered").await;
    email(&pool, "default", "bob", "welcome", "w-1").await;
    email(&pool, "acme", "carol", "order_shipped", "order-7").await;
    let bulk: Vec<Notification> = (0..55)
        .map(|i| {
            Notification::email("dave", "digest", format!("d-{i:02}"), "dave@example.com")
                .payload(json!({"week": i}))
        })
        .collect();
    herald::enqueue_many(&pool, &bulk).await.unwrap();
    let server = Server::start(&pool, &[]).await;
    let browser = Browser::start().await;
    sign_in(&browser, &server, &admin).await;

    browser.goto(&server.url("/notifications")).await;
    let rows = "#notifications tbody tr";
    assert_eq!(browser.count(rows).await, 50, "a page is 50 rows");
    browser.click("#next-page").await;
    browser.wait_for_text("#notifications", "order-1002").await;
    assert_eq!(browser.count(rows).await, 59 - 50);
    assert!(!browser.has("#next-page").await, "the last page");
    browser.screenshot("notifications").await;

    // By state and type.
    browser.goto(&server.url("/notifications")).await;
    browser
        .find("#filter-state")
        .await
        .select_by_value("dead")
        .await
        .unwrap();
    browser.fill("#filter-type", "order_shipped").await;
    browser.click("#filter").await;
    browser.wait_for_text("#notifications", "order-1002").await;
    assert_eq!(browser.count(rows).await, 1);
    browser.screenshot("notifications-filtered").await;

    // By key (business_id), then to the notification.
    browser.goto(&server.url("/notifications")).await;
    browser.fill("#filter-key", "order-1002").await;
    browser.click("#filter").await;
    browser.wait_for_text("#notifications", "order-1002").await;
    assert_eq!(browser.count(rows).await, 1);
    browser.click(".key-link").await;
    browser.find("#payload").await;
    assert_eq!(browser.path().await, format!("/notifications/{wanted}"));
    assert!(browser.text("#state").await.contains("dead"));
    assert!(
        browser
            .text("#payload")
            .await
            .contains("\"order\": \"order-1002\"")
    );

    // By user and tenant.
    browser.goto(&server.url("/notifications")).await;
    browser.fill("#filter-user", "carol").await;
    browser.fill("#filter-tenant", "acme").await;
    browser.click("#filter").await;
    browser.wait_for_text("#notifications", "order-7").await;
    assert_eq!(browser.count(rows).await, 1);
    browser.close().await;
    server.process.terminate().await;
}

#[sqlx::test(migrations = false)]
async fn a_dead_notification_is_retried_and_then_delivered(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    // The receiver fails the first delivery, then accepts: one attempt allowed, so it dies.
    let receiver = Receiver::start(vec![Reply::status(503).body("maintenance")]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    let n = Notification::webhook("user-42", "invoice.paid", "inv-77", hook)
        .payload(json!({"invoice": "inv-77", "amount": 1200}))
        .max_attempts(1);
    let id = herald::enqueue(&pool, &n).await.unwrap().id();
    let run = run_until_idle(&pool, FAST).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(state_of(&pool, id).await, "dead");

    let server = Server::start(&pool, &[]).await;
    let browser = Browser::start().await;
    sign_in(&browser, &server, &admin).await;
    let page = server.url(&format!("/notifications/{id}"));
    browser.goto(&page).await;
    assert!(browser.text("#state").await.contains("dead"));
    assert!(browser.text("#timeline").await.contains("status 503"));
    assert!(browser.text("#last-error").await.contains("maintenance"));
    browser.screenshot("notification-dead").await;

    assert!(
        !browser.has("#cancel").await,
        "a dead notification cannot be cancelled"
    );

    browser.click("#retry").await;
    browser.wait_for_text("#notice", "Retried").await;
    assert!(browser.text("#state").await.contains("pending"));
    // The page still offers to cancel it; the daemon delivers it first, and the click that
    // comes too late is refused with the reason.
    let daemon = Daemon::spawn(&pool, &[], FAST);
    wait_for_sql(
        &pool,
        "the retried notification delivered",
        "select state = 'delivered' from herald.notifications",
    )
    .await;
    browser.click("#cancel").await;
    browser
        .wait_for_text("#error", "Cannot cancel: the notification is delivered")
        .await;
    assert!(browser.text("#state").await.contains("delivered"));
    assert!(!browser.has("#retry").await && !browser.has("#cancel").await);
    let timeline = browser.text("#timeline").await;
    assert!(timeline.contains("Attempt 2"), "{timeline}");
    assert!(timeline.contains("delivered"), "{timeline}");
    assert_eq!(
        receiver.requests().len(),
        2,
        "delivered once more, by the daemon"
    );
    browser.screenshot("notification-delivered").await;
    browser.close().await;
    daemon.terminate().await;
    daemon.wait(Duration::from_secs(60)).await;
    server.process.terminate().await;
}

#[sqlx::test(migrations = false)]
async fn an_endpoint_is_disabled_with_a_reason_enabled_and_its_secret_rotated(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let hook = endpoint_at(&pool, "default", "https://hooks.example.com/orders").await;
    endpoint_at(&pool, "acme", "https://acme.example.net/herald").await;
    let server = Server::start(&pool, &[]).await;
    let browser = Browser::start().await;
    sign_in(&browser, &server, &admin).await;

    browser.goto(&server.url("/endpoints")).await;
    let card = format!("#endpoint-{hook}");
    assert!(
        browser
            .text(&format!("{card} .endpoint-state"))
            .await
            .contains("enabled")
    );
    browser
        .fill(&format!("{card} .reason"), "receiver migrating")
        .await;
    browser.click(&format!("{card} .disable")).await;
    browser.wait_for_text("#notice", "disabled").await;
    assert_eq!(
        browser.text(&format!("{card} .endpoint-state")).await,
        "disabled"
    );
    assert!(
        browser
            .text(&format!("{card} .disabled-reason"))
            .await
            .contains("receiver migrating")
    );
    assert_eq!(
        endpoint_enabled(&pool, hook).await,
        (false, Some("receiver migrating".to_owned()))
    );
    browser.screenshot("endpoints").await;

    browser.click(&format!("{card} .enable")).await;
    browser.wait_for_text("#notice", "enabled").await;
    assert_eq!(endpoint_enabled(&pool, hook).await, (true, None));

    browser.click(&format!("{card} .rotate")).await;
    let secret = browser.text("#secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(browser.text("#old-valid-until").await.contains("UTC"));
    browser.screenshot("secret-rotated").await;
    // Shown once: the endpoints page does not show it again.
    browser.goto(&server.url("/endpoints")).await;
    browser.find(&card).await;
    assert!(!browser.client.source().await.unwrap().contains(&secret));
    browser.close().await;
    server.process.terminate().await;
}

#[sqlx::test(migrations = false)]
async fn a_wrong_revoked_or_enqueue_token_cannot_sign_in_and_revoking_ends_a_session(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let enqueuer = token(&pool, "enqueue", None).await;
    let server = Server::start(&pool, &[]).await;
    let browser = Browser::start().await;

    browser.goto(&server.url("/login")).await;
    browser.fill("#token", "hrld_not-a-token").await;
    browser.click("#sign-in").await;
    browser.wait_for_text("#error", "not a valid token").await;
    browser.screenshot("login-refused").await;

    browser.fill("#token", &enqueuer).await;
    browser.click("#sign-in").await;
    browser.wait_for_text("#error", "may only enqueue").await;

    sign_in(&browser, &server, &admin).await;
    let id = herald::api::token::parse(&admin).unwrap().id.to_string();
    let revoked = herald(&pool).args(&["tokens", "revoke", &id]).run().await;
    assert_eq!(revoked.code, 0, "{revoked:?}");
    browser.goto(&server.url("/notifications")).await;
    browser.wait_for_text("#notice", "Your session ended").await;
    assert_eq!(browser.path().await, "/login");

    browser.fill("#token", &admin).await;
    browser.click("#sign-in").await;
    browser.wait_for_text("#error", "not a valid token").await;
    browser.close().await;
    server.process.terminate().await;
}

#[sqlx::test(migrations = false)]
async fn a_reader_sees_no_buttons_and_a_tenant_token_sees_its_tenant_alone(pool: PgPool) {
    let pool = migrated(pool).await;
    let reader = token(&pool, "read", Some("acme")).await;
    let own = finished(&pool, "acme", "order-1", "dead").await;
    let theirs = finished(&pool, "globex", "order-2", "dead").await;
    endpoint_at(&pool, "acme", "https://acme.example.net/herald").await;
    let server = Server::start(&pool, &[]).await;
    let browser = Browser::start().await;
    sign_in(&browser, &server, &reader).await;
    assert_eq!(browser.text("#tenant").await, "tenant acme");
    assert_eq!(
        browser.text("#count-dead .tile-number").await,
        "1",
        "its tenant's count"
    );

    browser
        .goto(&server.url(&format!("/notifications/{own}")))
        .await;
    browser.find("#payload").await;
    assert!(
        !browser.has("#actions").await,
        "a reader gets no action buttons"
    );
    assert!(!browser.has("#retry").await);
    browser.goto(&server.url("/endpoints")).await;
    browser.find(".endpoint").await;
    assert!(!browser.has(".disable").await);
    assert!(!browser.has(".rotate").await);

    browser
        .goto(&server.url(&format!("/notifications/{theirs}")))
        .await;
    assert_eq!(browser.text("#message-title").await, "Not found");
    browser.screenshot("not-found").await;

    browser.goto(&server.url("/notifications")).await;
    let tenant = browser.find("#filter-tenant").await;
    assert_eq!(tenant.prop("value").await.unwrap().as_deref(), Some("acme"));
    assert!(browser.text("#notifications").await.contains("order-1"));
    assert!(!browser.text("#notifications").await.contains("order-2"));
    browser.close().await;
    server.process.terminate().await;
}

#[sqlx::test(migrations = false)]
async fn explain_tells_a_duplicate_from_a_conflict(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let held = email(&pool, "default", "ann", "order_shipped", "order-1001").await;
    let server = Server::start(&pool, &[]).await;
    let browser = Browser::start().await;
    sign_in(&browser, &server, &admin).await;

    browser.goto(&server.url("/explain")).await;
    browser.fill("#user-field", "ann").await;
    browser.fill("#type-field", "order_shipped").await;
    browser.fill("#key-field", "order-1001").await;
    browser
        .fill(
            "#payload-field",
            r#"{"order": "order-1001", "total": "43.00", "items": [{"sku": "A-1", "qty": 2}]}"#,
        )
        .await;
    browser.fill("#email-field", "ann@example.com").await;
    browser.click("#explain-button").await;
    browser.wait_for_text("#verdict", "conflict").await;
    assert!(browser.text("#verdict").await.contains("total"));
    assert!(browser.text("#held-by").await.contains(&held.to_string()));
    browser.screenshot("explain").await;

    browser
        .fill(
            "#payload-field",
            r#"{"items": [{"qty": 2, "sku": "A-1"}], "total": "42.00", "order": "order-1001"}"#,
        )
        .await;
    browser.click("#explain-button").await;
    browser.wait_for_text("#verdict", "duplicate").await;
    browser.close().await;
    server.process.terminate().await;
}
