//! One delivery attempt as a channel and the metrics see it: which notification, which
//! attempt under which lease, and where it goes.
//!
//! Invariants: a `Delivery` comes only from a claim (`store::dispatch::claim_due`), so
//! `attempt` is already counted and `lease_token` is the lease every write about it is fenced
//! by; `claimed_at_unix` is the database's clock at the claim, the attempt's
//! `webhook-timestamp`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::key::Key;
use crate::payload::Payload;
use crate::state::Channel;

/// A notification claimed for one delivery attempt, with what delivering it needs.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The notification's id: the webhook's `webhook-id`, the email's `Message-ID`.
    pub id: Uuid,
    pub key: Key,
    /// Read raw, so that an unreadable payload fails only this notification (see `payload.rs`).
    pub payload: Payload,
    /// This attempt's number (1-based).
    pub attempt: i32,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
    pub lease_token: Uuid,
    /// Database time of the claim, in Unix seconds.
    pub claimed_at_unix: i64,
    pub target: Target,
    /// Sent to test its destination's open circuit breaker (the claim made it half-open).
    pub probe: bool,
}

/// Where a delivery goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// An email to this address (as stored; the channel parses it).
    Email { address: String },
    /// A POST to a webhook endpoint; `endpoint` is `None` when its row no longer exists.
    Webhook {
        endpoint_id: String,
        endpoint: Option<Endpoint>,
    },
}

/// A webhook endpoint as it was when the delivery was claimed. Its `Debug` shows neither
/// secret.
#[derive(Clone)]
pub struct Endpoint {
    pub url: String,
    /// The signing secret (`whsec_…`).
    pub secret: String,
    /// The secret being rotated out, while its grace period lasts.
    pub previous_secret: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &"…")
            .field("secret", &"…")
            .field(
                "previous_secret",
                &self.previous_secret.as_ref().map(|_| "…"),
            )
            .field("enabled", &self.enabled)
            .field("disabled_reason", &self.disabled_reason)
            .finish()
    }
}

impl Delivery {
    pub fn channel(&self) -> Channel {
        match self.target {
            Target::Email { .. } => Channel::Email,
            Target::Webhook { .. } => Channel::Webhook,
        }
    }

    /// A delivery of type `type_` to a webhook endpoint that no longer exists, at `attempt` of
    /// `max_attempts`: for unit tests and benches, which need a delivery but no database.
    #[doc(hidden)]
    pub fn sample(type_: &str, attempt: i32, max_attempts: i32) -> Delivery {
        Delivery {
            id: Uuid::now_v7(),
            key: Key {
                tenant: "default".into(),
                user_id: "u".into(),
                type_: type_.into(),
                business_id: "b".into(),
            },
            payload: serde_json::value::RawValue::from_string("{}".into())
                .expect("{} is JSON")
                .into(),
            attempt,
            max_attempts,
            created_at: Utc::now(),
            lease_token: Uuid::now_v7(),
            claimed_at_unix: 0,
            target: Target::Webhook {
                endpoint_id: Uuid::now_v7().to_string(),
                endpoint: None,
            },
            probe: false,
        }
    }

    /// The notification's `destination`: the email address or the endpoint's id.
    pub fn destination(&self) -> &str {
        match &self.target {
            Target::Email { address } => address,
            Target::Webhook { endpoint_id, .. } => endpoint_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn debug_shows_no_secret_and_no_url() {
        let endpoint = Endpoint {
            url: "https://hooks.example.com/in?token=t0p".into(),
            secret: "whsec_c2VjcmV0LXNpZ25pbmcta2V5".into(),
            previous_secret: Some("whsec_b2xkLXNpZ25pbmcta2V5".into()),
            enabled: true,
            disabled_reason: None,
        };
        let shown = format!("{endpoint:?}");
        for hidden in ["t0p", "c2VjcmV0", "b2xkLXNp", "hooks.example.com"] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
        assert!(shown.contains("enabled: true"), "{shown}");
    }
}
