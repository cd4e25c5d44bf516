//! A real HTTP receiver on 127.0.0.1:0 (axum) that answers from a script and records every
//! request and every accepted connection; plus a raw one that reads a request and hangs up.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::raw_http::{Read, read_request};
use crate::wait_until;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub retry_after: Option<String>,
    pub location: Option<String>,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            delay: Duration::ZERO,
            retry_after: None,
            location: None,
            body: String::new(),
        }
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn retry_after(mut self, value: &str) -> Self {
        self.retry_after = Some(value.to_owned());
        self
    }

    pub fn location(mut self, url: &str) -> Self {
        self.location = Some(url.to_owned());
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }
}

/// A request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Inner {
    script: Mutex<VecDeque<Reply>>,
    /// The answer once the script is used up; 204 No Content unless set.
    fallback: Mutex<Option<Reply>>,
    requests: Mutex<Vec<Received>>,
    connections: Arc<AtomicUsize>,
    /// Requests being answered now, and the most there ever were at once.
    answering: AtomicUsize,
    most_at_once: AtomicUsize,
}

pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Answers with `script` in order, then 204 No Content.
    pub async fn start(script: Vec<Reply>) -> Self {
        let inner = Arc::new(Inner {
            script: Mutex::new(script.into()),
            ..Default::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counted = CountingListener {
            listener,
            accepted: inner.connections.clone(),
        };
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            axum::serve(counted, app).await.unwrap();
        });
        Receiver {
            addr,
            inner,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// From now on every request gets `reply` (what is left of the script is dropped).
    pub fn reply_from_now_on(&self, reply: Reply) {
        self.inner.script.lock().unwrap().clear();
        *self.inner.fallback.lock().unwrap() = Some(reply);
    }

    /// The most requests that were being answered at the same time.
    pub fn most_at_once(&self) -> usize {
        self.inner.most_at_once.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::SeqCst)
    }

    pub async fn wait_for_requests(&self, n: usize) -> Vec<Received> {
        wait_until(&format!("{n} request(s) at the receiver"), || {
            self.requests().len() >= n
        })
        .await;
        self.requests()
    }
}

async fn answer(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    inner.requests.lock().unwrap().push(Received {
        headers,
        body,
        at: Instant::now(),
    });
    let reply = inner.script.lock().unwrap().pop_front().unwrap_or_else(|| {
        inner
            .fallback
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| Reply::status(204))
    });
    let now = inner.answering.fetch_add(1, Ordering::SeqCst) + 1;
    inner.most_at_once.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(reply.delay).await;
    inner.answering.fetch_sub(1, Ordering::SeqCst);
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    if let Some(value) = reply.retry_after {
        response
            .headers_mut()
            .insert("retry-after", value.parse().unwrap());
    }
    response
}

struct CountingListener {
    listener: TcpListener,
    accepted: Arc<AtomicUsize>,
}

impl axum::serve::Listener for CountingListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok((io, addr)) = self.listener.accept().await {
                self.accepted.fetch_add(1, Ordering::SeqCst);
                return (io, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// Reads each request whole, then hangs up without answering the first `hang_ups` of them;
/// answers the rest `204 No Content`. Returns its address and a counter of requests read.
pub async fn hanging_up_receiver(hang_ups: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                while let Read::Request(_) = read_request(&mut socket).await {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    if n < hang_ups {
                        return; // drop the socket: the request was read, no answer is sent
                    }
                    let ok = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
                    if socket.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}
