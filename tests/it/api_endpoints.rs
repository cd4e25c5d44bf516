//! `/v1/endpoints` against a real `herald serve`: register (201, `Location`, the secret once),
//! list and show (never a secret; a tenant-bound token sees its tenant only, another tenant's
//! endpoint is 404 exactly as a missing one), `PATCH` (limits set and cleared, a new URL closes
//! the breaker), and the actions (`enable`, `disable`, `reset`, `rotate-secret`). Every refusal
//! is a problem naming its field, and the database is compared before and after: nothing is
//! written for any of them.

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::api::{Answer, Server, assert_problem, send, token};
use crate::support::{SECRET, endpoint, migrated, sorted_keys};

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

const URL: &str = "https://hooks.example.com/in";

/// A valid secret other than [`SECRET`]: `whsec_` and 24 bytes ("ABC" eight times).
const OTHER_SECRET: &str = "whsec_QUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJD";

/// [`ENDPOINT_KEYS`] with `extra`, sorted.
fn keys_with(extra: &[&'static str]) -> Vec<&'static str> {
    let mut keys = ENDPOINT_KEYS.to_vec();
    keys.extend_from_slice(extra);
    keys.sort_unstable();
    keys
}

/// `method path` with a JSON body (or none) and a bearer token (or none).
async fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    send(
        method,
        &server.url(path),
        token,
        &[],
        body.map(Value::to_string),
    )
    .await
}

/// `POST /v1/endpoints` with `body`; asserts 201 and returns the answer's JSON.
async fn register(server: &Server, token: &str, body: &Value) -> Value {
    let answer = call(server, "POST", "/v1/endpoints", Some(token), Some(body)).await;
    assert_eq!(answer.status, 201, "{body}: {answer:?}");
    answer.json()
}

/// Every endpoint row with its destination row, secrets included: compared before and after a
/// refused request, so that any write shows.
async fn snapshot(pool: &PgPool) -> Value {
    sqlx::query_scalar(
        "select coalesce(jsonb_agg(to_jsonb(e) || jsonb_build_object('destination', to_jsonb(d))
                                   order by e.id), '[]'::jsonb)
         from herald.webhook_endpoints e
         left join herald.destinations d on d.endpoint_id = e.id",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Every row of herald.destinations (the relay's included).
async fn destinations(pool: &PgPool) -> Value {
    sqlx::query_scalar(
        "select coalesce(jsonb_agg(to_jsonb(d) order by d.key), '[]'::jsonb)
         from herald.destinations d",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn count_endpoints(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from herald.webhook_endpoints")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// `(tenant, url, enabled, disabled_reason)` of endpoint `id` as stored.
async fn stored(pool: &PgPool, id: &str) -> (String, String, bool, Option<String>) {
    sqlx::query_as(
        "select tenant, url, enabled, disabled_reason from herald.webhook_endpoints
         where id = $1::uuid",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// `(rate_count, rate_unit, max_in_flight)` of endpoint `id`'s destination row.
async fn limits(pool: &PgPool, id: &str) -> (Option<i32>, Option<String>, Option<i32>) {
    sqlx::query_as(
        "select rate_count, rate_unit, max_in_flight from herald.destinations
         where endpoint_id = $1::uuid",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// `(breaker, consecutive_failures, breaker_opened_at is null, next_probe_at is null)`.
async fn breaker(pool: &PgPool, id: &str) -> (String, i32, bool, bool) {
    sqlx::query_as(
        "select breaker, consecutive_failures, breaker_opened_at is null, next_probe_at is null
         from herald.destinations where endpoint_id = $1::uuid",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn closed() -> (String, i32, bool, bool) {
    ("closed".to_owned(), 0, true, true)
}

/// Opens endpoint `id`'s breaker as the dispatcher would.
async fn open_breaker(pool: &PgPool, id: &str) {
    sqlx::query(
        "update herald.destinations
         set breaker = 'open', breaker_opened_at = now(), consecutive_failures = 5,
             next_probe_at = now() + interval '1 minute', probe_interval = 60
         where endpoint_id = $1::uuid",
    )
    .bind(id)
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(breaker(pool, id).await.0, "open");
}

/// `POST /v1/endpoints/{id}/{name}` with `body` (JSON unless `content_type` says otherwise).
async fn post_action(
    server: &Server,
    token: &str,
    id: &str,
    name: &str,
    body: Option<String>,
    content_type: Option<&str>,
) -> Answer {
    let headers: Vec<(&str, &str)> = content_type
        .map(|t| vec![("content-type", t)])
        .unwrap_or_default();
    send(
        "POST",
        &server.url(&format!("/v1/endpoints/{id}/{name}")),
        Some(token),
        &headers,
        body,
    )
    .await
}

/// A problem's members other than `detail`, and its detail with `id` written as `ID`: what two
/// 404s must share when only the id asked for differs.
fn shape_of(answer: &Answer, id: &str) -> (u16, String, Vec<String>, Value, String) {
    let problem = answer.json();
    let detail = problem["detail"]
        .as_str()
        .unwrap_or_default()
        .replace(id, "ID");
    (
        answer.status,
        answer.header("content-type"),
        sorted_keys(&problem)
            .into_iter()
            .map(str::to_owned)
            .collect(),
        problem["title"].clone(),
        detail,
    )
}

#[sqlx::test(migrations = false)]
async fn register_answers_201_with_the_secret_once_and_reads_never_show_it(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let reader = token(&pool, "read", None).await;
    let server = Server::start(&pool, &[]).await;

    let answer = call(
        &server,
        "POST",
        "/v1/endpoints",
        Some(&admin),
        Some(&json!({"url": URL, "tenant": "acme", "rate": "10/s", "max_in_flight": 5})),
    )
    .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.header("content-type"), "application/json");
    let created = answer.json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(answer.header("location"), format!("/v1/endpoints/{id}"));
    assert_eq!(sorted_keys(&created), keys_with(&["secret"]));
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(
        herald::channel::signature::WebhookSecret::parse(&secret).is_ok(),
        "a valid secret: {secret}"
    );
    assert_eq!(
        created,
        json!({
            "id": id,
            "tenant": "acme",
            "url": URL,
            "enabled": true,
            "disabled_reason": null,
            "created_at": created["created_at"],
            "rate": "10/s",
            "max_in_flight": 5,
            "breaker": "closed",
            "consecutive_failures": 0,
            "breaker_opened_at": null,
            "next_probe_at": null,
            "in_flight": 0,
            "secret": secret,
        })
    );
    let row: (
        String,
        String,
        String,
        Option<i32>,
        Option<String>,
        Option<i32>,
    ) = sqlx::query_as(
        "select e.tenant, e.url, e.secret, d.rate_count, d.rate_unit, d.max_in_flight
         from herald.webhook_endpoints e join herald.destinations d on d.endpoint_id = e.id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "acme".to_owned(),
            URL.to_owned(),
            secret.clone(),
            Some(10),
            Some("s".to_owned()),
            Some(5)
        )
    );

    // Reads, by an admin and by a reader, never carry a secret.
    let mut without_secret = created.clone();
    without_secret.as_object_mut().unwrap().remove("secret");
    for token in [&admin, &reader] {
        let shown = call(
            &server,
            "GET",
            &answer.header("location"),
            Some(token),
            None,
        )
        .await;
        assert_eq!(shown.status, 200, "{shown:?}");
        assert_eq!(sorted_keys(&shown.json()), ENDPOINT_KEYS);
        assert_eq!(shown.json(), without_secret);
        assert!(!shown.text.contains("whsec_"), "{shown:?}");
        assert!(!shown.text.contains(&secret[6..]), "{shown:?}");

        let listed = call(&server, "GET", "/v1/endpoints", Some(token), None).await;
        assert_eq!(listed.status, 200, "{listed:?}");
        assert_eq!(listed.json(), json!({"items": [without_secret]}));
        assert!(!listed.text.contains("whsec_"), "{listed:?}");
        assert!(!listed.text.contains(&secret[6..]), "{listed:?}");
    }

    // A given secret is kept; an omitted tenant (global token) is `default`; no limits.
    let given = register(&server, &admin, &json!({"url": URL, "secret": SECRET})).await;
    assert_eq!(given["secret"], SECRET);
    assert_eq!(
        (
            &given["tenant"],
            &given["rate"],
            &given["max_in_flight"],
            &given["url"]
        ),
        (&json!("default"), &Value::Null, &Value::Null, &json!(URL))
    );
    let kept: String =
        sqlx::query_scalar("select secret from herald.webhook_endpoints where id = $1::uuid")
            .bind(given["id"].as_str().unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(kept, SECRET);
    let given_id = given["id"].as_str().unwrap();
    assert_eq!(limits(&pool, given_id).await, (None, None, None));

    // Explicit nulls are no limits either, and a per-minute rate keeps its unit.
    let nulls = register(
        &server,
        &admin,
        &json!({"url": URL, "rate": null, "max_in_flight": null, "tenant": null}),
    )
    .await;
    assert_eq!(
        (&nulls["rate"], &nulls["max_in_flight"], &nulls["tenant"]),
        (&Value::Null, &Value::Null, &json!("default"))
    );
    let per_minute = register(
        &server,
        &admin,
        &json!({"url": URL, "rate": "600/m", "max_in_flight": 10000}),
    )
    .await;
    assert_eq!(
        (&per_minute["rate"], &per_minute["max_in_flight"]),
        (&json!("600/m"), &json!(10000))
    );
    assert_eq!(
        limits(&pool, per_minute["id"].as_str().unwrap()).await,
        (Some(600), Some("m".to_owned()), Some(10000))
    );
    assert_eq!(count_endpoints(&pool).await, 4);
}

#[sqlx::test(migrations = false)]
async fn register_refuses_bad_input_naming_the_field_and_writes_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let before = destinations(&pool).await;

    let with = |name: &str, value: Value| {
        let mut body = json!({"url": URL});
        body[name] = value;
        body
    };
    let cases = [
        (json!({}), "url"),
        (json!({"url": null}), "url"),
        (json!({"url": 5}), "url"),
        (json!({"url": ""}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "http://10.0.0.1/hook"}), "url"),
        (json!({"url": "http://127.0.0.1:8080/hook"}), "url"),
        (json!({"url": "http://169.254.169.254/latest"}), "url"),
        (json!({"url": "http://[::ffff:10.0.0.1]/"}), "url"),
        (json!({"url": "ftp://hooks.example.com/in"}), "url"),
        (json!({"url": "file:///etc/passwd"}), "url"),
        (json!({"url": "https://user:pw@hooks.example.com/"}), "url"),
        (with("secret", json!("bad")), "secret"),
        (with("secret", json!("whsec_c2hvcnQ=")), "secret"),
        (with("secret", json!(5)), "secret"),
        (with("rate", json!("0/s")), "rate"),
        (with("rate", json!("abc")), "rate"),
        (with("rate", json!("10/h")), "rate"),
        (with("rate", json!("200000/s")), "rate"),
        (with("rate", json!(10)), "rate"),
        (with("max_in_flight", json!(0)), "max_in_flight"),
        (with("max_in_flight", json!(10001)), "max_in_flight"),
        (with("max_in_flight", json!("x")), "max_in_flight"),
        (with("max_in_flight", json!("5")), "max_in_flight"),
        (with("max_in_flight", json!(-1)), "max_in_flight"),
        (with("max_in_flight", json!(1.5)), "max_in_flight"),
        (with("colour", json!("red")), "colour"),
        (with("tenant", json!(7)), "tenant"),
        (with("tenant", json!("")), "tenant"),
        (with("tenant", json!("a\u{7}b")), "tenant"),
    ];
    for (body, field) in cases {
        let answer = call(&server, "POST", "/v1/endpoints", Some(&admin), Some(&body)).await;
        assert_problem(&answer, 400, Some(field));
        assert!(answer.header("location").is_empty(), "{body}: {answer:?}");
    }
    let url = server.url("/v1/endpoints");
    for raw in ["{\"url\": ", "[]", "\"https://hooks.example.com/in\"", ""] {
        let answer = send("POST", &url, Some(&admin), &[], Some(raw.to_owned())).await;
        assert_problem(&answer, 400, Some("body"));
    }
    let body = json!({"url": URL}).to_string();
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let answer = send(
            "POST",
            &url,
            Some(&admin),
            &[("content-type", content_type)],
            Some(body.clone()),
        )
        .await;
        assert_problem(&answer, 415, None);
    }
    let no_type = send("POST", &url, Some(&admin), &[], None).await;
    assert_problem(&no_type, 415, None);
    let anonymous = send("POST", &url, None, &[], Some(body.clone())).await;
    assert_problem(&anonymous, 401, None);

    assert_eq!(count_endpoints(&pool).await, 0, "no endpoint written");
    assert_eq!(destinations(&pool).await, before, "no destination written");
}

#[sqlx::test(migrations = false)]
async fn the_webhook_policy_of_the_server_decides_which_urls_register(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let private = Server::start(&pool, &[("HERALD_WEBHOOK__ALLOWED_NETWORKS", "10.0.0.0/8")]).await;
    let admitted = register(&private, &admin, &json!({"url": "http://10.0.0.1/hook"})).await;
    assert_eq!(admitted["url"], "http://10.0.0.1/hook");
    let loopback = call(
        &private,
        "POST",
        "/v1/endpoints",
        Some(&admin),
        Some(&json!({"url": "http://127.0.0.1/hook"})),
    )
    .await;
    assert_problem(&loopback, 400, Some("url"));

    let https_only = Server::start(&pool, &[("HERALD_WEBHOOK__HTTPS_ONLY", "true")]).await;
    let plain = call(
        &https_only,
        "POST",
        "/v1/endpoints",
        Some(&admin),
        Some(&json!({"url": "http://hooks.example.com/in"})),
    )
    .await;
    assert_problem(&plain, 400, Some("url"));
    register(&https_only, &admin, &json!({"url": URL})).await;

    let urls: Vec<String> =
        sqlx::query_scalar("select url from herald.webhook_endpoints order by created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(urls, ["http://10.0.0.1/hook", URL]);
}

#[sqlx::test(migrations = false)]
async fn only_admin_tokens_register_and_a_tenant_bound_one_only_in_its_tenant(pool: PgPool) {
    let pool = migrated(pool).await;
    let reader = token(&pool, "read", None).await;
    let enqueuer = token(&pool, "enqueue", None).await;
    let acme_reader = token(&pool, "read", Some("acme")).await;
    let acme = token(&pool, "admin", Some("acme")).await;
    let server = Server::start(&pool, &[]).await;
    let before = destinations(&pool).await;

    for (token, body, field) in [
        (&reader, json!({"url": URL}), None),
        (&enqueuer, json!({"url": URL}), None),
        (&acme_reader, json!({"url": URL}), None),
        (
            &acme,
            json!({"url": URL, "tenant": "globex"}),
            Some("tenant"),
        ),
        (
            &acme,
            json!({"url": URL, "tenant": "default"}),
            Some("tenant"),
        ),
    ] {
        let answer = call(&server, "POST", "/v1/endpoints", Some(token), Some(&body)).await;
        assert_problem(&answer, 403, field);
    }
    assert_eq!(count_endpoints(&pool).await, 0, "nothing written");
    assert_eq!(destinations(&pool).await, before);

    for body in [
        json!({"url": URL}),
        json!({"url": URL, "tenant": null}),
        json!({"url": URL, "tenant": "acme"}),
    ] {
        let created = register(&server, &acme, &body).await;
        assert_eq!(created["tenant"], "acme", "{body}");
        assert_eq!(
            stored(&pool, created["id"].as_str().unwrap()).await.0,
            "acme"
        );
    }
    assert_eq!(count_endpoints(&pool).await, 3);
}

#[sqlx::test(migrations = false)]
async fn a_list_is_confined_to_a_tenant_bound_tokens_tenant(pool: PgPool) {
    let pool = migrated(pool).await;
    let default = endpoint(&pool, "default").await.to_string();
    let acme = endpoint(&pool, "acme").await.to_string();
    let globex = endpoint(&pool, "globex").await.to_string();
    let acme_two = endpoint(&pool, "acme").await.to_string();
    let reader = token(&pool, "read", None).await;
    let admin = token(&pool, "admin", None).await;
    let acme_reader = token(&pool, "read", Some("acme")).await;
    let acme_admin = token(&pool, "admin", Some("acme")).await;
    let enqueuer = token(&pool, "enqueue", None).await;
    let server = Server::start(&pool, &[]).await;

    let ids = |answer: &Answer| -> Vec<String> {
        assert_eq!(answer.status, 200, "{answer:?}");
        let body = answer.json();
        assert_eq!(sorted_keys(&body), ["items"]);
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(sorted_keys(e), ENDPOINT_KEYS);
                e["id"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let on = &server;
    let get = move |token: &str, query: &str| {
        let path = format!("/v1/endpoints{query}");
        let token = token.to_owned();
        async move { call(on, "GET", &path, Some(&token), None).await }
    };

    for token in [&reader, &admin] {
        let all = get(token, "").await;
        assert_eq!(
            ids(&all),
            [default.as_str(), &acme, &globex, &acme_two],
            "every tenant, oldest first"
        );
        assert!(!all.text.contains("whsec_"), "{all:?}");
        assert_eq!(ids(&get(token, "?tenant=globex").await), [globex.as_str()]);
        assert_eq!(
            ids(&get(token, "?tenant=nobody").await),
            Vec::<String>::new()
        );
    }
    for token in [&acme_reader, &acme_admin] {
        assert_eq!(ids(&get(token, "").await), [acme.as_str(), &acme_two]);
        assert_eq!(
            ids(&get(token, "?tenant=acme").await),
            [acme.as_str(), &acme_two]
        );
        assert_problem(&get(token, "?tenant=globex").await, 403, Some("tenant"));
        assert_problem(&get(token, "?tenant=default").await, 403, Some("tenant"));
    }
    assert_problem(&get(&reader, "?colour=red").await, 400, Some("colour"));
    assert_problem(&get(&acme_reader, "?limit=5").await, 400, Some("limit"));
    assert_problem(
        &get(&reader, "?tenant=acme&tenant=globex").await,
        400,
        Some("tenant"),
    );
    assert_problem(&get(&enqueuer, "").await, 403, None);
    let anonymous = call(&server, "GET", "/v1/endpoints", None, None).await;
    assert_problem(&anonymous, 401, None);
}

#[sqlx::test(migrations = false)]
async fn show_answers_one_404_for_a_missing_a_malformed_and_another_tenants_id(pool: PgPool) {
    let pool = migrated(pool).await;
    let acme = endpoint(&pool, "acme").await.to_string();
    let globex = endpoint(&pool, "globex").await.to_string();
    let acme_reader = token(&pool, "read", Some("acme")).await;
    let enqueuer = token(&pool, "enqueue", None).await;
    let acme_enqueuer = token(&pool, "enqueue", Some("acme")).await;
    let reader = token(&pool, "read", None).await;
    let server = Server::start(&pool, &[]).await;

    let own = call(
        &server,
        "GET",
        &format!("/v1/endpoints/{acme}"),
        Some(&acme_reader),
        None,
    )
    .await;
    assert_eq!(own.status, 200, "{own:?}");
    assert_eq!(own.json()["id"], acme.as_str());
    assert_eq!(own.json()["tenant"], "acme");
    let global = call(
        &server,
        "GET",
        &format!("/v1/endpoints/{globex}"),
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(global.status, 200, "a global reader sees every tenant's");

    let missing = Uuid::now_v7().to_string();
    let mut shapes = Vec::new();
    for id in [globex.as_str(), missing.as_str(), "nope", "12345"] {
        let answer = call(
            &server,
            "GET",
            &format!("/v1/endpoints/{id}"),
            Some(&acme_reader),
            None,
        )
        .await;
        assert_problem(&answer, 404, None);
        shapes.push(shape_of(&answer, id));
    }
    shapes.dedup();
    assert_eq!(shapes.len(), 1, "one 404 for all: {shapes:?}");

    for token in [&enqueuer, &acme_enqueuer] {
        let answer = call(
            &server,
            "GET",
            &format!("/v1/endpoints/{acme}"),
            Some(token),
            None,
        )
        .await;
        assert_problem(&answer, 403, None);
    }
    let anonymous = call(&server, "GET", &format!("/v1/endpoints/{acme}"), None, None).await;
    assert_problem(&anonymous, 401, None);
}

#[sqlx::test(migrations = false)]
async fn patch_sets_and_clears_limits(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let created = register(&server, &admin, &json!({"url": URL})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/endpoints/{id}");
    let (on, by, at) = (&server, &admin, &path);
    let patch = move |body: Value| {
        let (server, admin, path) = (on, by, at);
        async move {
            let answer = call(server, "PATCH", path, Some(admin), Some(&body)).await;
            assert_eq!(answer.status, 200, "{body}: {answer:?}");
            assert_eq!(answer.header("content-type"), "application/json");
            let row = answer.json();
            assert_eq!(sorted_keys(&row), ENDPOINT_KEYS, "never the secret");
            row
        }
    };
    let both = |row: &Value| (row["rate"].clone(), row["max_in_flight"].clone());

    let row = patch(json!({"rate": "10/s"})).await;
    assert_eq!(both(&row), (json!("10/s"), Value::Null));
    assert_eq!(limits(&pool, &id).await, (Some(10), Some("s".into()), None));

    let row = patch(json!({"max_in_flight": 5})).await;
    assert_eq!(both(&row), (json!("10/s"), json!(5)), "the rate stays");
    assert_eq!(
        limits(&pool, &id).await,
        (Some(10), Some("s".into()), Some(5))
    );

    let row = patch(json!({"rate": null})).await;
    assert_eq!(both(&row), (Value::Null, json!(5)), "the cap stays");
    assert_eq!(limits(&pool, &id).await, (None, None, Some(5)));

    // Setting a rate refills its bucket.
    sqlx::query(
        "update herald.destinations set tokens = 0, tokens_at = now() where endpoint_id = $1::uuid",
    )
    .bind(&id)
    .execute(&pool)
    .await
    .unwrap();
    let row = patch(json!({"rate": "600/m", "max_in_flight": null})).await;
    assert_eq!(both(&row), (json!("600/m"), Value::Null));
    assert_eq!(
        limits(&pool, &id).await,
        (Some(600), Some("m".into()), None)
    );
    let bucket: (Option<f64>, bool) = sqlx::query_as(
        "select tokens, tokens_at is null from herald.destinations where endpoint_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(bucket, (None, true), "a full bucket");

    let row = patch(json!({"rate": null, "max_in_flight": null})).await;
    assert_eq!(both(&row), (Value::Null, Value::Null));
    assert_eq!(limits(&pool, &id).await, (None, None, None));

    let shown = call(&server, "GET", &path, Some(&admin), None).await;
    assert_eq!(shown.json(), row, "show agrees with the PATCH's answer");
    assert_eq!(
        (&row["url"], &row["tenant"], &row["enabled"]),
        (&json!(URL), &json!("default"), &json!(true)),
        "nothing else changed"
    );
}

#[sqlx::test(migrations = false)]
async fn patching_the_url_closes_the_breaker(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let id = register(&server, &admin, &json!({"url": URL, "rate": "5/s"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    open_breaker(&pool, &id).await;
    let shown = call(
        &server,
        "GET",
        &format!("/v1/endpoints/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(
        (
            &shown.json()["breaker"],
            &shown.json()["consecutive_failures"]
        ),
        (&json!("open"), &json!(5))
    );

    let new_url = "https://hooks.example.com/moved?v=2";
    let answer = call(
        &server,
        "PATCH",
        &format!("/v1/endpoints/{id}"),
        Some(&admin),
        Some(&json!({"url": new_url})),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let row = answer.json();
    assert_eq!(
        (
            &row["url"],
            &row["breaker"],
            &row["consecutive_failures"],
            &row["breaker_opened_at"],
            &row["rate"]
        ),
        (
            &json!(new_url),
            &json!("closed"),
            &json!(0),
            &Value::Null,
            &json!("5/s")
        )
    );
    assert_eq!(stored(&pool, &id).await.1, new_url);
    assert_eq!(breaker(&pool, &id).await, closed());
    assert_eq!(
        limits(&pool, &id).await,
        (Some(5), Some("s".into()), None),
        "a new URL leaves the limits alone"
    );

    // A URL and limits together.
    let answer = call(
        &server,
        "PATCH",
        &format!("/v1/endpoints/{id}"),
        Some(&admin),
        Some(&json!({"url": URL, "max_in_flight": 2})),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        (&answer.json()["url"], &answer.json()["max_in_flight"]),
        (&json!(URL), &json!(2))
    );
    assert_eq!(stored(&pool, &id).await.1, URL);
    assert_eq!(
        limits(&pool, &id).await,
        (Some(5), Some("s".into()), Some(2))
    );
}

#[sqlx::test(migrations = false)]
async fn refused_patches_change_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let reader = token(&pool, "read", None).await;
    let enqueuer = token(&pool, "enqueue", None).await;
    let acme_reader = token(&pool, "read", Some("acme")).await;
    let globex_admin = token(&pool, "admin", Some("globex")).await;
    let server = Server::start(&pool, &[]).await;
    let id = register(
        &server,
        &admin,
        &json!({"url": URL, "tenant": "acme", "rate": "10/s", "max_in_flight": 3}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    open_breaker(&pool, &id).await;
    let path = format!("/v1/endpoints/{id}");
    let before = snapshot(&pool).await;

    let cases = [
        (json!({}), "body"),
        (json!({"url": "http://10.0.0.1/"}), "url"),
        (json!({"url": "ftp://hooks.example.com/"}), "url"),
        (json!({"url": null}), "url"),
        (json!({"url": 5}), "url"),
        (json!({"rate": "0/s"}), "rate"),
        (json!({"rate": "abc"}), "rate"),
        (json!({"max_in_flight": 0}), "max_in_flight"),
        (json!({"max_in_flight": 10001}), "max_in_flight"),
        (json!({"max_in_flight": "x"}), "max_in_flight"),
        (
            json!({"url": "https://hooks.example.com/ok", "rate": "0/s"}),
            "rate",
        ),
        (
            json!({"url": "https://hooks.example.com/ok", "colour": 1}),
            "colour",
        ),
        (json!({"tenant": "globex"}), "tenant"),
        (json!({"secret": SECRET}), "secret"),
    ];
    for (body, field) in cases {
        let answer = call(&server, "PATCH", &path, Some(&admin), Some(&body)).await;
        assert_problem(&answer, 400, Some(field));
    }
    let url = server.url(&path);
    let malformed = send("PATCH", &url, Some(&admin), &[], Some("{".to_owned())).await;
    assert_problem(&malformed, 400, Some("body"));
    let text = send(
        "PATCH",
        &url,
        Some(&admin),
        &[("content-type", "text/plain")],
        Some(json!({"rate": "1/s"}).to_string()),
    )
    .await;
    assert_problem(&text, 415, None);
    let good = json!({"url": "https://hooks.example.com/other", "rate": "1/s"});
    for token in [&reader, &enqueuer, &acme_reader] {
        let answer = call(&server, "PATCH", &path, Some(token), Some(&good)).await;
        assert_problem(&answer, 403, None);
    }
    let foreign = call(&server, "PATCH", &path, Some(&globex_admin), Some(&good)).await;
    assert_problem(&foreign, 404, None);
    let missing = Uuid::now_v7().to_string();
    let unknown = call(
        &server,
        "PATCH",
        &format!("/v1/endpoints/{missing}"),
        Some(&admin),
        Some(&good),
    )
    .await;
    assert_problem(&unknown, 404, None);
    assert_eq!(shape_of(&foreign, &id), shape_of(&unknown, &missing));
    let anonymous = call(&server, "PATCH", &path, None, Some(&good)).await;
    assert_problem(&anonymous, 401, None);

    assert_eq!(snapshot(&pool).await, before, "nothing changed");
    assert_eq!(
        breaker(&pool, &id).await.0,
        "open",
        "the breaker stayed open"
    );
}

#[sqlx::test(migrations = false)]
async fn disable_and_enable_with_and_without_a_reason(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let id = endpoint(&pool, "default").await.to_string();
    let (on, by, target) = (&server, &admin, &id);
    let action =
        move |name: &'static str, body: Option<&str>, content_type: Option<&'static str>| {
            post_action(on, by, target, name, body.map(str::to_owned), content_type)
        };
    let ok = |answer: &Answer| -> Value {
        assert_eq!(answer.status, 200, "{answer:?}");
        let row = answer.json();
        assert_eq!(sorted_keys(&row), ENDPOINT_KEYS);
        row
    };
    let state = |row: &Value| (row["enabled"].clone(), row["disabled_reason"].clone());
    let operator = "disabled by an operator";

    // No body at all (no Content-Type either).
    let row = ok(&action("disable", None, None).await);
    assert_eq!(state(&row), (json!(false), json!(operator)));
    assert_eq!(
        stored(&pool, &id).await,
        (
            "default".into(),
            "https://hooks.example.com/herald".into(),
            false,
            Some(operator.into())
        )
    );
    let row = ok(&action("enable", None, None).await);
    assert_eq!(state(&row), (json!(true), Value::Null));
    let (_, _, enabled, stored_reason) = stored(&pool, &id).await;
    assert_eq!((enabled, stored_reason), (true, None));

    // An empty JSON object, and a null reason: the default reason.
    for body in ["{}", "{\"reason\": null}"] {
        let row = ok(&action("disable", Some(body), None).await);
        assert_eq!(state(&row), (json!(false), json!(operator)), "{body}");
        assert_eq!(stored(&pool, &id).await.3.as_deref(), Some(operator));
        ok(&action("enable", None, None).await);
    }

    // A reason of its own.
    let reason = "receiver migrating until 09:00 UTC";
    let row = ok(&action(
        "disable",
        Some(&json!({"reason": reason}).to_string()),
        None,
    )
    .await);
    assert_eq!(state(&row), (json!(false), json!(reason)));
    let (_, _, enabled, stored_reason) = stored(&pool, &id).await;
    assert_eq!((enabled, stored_reason.as_deref()), (false, Some(reason)));
    let shown = call(
        &server,
        "GET",
        &format!("/v1/endpoints/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(shown.json()["disabled_reason"], reason);

    // Refused reasons change nothing.
    let before = snapshot(&pool).await;
    for (body, field) in [
        (json!({"reason": 5}), Some("reason")),
        (json!({"reason": ""}), Some("reason")),
        (json!({"reason": "a\nb"}), Some("reason")),
        (json!({"colour": "red"}), Some("colour")),
        (json!(["x"]), Some("body")),
    ] {
        let answer = action("disable", Some(&body.to_string()), None).await;
        assert_problem(&answer, 400, field);
    }
    let text = action("disable", Some("{\"reason\": \"x\"}"), Some("text/plain")).await;
    assert_problem(&text, 415, None);
    assert_eq!(snapshot(&pool).await, before);

    // Enable clears the reason and closes the breaker.
    open_breaker(&pool, &id).await;
    let row = ok(&action("enable", None, None).await);
    assert_eq!(state(&row), (json!(true), Value::Null));
    assert_eq!(
        (&row["breaker"], &row["consecutive_failures"]),
        (&json!("closed"), &json!(0))
    );
    let (_, _, enabled, stored_reason) = stored(&pool, &id).await;
    assert_eq!((enabled, stored_reason), (true, None));
    assert_eq!(breaker(&pool, &id).await, closed());
}

#[sqlx::test(migrations = false)]
async fn reset_closes_an_open_breaker(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let id = endpoint(&pool, "default").await.to_string();
    open_breaker(&pool, &id).await;
    let shown = call(
        &server,
        "GET",
        &format!("/v1/endpoints/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(shown.json()["breaker"], "open");
    assert!(shown.json()["breaker_opened_at"].is_string());

    let reset = call(
        &server,
        "POST",
        &format!("/v1/endpoints/{id}/reset"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(reset.status, 200, "{reset:?}");
    let row = reset.json();
    assert_eq!(sorted_keys(&row), ENDPOINT_KEYS);
    assert_eq!(
        (
            &row["breaker"],
            &row["consecutive_failures"],
            &row["breaker_opened_at"],
            &row["next_probe_at"],
            &row["enabled"]
        ),
        (
            &json!("closed"),
            &json!(0),
            &Value::Null,
            &Value::Null,
            &json!(true)
        )
    );
    assert_eq!(breaker(&pool, &id).await, closed());
    let probe: Option<f64> = sqlx::query_scalar(
        "select probe_interval from herald.destinations where endpoint_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(probe, None, "every breaker column cleared");

    // A closed breaker resets to closed again.
    let again = call(
        &server,
        "POST",
        &format!("/v1/endpoints/{id}/reset"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(breaker(&pool, &id).await, closed());
}

#[sqlx::test(migrations = false)]
async fn rotate_secret_answers_a_new_secret_and_when_the_old_one_expires(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let id = endpoint(&pool, "default").await.to_string();
    let path = format!("/v1/endpoints/{id}/rotate-secret");
    let secrets = || {
        let pool = pool.clone();
        let id = id.clone();
        async move {
            let row: (String, Option<String>) = sqlx::query_as(
                "select secret, previous_secret from herald.webhook_endpoints where id = $1::uuid",
            )
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
            row
        }
    };
    // Whether `at` is `interval` from the database's now(), within a minute.
    let expires_in = |at: Value, interval: &'static str| {
        let pool = pool.clone();
        async move {
            let near: bool = sqlx::query_scalar(
                "select abs(extract(epoch from ($1::timestamptz - (now() + $2::interval)))) < 60",
            )
            .bind(at.as_str().expect("previous_secret_expires_at is a time"))
            .bind(interval)
            .fetch_one(&pool)
            .await
            .unwrap();
            near
        }
    };

    // No body: a generated secret, the default grace (webhook.secret_rotation_grace, 24h).
    let answer = call(&server, "POST", &path, Some(&admin), None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let rotated = answer.json();
    assert_eq!(
        sorted_keys(&rotated),
        keys_with(&["previous_secret_expires_at", "secret"])
    );
    let first = rotated["secret"].as_str().unwrap().to_owned();
    assert!(first.starts_with("whsec_") && first != SECRET, "{first}");
    assert!(herald::channel::signature::WebhookSecret::parse(&first).is_ok());
    assert!(!answer.text.contains(SECRET), "never the old secret");
    assert!(
        expires_in(rotated["previous_secret_expires_at"].clone(), "24 hours").await,
        "{rotated}"
    );
    assert_eq!(secrets().await, (first.clone(), Some(SECRET.to_owned())));
    let shown = call(
        &server,
        "GET",
        &format!("/v1/endpoints/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert!(!shown.text.contains("whsec_"), "{shown:?}");

    // A grace of an hour.
    let answer = call(
        &server,
        "POST",
        &path,
        Some(&admin),
        Some(&json!({"grace": "1h"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let second = answer.json()["secret"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert!(
        expires_in(
            answer.json()["previous_secret_expires_at"].clone(),
            "1 hour"
        )
        .await,
        "{answer:?}"
    );
    let expires: bool = sqlx::query_scalar(
        "select abs(extract(epoch from (previous_secret_expires_at - (now() + interval '1 hour')))) < 60
         from herald.webhook_endpoints where id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(expires, "stored as answered");
    assert_eq!(secrets().await, (second.clone(), Some(first.clone())));

    // A given secret is kept.
    let answer = call(
        &server,
        "POST",
        &path,
        Some(&admin),
        Some(&json!({"secret": OTHER_SECRET, "grace": "0s"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["secret"], OTHER_SECRET);
    assert_eq!(secrets().await, (OTHER_SECRET.to_owned(), Some(second)));

    // Refusals change nothing.
    let before = snapshot(&pool).await;
    for (body, field) in [
        (json!({"grace": "abc"}), "grace"),
        (json!({"grace": 3600}), "grace"),
        (json!({"grace": "400d"}), "grace"),
        (json!({"secret": "bad"}), "secret"),
        (json!({"secret": "whsec_c2hvcnQ="}), "secret"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let answer = call(&server, "POST", &path, Some(&admin), Some(&body)).await;
        assert_problem(&answer, 400, Some(field));
        assert!(!answer.text.contains(&OTHER_SECRET[6..]), "{answer:?}");
    }
    let text = send(
        "POST",
        &server.url(&path),
        Some(&admin),
        &[("content-type", "text/plain")],
        Some("{}".to_owned()),
    )
    .await;
    assert_problem(&text, 415, None);
    assert_eq!(snapshot(&pool).await, before);
}

#[sqlx::test(migrations = false)]
async fn actions_need_an_admin_token_of_the_endpoints_tenant_and_refusals_change_nothing(
    pool: PgPool,
) {
    let pool = migrated(pool).await;
    let reader = token(&pool, "read", None).await;
    let enqueuer = token(&pool, "enqueue", None).await;
    let acme_reader = token(&pool, "read", Some("acme")).await;
    let globex_admin = token(&pool, "admin", Some("globex")).await;
    let acme_admin = token(&pool, "admin", Some("acme")).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let id = endpoint(&pool, "acme").await.to_string();
    open_breaker(&pool, &id).await;
    let before = snapshot(&pool).await;
    let missing = Uuid::now_v7().to_string();

    let actions: [(&str, Option<Value>); 4] = [
        ("enable", None),
        ("disable", Some(json!({"reason": "nope"}))),
        ("reset", None),
        ("rotate-secret", Some(json!({"grace": "1h"}))),
    ];
    for (action, body) in &actions {
        let path = format!("/v1/endpoints/{id}/{action}");
        for token in [&reader, &enqueuer, &acme_reader] {
            let answer = call(&server, "POST", &path, Some(token), body.as_ref()).await;
            assert_problem(&answer, 403, None);
        }
        let foreign = call(&server, "POST", &path, Some(&globex_admin), body.as_ref()).await;
        assert_problem(&foreign, 404, None);
        assert!(!foreign.text.contains("whsec_"), "{foreign:?}");
        let unknown = call(
            &server,
            "POST",
            &format!("/v1/endpoints/{missing}/{action}"),
            Some(&admin),
            body.as_ref(),
        )
        .await;
        assert_problem(&unknown, 404, None);
        let malformed = call(
            &server,
            "POST",
            &format!("/v1/endpoints/nope/{action}"),
            Some(&admin),
            body.as_ref(),
        )
        .await;
        assert_problem(&malformed, 404, None);
        assert_eq!(
            shape_of(&foreign, &id),
            shape_of(&unknown, &missing),
            "{action}: another tenant's is answered as a missing one"
        );
        assert_eq!(shape_of(&malformed, "nope"), shape_of(&unknown, &missing));
        let anonymous = call(&server, "POST", &path, None, body.as_ref()).await;
        assert_problem(&anonymous, 401, None);
    }
    assert_eq!(snapshot(&pool).await, before, "nothing changed");

    // The endpoint's own tenant's admin may.
    for (action, body) in &actions {
        let answer = call(
            &server,
            "POST",
            &format!("/v1/endpoints/{id}/{action}"),
            Some(&acme_admin),
            body.as_ref(),
        )
        .await;
        assert_eq!(answer.status, 200, "{action}: {answer:?}");
        assert_eq!(answer.json()["id"], id.as_str());
    }
    let (_, _, enabled, reason) = stored(&pool, &id).await;
    assert_eq!((enabled, reason.as_deref()), (false, Some("nope")));
    assert_eq!(breaker(&pool, &id).await, closed());
    let secret: String =
        sqlx::query_scalar("select secret from herald.webhook_endpoints where id = $1::uuid")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_ne!(secret, SECRET, "rotated");
}
