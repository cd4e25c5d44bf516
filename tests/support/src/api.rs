//! `herald serve` on a fresh loopback address, and a client that speaks to it as programs do:
//! JSON bodies, bearer tokens, every status and header kept for the test to assert.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;

use crate::cli::herald;
use crate::daemon::Daemon;
use crate::db::url_of;
use crate::scrape::{free_addr, wait_for_status};

/// A running `herald serve` and where it listens.
pub struct Server {
    pub process: Daemon,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `herald serve` against `pool`'s database (migrated) with `env` and waits until it
    /// answers `/healthz`.
    pub async fn start(pool: &PgPool, env: &[(&str, &str)]) -> Server {
        let addr = free_addr();
        let listen = addr.to_string();
        let mut all = vec![("HERALD_API__LISTEN", listen.as_str())];
        all.extend_from_slice(env);
        let process = Daemon::spawn_command(&url_of(pool), "serve", &[], &all);
        wait_for_status(addr, "/healthz", 200).await;
        Server { process, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// `herald tokens add --role ROLE [--tenant T]`: the token's text.
pub async fn token(pool: &PgPool, role: &str, tenant: Option<&str>) -> String {
    let mut cli = herald(pool).args(&["tokens", "add", "--name", "test", "--role", role, "--json"]);
    if let Some(tenant) = tenant {
        cli = cli.args(&["--tenant", tenant]);
    }
    let run = cli.run().await;
    assert_eq!(run.code, 0, "{run:?}");
    run.json()["token"].as_str().unwrap().to_owned()
}

/// An answer: status, headers, body (parsed when it is JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

/// One request: `method`, `url`, optional bearer `token`, extra `headers`, optional `body`
/// sent as `application/json` unless `headers` name another content type.
pub async fn send(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Answer {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .unwrap();
    let mut request = client.request(method.parse().unwrap(), url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        && body.is_some()
    {
        request = request.header("content-type", "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.expect("herald serve answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Answer {
        status,
        headers,
        text: response.text().await.unwrap(),
    }
}

/// A refusal: `status`, a problem document, naming `field` when one is given.
pub fn assert_problem(answer: &Answer, status: u16, field: Option<&str>) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.header("content-type"),
        "application/problem+json",
        "{answer:?}"
    );
    let problem = answer.json();
    assert_eq!(problem["status"], status);
    assert_eq!(problem["type"], "about:blank");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty() && !d.contains('\n'))
    );
    if let Some(field) = field {
        assert_eq!(problem["field"], field, "{problem}");
    }
}
