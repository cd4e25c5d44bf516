//! Webhook delivery, Standard Webhooks style: `POST` of `{"type", "timestamp", "data"}` with
//! `webhook-id` (the notification id, the same on every attempt), `webhook-timestamp` (this
//! attempt, database clock) and `webhook-signature` (`v1,` HMAC-SHA256 over the exact bytes
//! sent; during a rotation one signature per secret).
//!
//! Invariants:
//! - Targets are checked by the SSRF guard twice: IP-literal URLs before sending (reqwest never
//!   asks a resolver about them) and host names in the resolver at connect time, so a name
//!   cannot be re-pointed at a private address between check and use.
//! - Redirects are not followed, no proxy is used, the whole request (connect to last body
//!   byte) has `webhook.timeout`, and at most [`RESPONSE_READ_CAP`] bytes of the answer are read.
//! - Outcome texts never contain the endpoint URL (reqwest errors are stripped of it) or a
//!   secret.

use std::sync::Arc;
use std::time::Duration;

use chrono::SecondsFormat;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use serde::Serialize;

use super::signature::{WebhookSecret, signature_header};
use super::{AttemptKind, Outcome, error_chain, find_source, truncate};
use crate::config::WebhookConfig;
use crate::delivery::{Delivery, Endpoint};
use crate::net::ssrf::{
    AddressPolicy, ForbiddenResolution, GuardedResolver, check_ip_literal_target,
};

/// Bytes of a receiver's answer read for the attempt log; the rest is not read.
pub const RESPONSE_READ_CAP: usize = 4096;

/// Connects to receivers and delivers webhooks; cheap to share, holds the connection pool.
pub struct WebhookSender {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    https_only: bool,
    timeout: Duration,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    type_: &'a str,
    timestamp: String,
    /// The payload as stored: numbers exactly as jsonb keeps them.
    data: &'a serde_json::value::RawValue,
}

impl WebhookSender {
    pub fn new(config: &WebhookConfig) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(AddressPolicy::new(config.allowed_networks.clone()));
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            // Strictly inside the total: a connect that times out must be reported as a
            // connect failure (nothing sent), not as the request's own timeout.
            .connect_timeout((config.timeout * 2 / 3).min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(policy.clone())))
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookSender {
            client,
            policy,
            https_only: config.https_only,
            timeout: config.timeout,
        })
    }

    /// One attempt for a claimed webhook notification to `endpoint_id`, which is `endpoint`
    /// (`None` when its row no longer exists).
    pub async fn deliver(
        &self,
        n: &Delivery,
        endpoint_id: &str,
        endpoint: Option<&Endpoint>,
    ) -> Outcome {
        let Some(endpoint) = endpoint else {
            return Outcome::give_up(format!("webhook endpoint {endpoint_id} no longer exists"));
        };
        if !endpoint.enabled {
            let reason = endpoint
                .disabled_reason
                .as_deref()
                .unwrap_or("no reason given");
            return Outcome::give_up(format!(
                "webhook endpoint {endpoint_id} is disabled: {reason}"
            ));
        }
        let url = match url::Url::parse(&endpoint.url) {
            Ok(url) => url,
            Err(e) => return Outcome::give_up(format!("webhook endpoint URL does not parse: {e}")),
        };
        if self.https_only && url.scheme() != "https" {
            return Outcome::give_up(
                "webhook endpoint URL is not https and webhook.https_only is set",
            );
        }
        if let Err(refused) = check_ip_literal_target(&url, &self.policy) {
            return Outcome::give_up(format!("refused before connecting: {refused}"));
        }
        let mut secrets = Vec::with_capacity(2);
        for text in std::iter::once(&endpoint.secret).chain(&endpoint.previous_secret) {
            match WebhookSecret::parse(text) {
                Ok(parsed) => secrets.push(parsed),
                Err(e) => return Outcome::give_up(format!("endpoint signing {e}")),
            }
        }
        let body = match serde_json::to_vec(&Body {
            type_: &n.key.type_,
            timestamp: n.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            data: n.payload.raw(),
        }) {
            Ok(body) => body,
            Err(e) => return Outcome::give_up(format!("cannot encode the body: {e}")),
        };
        let msg_id = n.id.to_string();
        let secret_refs: Vec<&WebhookSecret> = secrets.iter().collect();
        let signature = signature_header(&secret_refs, &msg_id, n.claimed_at_unix, &body);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in [
            ("webhook-id", msg_id.as_str()),
            ("webhook-timestamp", &n.claimed_at_unix.to_string()),
            ("webhook-signature", &signature),
        ] {
            match HeaderValue::from_str(value) {
                Ok(value) => {
                    headers.insert(name, value);
                }
                Err(e) => return Outcome::give_up(format!("invalid {name} header: {e}")),
            }
        }
        let sent = self
            .client
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => self.judge(response).await,
            Err(e) => self.judge_error(e),
        }
    }

    async fn judge(&self, mut response: reqwest::Response) -> Outcome {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(parse_retry_after);
        let mut snippet = Vec::new();
        // The answer counts from its status line; a body that stalls or breaks only shortens
        // the snippet.
        while snippet.len() < RESPONSE_READ_CAP {
            match response.chunk().await {
                Ok(Some(chunk)) => snippet.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        snippet.truncate(RESPONSE_READ_CAP);
        let text = String::from_utf8_lossy(&snippet);
        let detail = truncate(text.trim());
        let code = Some(status.as_u16() as i32);
        let answered = |what: &str| {
            if detail.is_empty() {
                format!("receiver answered {what}")
            } else {
                format!("receiver answered {what}: {detail}")
            }
        };
        if status.is_success() {
            Outcome::Delivered {
                status: code,
                detail: (!detail.is_empty()).then_some(detail.clone()),
            }
        } else if status == reqwest::StatusCode::GONE {
            Outcome::GiveUp {
                kind: AttemptKind::Failed,
                status: code,
                error: truncate(&answered("410 Gone")),
                disable_endpoint: Some("receiver answered 410 Gone".into()),
            }
        } else {
            Outcome::Retry {
                kind: AttemptKind::Failed,
                status: code,
                error: truncate(&answered(&status.to_string())),
                retry_after,
            }
        }
    }

    fn judge_error(&self, e: reqwest::Error) -> Outcome {
        if let Some(refused) = find_source::<ForbiddenResolution>(&e) {
            return Outcome::give_up(format!("refused before connecting: {refused}"));
        }
        let (kind, what) = if e.is_connect() {
            // Nothing was sent (a connect timeout included): a plain failure.
            (
                AttemptKind::Failed,
                format!("could not connect: {}", describe(e)),
            )
        } else if e.is_timeout() {
            let limit = humantime::format_duration(self.timeout);
            (
                AttemptKind::Unknown,
                format!("no answer within {limit} (webhook.timeout)"),
            )
        } else {
            // Sent, perhaps in part, and the answer never came: the receiver may have it.
            (AttemptKind::Unknown, format!("no answer: {}", describe(e)))
        };
        Outcome::Retry {
            kind,
            status: None,
            error: truncate(&what),
            retry_after: None,
        }
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    (when.to_utc() - chrono::Utc::now()).to_std().ok()
}

/// The error and its causes on one line, without the URL (its query string may hold a token).
fn describe(e: reqwest::Error) -> String {
    error_chain(&e.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("7")),
            Some(Duration::from_secs(7))
        );
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
        let future = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let parsed = parse_retry_after(&HeaderValue::from_str(&future).unwrap()).unwrap();
        assert!(
            parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120),
            "{parsed:?}"
        );
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
    }
}
