//! Where two JSON payloads differ, as JSON paths (`$.order`, `$.items[0].qty`): the "why" behind
//! a conflict, for `herald explain`.
//!
//! Invariant: the paths are empty exactly when the two values have the same canonical JSON. For
//! payloads the library writes that is when their fingerprints agree, so an explanation does not
//! contradict the conflict decision.

use serde_json::Value;

use crate::canonical_json::canonical_json;

/// The paths at which `a` and `b` differ, in sorted order; a key or element present on one side
/// only is reported at its own path.
pub fn differing_paths(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(a, b, "$".to_owned(), &mut out);
    out
}

fn walk(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort_unstable_by(|p, q| p.as_bytes().cmp(q.as_bytes()));
            keys.dedup();
            for key in keys {
                let child = format!("{path}{}", member(key));
                match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) => walk(p, q, child, out),
                    _ => out.push(child),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let child = format!("{path}[{i}]");
                match (x.get(i), y.get(i)) {
                    (Some(p), Some(q)) => walk(p, q, child, out),
                    _ => out.push(child),
                }
            }
        }
        _ => {
            if canonical_json(a) != canonical_json(b) {
                out.push(path);
            }
        }
    }
}

/// `.key` for plain names, `["odd key"]` otherwise.
fn member(key: &str) -> String {
    let plain = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!(".{key}")
    } else {
        format!("[{}]", Value::String(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_payloads_have_no_differences_whatever_the_key_order() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":{"x":[1,2]}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":{"x":[1,2]},"a":1}"#).unwrap();
        assert!(differing_paths(&a, &b).is_empty());
    }

    #[test]
    fn names_every_differing_leaf_and_missing_member() {
        let a = json!({"order": "1001", "items": [{"sku": "a", "qty": 1}], "gone": true, "weird key": 1});
        let b = json!({"order": "1002", "items": [{"sku": "a", "qty": 2}, {"sku": "b"}], "new": null, "weird key": 2});
        assert_eq!(
            differing_paths(&a, &b),
            [
                "$.gone",
                "$.items[0].qty",
                "$.items[1]",
                "$.new",
                "$.order",
                "$[\"weird key\"]"
            ]
        );
    }

    #[test]
    fn type_changes_and_number_forms_are_differences() {
        assert_eq!(
            differing_paths(&json!({"a": 1}), &json!({"a": "1"})),
            ["$.a"]
        );
        assert_eq!(
            differing_paths(&json!({"a": 1}), &json!({"a": 1.0})),
            ["$.a"]
        );
        assert_eq!(
            differing_paths(&json!({"a": {"b": 1}}), &json!({"a": [1]})),
            ["$.a"]
        );
    }
}
