//! A misbehaving webhook receiver: real HTTP/1.1 over TCP on loopback, written on raw sockets so
//! that it can do what a framework will not (read a request whole and hang up, or answer long
//! after the sender gave up). Every request it reads is logged with the answer it chose and
//! whether the Standard Webhooks signature verified.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::random::Random;

/// What the receiver did with a request it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `204 No Content`, in time: a delivery the sender knows about.
    Accepted,
    /// `500`: refused, the sender knows nothing was done.
    Refused,
    /// Read whole, then the connection closed without a word: the sender cannot know.
    HungUp,
    /// `204`, but only after the sender's timeout: processed, and the sender cannot know.
    Late,
}

impl Answer {
    /// Whether the receiver acted on the request (a later request for the same id is then a
    /// duplicate send).
    pub fn processed(self) -> bool {
        self != Answer::Refused
    }
}

/// The share of requests given each misbehaviour; the rest are accepted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    pub refuse: f64,
    pub hang_up: f64,
    pub late: f64,
    /// How long a late answer waits: longer than the sender's `webhook.timeout`.
    pub late_by: Duration,
    /// Time spent on every accepted request, so deliveries are in flight when a daemon dies.
    pub work: Duration,
    /// An answer meant to be in time that took longer than this (a starved machine) is logged
    /// as late: the sender may have given up on it.
    pub in_time: Duration,
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub webhook_id: String,
    pub answer: Answer,
    pub signature_valid: bool,
}

pub struct ChaosReceiver {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: tokio::task::JoinHandle<()>,
}

impl ChaosReceiver {
    /// `secret`: the endpoint's `whsec_…` secret, to verify every signature.
    pub async fn start(behaviour: Behaviour, secret: &str, seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let verifier = Arc::new(standardwebhooks::Webhook::new(secret).unwrap());
        let log = seen.clone();
        let server = tokio::spawn(async move {
            let mut connection = 0u64;
            while let Ok((socket, _)) = listener.accept().await {
                connection += 1;
                let random = Random::new(seed ^ connection.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                tokio::spawn(serve(
                    socket,
                    behaviour,
                    random,
                    verifier.clone(),
                    log.clone(),
                ));
            }
        });
        ChaosReceiver { addr, seen, server }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ChaosReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One keep-alive connection: read a request, pick an answer, act on it, repeat.
async fn serve(
    mut socket: TcpStream,
    behaviour: Behaviour,
    mut random: Random,
    verifier: Arc<standardwebhooks::Webhook>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    while let Some((headers, body)) = read_request(&mut socket).await {
        let roll = random.unit();
        let answer = if roll < behaviour.refuse {
            Answer::Refused
        } else if roll < behaviour.refuse + behaviour.hang_up {
            Answer::HungUp
        } else if roll < behaviour.refuse + behaviour.hang_up + behaviour.late {
            Answer::Late
        } else {
            Answer::Accepted
        };
        let read_at = std::time::Instant::now();
        let index = {
            let mut seen = seen.lock().unwrap();
            seen.push(Seen {
                webhook_id: headers.get("webhook-id").cloned().unwrap_or_default(),
                answer,
                signature_valid: signature_valid(&verifier, &headers, &body),
            });
            seen.len() - 1
        };
        let reply: &[u8] = match answer {
            Answer::HungUp => return,
            Answer::Refused => b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
            Answer::Late => {
                tokio::time::sleep(behaviour.late_by).await;
                b"HTTP/1.1 204 No Content\r\n\r\n"
            }
            Answer::Accepted => {
                tokio::time::sleep(behaviour.work).await;
                b"HTTP/1.1 204 No Content\r\n\r\n"
            }
        };
        let written = socket.write_all(reply).await.is_ok();
        if answer == Answer::Accepted && (!written || read_at.elapsed() > behaviour.in_time) {
            seen.lock().unwrap()[index].answer = Answer::Late;
        }
        if !written {
            return;
        }
    }
}

fn signature_valid(
    verifier: &standardwebhooks::Webhook,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> bool {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            map.insert(name, value);
        }
    }
    verifier.verify(body, &map).is_ok()
}

/// Reads one request: headers (names lowercased) and a `content-length` body. `None` at the end
/// of the stream or on anything malformed.
async fn read_request(socket: &mut TcpStream) -> Option<(HashMap<String, String>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(length);
    Some((headers, body))
}
