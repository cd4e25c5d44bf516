//! A stored payload, read as jsonb's text so that every number reaches its reader as stored.
//!
//! Invariant: decoding a row never fails because of its payload. serde_json's `Value` cannot
//! hold `1e400` nor keep `123456789012345678901234567890`, and refuses documents nested 128 or
//! more levels deep, all of which a plain-SQL writer can store. Read as a `Value`, such a row
//! would fail the whole statement that read it: a claim after it had committed (every
//! notification claimed with it stuck `running` until its lease expired), or `herald list` for
//! everyone. Read as raw JSON (checked without recursion), every row decodes; a webhook carries
//! the text as it is, and only what needs a `Value` (an email's template data) parses it, for
//! that notification alone.

use serde::{Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::types::Json;
use sqlx::{Decode, Postgres, Type};

use crate::raw_payload::inexact_numbers_as_strings;

/// A notification's payload as jsonb's text.
#[derive(Debug, Clone)]
pub struct Payload(Box<RawValue>);

impl Payload {
    /// The JSON text, numbers exactly as stored.
    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// The payload as a `Value` (an email's template data, `explain`'s comparison). A number no
    /// `Value` can hold exactly is given as a string of its digits; what still cannot be read
    /// (nesting past serde_json's limit of 128 levels, which herald's enqueue never stores) is
    /// the reason, for this notification alone.
    pub fn to_value(&self) -> Result<Value, String> {
        serde_json::from_str(&inexact_numbers_as_strings(self.0.get())).map_err(|e| {
            format!(
                "the stored payload cannot be read as JSON values ({e}); herald's enqueue refuses payloads nested over {} levels",
                crate::notification::MAX_PAYLOAD_DEPTH
            )
        })
    }
}

impl From<Box<RawValue>> for Payload {
    fn from(raw: Box<RawValue>) -> Self {
        Payload(raw)
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl std::fmt::Display for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.get())
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
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
        Ok(Payload(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(text: &str) -> Payload {
        Payload(serde_json::from_str(text).expect("valid JSON"))
    }

    #[test]
    fn json_too_deep_for_serde_json_fails_only_as_to_value() {
        let ok = payload(r#"{"a": [1, {"b": null}]}"#);
        assert_eq!(ok.to_value().unwrap()["a"][0], 1);
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        // serde_json's raw-value check, which the column decode uses, accepts it...
        let unreadable = payload(&deep);
        assert_eq!(unreadable.raw().get(), deep);
        // ...and reading it as a `Value` is what fails, for this payload alone.
        let problem = unreadable.to_value().unwrap_err();
        assert!(
            problem.starts_with(
                "the stored payload cannot be read as JSON values (recursion limit exceeded"
            ),
            "{problem}"
        );
    }

    #[test]
    fn numbers_serialize_exactly() {
        #[derive(Serialize)]
        struct Body<'a> {
            data: &'a Payload,
        }
        let exact = payload(r#"{"n": 123456789012345678901234567890, "m": 1e400}"#);
        assert_eq!(
            serde_json::to_string(&Body { data: &exact }).unwrap(),
            r#"{"data":{"n": 123456789012345678901234567890, "m": 1e400}}"#
        );
    }
}
