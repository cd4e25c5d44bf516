//! `api_enqueue_per_s`: single enqueues over HTTP, `POST /v1/notifications` to an in-process
//! `herald serve` on loopback from `clients` concurrent clients (keep-alive connections, one
//! notification per request, each checked for its `201`), read beside `enqueue_single_per_s`:
//! the library's rate with as many callers, in the same run, on the same database.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::json;
use sqlx::PgPool;
use tokio_util::task::AbortOnDropHandle;

use super::BenchError;
use super::server::Server;
use crate::config::Config;

/// `total` enqueues over HTTP from `clients` concurrent clients; notifications per second.
pub async fn enqueue(
    pool: &PgPool,
    config: &Config,
    phase: &str,
    clients: u32,
    total: u64,
) -> Result<f64, BenchError> {
    let server = Server::start(pool, config, "enqueue").await?;
    let addr = server.addr;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(clients as usize)
        .build()
        .map_err(|e| BenchError::Setup(format!("cannot build an HTTP client: {e}")))?;
    let url = format!("http://{addr}/v1/notifications");
    let authorization = format!("Bearer {}", server.token);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url, authorization) = (client.clone(), url.clone(), authorization.clone());
            let (next, phase) = (next.clone(), phase.to_owned());
            AbortOnDropHandle::new(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<(), BenchError>(());
                    }
                    let body = json!({
                        "user_id": format!("user-{}", i % 100_000),
                        "type": "order_shipped",
                        "business_id": format!("{phase}-{i}"),
                        "email": "ann@example.com",
                        "payload": {"order": i, "items": [{"sku": "A-1", "qty": 2}]},
                    });
                    let response = client
                        .post(&url)
                        .header("authorization", &authorization)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await
                        .map_err(|e| BenchError::Setup(format!("an API request failed: {e}")))?;
                    if response.status() != reqwest::StatusCode::CREATED {
                        return Err(BenchError::Setup(format!(
                            "an API enqueue answered {}",
                            response.status()
                        )));
                    }
                }
            }))
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| BenchError::Setup(format!("an API client failed: {e}")))??;
    }
    let per_s = total as f64 / start.elapsed().as_secs_f64();
    drop(server);
    Ok(per_s)
}
