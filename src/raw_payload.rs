//! Checks of a payload kept as raw JSON text, so that its numbers travel exactly as written.
//!
//! serde_json's `Value` holds a number as an `f64`, an `i64` or a `u64`: parsing
//! `123456789012345678901234567890` rounds it, and `1e400` does not parse at all, though
//! PostgreSQL's jsonb keeps both exactly. A payload given as text therefore stays text from the
//! enqueue to the receiver, and these checks read that text without building a `Value`.
//!
//! Invariants: the input is syntactically valid JSON (a [`RawValue`] guarantees it); the scan is
//! one pass with an explicit stack, so no nesting can overflow the call stack, and it stops at
//! the first container past the depth limit.

use serde_json::value::RawValue;

/// What is wrong with a payload's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShapeProblem {
    NotAnObject,
    TooDeep,
    /// A key or string holds `\u0000` (jsonb refuses it); the JSON path of the first one.
    Nul(String),
}

impl std::fmt::Display for ShapeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShapeProblem::NotAnObject => f.write_str("it is not a JSON object"),
            ShapeProblem::TooDeep => f.write_str("it is nested too deep"),
            ShapeProblem::Nul(path) => write!(f, "it holds NUL (\\u0000) at {path}"),
        }
    }
}

/// Checks that `raw` is an object nested at most `max_depth` levels (the object itself is
/// level 1) with no NUL in any key or string.
pub fn check_shape(raw: &RawValue, max_depth: usize) -> Result<(), ShapeProblem> {
    let text = raw.get().trim_start();
    if !text.starts_with('{') {
        return Err(ShapeProblem::NotAnObject);
    }
    Scanner::default().scan(text.as_bytes(), max_depth)
}

enum Frame {
    /// `key`: the latest key read; `expect_key`: the next string is a key.
    Object {
        key: String,
        expect_key: bool,
    },
    Array {
        index: usize,
    },
}

#[derive(Default)]
struct Scanner {
    stack: Vec<Frame>,
}

impl Scanner {
    fn scan(mut self, bytes: &[u8], max_depth: usize) -> Result<(), ShapeProblem> {
        let mut at = 0;
        while at < bytes.len() {
            match bytes[at] {
                b'{' | b'[' => {
                    if self.stack.len() == max_depth {
                        return Err(ShapeProblem::TooDeep);
                    }
                    self.stack.push(if bytes[at] == b'{' {
                        Frame::Object {
                            key: String::new(),
                            expect_key: true,
                        }
                    } else {
                        Frame::Array { index: 0 }
                    });
                }
                b'}' | b']' => {
                    self.stack.pop();
                }
                b',' => match self.stack.last_mut() {
                    Some(Frame::Object { expect_key, .. }) => *expect_key = true,
                    Some(Frame::Array { index }) => *index += 1,
                    None => {}
                },
                b'"' => {
                    let (end, decoded, has_nul) = read_string(bytes, at);
                    let is_key = matches!(
                        self.stack.last(),
                        Some(Frame::Object {
                            expect_key: true,
                            ..
                        })
                    );
                    if is_key && let Some(Frame::Object { key, expect_key }) = self.stack.last_mut()
                    {
                        *key = decoded;
                        *expect_key = false;
                    }
                    if has_nul {
                        return Err(ShapeProblem::Nul(self.path()));
                    }
                    at = end;
                }
                _ => {}
            }
            at += 1;
        }
        Ok(())
    }

    /// The path of the value being read (`$.a[0].b`), as [`crate::notification`] words it.
    fn path(&self) -> String {
        let mut path = String::from("$");
        for frame in &self.stack {
            match frame {
                Frame::Object { key, .. } => {
                    path.push('.');
                    path.push_str(&key.replace('\0', "\\u0000"));
                }
                Frame::Array { index } => path.push_str(&format!("[{index}]")),
            }
        }
        path
    }
}

/// Reads the string that opens at `start`: the index of its closing quote, its decoded text
/// (for keys, which name the path), and whether it holds a NUL.
fn read_string(bytes: &[u8], start: usize) -> (usize, String, bool) {
    let mut at = start + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b'"' => break,
            _ => at += 1,
        }
    }
    let end = at.min(bytes.len() - 1);
    let literal = std::str::from_utf8(&bytes[start..=end]).unwrap_or("\"\"");
    let decoded: String = serde_json::from_str(literal).unwrap_or_default();
    let has_nul = decoded.contains('\0');
    (end, decoded, has_nul)
}

/// `raw` with every number that an `f64`, `i64` or `u64` cannot hold exactly turned into a
/// string of its digits, so that a reader built on serde_json's `Value` (the email templates)
/// shows it as written instead of rounding it, or failing on it (`1e400`).
pub fn inexact_numbers_as_strings(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut at = 0;
    let mut copied = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => {
                at += 1;
                while at < bytes.len() && bytes[at] != b'"' {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
                at += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = at;
                while at < bytes.len()
                    && matches!(bytes[at], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    at += 1;
                }
                let number = &raw[start..at];
                if !fits_a_value(number) {
                    out.push_str(&raw[copied..start]);
                    out.push('"');
                    out.push_str(number);
                    out.push('"');
                    copied = at;
                }
            }
            _ => at += 1,
        }
    }
    out.push_str(&raw[copied.min(raw.len())..]);
    out
}

/// Whether serde_json reads `number` (JSON number syntax) into a `Value` without changing it:
/// an integer within `i64` or `u64`, or at most 15 significant digits (what an `f64` keeps
/// exactly, in both directions) within `f64`'s normal range.
fn fits_a_value(number: &str) -> bool {
    if number.parse::<i64>().is_ok() || number.parse::<u64>().is_ok() {
        return true;
    }
    let (mantissa, exponent) = match number.find(['e', 'E']) {
        Some(at) => (
            &number[..at],
            number[at + 1..].parse::<i64>().unwrap_or(i64::MAX),
        ),
        None => (number, 0),
    };
    let (whole, fraction) = mantissa
        .trim_start_matches('-')
        .split_once('.')
        .unwrap_or((mantissa.trim_start_matches('-'), ""));
    let digits = format!("{whole}{fraction}");
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    if significant.is_empty() {
        return true;
    }
    let leading_zeros = digits.len() - digits.trim_start_matches('0').len();
    // The decimal exponent of the leading significant digit.
    let magnitude = exponent.saturating_add(whole.len() as i64 - 1 - leading_zeros as i64);
    significant.len() <= 15 && (-300..=300).contains(&magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        serde_json::from_str(text).expect("valid JSON")
    }

    #[test]
    fn only_objects_are_payloads() {
        assert_eq!(check_shape(&raw("[1]"), 64), Err(ShapeProblem::NotAnObject));
        assert_eq!(check_shape(&raw(" 1"), 64), Err(ShapeProblem::NotAnObject));
        assert_eq!(check_shape(&raw(" {\"a\": 1e400}"), 64), Ok(()));
    }

    #[test]
    fn depth_counts_containers_not_brackets_inside_strings() {
        let at_limit = format!("{}{}", "[".repeat(2), "]".repeat(2));
        assert_eq!(
            check_shape(&raw(&format!("{{\"a\":{at_limit}}}")), 3),
            Ok(())
        );
        let over = r#"{"a":[[[]]]}"#;
        assert_eq!(check_shape(&raw(over), 3), Err(ShapeProblem::TooDeep));
        assert_eq!(check_shape(&raw(r#"{"a":"[[[[{{{{"}"#), 1), Ok(()));
        assert_eq!(check_shape(&raw(r#"{"a\"[[":"\\"}"#), 1), Ok(()));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(check_shape(&raw(&deep), 64), Err(ShapeProblem::TooDeep));
    }

    #[test]
    fn nul_is_found_with_its_path() {
        assert_eq!(
            check_shape(&raw(r#"{"a": [{"b": "x\u0000y"}]}"#), 64),
            Err(ShapeProblem::Nul("$.a[0].b".into()))
        );
        assert_eq!(
            check_shape(&raw(r#"{"a": [1, 2, "\u0000"]}"#), 64),
            Err(ShapeProblem::Nul("$.a[2]".into()))
        );
        assert_eq!(
            check_shape(&raw(r#"{"k\u0000": 1}"#), 64),
            Err(ShapeProblem::Nul("$.k\\u0000".into()))
        );
        // An escaped backslash followed by "u0000" is text, not a NUL.
        assert_eq!(check_shape(&raw(r#"{"a": "\\u0000"}"#), 64), Ok(()));
        assert_eq!(
            check_shape(&raw(r#"{"x": {"y": 1}, "z": "\u0000"}"#), 64),
            Err(ShapeProblem::Nul("$.z".into()))
        );
    }

    #[test]
    fn numbers_a_value_would_change_become_strings() {
        let text = r#"{"big": 123456789012345678901234567890, "huge": 1e400, "tiny": -1e-400,
            "pi": 3.14159265358979323846, "id": 18446744073709551615, "neg": -9223372036854775808,
            "ok": 0.1, "half": 1.50, "sci": 1.5e300, "zero": 0.000, "s": "123456789012345678901234567890",
            "esc": "\"1e400", "list": [1e999, 2]}"#;
        let value: serde_json::Value =
            serde_json::from_str(&inexact_numbers_as_strings(text)).unwrap();
        assert_eq!(value["big"], "123456789012345678901234567890");
        assert_eq!(value["huge"], "1e400");
        assert_eq!(value["tiny"], "-1e-400");
        assert_eq!(value["pi"], "3.14159265358979323846");
        assert_eq!(value["id"], 18446744073709551615u64);
        assert_eq!(value["neg"], i64::MIN);
        assert_eq!(value["ok"], 0.1);
        assert_eq!(value["half"], 1.5);
        assert_eq!(value["sci"], 1.5e300);
        assert_eq!(value["zero"], 0.0);
        assert_eq!(value["s"], "123456789012345678901234567890");
        assert_eq!(value["esc"], "\"1e400");
        assert_eq!(value["list"], serde_json::json!(["1e999", 2]));
    }
}
