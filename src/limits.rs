//! The per-endpoint limits as people type them: `--rate N/s|N/m|none` and
//! `--max-in-flight N|none` of `herald endpoints add` and `set`, and `rate` and `max_in_flight`
//! of the HTTP API's endpoints.
//!
//! Invariants: a parsed [`Rate`] is within what `herald.destinations` admits (1 to 100,000 a
//! second, the unit kept as given: `600/m` stays `600/m`), and a parsed [`MaxInFlight`] is 1 to
//! 10,000. The parsers are clap value parsers: their messages follow clap's `invalid value 'X'
//! for '--flag <…>': `, so every refusal names its flag, exits 2 and writes nothing.

use std::fmt;
use std::str::FromStr;

/// The most a rate may admit, per second.
pub const MAX_PER_SECOND: u32 = 100_000;
/// The most deliveries in flight a cap may allow.
pub const MAX_IN_FLIGHT: u32 = 10_000;

/// A limit as given: a value, or `none` (no limit: clears one that was set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit<T> {
    Set(T),
    Clear,
}

impl<T> Limit<T> {
    /// The value, `None` for `none`.
    pub fn value(self) -> Option<T> {
        match self {
            Limit::Set(value) => Some(value),
            Limit::Clear => None,
        }
    }
}

impl<T: FromStr> FromStr for Limit<T> {
    type Err = T::Err;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "none" {
            Ok(Limit::Clear)
        } else {
            text.parse().map(Limit::Set)
        }
    }
}

impl<T: fmt::Display> fmt::Display for Limit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Set(value) => value.fmt(f),
            Limit::Clear => f.write_str("none"),
        }
    }
}

/// The unit of a rate: per second or per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    Second,
    Minute,
}

impl RateUnit {
    /// As `herald.destinations.rate_unit` stores it, and as it is written after the `/`.
    pub fn as_str(self) -> &'static str {
        match self {
            RateUnit::Second => "s",
            RateUnit::Minute => "m",
        }
    }

    /// The largest count of this unit: [`MAX_PER_SECOND`] a second.
    pub fn max_count(self) -> u32 {
        match self {
            RateUnit::Second => MAX_PER_SECOND,
            RateUnit::Minute => MAX_PER_SECOND * 60,
        }
    }
}

/// A rate limit: at most `count` deliveries per `unit` (a token bucket holding one second's
/// worth). Written and shown as `10/s` or `600/m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    unit: RateUnit,
}

impl Rate {
    /// `count` per `unit`, when it is within 1 and the unit's maximum.
    pub fn new(count: u32, unit: RateUnit) -> Option<Rate> {
        (1..=unit.max_count())
            .contains(&count)
            .then_some(Rate { count, unit })
    }

    pub fn count(self) -> u32 {
        self.count
    }

    pub fn unit(self) -> RateUnit {
        self.unit
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.unit.as_str())
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const FORM: &str = "expected N/s, N/m or none (for example 10/s)";
        let Some((count, unit)) = text.split_once('/') else {
            return Err(FORM.to_owned());
        };
        let unit = match unit {
            "s" => RateUnit::Second,
            "m" => RateUnit::Minute,
            _ => return Err(format!("the unit must be /s or /m ({FORM})")),
        };
        let count = digits(count).ok_or_else(|| FORM.to_owned())?;
        Rate::new(count.try_into().unwrap_or(u32::MAX), unit).ok_or_else(|| {
            format!(
                "the rate must be at least 1/{unit} and at most {MAX_PER_SECOND}/s ({}/m)",
                RateUnit::Minute.max_count(),
                unit = unit.as_str()
            )
        })
    }
}

/// A cap on the deliveries in flight at once, across all daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxInFlight(u32);

impl MaxInFlight {
    /// `n`, when it is 1 to [`MAX_IN_FLIGHT`].
    pub fn new(n: u32) -> Option<MaxInFlight> {
        (1..=MAX_IN_FLIGHT).contains(&n).then_some(MaxInFlight(n))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for MaxInFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for MaxInFlight {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let range = format!("expected an integer from 1 to {MAX_IN_FLIGHT}, or none");
        let n = digits(text).ok_or_else(|| range.clone())?;
        MaxInFlight::new(n.try_into().unwrap_or(u32::MAX)).ok_or(range)
    }
}

/// A non-empty run of ASCII digits as a number (saturating: only its size matters beyond
/// `u32`); `None` for anything else, a sign or a space included.
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// clap's value parser of `--rate`.
pub fn parse_rate(text: &str) -> Result<Limit<Rate>, String> {
    text.parse()
}

/// clap's value parser of `--max-in-flight`.
pub fn parse_max_in_flight(text: &str) -> Result<Limit<MaxInFlight>, String> {
    text.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_keep_the_unit_they_were_given() {
        for text in ["10/s", "600/m", "1/s", "1/m", "100000/s", "6000000/m"] {
            let rate = parse_rate(text).unwrap();
            assert_eq!(rate.to_string(), text);
        }
        assert_eq!(
            parse_rate("600/m").unwrap(),
            Limit::Set(Rate {
                count: 600,
                unit: RateUnit::Minute
            })
        );
        assert_eq!(parse_rate("007/s").unwrap().to_string(), "7/s");
        assert_eq!(parse_rate("none").unwrap(), Limit::Clear);
        assert_eq!(Limit::<Rate>::Clear.to_string(), "none");
    }

    #[test]
    fn rates_out_of_range_or_malformed_are_refused() {
        let refused = |text: &str| parse_rate(text).unwrap_err();
        for text in ["0/s", "0/m", "100001/s", "6000001/m", "200000/s"] {
            assert!(
                refused(text).contains("at most 100000/s (6000000/m)"),
                "{text}"
            );
        }
        assert!(refused("99999999999999999999999/s").contains("at most"));
        for text in ["10/h", "10/S", "10/sec", "10/"] {
            assert!(
                refused(text).contains("the unit must be /s or /m"),
                "{text}"
            );
        }
        for text in [
            "fast", "", "10", "/s", "-1/s", "+1/s", " 1/s", "1.5/s", "1e3/s", "None", "ten/s",
        ] {
            assert!(
                refused(text).contains("expected N/s, N/m or none"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn in_flight_caps_are_1_to_10000_or_none() {
        assert_eq!(
            parse_max_in_flight("1").unwrap(),
            Limit::Set(MaxInFlight(1))
        );
        assert_eq!(parse_max_in_flight("10000").unwrap().to_string(), "10000");
        assert_eq!(parse_max_in_flight("none").unwrap(), Limit::Clear);
        for text in [
            "0",
            "-1",
            "10001",
            "abc",
            "",
            "1.0",
            "+5",
            "99999999999999999999",
        ] {
            let message = parse_max_in_flight(text).unwrap_err();
            assert_eq!(
                message, "expected an integer from 1 to 10000, or none",
                "{text:?}"
            );
        }
    }

    #[test]
    fn constructors_hold_the_same_bounds() {
        assert_eq!(Rate::new(0, RateUnit::Second), None);
        assert!(Rate::new(100_000, RateUnit::Second).is_some());
        assert_eq!(Rate::new(100_001, RateUnit::Second), None);
        assert!(Rate::new(6_000_000, RateUnit::Minute).is_some());
        assert_eq!(MaxInFlight::new(0), None);
        assert_eq!(MaxInFlight::new(10_001), None);
        assert_eq!(Limit::Set(3).value(), Some(3));
        assert_eq!(Limit::<u32>::Clear.value(), None);
    }
}
