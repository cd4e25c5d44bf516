//! The bench's webhook receiver: real HTTP on loopback (axum), answering 204 to every request
//! and counting those that carry a Standard Webhooks signature.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, StatusCode};
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::channel::signature::WebhookSecret;

pub struct Receiver {
    addr: SocketAddr,
    count: Arc<AtomicU64>,
    arrived: Arc<Notify>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let count = Arc::new(AtomicU64::new(0));
        let arrived = Arc::new(Notify::new());
        let (c, a) = (count.clone(), arrived.clone());
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let (c, a) = (c.clone(), a.clone());
            async move {
                if !headers.contains_key("webhook-signature") {
                    return StatusCode::BAD_REQUEST;
                }
                c.fetch_add(1, Ordering::SeqCst);
                a.notify_waiters();
                StatusCode::NO_CONTENT
            }
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver {
            addr,
            count,
            arrived,
            server,
        })
    }

    /// Registers this receiver as an endpoint of tenant `default`.
    pub async fn register(&self, pool: &PgPool) -> Result<Uuid, sqlx::Error> {
        let id = Uuid::now_v7();
        let secret = WebhookSecret::generate()
            .map_err(|e| sqlx::Error::Protocol(format!("cannot make a secret: {e}")))?;
        crate::store::endpoints::insert(
            &mut *pool.acquire().await?,
            id,
            "default",
            &self.url(),
            secret.expose(),
        )
        .await?;
        Ok(id)
    }

    /// Where it listens.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Signed requests received so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` signed requests arrived.
    pub async fn wait_for(&self, n: u64) {
        loop {
            let arrived = self.arrived.notified();
            if self.count() >= n {
                return;
            }
            arrived.await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}
