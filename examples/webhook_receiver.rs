//! A webhook receiver for herald's deliveries: verifies the Standard Webhooks signature over
//! the raw body, rejects timestamps outside a 5-minute tolerance, and processes each
//! `webhook-id` once.
//!
//! Run it, register it, and watch deliveries arrive:
//! ```text
//! WEBHOOK_SECRET=whsec_… cargo run --example webhook_receiver          # listens on 127.0.0.1:8080
//! herald endpoints add --url http://127.0.0.1:8080/webhooks/herald --secret whsec_…
//! ```
//! (`webhook.allowed_networks` must list 127.0.0.0/8 for herald to deliver to loopback.)
//! `PORT` changes the port. Its tests run with `cargo test --example webhook_receiver`, and with
//! a plain `cargo test`.
//!
//! Order matters: verify first (the signature covers the id, the timestamp and the exact body
//! bytes, so none can be forged or swapped), then deduplicate (never record an unverified id:
//! an attacker could then block a real delivery by sending its id first), then act.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use standardwebhooks::{Webhook, WebhookError};

/// How far `webhook-timestamp` may be from the receiver's clock, in either direction. herald
/// stamps each attempt when it claims it (database clock), so a genuine request is seconds old;
/// a captured request replayed later than this is refused without looking at its id.
/// `standardwebhooks::Webhook::verify` applies exactly this tolerance (300 s, both ways).
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// What the receiver answers, and why.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Verified and new: processed. Answer 2xx so herald marks it delivered.
    Accepted { id: String, event_type: String },
    /// Verified, but this `webhook-id` was processed before: a retry whose first attempt did
    /// arrive (its answer was lost), or a replay within the tolerance. Answer 2xx too, or
    /// herald keeps retrying something already done.
    Duplicate { id: String },
    /// Signature, timestamp or headers wrong: answer 4xx and do nothing. (herald retries 4xx;
    /// a genuine delivery only fails here if secrets or clocks are misconfigured.)
    Rejected { reason: String },
}

impl Verdict {
    pub fn status(&self) -> StatusCode {
        match self {
            Verdict::Accepted { .. } | Verdict::Duplicate { .. } => StatusCode::NO_CONTENT,
            Verdict::Rejected { .. } => StatusCode::BAD_REQUEST,
        }
    }
}

/// The receiver's state: the verifier and the ids already processed.
pub struct Receiver {
    webhook: Webhook,
    /// In memory for the example. A real application records the id in its database, in the
    /// same transaction as the work the delivery causes, under a UNIQUE constraint
    /// (`insert into processed_webhooks (webhook_id) values ($1) on conflict do nothing`, and
    /// skip the work when nothing was inserted), so a crash cannot do the work without the
    /// record or the record without the work. Keep ids at least as long as herald may still
    /// send them: retries follow `retry.schedule` (hours), and an operator's `herald retry` can
    /// resend a dead notification with the same id at any time until it is swept
    /// (`sweeper.retention`, 30 days by default).
    seen: Mutex<HashSet<String>>,
}

impl Receiver {
    /// `secret` is the endpoint's `whsec_…` secret, as `herald endpoints add` printed it.
    pub fn new(secret: &str) -> Result<Self, WebhookError> {
        Ok(Receiver {
            webhook: Webhook::new(secret)?,
            seen: Mutex::new(HashSet::new()),
        })
    }

    /// Judges one request from its headers and its body exactly as received: re-serialised
    /// JSON would not match the signature.
    pub fn receive(&self, headers: &HeaderMap, body: &[u8]) -> Verdict {
        // Checks the signature and that the timestamp is within TOLERANCE_SECONDS of now.
        if let Err(e) = self.webhook.verify(body, headers) {
            return Verdict::Rejected {
                reason: e.to_string(),
            };
        }
        // Verified, so this header is present and signed.
        let id = match headers.get("webhook-id").map(|v| v.to_str()) {
            Some(Ok(id)) => id.to_owned(),
            _ => {
                return Verdict::Rejected {
                    reason: "missing webhook-id".into(),
                };
            }
        };
        let event: serde_json::Value = match serde_json::from_slice(body) {
            Ok(event) => event,
            Err(e) => {
                return Verdict::Rejected {
                    reason: format!("body is not JSON: {e}"),
                };
            }
        };
        let first_time = self
            .seen
            .lock()
            .expect("no panics while held")
            .insert(id.clone());
        if !first_time {
            return Verdict::Duplicate { id };
        }
        // The work goes here: `event["data"]` is the payload given to herald at enqueue.
        let event_type = event["type"].as_str().unwrap_or_default().to_owned();
        Verdict::Accepted { id, event_type }
    }
}

/// The HTTP route: `POST /webhooks/herald`.
pub fn router(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route("/webhooks/herald", post(handle))
        .with_state(receiver)
}

async fn handle(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let verdict = receiver.receive(&headers, &body);
    println!("{verdict:?}");
    verdict.status()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("WEBHOOK_SECRET")
        .map_err(|_| "set WEBHOOK_SECRET to the endpoint's whsec_… secret")?;
    let port: u16 = std::env::var("PORT").ok().map_or(Ok(8080), |p| p.parse())?;
    let receiver = Arc::new(Receiver::new(&secret).map_err(|e| format!("WEBHOOK_SECRET: {e}"))?);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!(
        "listening on http://{}/webhooks/herald",
        listener.local_addr()?
    );
    axum::serve(listener, router(receiver)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Requests signed by herald's own signer, the one its daemon uses, so these tests also
    //! check that herald and the `standardwebhooks` crate agree on the wire format.

    use super::*;
    use herald::channel::signature::{WebhookSecret, signature_header};
    use std::time::{SystemTime, UNIX_EPOCH};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] =
        br#"{"type":"order_shipped","timestamp":"2026-11-26T10:00:00.000Z","data":{"order":"1001"}}"#;
    const ID: &str = "019abcde-0000-7000-8000-000000000001";

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// Headers as herald sends them, stamped `timestamp`, signed with `secrets`.
    fn headers(id: &str, timestamp: i64, body: &[u8], secrets: &[&str]) -> HeaderMap {
        let parsed: Vec<WebhookSecret> = secrets
            .iter()
            .map(|s| WebhookSecret::parse(s).unwrap())
            .collect();
        let refs: Vec<&WebhookSecret> = parsed.iter().collect();
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        let signature = signature_header(&refs, id, timestamp, body);
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    fn rejected(verdict: Verdict) -> String {
        match verdict {
            Verdict::Rejected { reason } => reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_genuine_delivery_is_accepted_once_and_its_retry_acknowledged() {
        let receiver = Receiver::new(SECRET).unwrap();
        let first = receiver.receive(&headers(ID, now(), BODY, &[SECRET]), BODY);
        assert_eq!(
            first,
            Verdict::Accepted {
                id: ID.into(),
                event_type: "order_shipped".into()
            }
        );
        assert_eq!(first.status(), StatusCode::NO_CONTENT);
        // herald's retry: same id, a later timestamp, a fresh signature.
        let retry = receiver.receive(&headers(ID, now() + 5, BODY, &[SECRET]), BODY);
        assert_eq!(retry, Verdict::Duplicate { id: ID.into() });
        assert!(retry.status().is_success(), "a duplicate is acknowledged");
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_rejected_both_ways() {
        let receiver = Receiver::new(SECRET).unwrap();
        let margin = 60; // well clear of the edge, so the test does not depend on timing
        let old = now() - TOLERANCE_SECONDS - margin;
        let reason = rejected(receiver.receive(&headers(ID, old, BODY, &[SECRET]), BODY));
        assert!(reason.contains("too old"), "{reason}");
        let future = now() + TOLERANCE_SECONDS + margin;
        let reason = rejected(receiver.receive(&headers(ID, future, BODY, &[SECRET]), BODY));
        assert!(reason.contains("future"), "{reason}");
        // Inside the tolerance on both sides.
        for skew in [-(TOLERANCE_SECONDS - margin), TOLERANCE_SECONDS - margin] {
            let id = format!("{ID}-{skew}");
            let verdict = receiver.receive(&headers(&id, now() + skew, BODY, &[SECRET]), BODY);
            assert!(
                matches!(verdict, Verdict::Accepted { .. }),
                "{skew}: {verdict:?}"
            );
        }
    }

    #[test]
    fn a_tampered_body_id_or_timestamp_fails_the_signature() {
        let receiver = Receiver::new(SECRET).unwrap();
        let genuine = headers(ID, now(), BODY, &[SECRET]);
        let tampered = BODY
            .to_vec()
            .iter()
            .map(|b| if *b == b'1' { b'2' } else { *b })
            .collect::<Vec<u8>>();
        assert!(rejected(receiver.receive(&genuine, &tampered)).contains("signature"));
        let mut other_id = genuine.clone();
        other_id.insert("webhook-id", "another-id".parse().unwrap());
        assert!(rejected(receiver.receive(&other_id, BODY)).contains("signature"));
        let mut other_time = genuine.clone();
        other_time.insert(
            "webhook-timestamp",
            (now() - 1).to_string().parse().unwrap(),
        );
        assert!(rejected(receiver.receive(&other_time, BODY)).contains("signature"));
        let wrong_key = headers(
            ID,
            now(),
            BODY,
            &["whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="],
        );
        assert!(rejected(receiver.receive(&wrong_key, BODY)).contains("signature"));
        let mut unsigned = genuine.clone();
        unsigned.remove("webhook-signature");
        assert!(rejected(receiver.receive(&unsigned, BODY)).contains("missing"));
        // Nothing rejected was recorded: the genuine request is still new.
        assert!(matches!(
            receiver.receive(&genuine, BODY),
            Verdict::Accepted { .. }
        ));
    }

    #[test]
    fn during_a_rotation_either_secret_verifies() {
        let old_secret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        // herald signs with the new secret first, then the old one.
        let both = headers(ID, now(), BODY, &[SECRET, old_secret]);
        for secret in [SECRET, old_secret] {
            let receiver = Receiver::new(secret).unwrap();
            assert!(matches!(
                receiver.receive(&both, BODY),
                Verdict::Accepted { .. }
            ));
        }
    }

    #[tokio::test]
    async fn the_route_answers_over_http() {
        let receiver = Arc::new(Receiver::new(SECRET).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(axum::serve(listener, router(receiver)).into_future());
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/webhooks/herald");
        let post = |signed: HeaderMap| client.post(&url).headers(signed).body(BODY).send();
        let ok = post(headers(ID, now(), BODY, &[SECRET])).await.unwrap();
        assert_eq!(ok.status(), 204);
        let replay = post(headers(ID, now(), BODY, &[SECRET])).await.unwrap();
        assert_eq!(replay.status(), 204);
        let stale = post(headers("x", now() - 3600, BODY, &[SECRET]))
            .await
            .unwrap();
        assert_eq!(stale.status(), 400);
    }
}
