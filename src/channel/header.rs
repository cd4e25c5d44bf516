//! Unstructured header values (`Subject`) encoded and folded for the wire.
//!
//! lettre writes a run of ASCII without spaces on one line however long it is (an SMTP server
//! refuses a line over 1000 octets, and the message is lost), and writes ASCII text that looks
//! like an RFC 2047 encoded-word (`=?utf-8?b?…?=`) as is, so a mail reader decodes a payload
//! value into text it never held. [`unstructured`] writes a value either
//!
//! - plain, folded at its spaces: only when it is printable ASCII with single spaces between
//!   words, no leading or trailing space, no `=?` anywhere, and every line fits; or
//! - as a whole as a run of `=?utf-8?b?…?=` encoded-words, one per line.
//!
//! Invariants of the result, for any value: every line is at most [`MAX_LINE`] characters
//! (header name included), printable ASCII and spaces only; lines after the first begin with a
//! space (folding); each encoded-word is at most [`MAX_ENCODED_WORD`] characters and holds
//! whole UTF-8 characters; unfolding and decoding give back exactly the value.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The line length RFC 5322 §2.1.1 asks for ("SHOULD be no more than 78 characters").
pub const MAX_LINE: usize = 78;
/// The longest encoded-word RFC 2047 §2 allows.
pub const MAX_ENCODED_WORD: usize = 75;

const PREFIX: &str = "=?utf-8?b?";
const SUFFIX: &str = "?=";
const FOLD: &str = "\r\n ";

/// The wire form of the value of header `name` (the text after `name: `, without the final
/// CRLF), folded with CRLF + space.
pub fn unstructured(name: &str, value: &str) -> String {
    let first_line = name.len() + ": ".len();
    plain(first_line, value).unwrap_or_else(|| encoded(first_line, value))
}

/// `value` folded at its spaces, if it can be sent without encoding.
fn plain(first_line: usize, value: &str) -> Option<String> {
    let printable = value.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    if !printable
        || value.starts_with(' ')
        || value.ends_with(' ')
        || value.contains("  ")
        || value.contains("=?")
    {
        return None;
    }
    let mut out = String::with_capacity(value.len() + 8);
    let mut line = first_line;
    for (i, word) in value.split(' ').enumerate() {
        if i == 0 {
            line += word.len();
        } else if line + 1 + word.len() <= MAX_LINE {
            out.push(' ');
            line += 1 + word.len();
        } else {
            out.push_str(FOLD);
            line = 1 + word.len();
        }
        if line > MAX_LINE {
            return None;
        }
        out.push_str(word);
    }
    Some(out)
}

/// `value` as encoded-words, each on its own line, split between UTF-8 characters.
fn encoded(first_line: usize, value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    // The room for the first word; after a fold, a line holds the space and one full word.
    let mut room = (MAX_LINE - first_line.min(MAX_LINE)).min(MAX_ENCODED_WORD);
    if max_bytes(room) < 4 {
        // Too little room for a word of one character of any length: start on the next line.
        out.push_str(FOLD);
        room = MAX_ENCODED_WORD;
    }
    let mut rest = value;
    let mut first = true;
    while first || !rest.is_empty() {
        let limit = max_bytes(room);
        let mut cut = 0;
        for (at, c) in rest.char_indices() {
            if at + c.len_utf8() > limit {
                break;
            }
            cut = at + c.len_utf8();
        }
        let (word, tail) = rest.split_at(cut);
        if !first {
            out.push_str(FOLD);
        }
        out.push_str(PREFIX);
        STANDARD.encode_string(word.as_bytes(), &mut out);
        out.push_str(SUFFIX);
        rest = tail;
        first = false;
        room = MAX_ENCODED_WORD;
    }
    out
}

/// The most bytes an encoded-word of at most `chars` characters holds: base64 turns each 3
/// bytes into 4 characters.
fn max_bytes(chars: usize) -> usize {
    chars.saturating_sub(PREFIX.len() + SUFFIX.len()) / 4 * 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A strict reader of what [`unstructured`] may write: unfolds, then reads each
    /// space-separated token as an encoded-word only if it is one whole (`=?utf-8?b?…?=`, valid
    /// base64, valid UTF-8 on its own); the space between two encoded-words is dropped
    /// (RFC 2047 §6.2). A plain token holding `=?` is an error: a lenient reader (Python's
    /// `decode_header`) would decode it.
    fn decode(wire: &str) -> Result<String, String> {
        if wire.is_empty() {
            return Ok(String::new());
        }
        let unfolded = wire.replace("\r\n ", " ");
        if unfolded.contains(['\r', '\n']) {
            return Err(format!("a line break that is not a fold: {wire:?}"));
        }
        let unfolded = unfolded.strip_prefix(' ').unwrap_or(&unfolded);
        let mut out = String::new();
        let mut last_was_encoded = false;
        for (i, token) in unfolded.split(' ').enumerate() {
            let encoded = token
                .strip_prefix(PREFIX)
                .and_then(|t| t.strip_suffix(SUFFIX));
            match encoded {
                Some(b64) => {
                    if i > 0 && !last_was_encoded {
                        out.push(' ');
                    }
                    let bytes = STANDARD.decode(b64).map_err(|e| format!("{token}: {e}"))?;
                    let text = String::from_utf8(bytes).map_err(|e| format!("{token}: {e}"))?;
                    out.push_str(&text);
                    last_was_encoded = true;
                }
                None => {
                    if token.contains("=?") {
                        return Err(format!("plain token looks encoded: {token}"));
                    }
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(token);
                    last_was_encoded = false;
                }
            }
        }
        Ok(out)
    }

    /// Checks every invariant of the module docs on `value`'s wire form.
    fn check(name: &str, value: &str) -> Result<String, TestCaseError> {
        let wire = unstructured(name, value);
        let full = format!("{name}: {wire}");
        for (i, line) in full.split("\r\n").enumerate() {
            prop_assert!(
                line.len() <= MAX_LINE,
                "line {i} is {} long: {full:?}",
                line.len()
            );
            prop_assert!(
                line.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
                "line {i} is not printable ASCII: {full:?}"
            );
            prop_assert!(i == 0 || line.starts_with(' '), "not a fold: {full:?}");
            prop_assert!(!line.trim().is_empty(), "an empty line: {full:?}");
            for token in line.split(' ').filter(|t| t.starts_with(PREFIX)) {
                prop_assert!(token.len() <= MAX_ENCODED_WORD, "{token}");
            }
        }
        prop_assert_eq!(decode(&wire).map_err(TestCaseError::fail)?, value);
        Ok(wire)
    }

    #[test]
    fn short_ascii_subjects_stay_readable() {
        assert_eq!(
            unstructured("Subject", "Order 1001 shipped"),
            "Order 1001 shipped"
        );
        assert_eq!(unstructured("Subject", ""), "");
    }

    #[test]
    fn long_ascii_subjects_fold_at_spaces() {
        let value = "word ".repeat(40);
        let value = value.trim_end();
        let wire = check("Subject", value).unwrap();
        assert!(!wire.contains("=?"), "{wire}");
        assert!(wire.contains("\r\n word"), "{wire}");
    }

    #[test]
    fn a_long_run_without_spaces_is_encoded_and_split() {
        let value = "x".repeat(300);
        let wire = check("Subject", &value).unwrap();
        assert!(wire.starts_with("=?utf-8?b?eHh4"), "{wire}");
        assert_eq!(wire.matches("\r\n ").count(), 6, "{wire}");
    }

    #[test]
    fn text_that_looks_encoded_is_encoded() {
        let value = "=?utf-8?b?QmNjOiBldmlsQHguY29t?=";
        let wire = check("Subject", value).unwrap();
        assert_eq!(
            wire,
            "=?utf-8?b?PT91dGYtOD9iP1FtTmpPaUJsZG1sc1FIZ3VZMjl0Pz0=?="
        );
        let within = "Order =?x?q?y?= shipped";
        assert!(check("Subject", within).unwrap().starts_with(PREFIX));
    }

    #[test]
    fn control_characters_and_odd_spacing_are_encoded() {
        for value in [
            "a\r\nBcc: x@y",
            "tab\there",
            " lead",
            "trail ",
            "two  spaces",
            "del\u{7f}",
        ] {
            let wire = check("Subject", value).unwrap();
            assert!(wire.starts_with(PREFIX), "{value:?}: {wire}");
        }
    }

    #[test]
    fn multibyte_characters_are_never_split() {
        // 4-byte characters: 42 bytes fit the first word's room only as 40, 10 characters.
        let value = "🥳".repeat(60);
        let wire = check("Subject", &value).unwrap();
        let first = wire.split("\r\n ").next().unwrap();
        let bytes = STANDARD
            .decode(&first[PREFIX.len()..first.len() - 2])
            .unwrap();
        assert_eq!(bytes.len(), 40);
        check("Subject", &"é".repeat(100)).unwrap();
        check("Subject", &"漢".repeat(100)).unwrap();
    }

    #[test]
    fn a_long_header_name_starts_the_words_on_the_next_line() {
        let name = "X-".to_owned() + &"N".repeat(70);
        let wire = check(&name, "ünïcödé").unwrap();
        assert!(wire.starts_with("\r\n =?utf-8?b?"), "{wire}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_text_round_trips_within_the_limits(value in any::<String>()) {
            check("Subject", &value)?;
        }

        #[test]
        fn ascii_with_spaces_round_trips_within_the_limits(value in "[ -~]{0,400}") {
            check("Subject", &value)?;
        }

        #[test]
        fn words_of_any_length_round_trip(
            words in proptest::collection::vec("[a-zA-Z0-9=?é🥳]{1,120}", 0..8),
            name in "[A-Za-z-]{1,40}",
        ) {
            check(&name, &words.join(" "))?;
        }
    }
}
