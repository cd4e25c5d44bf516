//! The fingerprint of a notification's intent: SHA-256 over its channel, its destination and its
//! payload in canonical JSON.
//!
//! Invariant: two notifications have equal fingerprints exactly when they would be delivered the
//! same way, whatever the key order of their payload objects. Canonical JSON here means objects
//! with keys sorted by their UTF-8 bytes, no insignificant whitespace, and strings and numbers as
//! serde_json writes them. Sorting is done explicitly rather than relying on serde_json's map
//! type, whose order changes when any crate in the build enables its `preserve_order` feature.
//!
//! The parts are separated by NUL bytes, which validation forbids inside every part, so no two
//! different (channel, destination, payload) triples hash the same input.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::state::Channel;

/// Prefix that versions the hashing scheme: changing the scheme must change every fingerprint.
const SCHEME: &[u8] = b"herald-fingerprint-v1";

/// SHA-256 of the intent; 32 bytes.
pub fn fingerprint(channel: Channel, destination: &str, payload: &Value) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(SCHEME);
    hasher.update([0]);
    hasher.update(channel.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(destination.as_bytes());
    hasher.update([0]);
    hasher.update(canonical_json(payload).as_bytes());
    hasher.finalize().into()
}

/// `value` as canonical JSON text (see the module docs).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut String) {
    // Serialising a string, number, bool or null into a String cannot fail.
    out.push_str(&value.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter_at_any_depth() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"q":2,"p":3}],"x":null}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a":{"x":null,"y":[1,{"p":3,"q":2}]},"b":1}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":null,"y":[1,{"p":3,"q":2}]},"b":1}"#
        );
        assert_eq!(
            fingerprint(Channel::Email, "a@example.com", &a),
            fingerprint(Channel::Email, "a@example.com", &b)
        );
    }

    #[test]
    fn array_order_and_values_matter() {
        let fp = |v: Value| fingerprint(Channel::Email, "a@example.com", &v);
        assert_ne!(fp(json!({"a": [1, 2]})), fp(json!({"a": [2, 1]})));
        assert_ne!(fp(json!({"a": "1"})), fp(json!({"a": 1})));
        assert_ne!(fp(json!({"a": 1})), fp(json!({"a": 1.5})));
    }

    #[test]
    fn channel_and_destination_are_part_of_the_intent() {
        let p = json!({"order": "1001"});
        let base = fingerprint(Channel::Email, "ann@example.com", &p);
        assert_ne!(base, fingerprint(Channel::Email, "bob@example.com", &p));
        assert_ne!(base, fingerprint(Channel::Webhook, "ann@example.com", &p));
    }

    #[test]
    fn parts_cannot_shift_into_each_other() {
        // Without separators "ab" + "c" and "a" + "bc" would hash the same bytes.
        let p = json!({});
        assert_ne!(
            fingerprint(Channel::Email, "ab", &p),
            fingerprint(Channel::Email, "a", &json!("b"))
        );
    }

    #[test]
    fn strings_are_escaped_as_json() {
        let v = json!({"k\"ey": "line\nbreak \u{e9}"});
        assert_eq!(canonical_json(&v), r#"{"k\"ey":"line\nbreak é"}"#);
    }
}
