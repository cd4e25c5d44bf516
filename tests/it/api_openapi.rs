//! `/v1/openapi.json`: an OpenAPI 3.1 document that a validator accepts, that holds exactly the
//! routes of DESIGN.md's contract, and whose every operation the server really serves (the
//! router and the document are built from the same handlers, see `src/api/openapi.rs`).

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::api::{Server, send, token};
use crate::support::migrated;

/// The `/v1` routes of the contract (DESIGN.md, "HTTP API and console").
const CONTRACT: [&str; 16] = [
    "POST /v1/notifications",
    "GET /v1/notifications",
    "POST /v1/notifications/batch",
    "GET /v1/notifications/{id}",
    "POST /v1/notifications/{id}/retry",
    "POST /v1/notifications/{id}/cancel",
    "POST /v1/explain",
    "GET /v1/stats",
    "POST /v1/endpoints",
    "GET /v1/endpoints",
    "GET /v1/endpoints/{id}",
    "PATCH /v1/endpoints/{id}",
    "POST /v1/endpoints/{id}/enable",
    "POST /v1/endpoints/{id}/disable",
    "POST /v1/endpoints/{id}/reset",
    "POST /v1/endpoints/{id}/rotate-secret",
];

#[sqlx::test(migrations = false)]
async fn the_document_validates_and_every_route_in_it_is_served(pool: PgPool) {
    let pool = migrated(pool).await;
    let admin = token(&pool, "admin", None).await;
    let server = Server::start(&pool, &[]).await;
    let answer = send("GET", &server.url("/v1/openapi.json"), None, &[], None).await;
    assert_eq!(answer.status, 200);
    let document = answer.json();
    assert_eq!(document["openapi"], "3.1.0");

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &answer.text).unwrap();
    let validated = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(file.path())
        .output()
        .expect("python3 runs (.ci/run installs openapi-spec-validator)");
    assert!(
        validated.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
            assert_eq!(
                operation["security"],
                serde_json::json!([{"bearer": []}]),
                "{method} {path}"
            );
            assert!(operation["responses"]["401"].is_object(), "{method} {path}");
            assert!(operation["operationId"].is_string(), "{method} {path}");
        }
    }
    let contract: BTreeSet<String> = CONTRACT.iter().map(|r| r.to_string()).collect();
    assert_eq!(documented, contract);

    // Each documented operation is routed: never the fallback's 404 nor a 405.
    for route in &documented {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace("{id}", &Uuid::now_v7().to_string());
        let body = matches!(method, "POST" | "PATCH").then(|| "{}".to_owned());
        let answer = send(method, &server.url(&path), Some(&admin), &[], body).await;
        assert_ne!(answer.status, 405, "{route}: {answer:?}");
        let problem: Value = serde_json::from_str(&answer.text).unwrap_or(Value::Null);
        assert_ne!(problem["detail"], "no such route", "{route}");
    }
    let unrouted = send("GET", &server.url("/v1/nothing"), Some(&admin), &[], None).await;
    assert_eq!(unrouted.json()["detail"], "no such route");
}
