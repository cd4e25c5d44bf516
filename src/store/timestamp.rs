//! A stored `timestamptz` read back for display, whatever it holds.
//!
//! PostgreSQL's `timestamptz` spans 4713 BC to 294276 AD, plus `infinity` and `-infinity`;
//! chrono's `DateTime` spans about ±262,000 years, and sqlx decodes a `timestamptz` into it with
//! unchecked arithmetic, which panics ("NaiveDateTime + TimeDelta overflowed") on an infinity or
//! a year past chrono's range. herald refuses such times at enqueue (migration 0004 adds a CHECK
//! on `run_at` too), but rows written before that, or by plain SQL, may still hold them: the
//! admin commands read times through this type, which decodes every value PostgreSQL can send.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::{Decode, Postgres, Type};

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01T00:00:00Z).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp {
    /// Every time chrono can hold: all that herald writes.
    At(DateTime<Utc>),
    Infinity,
    NegInfinity,
    /// Finite, but outside chrono's range: microseconds since 2000-01-01T00:00:00Z.
    Beyond(i64),
}

impl Timestamp {
    /// The time, when chrono can hold it.
    pub fn finite(self) -> Option<DateTime<Utc>> {
        match self {
            Timestamp::At(t) => Some(t),
            _ => None,
        }
    }

    /// RFC 3339 to the second (`2026-12-01T09:00:00Z`); `infinity` and `-infinity` as
    /// PostgreSQL writes them; a year past chrono's range as `294000-01-01T00:00:00Z` (years
    /// before 1 BC astronomically numbered: 0 is 1 BC, -1 is 2 BC).
    pub fn to_seconds_text(self) -> String {
        self.text(SecondsFormat::Secs)
    }

    fn text(self, precision: SecondsFormat) -> String {
        match self {
            Timestamp::At(t) => t.to_rfc3339_opts(precision, true),
            Timestamp::Infinity => "infinity".into(),
            Timestamp::NegInfinity => "-infinity".into(),
            Timestamp::Beyond(micros) => {
                let seconds = micros.div_euclid(1_000_000);
                let fraction = micros.rem_euclid(1_000_000);
                let (year, month, day) = civil_from_days(seconds.div_euclid(86_400) + 10_957);
                let of_day = seconds.rem_euclid(86_400);
                let mut text = format!(
                    "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
                    of_day / 3600,
                    of_day / 60 % 60,
                    of_day % 60
                );
                if precision != SecondsFormat::Secs && fraction != 0 {
                    text.push_str(&format!(".{fraction:06}"));
                }
                text.push('Z');
                text
            }
        }
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_seconds_text())
    }
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (H. Hinnant's algorithm,
/// exact for any day count that fits).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A time chrono holds serialises exactly as `DateTime<Utc>` does, so the JSON of ordinary rows
/// is unchanged; the others as their text.
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Timestamp::At(t) => t.serialize(serializer),
            other => serializer.serialize_str(&other.text(SecondsFormat::AutoSi)),
        }
    }
}

impl Type<Postgres> for Timestamp {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Timestamp {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        match value.format() {
            // Microseconds since 2000-01-01, with i64's extremes for the infinities.
            PgValueFormat::Binary => {
                let micros = <i64 as Decode<Postgres>>::decode(value)?;
                Ok(match micros {
                    i64::MAX => Timestamp::Infinity,
                    i64::MIN => Timestamp::NegInfinity,
                    _ => micros
                        .checked_add(POSTGRES_EPOCH_MICROS)
                        .and_then(DateTime::from_timestamp_micros)
                        .map_or(Timestamp::Beyond(micros), Timestamp::At),
                })
            }
            PgValueFormat::Text => match value.as_str()? {
                "infinity" => Ok(Timestamp::Infinity),
                "-infinity" => Ok(Timestamp::NegInfinity),
                _ => <DateTime<Utc> as Decode<Postgres>>::decode(value).map(Timestamp::At),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_beyond_chrono_print_as_dates() {
        let text = |micros| Timestamp::Beyond(micros).to_seconds_text();
        assert_eq!(text(0), "2000-01-01T00:00:00Z");
        assert_eq!(text(-1), "1999-12-31T23:59:59Z");
        // '294000-01-01'::timestamptz as PostgreSQL sends it.
        assert_eq!(text(9_214_629_984_000_000_000), "294000-01-01T00:00:00Z");
        // '4714-11-24 BC' (PostgreSQL's earliest) is astronomical year -4713.
        assert_eq!(text(-211_813_488_000_000_000), "-4713-11-24T00:00:00Z");
        assert_eq!(
            serde_json::to_string(&Timestamp::Beyond(1_500_000)).unwrap(),
            "\"2000-01-01T00:00:01.500000Z\""
        );
        assert_eq!(
            serde_json::to_string(&Timestamp::NegInfinity).unwrap(),
            "\"-infinity\""
        );
    }

    #[test]
    fn ordinary_times_serialise_as_chrono_does() {
        let t: DateTime<Utc> = "2026-12-01T09:00:00.25Z".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&Timestamp::At(t)).unwrap(),
            serde_json::to_string(&t).unwrap()
        );
        assert_eq!(Timestamp::At(t).to_string(), "2026-12-01T09:00:00Z");
    }
}
