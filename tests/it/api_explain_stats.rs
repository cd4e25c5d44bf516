//! `POST /v1/explain` and `GET /v1/stats` against a real `herald serve`: the verdicts (new,
//! duplicate, conflict and where it differs, the payload alone, no verdict), the same answer
//! `herald explain --json` gives, refusals naming the field, the tenant a token may explain in;
//! the numbers of `herald stats --json`, every state present, and who may read them. Neither
//! route writes anything.

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::api::{Answer, Server, assert_problem, send, token};
use crate::support::{
    At, Key, count_notifications, endpoint, finish, herald, migrated, sorted_keys,
};

/// The members of an explanation, sorted.
const EXPLANATION_KEYS: [&str; 8] = [
    "compared",
    "dedup_window_ends_at",
    "differences",
    "held",
    "key",
    "notification",
    "retention_seconds",
    "verdict",
];

/// `sweeper.retention`'s default, 30 days, in seconds.
const RETENTION: u64 = 30 * 24 * 3600;

/// The key every test explains, with `rest` merged in.
fn item(rest: Value) -> Value {
    let mut item = json!({"user_id": "u1", "type": "order_shipped", "business_id": "order-1"});
    for (name, value) in rest.as_object().unwrap() {
        item[name] = value.clone();
    }
    item
}

async fn explain_answer(server: &Server, token: Option<&str>, body: &Value) -> Answer {
    send(
        "POST",
        &server.url("/v1/explain"),
        token,
        &[],
        Some(body.to_string()),
    )
    .await
}

/// `POST /v1/explain`; asserts 200 and the explanation's members, and returns it.
async fn explain(server: &Server, token: &str, body: &Value) -> Value {
    let answer = explain_answer(server, Some(token), body).await;
    assert_eq!(answer.status, 200, "{body}: {answer:?}");
    assert_eq!(answer.header("content-type"), "application/json");
    let explanation = answer.json();
    assert_eq!(sorted_keys(&explanation), EXPLANATION_KEYS, "{explanation}");
    explanation
}

/// `POST /v1/notifications`; asserts 201 and returns the new id.
async fn enqueue(server: &Server, token: &str, body: &Value) -> String {
    let answer = send(
        "POST",
        &server.url("/v1/notifications"),
        Some(token),
        &[],
        Some(body.to_string()),
    )
    .await;
    assert_eq!(answer.status, 201, "{body}: {answer:?}");
    answer.json()["id"].as_str().unwrap().to_owned()
}

/// `(verdict, compared, differences)` of an explanation.
fn judged(e: &Value) -> (Value, Value, Value) {
    (
        e["verdict"].clone(),
        e["compared"].clone(),
        e["differences"].clone(),
    )
}

/// Every notification as stored, to compare before and after a request that must not write.
async fn notifications(pool: &PgPool) -> Value {
    sqlx::query_scalar(
        "select coalesce(jsonb_agg(to_jsonb(n) order by n.id), '[]'::jsonb)
         from herald.notifications n",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = false)]
async fn explain_judges_an_intent_as_new_then_duplicate_or_conflict(pool: PgPool) {
    let pool = migrated(pool).await;
    let reader = token(&pool, "read", None).await;
    let enqueuer = token(&pool, "enqueue", None).await;
    let webhook = endpoint(&pool, "default").await.to_string();
    let server = Server::start(&pool, &[]).await;
    let intent = item(json!({"email": "ann@example.com", "payload": {"order": 1}}));

    let free = explain(&server, &reader, &intent).await;
    assert_eq!(
        free,
        json!({
            "key": {"tenant": "default", "user_id": "u1", "type": "order_shipped",
                    "business_id": "order-1"},
            "held": false,
            "notification": null,
            "retention_seconds": RETENTION,
            "dedup_window_ends_at": null,
            "verdict": "new",
            "compared": null,
            "differences": [],
        })
    );
    let bare = explain(&server, &reader, &item(json!({}))).await;
    assert_eq!(
        (&bare["held"], &bare["verdict"], &bare["notification"]),
        (&json!(false), &Value::Null, &Value::Null),
        "no candidate, no verdict"
    );
    assert_eq!(
        count_notifications(&pool).await,
        0,
        "explain writes nothing"
    );

    let id = enqueue(&server, &enqueuer, &intent).await;
    let before = notifications(&pool).await;

    let same = explain(&server, &reader, &intent).await;
    assert_eq!(same["held"], true);
    assert_eq!(
        judged(&same),
        (json!("duplicate"), json!("intent"), json!([]))
    );
    assert_eq!(
        (
            &same["notification"]["id"],
            &same["notification"]["state"],
            &same["notification"]["destination"],
            &same["notification"]["payload"]
        ),
        (
            &json!(id),
            &json!("pending"),
            &json!("ann@example.com"),
            &json!({"order": 1})
        )
    );
    assert_eq!(
        same["dedup_window_ends_at"],
        Value::Null,
        "open while pending"
    );
    // Key order and the JSON's spacing do not matter.
    let spaced = r#"{"payload": { "order" : 1 }, "email": "ann@example.com", "business_id": "order-1", "type": "order_shipped", "user_id": "u1"}"#.to_owned();
    let answer = send(
        "POST",
        &server.url("/v1/explain"),
        Some(&reader),
        &[],
        Some(spaced),
    )
    .await;
    assert_eq!(answer.json()["verdict"], "duplicate", "{answer:?}");
    // run_at and max_attempts do not change a verdict.
    let later = item(json!({"email": "ann@example.com", "payload": {"order": 1},
                            "max_attempts": 3, "run_at": "2030-01-01T00:00:00Z"}));
    assert_eq!(
        explain(&server, &reader, &later).await["verdict"],
        "duplicate"
    );

    let other_payload = item(json!({"email": "ann@example.com", "payload": {"order": 2}}));
    let conflict = explain(&server, &reader, &other_payload).await;
    assert_eq!(
        judged(&conflict),
        (json!("conflict"), json!("intent"), json!(["$.order"]))
    );
    assert_eq!(conflict["notification"]["id"], id.as_str());

    let nested = item(json!({"email": "ann@example.com",
                             "payload": {"order": 1, "items": [{"qty": 2}]}}));
    assert_eq!(
        judged(&explain(&server, &reader, &nested).await),
        (json!("conflict"), json!("intent"), json!(["$.items"]))
    );

    let other_email = item(json!({"email": "bob@example.com", "payload": {"order": 1}}));
    assert_eq!(
        judged(&explain(&server, &reader, &other_email).await),
        (json!("conflict"), json!("intent"), json!(["destination"]))
    );
    let both = item(json!({"email": "bob@example.com", "payload": {"order": 2}}));
    assert_eq!(
        judged(&explain(&server, &reader, &both).await),
        (
            json!("conflict"),
            json!("intent"),
            json!(["destination", "$.order"])
        )
    );
    let by_webhook = item(json!({"webhook": webhook, "payload": {"order": 1}}));
    assert_eq!(
        judged(&explain(&server, &reader, &by_webhook).await),
        (
            json!("conflict"),
            json!("intent"),
            json!(["channel", "destination"])
        )
    );
    // A destination without a payload judges the payload {}.
    let empty_payload = item(json!({"email": "ann@example.com"}));
    assert_eq!(
        judged(&explain(&server, &reader, &empty_payload).await),
        (json!("conflict"), json!("intent"), json!(["$.order"]))
    );

    // A payload alone is compared alone.
    let payload_only = explain(&server, &reader, &item(json!({"payload": {"order": 1}}))).await;
    assert_eq!(
        judged(&payload_only),
        (json!("duplicate"), json!("payload"), json!([]))
    );
    let payload_differs = explain(&server, &reader, &item(json!({"payload": {"order": 2}}))).await;
    assert_eq!(
        judged(&payload_differs),
        (json!("conflict"), json!("payload"), json!(["$.order"]))
    );

    // Neither: who holds the key, and no verdict.
    for body in [item(json!({})), item(json!({"payload": null}))] {
        let held = explain(&server, &reader, &body).await;
        assert_eq!(held["held"], true, "{body}");
        assert_eq!(held["notification"]["id"], id.as_str());
        assert_eq!(judged(&held), (Value::Null, Value::Null, json!([])));
    }

    // The verdict is the enqueue's: a conflict is refused 422, a duplicate answered 200.
    let refused = send(
        "POST",
        &server.url("/v1/notifications"),
        Some(&enqueuer),
        &[],
        Some(other_payload.to_string()),
    )
    .await;
    assert_problem(&refused, 422, None);
    assert_eq!(refused.json()["existing_id"], id.as_str());
    assert_eq!(notifications(&pool).await, before, "explain wrote nothing");

    // An admin token explains too, the same way.
    let admin = token(&pool, "admin", None).await;
    assert_eq!(
        judged(&explain(&server, &admin, &other_email).await),
        (json!("conflict"), json!("intent"), json!(["destination"]))
    );
}

#[sqlx::test(migrations = false)]
async fn explain_answers_what_herald_explain_prints(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let id = enqueue(
        &server,
        &admin,
        &item(json!({"tenant": "acme", "email": "ann@example.com",
                     "payload": {"order": 1, "items": [{"sku": "a", "qty": 1}]}})),
    )
    .await;
    finish(&pool, Uuid::parse_str(&id).unwrap(), "delivered", At::Now).await;
    let key = Key::new("u1", "order_shipped", "order-1").tenant("acme");
    let payload = r#"{"order":1,"items":[{"sku":"a","qty":2}],"gift":true}"#;
    for (body, args) in [
        (
            item(json!({"tenant": "acme", "email": "bob@example.com",
                        "payload": serde_json::from_str::<Value>(payload).unwrap()})),
            vec!["--payload", payload, "--email", "bob@example.com"],
        ),
        (
            item(json!({"tenant": "acme",
                        "payload": serde_json::from_str::<Value>(payload).unwrap()})),
            vec!["--payload", payload],
        ),
        (item(json!({"tenant": "acme"})), vec![]),
    ] {
        let api = explain(&server, &admin, &body).await;
        let cli = herald(&pool)
            .explain(&key)
            .args(&args)
            .arg("--json")
            .run()
            .await;
        assert_eq!(cli.code, 0, "{cli:?}");
        assert_eq!(api, cli.json(), "{args:?}");
    }
    let finished = explain(&server, &admin, &item(json!({"tenant": "acme"}))).await;
    assert_eq!(finished["notification"]["state"], "delivered");
    let window: bool = sqlx::query_scalar(
        "select $1::timestamptz = finished_at + interval '30 days'
         from herald.notifications where id = $2::uuid",
    )
    .bind(
        finished["dedup_window_ends_at"]
            .as_str()
            .expect("a window end"),
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(window, "finished_at + retention: {finished}");
    assert_eq!(
        judged(
            &explain(
                &server,
                &admin,
                &item(json!({"tenant": "acme", "payload": {"order": 1}}))
            )
            .await
        ),
        (json!("conflict"), json!("payload"), json!(["$.items"]))
    );
}

#[sqlx::test(migrations = false)]
async fn explain_refuses_bad_input_naming_the_field(pool: PgPool) {
    let pool = migrated(pool).await;
    let reader = token(&pool, "read", None).await;
    let server = Server::start(&pool, &[]).await;
    let endpoint_id = Uuid::now_v7().to_string();

    let without = |name: &str| {
        let mut body = item(json!({"email": "ann@example.com"}));
        body.as_object_mut().unwrap().remove(name);
        body
    };
    let cases = [
        (without("user_id"), "user_id"),
        (without("type"), "type"),
        (without("business_id"), "business_id"),
        (item(json!({"user_id": null})), "user_id"),
        (item(json!({"user_id": ""})), "user_id"),
        (item(json!({"user_id": 5})), "user_id"),
        (item(json!({"type": "a\u{1}b"})), "type"),
        (
            item(json!({"business_id": "x".repeat(10_000)})),
            "business_id",
        ),
        (item(json!({"tenant": 7})), "tenant"),
        (item(json!({"tenant": ""})), "tenant"),
        (item(json!({"colour": "red"})), "colour"),
        (
            item(json!({"email": "ann@example.com", "webhook": endpoint_id})),
            "webhook",
        ),
        (item(json!({"webhook": "nope"})), "webhook"),
        (item(json!({"webhook": 5})), "webhook"),
        (item(json!({"email": "not an address"})), "email"),
        (item(json!({"email": 5})), "email"),
        (item(json!({"payload": [1, 2]})), "payload"),
        (item(json!({"payload": "text"})), "payload"),
        (
            item(json!({"email": "ann@example.com", "payload": 5})),
            "payload",
        ),
    ];
    for (body, field) in cases {
        let answer = explain_answer(&server, Some(&reader), &body).await;
        assert_problem(&answer, 400, Some(field));
    }
    let url = server.url("/v1/explain");
    for raw in ["{\"user_id\": ", "[]", ""] {
        let answer = send("POST", &url, Some(&reader), &[], Some(raw.to_owned())).await;
        assert_problem(&answer, 400, Some("body"));
    }
    let text = send(
        "POST",
        &url,
        Some(&reader),
        &[("content-type", "text/plain")],
        Some(item(json!({})).to_string()),
    )
    .await;
    assert_problem(&text, 415, None);
    assert_eq!(count_notifications(&pool).await, 0);
}

/// Explain promises to refuse what enqueue refuses ("the item is validated as an enqueue
/// validates it"): `run_at` and `max_attempts` are members of the item too.
#[sqlx::test(migrations = false)]
async fn explain_refuses_the_run_at_and_max_attempts_that_enqueue_refuses(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let mut disagreements = Vec::new();
    for (rest, field) in [
        (json!({"max_attempts": 0}), "max_attempts"),
        (json!({"max_attempts": 1000}), "max_attempts"),
        (json!({"max_attempts": "three"}), "max_attempts"),
        (json!({"run_at": "not a time"}), "run_at"),
        (json!({"run_at": 5}), "run_at"),
    ] {
        let mut body = item(json!({"email": "ann@example.com", "payload": {}}));
        for (name, value) in rest.as_object().unwrap() {
            body[name] = value.clone();
        }
        let enqueued = send(
            "POST",
            &server.url("/v1/notifications"),
            Some(&admin),
            &[],
            Some(body.to_string()),
        )
        .await;
        assert_problem(&enqueued, 400, Some(field));
        let explained = explain_answer(&server, Some(&admin), &body).await;
        if explained.status != 400 || explained.json()["field"] != field {
            disagreements.push(format!(
                "{rest}: enqueue 400 naming {field}, explain {} {}",
                explained.status, explained.text
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "explain accepts what enqueue refuses:\n{}",
        disagreements.join("\n")
    );
    assert_eq!(count_notifications(&pool).await, 0);
}

#[sqlx::test(migrations = false)]
async fn explain_is_for_readers_and_a_tenant_bound_one_explains_its_own_tenant(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let reader = token(&pool, "read", None).await;
    let a_reader = token(&pool, "read", Some("a")).await;
    let a_admin = token(&pool, "admin", Some("a")).await;
    let enqueuer = token(&pool, "enqueue", None).await;
    let a_enqueuer = token(&pool, "enqueue", Some("a")).await;
    let server = Server::start(&pool, &[]).await;
    let in_a = enqueue(
        &server,
        &admin,
        &item(json!({"tenant": "a", "email": "ann@example.com", "payload": {"v": "a"}})),
    )
    .await;
    let in_b = enqueue(
        &server,
        &admin,
        &item(json!({"tenant": "b", "email": "ann@example.com", "payload": {"v": "b"}})),
    )
    .await;
    assert_ne!(in_a, in_b);

    for token in [&a_reader, &a_admin] {
        for body in [
            item(json!({})),
            item(json!({"tenant": "a"})),
            item(json!({"tenant": null})),
        ] {
            let own = explain(&server, token, &body).await;
            assert_eq!(own["key"]["tenant"], "a", "{body}");
            assert_eq!(
                (
                    &own["notification"]["id"],
                    &own["notification"]["tenant"],
                    &own["notification"]["payload"]
                ),
                (&json!(in_a), &json!("a"), &json!({"v": "a"})),
                "{body}"
            );
        }
        let mine = explain(&server, token, &item(json!({"payload": {"v": "a"}}))).await;
        assert_eq!(mine["verdict"], "duplicate");
        let theirs = explain(&server, token, &item(json!({"payload": {"v": "b"}}))).await;
        assert_eq!(
            judged(&theirs),
            (json!("conflict"), json!("payload"), json!(["$.v"]))
        );
        for tenant in ["b", "default", "nobody"] {
            let answer =
                explain_answer(&server, Some(token), &item(json!({"tenant": tenant}))).await;
            assert_problem(&answer, 403, Some("tenant"));
            assert!(!answer.text.contains(&in_b), "{answer:?}");
        }
    }

    let b = explain(&server, &reader, &item(json!({"tenant": "b"}))).await;
    assert_eq!(b["notification"]["id"], in_b.as_str());
    let default = explain(&server, &reader, &item(json!({}))).await;
    assert_eq!(
        (&default["key"]["tenant"], &default["held"]),
        (&json!("default"), &json!(false)),
        "a global token with no tenant explains the default tenant's key"
    );

    for token in [&enqueuer, &a_enqueuer] {
        let answer = explain_answer(&server, Some(token), &item(json!({}))).await;
        assert_problem(&answer, 403, None);
    }
    let anonymous = explain_answer(&server, None, &item(json!({}))).await;
    assert_problem(&anonymous, 401, None);
    assert_eq!(count_notifications(&pool).await, 2);
}

async fn stats_answer(server: &Server, token: Option<&str>) -> Answer {
    send("GET", &server.url("/v1/stats"), token, &[], None).await
}

/// The counts of `stats`, as `{state: {email, webhook, total}}`.
fn zero_counts() -> Value {
    let zero = json!({"email": 0, "webhook": 0, "total": 0});
    json!({"pending": zero, "running": zero, "delivered": zero, "dead": zero, "cancelled": zero})
}

#[sqlx::test(migrations = false)]
async fn stats_count_every_state_and_agree_with_herald_stats(pool: PgPool) {
    let pool = migrated(pool).await;
    let reader = token(&pool, "read", None).await;
    let admin = token(&pool, "admin", None).await;
    let hook = endpoint(&pool, "default").await.to_string();
    let server = Server::start(&pool, &[]).await;

    let empty = stats_answer(&server, Some(&reader)).await;
    assert_eq!(empty.status, 200, "{empty:?}");
    assert_eq!(empty.header("content-type"), "application/json");
    let empty = empty.json();
    assert_eq!(
        empty,
        json!({
            "counts": zero_counts(),
            "oldest_due_age_seconds": null,
            "last_hour": {"delivered": 0, "failed": 0, "unknown": 0,
                          "latency_p50_ms": null, "latency_p99_ms": null},
            "open_breakers": [],
            "busiest_endpoints": [],
        })
    );

    for (business_id, destination) in [
        ("s1", json!({"email": "ann@example.com"})),
        ("s2", json!({"email": "bob@example.com"})),
        ("s3", json!({"webhook": hook})),
    ] {
        let mut body = json!({"user_id": "u1", "type": "t", "business_id": business_id});
        for (name, value) in destination.as_object().unwrap() {
            body[name] = value.clone();
        }
        enqueue(&server, &admin, &body).await;
    }
    let stats = stats_answer(&server, Some(&reader)).await.json();
    assert_eq!(
        sorted_keys(&stats),
        [
            "busiest_endpoints",
            "counts",
            "last_hour",
            "oldest_due_age_seconds",
            "open_breakers"
        ]
    );
    let mut expected = zero_counts();
    expected["pending"] = json!({"email": 2, "webhook": 1, "total": 3});
    assert_eq!(stats["counts"], expected);
    assert_eq!(stats["counts"]["pending"]["total"], 3);
    assert!(
        stats["oldest_due_age_seconds"]
            .as_f64()
            .is_some_and(|age| age >= 0.0),
        "three are due: {stats}"
    );
    assert_eq!(
        sorted_keys(&stats["last_hour"]),
        [
            "delivered",
            "failed",
            "latency_p50_ms",
            "latency_p99_ms",
            "unknown"
        ]
    );
    assert_eq!(stats["open_breakers"], json!([]));
    assert_eq!(
        stats["busiest_endpoints"],
        json!([{"id": hook, "waiting": 1}])
    );
    // The database agrees.
    let stored: Vec<(String, String, i64)> = sqlx::query_as(
        "select state, channel, count(*) from herald.notifications
         group by state, channel order by state, channel",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        stored,
        [
            ("pending".to_owned(), "email".to_owned(), 2),
            ("pending".to_owned(), "webhook".to_owned(), 1)
        ]
    );

    // A finished one moves; an open breaker shows.
    let cancelled = finish(
        &pool,
        crate::support::Rows::BusinessIds(&["s2"]),
        "cancelled",
        At::Now,
    )
    .await;
    assert_eq!(cancelled, 1);
    sqlx::query(
        "update herald.destinations set breaker = 'open', breaker_opened_at = now(),
             consecutive_failures = 5, next_probe_at = now() + interval '1 minute',
             probe_interval = 60
         where endpoint_id = $1::uuid",
    )
    .bind(&hook)
    .execute(&pool)
    .await
    .unwrap();
    let stats = stats_answer(&server, Some(&admin)).await.json();
    let mut expected = zero_counts();
    expected["pending"] = json!({"email": 1, "webhook": 1, "total": 2});
    expected["cancelled"] = json!({"email": 1, "webhook": 0, "total": 1});
    assert_eq!(stats["counts"], expected);
    let breakers = stats["open_breakers"].as_array().unwrap();
    assert_eq!(breakers.len(), 1, "{stats}");
    assert_eq!(breakers[0]["destination"], hook.as_str());
    assert_eq!(
        sorted_keys(&breakers[0]),
        ["destination", "next_probe_at", "opened_at"]
    );

    // `herald stats --json` prints the same numbers (all but the age, which moves).
    let cli = herald(&pool).args(&["stats", "--json"]).run().await;
    assert_eq!(cli.code, 0, "{cli:?}");
    let mut printed = cli.json();
    let mut answered = stats_answer(&server, Some(&reader)).await.json();
    for doc in [&mut printed, &mut answered] {
        doc.as_object_mut()
            .unwrap()
            .remove("oldest_due_age_seconds");
    }
    assert_eq!(answered, printed);
    assert_eq!(count_notifications(&pool).await, 3, "stats wrote nothing");
}

#[sqlx::test(migrations = false)]
async fn stats_are_for_read_tokens_bound_to_no_tenant(pool: PgPool) {
    let pool = migrated(pool).await;
    let reader = token(&pool, "read", None).await;
    let admin = token(&pool, "admin", None).await;
    let enqueuer = token(&pool, "enqueue", None).await;
    let a_reader = token(&pool, "read", Some("a")).await;
    let a_admin = token(&pool, "admin", Some("a")).await;
    let server = Server::start(&pool, &[]).await;

    for token in [&reader, &admin] {
        assert_eq!(stats_answer(&server, Some(token)).await.status, 200);
    }
    for token in [&enqueuer, &a_reader, &a_admin] {
        let answer = stats_answer(&server, Some(token)).await;
        assert_problem(&answer, 403, None);
        assert!(!answer.text.contains("counts"), "{answer:?}");
    }
    let anonymous = stats_answer(&server, None).await;
    assert_problem(&anonymous, 401, None);
    assert_eq!(
        anonymous.header("www-authenticate"),
        "Bearer realm=\"herald\""
    );
    let bogus = stats_answer(&server, Some("hrld_nope")).await;
    assert_problem(&bogus, 401, None);
}
