//! What one attempt says about its destination's health, for the circuit breaker and the
//! rate limit. Pure, so it is tested without a database.
//!
//! Invariants:
//! - Only a failure the destination is to blame for counts toward its breaker: a notification's
//!   own problem (a missing template, a refused recipient, an endpoint that no longer exists)
//!   never opens a breaker that would hold everyone else's notifications.
//! - A `429` slows the destination and never counts toward its breaker.
//! - For the SMTP relay only connection, TLS, timeout and whole-session failures count: `421`,
//!   and `4xx` answers whose enhanced status code (RFC 3463) names the mail system (`4.3.x`) or
//!   the network (`4.4.x`). Other `4xx` answers (a busy mailbox, greylisting, `4.2.x`, `4.7.x`)
//!   may concern one recipient.

use std::time::Duration;

use crate::channel::{AttemptKind, Outcome};
use crate::state::Channel;

/// How long a `429` without `Retry-After` holds its endpoint back.
pub const DEFAULT_THROTTLE: Duration = Duration::from_secs(1);

/// The longest a `Retry-After` may hold an endpoint back (a hostile or broken receiver could
/// name a year).
pub const MAX_THROTTLE: Duration = Duration::from_secs(3600);

/// An attempt's news about its destination.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// It took a delivery: closes the breaker, resets the failure count.
    Healthy,
    /// It failed in a way that counts toward its breaker.
    Failing,
    /// It asked herald to slow down (`429`): nothing is sent to it for this long.
    Throttled(Duration),
    /// Nothing about the destination (the notification's own problem).
    Neutral,
}

impl Signal {
    /// The name the outcome statement binds.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Healthy => "healthy",
            Signal::Failing => "failing",
            Signal::Throttled(_) => "throttled",
            Signal::Neutral => "neutral",
        }
    }

    /// Seconds to hold the destination back, for a `Throttled` signal.
    pub fn throttle_secs(self) -> Option<f64> {
        match self {
            Signal::Throttled(d) => Some(d.as_secs_f64()),
            _ => None,
        }
    }
}

/// What `outcome`, an attempt on `channel`, says about the destination.
pub fn signal(channel: Channel, outcome: &Outcome) -> Signal {
    match (channel, outcome) {
        (_, Outcome::Delivered { .. }) => Signal::Healthy,
        // Dead at once: a 410 (which disables the endpoint itself), a 5xx refusal of a
        // recipient, or the notification's own problem found before anything was sent.
        (_, Outcome::GiveUp { .. }) => Signal::Neutral,
        (
            Channel::Webhook,
            Outcome::Retry {
                status: Some(429),
                retry_after,
                ..
            },
        ) => Signal::Throttled(retry_after.unwrap_or(DEFAULT_THROTTLE).min(MAX_THROTTLE)),
        (Channel::Webhook, Outcome::Retry { .. }) => Signal::Failing,
        (
            Channel::Email,
            Outcome::Retry {
                status,
                kind,
                error,
                ..
            },
        ) => match status {
            // No SMTP answer: connection, TLS, timeout, or the conversation broke off.
            None => Signal::Failing,
            Some(421) => Signal::Failing,
            Some(_) if *kind == AttemptKind::Unknown => Signal::Failing,
            Some(_) if matches!(enhanced_subject(error), Some(3 | 4)) => Signal::Failing,
            Some(_) => Signal::Neutral,
        },
    }
}

/// The subject of the first enhanced status code (`4.<subject>.<detail>`, RFC 3463) in an SMTP
/// error text: 3 is the mail system, 4 the network and routing.
fn enhanced_subject(text: &str) -> Option<u32> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == ':')
        .find_map(|word| {
            let mut parts = word.split('.');
            let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
            let digits = |p: &str, max: usize| {
                !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit())
            };
            (class == "4" && digits(subject, 3) && digits(detail, 3) && parts.next().is_none())
                .then(|| subject.parse().ok())
                .flatten()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(status: Option<i32>, kind: AttemptKind, retry_after: Option<Duration>) -> Outcome {
        Outcome::Retry {
            kind,
            status,
            error: "boom".into(),
            retry_after,
        }
    }

    #[test]
    fn a_delivery_is_healthy_everywhere() {
        let delivered = Outcome::Delivered {
            status: Some(200),
            detail: None,
        };
        assert_eq!(signal(Channel::Webhook, &delivered), Signal::Healthy);
        assert_eq!(signal(Channel::Email, &delivered), Signal::Healthy);
    }

    #[test]
    fn webhook_failures_count_but_429_slows_instead() {
        for (status, kind) in [
            (Some(503), AttemptKind::Failed),
            (Some(400), AttemptKind::Failed),
            (None, AttemptKind::Failed),
            (None, AttemptKind::Unknown),
        ] {
            assert_eq!(
                signal(Channel::Webhook, &retry(status, kind, None)),
                Signal::Failing,
                "{status:?} {kind:?}"
            );
        }
        let slow = retry(Some(429), AttemptKind::Failed, Some(Duration::from_secs(7)));
        assert_eq!(
            signal(Channel::Webhook, &slow),
            Signal::Throttled(Duration::from_secs(7))
        );
        let bare = retry(Some(429), AttemptKind::Failed, None);
        assert_eq!(
            signal(Channel::Webhook, &bare),
            Signal::Throttled(DEFAULT_THROTTLE)
        );
        let year = retry(
            Some(429),
            AttemptKind::Failed,
            Some(Duration::from_secs(31_536_000)),
        );
        assert_eq!(
            signal(Channel::Webhook, &year),
            Signal::Throttled(MAX_THROTTLE)
        );
    }

    #[test]
    fn only_the_relays_own_failures_count() {
        for (status, kind) in [
            (None, AttemptKind::Failed),
            (None, AttemptKind::Unknown),
            (Some(421), AttemptKind::Failed),
            (Some(451), AttemptKind::Unknown),
        ] {
            assert_eq!(
                signal(Channel::Email, &retry(status, kind, None)),
                Signal::Failing,
                "{status:?} {kind:?}"
            );
        }
        // A greylisted or busy mailbox is one recipient's matter.
        for status in [450, 451, 452] {
            assert_eq!(
                signal(
                    Channel::Email,
                    &retry(Some(status), AttemptKind::Failed, None)
                ),
                Signal::Neutral
            );
        }
        let answered = |status: i32, text: &str| Outcome::Retry {
            kind: AttemptKind::Failed,
            status: Some(status),
            error: format!("permanent error ({status}): {text}"),
            retry_after: None,
        };
        for (status, text, expected) in [
            (452, "4.3.1 Insufficient system storage", Signal::Failing),
            (451, "4.4.2 Connection dropped", Signal::Failing),
            (451, "4.7.1 Greylisted, try again later", Signal::Neutral),
            (450, "4.2.1 Mailbox busy", Signal::Neutral),
            (452, "4.5.3 Too many recipients", Signal::Neutral),
            (451, "Local error in processing (no code)", Signal::Neutral),
            (451, "version 14.3.1 of the server", Signal::Neutral),
        ] {
            assert_eq!(
                signal(Channel::Email, &answered(status, text)),
                expected,
                "{status} {text}"
            );
        }
    }

    #[test]
    fn giving_up_never_counts() {
        let refused = Outcome::GiveUp {
            kind: AttemptKind::Failed,
            status: Some(550),
            error: "no such user".into(),
            disable_endpoint: None,
        };
        assert_eq!(signal(Channel::Email, &refused), Signal::Neutral);
        assert_eq!(
            signal(Channel::Webhook, &Outcome::give_up("endpoint gone")),
            Signal::Neutral
        );
    }
}
