//! An HTTP/1.1 server for a [`Router`] whose connections are bounded in number and in time, so
//! that what clients send, or fail to send, cannot exhaust the process's file descriptors:
//!
//! - at most `max_connections` at once. The next one is not accepted until one closes: it waits
//!   in the kernel's listen backlog, where it costs this process no descriptor;
//! - a request's head must arrive whole within `header_timeout` of the connection opening, or of
//!   the first byte of a later request on it (slowloris);
//! - a connection with no request being handled is closed once it has moved no byte for
//!   `idle_timeout`: between keep-alive requests, or sending a response the client does not read.
//!
//! A request being handled has no time limit here: handlers bound their own work.

mod phase;
mod watched;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use phase::Phase;
use watched::Watched;

/// How long to wait before accepting again after an error that is not one connection's (out of
/// descriptors, say): retrying at once would spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(250);

/// The three bounds, from a config section's `header_timeout`, `idle_timeout` and
/// `max_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `stop` is cancelled, then closes the listener, lets each
/// connection finish the request it is handling, and returns when all are closed.
pub async fn serve(listener: TcpListener, router: Router, bounds: Bounds, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(bounds.max_connections.max(1)));
    let connections = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = stop.cancelled() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        match accepted {
            Ok((stream, _)) => {
                connections.spawn(connection(
                    stream,
                    router.clone(),
                    bounds,
                    stop.clone(),
                    slot,
                ));
            }
            Err(e) if is_one_connections(&e) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_PAUSE) => {}
                    () = stop.cancelled() => break,
                }
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Errors that end one connection that was being accepted, not the listener's ability to accept.
fn is_one_connections(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    )
}

/// Serves one connection until it closes, its deadline passes, or the server stops; `_slot` is
/// its place among `max_connections`, given back when it closes.
async fn connection(
    stream: TcpStream,
    router: Router,
    bounds: Bounds,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let phase = Arc::new(Phase::new());
    let service = {
        let phase = phase.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let router = router.clone();
            let phase = phase.clone();
            async move {
                phase.handling();
                let response = router.oneshot(request).await;
                phase.responded();
                response
            }
        })
    };
    let io = TokioIo::new(Watched::new(stream, phase.clone()));
    // The deadlines are the phase's: hyper's own header timer would also run between
    // keep-alive requests, closing idle connections after `header_timeout`.
    let conn = http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let expired = phase.expired(bounds.header_timeout, bounds.idle_timeout);
    tokio::pin!(expired);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            // Dropping the connection closes its socket.
            () = &mut expired => return,
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
