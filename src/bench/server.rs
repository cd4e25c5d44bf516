//! An in-process `herald serve` on loopback for the phases that time it over HTTP, with a token
//! of its own.
//!
//! Invariant: the server stops when this handle is dropped, run interrupted or not.

use std::net::SocketAddr;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

use super::BenchError;
use crate::api::token;
use crate::config::Config;
use crate::store::tokens;

pub struct Server {
    pub addr: SocketAddr,
    /// A token of the role asked for, as a client presents it.
    pub token: String,
    stop: CancellationToken,
    _task: AbortOnDropHandle<()>,
}

impl Server {
    /// Serves the API and the console on 127.0.0.1, against `pool`, with a new `role` token.
    pub async fn start(pool: &PgPool, config: &Config, role: &str) -> Result<Server, BenchError> {
        let new = token::generate(Uuid::now_v7()).map_err(BenchError::Setup)?;
        tokens::insert(
            &mut *pool.acquire().await?,
            new.id,
            "bench",
            role,
            None,
            &new.secret_hash,
        )
        .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| BenchError::Setup(format!("cannot listen on loopback: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let stop = CancellationToken::new();
        let task = {
            let (config, pool, stop) = (config.clone(), pool.clone(), stop.clone());
            AbortOnDropHandle::new(tokio::spawn(async move {
                crate::api::serve(listener, &config, pool, stop.clone(), stop).await;
            }))
        };
        Ok(Server {
            addr,
            token: new.text.clone(),
            stop,
            _task: task,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
