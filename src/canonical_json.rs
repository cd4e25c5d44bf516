//! Canonical JSON: objects with keys sorted by their UTF-8 bytes, no insignificant whitespace,
//! strings and numbers as serde_json writes them. The library measures the payload limit on it,
//! and `explain` and `json_diff` compare payloads with it.
//!
//! It is not the fingerprint: that is computed by PostgreSQL alone (`herald.fingerprint()`, over
//! jsonb's normalised text), so that rows enqueued by the library and by `herald.enqueue(...)`
//! from any other language recognise each other. For payloads the library writes, equal
//! canonical JSON means equal jsonb text, and so equal fingerprints.
//!
//! Sorting is done explicitly rather than relying on serde_json's map type, whose order changes
//! when any crate in the build enables its `preserve_order` feature.

use serde_json::Value;

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

    #[test]
    fn keys_are_sorted_at_any_depth() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"q":2,"p":3}],"x":null}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a":{"x":null,"y":[1,{"p":3,"q":2}]},"b":1}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":null,"y":[1,{"p":3,"q":2}]},"b":1}"#
        );
        assert_eq!(canonical_json(&a), canonical_json(&b));
    }

    #[test]
    fn strings_are_escaped_as_json() {
        let v = serde_json::json!({"k\"ey": "line\nbreak \u{e9}"});
        assert_eq!(canonical_json(&v), r#"{"k\"ey":"line\nbreak é"}"#);
    }
}
