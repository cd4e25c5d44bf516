//! How the console writes times, durations and JSON for people.

use chrono::{DateTime, Utc};

use crate::store::timestamp::Timestamp;

/// `2026-12-06 09:00:00 UTC`; infinities and out-of-range years as stored.
pub fn when(t: Timestamp) -> String {
    match t.finite() {
        Some(t) => at(t),
        None => t.to_seconds_text(),
    }
}

pub fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A duration in seconds, to the second and in its two largest units: `3m 12s`, `2h 5m`.
pub fn age(seconds: f64) -> String {
    let total = if seconds.is_finite() && seconds > 0.0 {
        seconds.round() as u64
    } else {
        0
    };
    let (d, h, m, s) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A stored payload for reading: indented JSON (numbers no float can hold kept as their digits
/// in a string, as `explain` compares them), or the stored text when it cannot be read.
pub fn pretty_payload(payload: &crate::payload::Payload) -> String {
    payload
        .to_value()
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| payload.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_in_two_units() {
        assert_eq!(age(0.4), "0s");
        assert_eq!(age(-5.0), "0s");
        assert_eq!(age(f64::NAN), "0s");
        assert_eq!(age(192.0), "3m 12s");
        assert_eq!(age(7500.0), "2h 5m");
        assert_eq!(age(90_000.0), "1d 1h");
    }
}
