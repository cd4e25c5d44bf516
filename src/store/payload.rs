//! Reading a stored payload for delivery, so that one unreadable payload fails only its own
//! notification.
//!
//! Invariant: decoding a claimed row never fails because of its payload. herald's enqueue
//! refuses payloads nested over 64 levels, but a plain-SQL writer can store anything jsonb
//! takes, and serde_json refuses to read JSON nested 128 or more levels deep. Decoded as a
//! `Value`, such a row would fail the whole claim statement after the claim had committed:
//! every notification claimed with it would stay `running` until its lease expired, then be
//! claimed with it again, burning attempts, over and over. Instead the column is read as raw
//! JSON (serde_json checks raw JSON without recursion) and parsed here; a payload that does
//! not parse is [`Payload::Unreadable`], and the dispatcher gives that notification up.

use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::types::Json;
use sqlx::{Decode, Postgres, Type};

/// A claimed notification's payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Readable(Value),
    /// Why it cannot be read, for the attempt's error.
    Unreadable(String),
}

impl Payload {
    /// The payload; `null` when it is unreadable (never delivered: see [`Payload::problem`]).
    pub fn value(&self) -> &Value {
        match self {
            Payload::Readable(value) => value,
            Payload::Unreadable(_) => &Value::Null,
        }
    }

    /// Why the payload cannot be delivered, if it cannot.
    pub fn problem(&self) -> Option<&str> {
        match self {
            Payload::Readable(_) => None,
            Payload::Unreadable(reason) => Some(reason),
        }
    }

    fn parse(raw: &str) -> Self {
        match serde_json::from_str(raw) {
            Ok(value) => Payload::Readable(value),
            Err(e) => Payload::Unreadable(format!(
                "the stored payload cannot be read ({e}); herald's enqueue refuses payloads nested over {} levels",
                crate::notification::MAX_PAYLOAD_DEPTH
            )),
        }
    }
}

impl Type<Postgres> for Payload {
    fn type_info() -> PgTypeInfo {
        <Json<Box<RawValue>> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <Json<Box<RawValue>> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Payload {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let Json(raw) = <Json<Box<RawValue>> as Decode<'r, Postgres>>::decode(value)?;
        Ok(Payload::parse(raw.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_too_deep_for_serde_json_is_unreadable_not_an_error() {
        let ok = Payload::parse(r#"{"a": [1, {"b": null}]}"#);
        assert_eq!(ok.value()["a"][0], 1);
        assert_eq!(ok.problem(), None);
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        // serde_json's raw-value check, which the column decode uses, accepts it...
        assert!(serde_json::from_str::<Box<RawValue>>(&deep).is_ok());
        // ...and parsing it is what fails, here, for this payload alone.
        let unreadable = Payload::parse(&deep);
        let problem = unreadable.problem().expect("unreadable");
        assert!(
            problem.starts_with("the stored payload cannot be read (recursion limit exceeded"),
            "{problem}"
        );
        assert_eq!(unreadable.value(), &Value::Null);
    }
}
