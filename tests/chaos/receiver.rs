//! A misbehaving webhook receiver: real HTTP/1.1 over TCP on loopback, on raw sockets so that
//! it can do what a framework will not (read a request whole and hang up, or answer long after
//! the sender gave up). Every request it reads is logged with the answer it chose, whether the
//! Standard Webhooks signature verified, the `data` it carried, and when it was being answered
//! (for the concurrency a destination's `max_in_flight` caps). It can also flap: down (`503` to
//! everything) and up again, a number of times, then up for good.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::random::Random;
use crate::support::raw_http::{RawRequest, Read, read_request};

/// What the receiver did with a request it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `204 No Content`, in time: a delivery the sender knows about.
    Accepted,
    /// `500`: refused, the sender knows nothing was done.
    Refused,
    /// `503` while the receiver is down (flapping): the sender knows nothing was done.
    Down,
    /// Read whole, then the connection closed without a word: the sender cannot know.
    HungUp,
    /// `204`, but after the sender's timeout (on purpose, or because a starved machine made an
    /// in-time answer slow): processed, and the sender cannot know.
    Late,
    /// Not a request herald would send (no `content-length`, headers that are not UTF-8).
    Malformed,
}

impl Answer {
    /// Whether the receiver acted on the request (a later request for the same id is then a
    /// duplicate send).
    pub fn processed(self) -> bool {
        matches!(self, Answer::Accepted | Answer::HungUp | Answer::Late)
    }
}

/// The share of requests given each misbehaviour; the rest are accepted.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    pub refuse: f64,
    pub hang_up: f64,
    pub late: f64,
    /// Time spent on every accepted request, so deliveries are in flight when a daemon dies.
    pub work: Duration,
    /// How long a late answer waits: longer than the sender's `webhook.timeout`.
    pub late_by: Duration,
    /// An accepted answer that took longer than this is logged as late: the sender may have
    /// given up on it.
    pub in_time: Duration,
    /// Down and up again, over and over, counted from the receiver's start; `None`: always up.
    pub flap: Option<Flap>,
}

/// A receiver that goes down (`503` to every request) and comes back: `up`, then `down`, for
/// `cycles` rounds, then up for good, so that whatever waits on it can finish.
#[derive(Debug, Clone, Copy)]
pub struct Flap {
    pub up: Duration,
    pub down: Duration,
    pub cycles: u32,
}

impl Flap {
    /// Whether the receiver is down `elapsed` after its start.
    pub fn is_down(&self, elapsed: Duration) -> bool {
        let period = self.up + self.down;
        let round = elapsed.as_nanos() / period.as_nanos().max(1);
        let within = elapsed.as_nanos() % period.as_nanos().max(1);
        round < u128::from(self.cycles) && within >= self.up.as_nanos()
    }
}

impl Behaviour {
    /// Accepts everything after `work`; `late_by` and `in_time` fit a sender timeout of
    /// `timeout`.
    pub fn accepting(work: Duration, timeout: Duration) -> Self {
        Behaviour {
            refuse: 0.0,
            hang_up: 0.0,
            late: 0.0,
            work,
            late_by: timeout * 5 / 2,
            in_time: timeout * 3 / 4,
            flap: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub webhook_id: String,
    pub answer: Answer,
    pub signature_valid: bool,
    /// The body's `data` member: the notification's payload as delivered.
    pub data: Option<Value>,
    /// When the request had been read whole.
    pub read_at: Instant,
    /// When the receiver stopped answering it: just before writing the answer, on hanging up,
    /// or when the sender closed the connection first (it gave up, or died). Between the two
    /// the request counts as in flight at this receiver. The sender learns of the answer only
    /// after this instant, so a request it sends next is read after it.
    pub done_at: Instant,
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
        let started = Instant::now();
        let server = tokio::spawn(async move {
            let mut connection = 0u64;
            while let Ok((socket, _)) = listener.accept().await {
                connection += 1;
                let random = Random::new(seed ^ connection.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let connection = Connection {
                    behaviour,
                    started,
                    random,
                    verifier: verifier.clone(),
                    seen: log.clone(),
                };
                tokio::spawn(connection.serve(socket));
            }
        });
        ChaosReceiver { addr, seen, server }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Every request read so far, in the order the receiver finished reading them.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ChaosReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Connection {
    behaviour: Behaviour,
    /// The receiver's start, which the flapping counts from.
    started: Instant,
    random: Random,
    verifier: Arc<standardwebhooks::Webhook>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Connection {
    /// One keep-alive connection: read a request, pick an answer, act on it, repeat.
    async fn serve(mut self, mut socket: TcpStream) {
        loop {
            let request = match read_request(&mut socket).await {
                Read::Request(request) => request,
                Read::Closed => return,
                Read::Malformed => {
                    self.log(None, Answer::Malformed, Instant::now());
                    return;
                }
            };
            let answer = self.choose();
            let read_at = Instant::now();
            let index = self.log(Some(&request), answer, read_at);
            let (reply, closed_first): (&[u8], bool) = match answer {
                Answer::HungUp | Answer::Malformed => return,
                Answer::Refused => (
                    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
                    false,
                ),
                Answer::Down => (
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
                    false,
                ),
                Answer::Late => (
                    b"HTTP/1.1 204 No Content\r\n\r\n",
                    self.work(&socket, index, self.behaviour.late_by).await,
                ),
                Answer::Accepted => (
                    b"HTTP/1.1 204 No Content\r\n\r\n",
                    self.work(&socket, index, self.behaviour.work).await,
                ),
            };
            if !closed_first {
                self.seen.lock().unwrap()[index].done_at = Instant::now();
            }
            let written = socket.write_all(reply).await.is_ok();
            if answer == Answer::Accepted
                && (!written || read_at.elapsed() > self.behaviour.in_time)
            {
                self.seen.lock().unwrap()[index].answer = Answer::Late;
            }
            if !written {
                return;
            }
        }
    }

    /// Spends `time` on request `index`, noting the moment the sender closes the connection
    /// if it does so meanwhile (the answer is still written afterwards, as before: the sender
    /// may or may not get it). Returns whether it closed first.
    async fn work(&self, socket: &TcpStream, index: usize, time: Duration) -> bool {
        let work = tokio::time::sleep(time);
        tokio::pin!(work);
        tokio::select! {
            () = &mut work => false,
            () = closed(socket) => {
                self.seen.lock().unwrap()[index].done_at = Instant::now();
                work.await;
                true
            }
        }
    }

    fn choose(&mut self) -> Answer {
        let b = &self.behaviour;
        let roll = self.random.unit();
        if b.flap
            .is_some_and(|flap| flap.is_down(self.started.elapsed()))
        {
            Answer::Down
        } else if roll < b.refuse {
            Answer::Refused
        } else if roll < b.refuse + b.hang_up {
            Answer::HungUp
        } else if roll < b.refuse + b.hang_up + b.late {
            Answer::Late
        } else {
            Answer::Accepted
        }
    }

    /// Logs a request as read (before answering, so the order is the order of arrival);
    /// returns its index.
    fn log(&self, request: Option<&RawRequest>, answer: Answer, read_at: Instant) -> usize {
        let seen = match request {
            Some(request) => Seen {
                webhook_id: request
                    .headers
                    .get("webhook-id")
                    .cloned()
                    .unwrap_or_default(),
                answer,
                signature_valid: signature_valid(&self.verifier, request),
                data: serde_json::from_slice::<Value>(&request.body)
                    .ok()
                    .and_then(|body| body.get("data").cloned()),
                read_at,
                done_at: read_at,
            },
            None => Seen {
                webhook_id: String::new(),
                answer,
                signature_valid: false,
                data: None,
                read_at,
                done_at: read_at,
            },
        };
        let mut log = self.seen.lock().unwrap();
        log.push(seen);
        log.len() - 1
    }
}

/// Resolves once the peer has closed the connection (or it broke). Bytes waiting to be read
/// are left alone (herald sends no second request before the answer), and then this never
/// resolves.
async fn closed(socket: &TcpStream) {
    let mut byte = [0u8; 1];
    match socket.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

fn signature_valid(verifier: &standardwebhooks::Webhook, request: &RawRequest) -> bool {
    let mut map = http::HeaderMap::new();
    for (name, value) in &request.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            map.insert(name, value);
        }
    }
    verifier.verify(&request.body, &map).is_ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{Answer, Behaviour, ChaosReceiver, Flap};
    use crate::support::SECRET;

    /// Sends `body` with the Standard Webhooks headers, signed with `secret`, on a raw socket.
    async fn send(receiver: &ChaosReceiver, secret: &str, body: &str) {
        let id = "msg_1";
        let timestamp = chrono::Utc::now().timestamp();
        let signature = standardwebhooks::Webhook::new(secret)
            .unwrap()
            .sign(id, timestamp, body.as_bytes())
            .unwrap();
        let request = format!(
            "POST /hook HTTP/1.1\r\nhost: x\r\nwebhook-id: {id}\r\nwebhook-timestamp: {timestamp}\r\n\
             webhook-signature: {signature}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut socket = tokio::net::TcpStream::connect(receiver.addr).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut answer = [0u8; 12];
        socket.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 204");
    }

    #[tokio::test]
    async fn signatures_are_verified_and_data_is_kept() {
        let behaviour = Behaviour::accepting(Duration::ZERO, Duration::from_secs(10));
        let receiver = ChaosReceiver::start(behaviour, SECRET, 1).await;
        let body = r#"{"type":"t","timestamp":"2026-01-01T00:00:00Z","data":{"order":7}}"#;
        send(&receiver, SECRET, body).await;
        send(
            &receiver,
            "whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ=",
            body,
        )
        .await;
        let seen = receiver.seen();
        assert_eq!(seen.len(), 2);
        assert!(seen[0].signature_valid, "{seen:?}");
        assert!(
            !seen[1].signature_valid,
            "another key's signature: {seen:?}"
        );
        assert_eq!(seen[0].webhook_id, "msg_1");
        assert_eq!(seen[0].answer, Answer::Accepted);
        assert_eq!(seen[0].data, Some(serde_json::json!({ "order": 7 })));
    }

    #[test]
    fn a_flap_is_up_then_down_for_its_cycles_then_up_for_good() {
        let ms = Duration::from_millis;
        let flap = Flap {
            up: ms(700),
            down: ms(500),
            cycles: 2,
        };
        let down: Vec<bool> = [0, 699, 700, 1_199, 1_200, 1_900, 2_399, 2_400, 10_000]
            .into_iter()
            .map(|t| flap.is_down(ms(t)))
            .collect();
        assert_eq!(
            down,
            [false, false, true, true, false, true, true, false, false]
        );
    }

    #[tokio::test]
    async fn a_request_stops_counting_when_its_sender_hangs_up() {
        let behaviour = Behaviour::accepting(Duration::from_millis(500), Duration::from_secs(10));
        let receiver = ChaosReceiver::start(behaviour, SECRET, 1).await;
        let mut socket = tokio::net::TcpStream::connect(receiver.addr).await.unwrap();
        socket
            .write_all(b"POST /hook HTTP/1.1\r\nwebhook-id: msg_2\r\ncontent-length: 2\r\n\r\n{}")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(socket);
        tokio::time::sleep(Duration::from_millis(700)).await;
        let seen = receiver.seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let answered = seen[0].done_at - seen[0].read_at;
        assert!(
            answered < Duration::from_millis(400),
            "counted as in flight for {answered:?} after its sender hung up"
        );
    }
}
