//! Canonical JSON: key order never matters, at any depth; it loses nothing, so different values
//! never share it; nothing panics. (The fingerprint is PostgreSQL's: `enqueue_sql.rs` tests it.)

use std::hash::{DefaultHasher, Hash, Hasher};

use herald::canonical_json::canonical_json;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Any JSON value up to four levels deep: every scalar kind, including keys and strings with
/// escapes and non-ASCII characters, and finite floats.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            // serde_json's reader (without its `float_roundtrip` feature) may miss the last
            // digit of a few floats; those would fail for the reader's sake, not herald's.
            .prop_filter("reads back exactly", |f| {
                serde_json::from_str::<f64>(&Value::from(*f).to_string()).ok() == Some(*f)
            })
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `value` as JSON text with the members of every object in an order shuffled by `seed`, so
/// the parsed value has that order whenever serde_json keeps insertion order.
fn shuffled_text(value: &Value, seed: u64) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by_key(|(key, _)| {
                let mut h = DefaultHasher::new();
                (seed, key).hash(&mut h);
                h.finish()
            });
            let members: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), shuffled_text(v, seed)))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|v| shuffled_text(v, seed)).collect();
            format!("[{}]", items.join(","))
        }
        scalar => scalar.to_string(),
    }
}

/// Reads JSON text and checks that the members of every object come in byte order of their
/// keys. A `Value` cannot tell (without serde_json's `preserve_order` feature its map sorts on
/// its own), so this reads the text as it is written.
struct SortedKeys;

impl<'de> serde::Deserialize<'de> for SortedKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SortedKeysVisitor)
    }
}

struct SortedKeysVisitor;

impl<'de> serde::de::Visitor<'de> for SortedKeysVisitor {
    type Value = SortedKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SortedKeys, A::Error> {
        let mut previous: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            if previous
                .as_ref()
                .is_some_and(|p| p.as_bytes() >= key.as_bytes())
            {
                return Err(serde::de::Error::custom(format!(
                    "{key:?} after {previous:?}"
                )));
            }
            map.next_value::<SortedKeys>()?;
            previous = Some(key);
        }
        Ok(SortedKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<SortedKeys, A::Error> {
        while seq.next_element::<SortedKeys>()?.is_some() {}
        Ok(SortedKeys)
    }

    fn visit_bool<E>(self, _: bool) -> Result<SortedKeys, E> {
        Ok(SortedKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<SortedKeys, E> {
        Ok(SortedKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<SortedKeys, E> {
        Ok(SortedKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<SortedKeys, E> {
        Ok(SortedKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<SortedKeys, E> {
        Ok(SortedKeys)
    }
    fn visit_unit<E>(self) -> Result<SortedKeys, E> {
        Ok(SortedKeys)
    }
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn key_order_never_changes_canonical_json(value in json(), seed in any::<u64>()) {
        let reordered: Value = serde_json::from_str(&shuffled_text(&value, seed)).unwrap();
        prop_assert_eq!(canonical_json(&reordered), canonical_json(&value));
    }

    #[test]
    fn canonical_json_loses_nothing(value in json()) {
        // Parsing the canonical text gives the value back, so two different values can never
        // have the same canonical text .
        let text = canonical_json(&value);
        if let Err(e) = serde_json::from_str::<SortedKeys>(&text) {
            return Err(TestCaseError::fail(format!("keys out of order in {text}: {e}")));
        }
        let back: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &value);
        prop_assert_eq!(canonical_json(&back), text);
    }

}
