//! The HTTP client's ceiling: `n` POSTs from a bare reqwest client, as many in flight as the
//! dispatcher has workers, to the same loopback receiver, with no database and no herald code
//! between them. `dispatch_webhook_per_s` is read against it: what herald's queue, signing and
//! SSRF guard leave of what this machine can POST at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio_util::task::AbortOnDropHandle;

use super::BenchError;
use super::receiver::Receiver;

/// A body the size of the bench's webhooks (`{"type","timestamp","data":{"order":…}}`).
const BODY: &str =
    r#"{"type":"bench","timestamp":"2026-01-01T00:00:00.000Z","data":{"order":1234567}}"#;

/// Requests per second; fails unless the receiver saw every one.
pub async fn bare_client(receiver: &Receiver, in_flight: usize, n: u64) -> Result<f64, BenchError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| BenchError::Setup(format!("cannot set up the bare HTTP client: {e}")))?;
    let url = receiver.url();
    let before = receiver.count();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..in_flight.max(1))
        .map(|_| {
            let (client, next, url) = (client.clone(), next.clone(), url.clone());
            AbortOnDropHandle::new(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    // The receiver counts a request only if it carries a signature header;
                    // its value is not checked, so none is computed here.
                    client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("webhook-signature", "v1,bench")
                        .body(BODY)
                        .send()
                        .await?
                        .bytes()
                        .await?;
                }
                Ok::<(), reqwest::Error>(())
            }))
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| BenchError::Setup(format!("a bare HTTP client failed: {e}")))?
            .map_err(|e| BenchError::Setup(format!("bare HTTP POST: {e}")))?;
    }
    let per_s = n as f64 / start.elapsed().as_secs_f64();
    let received = receiver.count() - before;
    if received < n {
        return Err(BenchError::Setup(format!(
            "the receiver saw {received} of {n} bare POSTs"
        )));
    }
    Ok(per_s)
}
