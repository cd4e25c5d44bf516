//! Delivery channels: each delivers one claimed notification and reports an [`Outcome`]. A
//! failed delivery is data, not an error: the dispatcher turns outcomes into state changes.
//!
//! Invariant: no outcome text carries a secret (SMTP password, webhook secret) or a full
//! endpoint URL (its query string may carry a token); texts are truncated to
//! [`MAX_DETAIL_CHARS`].

pub mod email;
pub mod header;
pub mod signature;
pub mod templates;
pub mod webhook;

use std::time::Duration;

pub use crate::state::AttemptKind;

/// The longest error or response snippet stored with an attempt.
pub const MAX_DETAIL_CHARS: usize = 500;

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered {
        /// HTTP or SMTP status code.
        status: Option<i32>,
        /// Start of the receiver's answer, for the attempt log.
        detail: Option<String>,
    },
    /// Try again on the retry schedule (or dead, when attempts are exhausted).
    Retry {
        kind: AttemptKind,
        status: Option<i32>,
        error: String,
        /// The receiver's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: dead now.
    GiveUp {
        kind: AttemptKind,
        status: Option<i32>,
        error: String,
        /// Disable the webhook endpoint too, with this reason (a 410 Gone).
        disable_endpoint: Option<String>,
    },
}

impl Outcome {
    pub fn give_up(error: impl Into<String>) -> Self {
        Outcome::GiveUp {
            kind: AttemptKind::Failed,
            status: None,
            error: truncate(&error.into()),
            disable_endpoint: None,
        }
    }

    pub fn kind(&self) -> AttemptKind {
        match self {
            Outcome::Delivered { .. } => AttemptKind::Delivered,
            Outcome::Retry { kind, .. } | Outcome::GiveUp { kind, .. } => *kind,
        }
    }

    pub fn status(&self) -> Option<i32> {
        match self {
            Outcome::Delivered { status, .. }
            | Outcome::Retry { status, .. }
            | Outcome::GiveUp { status, .. } => *status,
        }
    }
}

/// At most [`MAX_DETAIL_CHARS`] characters, control characters replaced by spaces, marked
/// with an ellipsis when cut.
pub fn truncate(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_DETAIL_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > MAX_DETAIL_CHARS {
        out.push('…');
    }
    out
}

/// An error and its causes on one line, each cause once (libraries often repeat the cause in
/// their own message).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// The first error of type `T` in `e`'s chain of causes, `e` included.
pub fn find_source<'e, T: std::error::Error + 'static>(
    e: &'e (dyn std::error::Error + 'static),
) -> Option<&'e T> {
    let mut current = Some(e);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_name_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        #[derive(Debug, thiserror::Error)]
        #[error("could not send")]
        struct Outer(#[source] std::io::Error);
        let outer = Outer(io);
        assert_eq!(error_chain(&outer), "could not send: refused");
        let found = find_source::<std::io::Error>(&outer).unwrap();
        assert_eq!(found.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(find_source::<std::fmt::Error>(&outer).is_none());
    }

    #[test]
    fn details_are_bounded_and_single_line() {
        assert_eq!(truncate("a\nb\0c"), "a b c");
        let long = "x".repeat(MAX_DETAIL_CHARS + 10);
        let cut = truncate(&long);
        assert_eq!(cut.chars().count(), MAX_DETAIL_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
