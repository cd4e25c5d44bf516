//! The bench's webhook receiver: real HTTP on loopback (axum), answering 204 to every request
//! and counting those that carry a Standard Webhooks signature.
//!
//! An endpoint's URL can ask more of it in its query ([`Receiver::url_with`]): `delay_ms=N`
//! answers only after N ms (a slow receiver; the request counts as received on arrival), and
//! `timed` notes when each request arrived, by its `webhook-id` (the notification id), for
//! latencies of notifications delivered among others. The plain [`Receiver::url`] asks
//! neither, so the throughput phases' hot path never takes the arrivals' lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, Uri};
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::channel::signature::WebhookSecret;

pub struct Receiver {
    addr: SocketAddr,
    seen: Arc<Seen>,
    server: tokio::task::JoinHandle<()>,
}

/// What the server task has seen, shared with the [`Receiver`].
#[derive(Default)]
struct Seen {
    count: AtomicU64,
    arrived: Notify,
    /// Arrival of each request to a `timed` URL, by `webhook-id`.
    arrivals: Mutex<HashMap<Uuid, Instant>>,
}

/// What a request's URL asks of the receiver.
#[derive(Default)]
struct Asks {
    delay: Option<Duration>,
    timed: bool,
}

impl Asks {
    fn of(uri: &Uri) -> Self {
        let mut asks = Asks::default();
        for (key, value) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
            match &*key {
                "delay_ms" => asks.delay = value.parse().ok().map(Duration::from_millis),
                "timed" => asks.timed = true,
                _ => {}
            }
        }
        asks
    }
}

impl Receiver {
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let s = s.clone();
            async move {
                let at = Instant::now();
                if !headers.contains_key("webhook-signature") {
                    return StatusCode::BAD_REQUEST;
                }
                let asks = Asks::of(&uri);
                if asks.timed {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|id| id.to_str().ok())
                        .and_then(|id| id.parse().ok());
                    if let Some(id) = id {
                        lock(&s.arrivals).entry(id).or_insert(at);
                    }
                }
                // Noted before the count goes up, so a waiter woken by it finds the arrival.
                s.count.fetch_add(1, Ordering::SeqCst);
                s.arrived.notify_waiters();
                if let Some(delay) = asks.delay {
                    tokio::time::sleep(delay).await;
                }
                StatusCode::NO_CONTENT
            }
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { addr, seen, server })
    }

    /// Registers this receiver's plain [`url`](Self::url) as an endpoint of tenant `default`.
    pub async fn register(&self, pool: &PgPool) -> Result<Uuid, sqlx::Error> {
        register(pool, crate::DEFAULT_TENANT, &self.url()).await
    }

    /// Where it listens.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// A URL at `path` (e.g. `/slow`) that answers after `delay` and, when `timed`, notes each
    /// request's arrival (see [`arrived_at`](Self::arrived_at)).
    pub fn url_with(&self, path: &str, delay: Duration, timed: bool) -> String {
        let mut url = format!("http://{}{path}?delay_ms={}", self.addr, delay.as_millis());
        if timed {
            url.push_str("&timed");
        }
        url
    }

    /// Signed requests received so far.
    pub fn count(&self) -> u64 {
        self.seen.count.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` signed requests arrived.
    pub async fn wait_for(&self, n: u64) {
        self.wait_until(|| self.count() >= n).await
    }

    /// When the first request for notification `id` arrived at a `timed` URL.
    pub fn arrived_at(&self, id: Uuid) -> Option<Instant> {
        lock(&self.seen.arrivals).get(&id).copied()
    }

    /// Waits until a request for each of `ids` arrived at a `timed` URL.
    pub async fn wait_for_arrivals(&self, ids: &[Uuid]) {
        self.wait_until(|| {
            let arrivals = lock(&self.seen.arrivals);
            ids.iter().all(|id| arrivals.contains_key(id))
        })
        .await
    }

    async fn wait_until(&self, done: impl Fn() -> bool) {
        loop {
            // Registered before the check: an arrival between the two still wakes it.
            let arrived = self.seen.arrived.notified();
            if done() {
                return;
            }
            arrived.await;
        }
    }
}

/// Registers `url` as a webhook endpoint of `tenant`, with a fresh secret.
pub async fn register(pool: &PgPool, tenant: &str, url: &str) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    let secret = WebhookSecret::generate()
        .map_err(|e| sqlx::Error::Protocol(format!("cannot make a secret: {e}")))?;
    crate::store::endpoints::insert(
        &mut *pool.acquire().await?,
        id,
        tenant,
        url,
        secret.expose(),
    )
    .await?;
    Ok(id)
}

/// The arrivals are plain inserts and reads: a panic mid-way leaves nothing half-done.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}
