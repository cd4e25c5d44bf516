//! The names herald stores: the lifecycle states of a notification, its delivery channels, and
//! the outcome of an attempt.
//!
//! `pending → running (leased) → delivered | dead`, or `cancelled` by an operator. A retry waits
//! in `pending` with a later `run_at`. `delivered`, `dead` and `cancelled` are *finished*: exactly
//! those rows carry `finished_at` (a CHECK constraint enforces it), and only those are swept.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Where a notification is in its life, as `herald.notifications.state` names it.
///
/// ```
/// use herald::State;
///
/// assert_eq!("dead".parse::<State>(), Ok(State::Dead));
/// assert!(State::Delivered.is_finished() && !State::Pending.is_finished());
/// assert_eq!(State::Running.to_string(), "running");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting until `run_at` (a new notification, or a retry).
    Pending,
    /// Leased to a daemon that is delivering it.
    Running,
    /// The receiver accepted it.
    Delivered,
    /// Attempts exhausted, or a failure retrying cannot mend; `last_error` says which.
    Dead,
    /// Cancelled by an operator before it was delivered.
    Cancelled,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 5] = [
        State::Pending,
        State::Running,
        State::Delivered,
        State::Dead,
        State::Cancelled,
    ];

    /// The stored name: `pending`, `running`, `delivered`, `dead` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Delivered => "delivered",
            State::Dead => "dead",
            State::Cancelled => "cancelled",
        }
    }

    /// Finished rows keep blocking duplicates until the retention window ends.
    pub fn is_finished(self) -> bool {
        matches!(self, State::Delivered | State::Dead | State::Cancelled)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is not one of the known names, from parsing a [`State`] or a [`Channel`].
///
/// ```
/// let e = "done".parse::<herald::State>().unwrap_err();
/// assert_eq!((e.kind, e.value.as_str()), ("state", "done"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?} (expected one of: {expected})")]
pub struct UnknownName {
    /// What was parsed: `state` or `channel`.
    pub kind: &'static str,
    /// The text given.
    pub value: String,
    /// The names accepted, comma-separated.
    pub expected: &'static str,
}

impl FromStr for State {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownName {
                kind: "state",
                value: s.to_owned(),
                expected: "pending, running, delivered, dead, cancelled",
            })
    }
}

impl TryFrom<String> for State {
    type Error = UnknownName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// How a notification is delivered.
///
/// ```
/// assert_eq!("webhook".parse::<herald::Channel>(), Ok(herald::Channel::Webhook));
/// assert_eq!(herald::Channel::Email.as_str(), "email");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// SMTP, rendered from the type's templates.
    Email,
    /// A signed Standard Webhooks POST to a registered endpoint.
    Webhook,
}

impl Channel {
    /// Both channels.
    pub const ALL: [Channel; 2] = [Channel::Email, Channel::Webhook];

    /// The stored name: `email` or `webhook`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "email" => Ok(Channel::Email),
            "webhook" => Ok(Channel::Webhook),
            _ => Err(UnknownName {
                kind: "channel",
                value: s.to_owned(),
                expected: "email, webhook",
            }),
        }
    }
}

impl TryFrom<String> for Channel {
    type Error = UnknownName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// What an attempt's outcome was, as stored in `herald.attempts.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    /// The receiver accepted it.
    Delivered,
    /// The receiver refused it, or it never left (connection refused, SSRF guard, …).
    Failed,
    /// It was sent but no answer came (timeout, connection dropped): the receiver may have it.
    Unknown,
}

impl AttemptKind {
    /// The name stored in `herald.attempts.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptKind::Delivered => "delivered",
            AttemptKind::Failed => "failed",
            AttemptKind::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for state in State::ALL {
            assert_eq!(state.as_str().parse::<State>(), Ok(state));
        }
        let err = "done".parse::<State>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown state \"done\" (expected one of: pending, running, delivered, dead, cancelled)"
        );
    }

    #[test]
    fn only_terminal_states_are_finished() {
        let finished: Vec<_> = State::ALL.into_iter().filter(|s| s.is_finished()).collect();
        assert_eq!(finished, [State::Delivered, State::Dead, State::Cancelled]);
    }
}
