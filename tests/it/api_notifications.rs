//! `/v1/notifications` beyond the single enqueue: batches (results in input order, all or
//! nothing, a refusal naming its `item`), the list (filters, `limit`, the cursor), one
//! notification with its attempt log, retry and cancel (409 in a state that does not allow
//! them), and the boundaries of roles and tenants on each (403, or 404 exactly as for a missing
//! notification), with nothing changed by a refusal.

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::api::{Answer, Server, assert_problem, send, token};
use crate::support::{At, count_notifications, finish, migrated};

fn item(tenant: &str, business_id: &str) -> Value {
    json!({"tenant": tenant, "user_id": "u1", "type": "order_shipped",
           "business_id": business_id, "email": "ann@example.com", "payload": {"n": 1}})
}

async fn post(server: &Server, token: &str, path: &str, body: &Value) -> Answer {
    send(
        "POST",
        &server.url(path),
        Some(token),
        &[],
        Some(body.to_string()),
    )
    .await
}

async fn get(server: &Server, token: &str, path: &str) -> Answer {
    send("GET", &server.url(path), Some(token), &[], None).await
}

async fn state_of(pool: &PgPool, id: &str) -> String {
    sqlx::query_scalar("select state from herald.notifications where id = $1::uuid")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_batch_answers_in_input_order_and_is_all_or_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let acme = token(&pool, "enqueue", Some("acme")).await;
    let server = Server::start(&pool, &[]).await;
    let path = "/v1/notifications/batch";

    let first = post(&server, &admin, "/v1/notifications", &item("default", "b2")).await;
    assert_eq!(first.status, 201);
    let batch = json!([
        item("default", "b1"),
        item("default", "b2"),
        item("default", "b3")
    ]);
    let answer = post(&server, &admin, path, &batch).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let results = answer.json();
    let statuses: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["created", "duplicate", "created"]);
    assert_eq!(results[1]["id"], first.json()["id"]);
    assert_eq!(count_notifications(&pool).await, 3);

    // One refusal refuses the batch, naming the item; nothing of it is written.
    let mut conflicting = item("default", "b1");
    conflicting["email"] = json!("bob@example.com");
    let refused = post(
        &server,
        &admin,
        path,
        &json!([item("default", "b4"), conflicting]),
    )
    .await;
    assert_problem(&refused, 422, None);
    assert_eq!(refused.json()["item"], 1);
    assert_eq!(refused.json()["differs"], "destination");
    let mut invalid = item("default", "b5");
    invalid["type"] = json!("");
    let refused = post(
        &server,
        &admin,
        path,
        &json!([item("default", "b6"), invalid]),
    )
    .await;
    assert_problem(&refused, 400, Some("type"));
    assert_eq!(refused.json()["item"], 1);
    let refused = post(&server, &admin, path, &json!([item("default", "b7"), 5])).await;
    assert_problem(&refused, 400, Some("body"));
    assert_eq!(refused.json()["item"], 1);
    let refused = post(&server, &admin, path, &item("default", "b8")).await;
    assert_problem(&refused, 400, Some("body"));
    let refused = send(
        "POST",
        &server.url(path),
        Some(&admin),
        &[("Idempotency-Key", "k")],
        Some(json!([item("default", "b9")]).to_string()),
    )
    .await;
    assert_problem(&refused, 400, Some("Idempotency-Key"));
    // A tenant-bound token: its own tenant when none is named, 403 naming the item otherwise.
    let mut unnamed = item("x", "c1");
    unnamed.as_object_mut().unwrap().remove("tenant");
    let refused = post(&server, &acme, path, &json!([unnamed, item("other", "c2")])).await;
    assert_problem(&refused, 403, Some("tenant"));
    assert_eq!(refused.json()["item"], 1);
    assert_eq!(count_notifications(&pool).await, 3);
    let answer = post(&server, &acme, path, &json!([unnamed])).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let tenant: String =
        sqlx::query_scalar("select tenant from herald.notifications where business_id = 'c1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(tenant, "acme");
    let reader = token(&pool, "read", None).await;
    assert_problem(
        &post(&server, &reader, path, &json!([item("default", "r1")])).await,
        403,
        None,
    );
    assert_eq!(count_notifications(&pool).await, 4);
}

#[sqlx::test(migrations = false)]
async fn the_list_filters_pages_with_a_cursor_and_refuses_bad_parameters(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let answer = post(
            &server,
            &admin,
            "/v1/notifications",
            &item("default", &format!("p{n}")),
        )
        .await;
        ids.push(answer.json()["id"].as_str().unwrap().to_owned());
    }
    post(&server, &admin, "/v1/notifications", &item("acme", "q1")).await;
    ids.reverse(); // newest first

    let mut seen = Vec::new();
    let mut path = "/v1/notifications?tenant=default&limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = get(&server, &admin, &path).await;
        assert_eq!(page.status, 200, "{page:?}");
        let page = page.json();
        pages += 1;
        for n in page["items"].as_array().unwrap() {
            assert_eq!(n["tenant"], "default");
            seen.push(n["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/v1/notifications?tenant=default&limit=2&cursor={cursor}")
            }
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);

    let filtered = get(
        &server,
        &admin,
        "/v1/notifications?state=pending&type=order_shipped&user=u1&business_id=p3",
    )
    .await;
    let items = filtered.json()["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1, "{items}");
    assert_eq!(items[0]["business_id"], "p3");
    let none = get(&server, &admin, "/v1/notifications?state=dead").await;
    assert_eq!(none.json(), json!({"items": [], "next_cursor": null}));

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("state=lost", "state"),
        ("cursor=nope", "cursor"),
        ("user_id=u1", "user_id"),
        ("state=dead&state=pending", "state"),
    ] {
        let answer = get(&server, &admin, &format!("/v1/notifications?{query}")).await;
        assert_problem(&answer, 400, Some(field));
    }
    let largest = get(&server, &admin, "/v1/notifications?limit=500").await;
    assert_eq!(largest.status, 200);
}

#[sqlx::test(migrations = false)]
async fn one_notification_shows_its_attempt_log(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let created = post(&server, &admin, "/v1/notifications", &item("default", "s1")).await;
    let location = created.header("location");
    let id = created.json()["id"].as_str().unwrap().to_owned();
    sqlx::query(
        "insert into herald.attempts (notification_id, attempt, started_at, finished_at, outcome, status, error)
         values ($1::uuid, 1, now(), now(), 'failed', 503, 'HTTP 503')",
    )
    .bind(&id)
    .execute(&pool)
    .await
    .unwrap();
    let shown = get(&server, &admin, &location).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    let shown = shown.json();
    assert_eq!(shown["id"], id);
    assert_eq!(shown["business_id"], "s1");
    assert_eq!(shown["payload"], json!({"n": 1}));
    assert_eq!(shown["attempt_log"][0]["outcome"], "failed");
    assert_eq!(shown["attempt_log"][0]["status"], 503);
    assert_eq!(shown["attempt_log"][0]["error"], "HTTP 503");
}

#[sqlx::test(migrations = false)]
async fn retry_and_cancel_move_only_states_that_allow_them(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let id = post(&server, &admin, "/v1/notifications", &item("default", "a1"))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let refused = post(
        &server,
        &admin,
        &format!("/v1/notifications/{id}/retry"),
        &json!({}),
    )
    .await;
    assert_problem(&refused, 409, None);
    assert_eq!(refused.json()["state"], "pending");
    let cancelled = post(
        &server,
        &admin,
        &format!("/v1/notifications/{id}/cancel"),
        &json!({}),
    )
    .await;
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    assert_eq!(cancelled.json()["state"], "cancelled");
    assert_eq!(state_of(&pool, &id).await, "cancelled");
    let refused = post(
        &server,
        &admin,
        &format!("/v1/notifications/{id}/cancel"),
        &json!({}),
    )
    .await;
    assert_problem(&refused, 409, None);
    assert_eq!(refused.json()["state"], "cancelled");
    let retried = post(
        &server,
        &admin,
        &format!("/v1/notifications/{id}/retry"),
        &json!({}),
    )
    .await;
    assert_eq!(retried.status, 200, "{retried:?}");
    assert_eq!(retried.json()["state"], "pending");
    assert_eq!(retried.json()["attempts"], 0);

    let uuid = Uuid::parse_str(&id).unwrap();
    finish(&pool, uuid, "delivered", At::Now).await;
    let refused = post(
        &server,
        &admin,
        &format!("/v1/notifications/{id}/retry"),
        &json!({}),
    )
    .await;
    assert_problem(&refused, 409, None);
    assert_eq!(refused.json()["state"], "delivered");
    assert_eq!(state_of(&pool, &id).await, "delivered");
    let missing = post(
        &server,
        &admin,
        &format!("/v1/notifications/{}/retry", Uuid::now_v7()),
        &json!({}),
    )
    .await;
    assert_problem(&missing, 404, None);
}

#[sqlx::test(migrations = false)]
async fn roles_and_tenants_bound_reads_and_actions(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let reader = token(&pool, "read", None).await;
    let enqueuer = token(&pool, "enqueue", None).await;
    let acme_admin = token(&pool, "admin", Some("acme")).await;
    let server = Server::start(&pool, &[]).await;
    let other = post(&server, &admin, "/v1/notifications", &item("globex", "t1"))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let own = post(&server, &admin, "/v1/notifications", &item("acme", "t2"))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The enqueue role reads nothing; the read role changes nothing.
    assert_problem(
        &get(&server, &enqueuer, "/v1/notifications").await,
        403,
        None,
    );
    assert_problem(
        &get(&server, &enqueuer, &format!("/v1/notifications/{own}")).await,
        403,
        None,
    );
    assert_eq!(
        get(&server, &reader, &format!("/v1/notifications/{own}"))
            .await
            .status,
        200
    );
    for action in ["retry", "cancel"] {
        let path = format!("/v1/notifications/{own}/{action}");
        assert_problem(&post(&server, &reader, &path, &json!({})).await, 403, None);
        assert_problem(
            &post(&server, &enqueuer, &path, &json!({})).await,
            403,
            None,
        );
    }
    assert_eq!(state_of(&pool, &own).await, "pending");

    // Another tenant's notification is missing, word for word but for the id.
    let missing_id = Uuid::now_v7().to_string();
    let missing = get(
        &server,
        &acme_admin,
        &format!("/v1/notifications/{missing_id}"),
    )
    .await;
    let hidden = get(&server, &acme_admin, &format!("/v1/notifications/{other}")).await;
    assert_problem(&hidden, 404, None);
    assert_eq!(missing.status, hidden.status);
    assert_eq!(
        missing.json()["detail"]
            .as_str()
            .unwrap()
            .replace(&missing_id, "ID"),
        hidden.json()["detail"]
            .as_str()
            .unwrap()
            .replace(&other, "ID")
    );
    for action in ["retry", "cancel"] {
        let answer = post(
            &server,
            &acme_admin,
            &format!("/v1/notifications/{other}/{action}"),
            &json!({}),
        )
        .await;
        assert_problem(&answer, 404, None);
    }
    assert_eq!(state_of(&pool, &other).await, "pending");
    // The list holds only its tenant's; naming another is 403.
    let listed = get(&server, &acme_admin, "/v1/notifications").await.json();
    let tenants: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["acme"]);
    assert_problem(
        &get(&server, &acme_admin, "/v1/notifications?tenant=globex").await,
        403,
        Some("tenant"),
    );
    let cancelled = post(
        &server,
        &acme_admin,
        &format!("/v1/notifications/{own}/cancel"),
        &json!({}),
    )
    .await;
    assert_eq!(cancelled.status, 200);
}
