//! Email addresses and what herald makes of them: one table for the library's test
//! (enqueue_validation) and the SQL functions' (enqueue_sql), so both judge the same cases.

/// `(address, None)` is accepted; `(address, Some(message))` is refused naming `email` with this
/// message (the library's `Invalid` message, and the SQL's after "invalid email: ").
pub const EMAIL_CASES: &[(&str, Option<&str>)] = &[
    ("ann+tag@example.com", None),
    ("o'brien@example.co.uk", None),
    ("a@localhost", None),
    ("名前@例え.jp", None),
    ("x@xn--bcher-kva.example", None),
    ("first.last@sub-domain.example.com", None),
    ("!#$%&'*+/=?^_`{|}~-@example.com", None),
    ("a@b.c0", None),
    // Quoted local parts: commas, headers, escapes that mail software reads differently.
    (
        r#""a,b"@c.com"#,
        Some(
            r#""\"a,b\"@c.com" is not a valid email address: quoted local parts are not accepted"#,
        ),
    ),
    (
        r#""Bcc:evil@x.com"@c.com"#,
        Some(
            r#""\"Bcc:evil@x.com\"@c.com" is not a valid email address: quoted local parts are not accepted"#,
        ),
    ),
    (
        r#""a\r\nb"@c.com"#,
        Some(
            r#""\"a\\r\\nb\"@c.com" is not a valid email address: quoted local parts are not accepted"#,
        ),
    ),
    (
        r#""ann"@example.com"#,
        Some(
            r#""\"ann\"@example.com" is not a valid email address: quoted local parts are not accepted"#,
        ),
    ),
    // Address literals.
    (
        "a@[127.0.0.1]",
        Some(
            r#""a@[127.0.0.1]" is not a valid email address: address literals are not accepted, only host names"#,
        ),
    ),
    (
        "a@[IPv6:::1]",
        Some(
            r#""a@[IPv6:::1]" is not a valid email address: address literals are not accepted, only host names"#,
        ),
    ),
    // Not dot-atoms.
    (
        "no-at-sign",
        Some(r#""no-at-sign" is not a valid email address: it has no @"#),
    ),
    ("", Some(r#""" is not a valid email address: it has no @"#)),
    (
        "@example.com",
        Some(
            r#""@example.com" is not a valid email address: the part before the @ must be dot-separated runs of letters, digits and !#$%&'*+/=?^_`{|}~-"#,
        ),
    ),
    (
        ".ann@example.com",
        Some(
            r#"".ann@example.com" is not a valid email address: the part before the @ must be dot-separated runs of letters, digits and !#$%&'*+/=?^_`{|}~-"#,
        ),
    ),
    (
        "ann.@example.com",
        Some(
            r#""ann.@example.com" is not a valid email address: the part before the @ must be dot-separated runs of letters, digits and !#$%&'*+/=?^_`{|}~-"#,
        ),
    ),
    (
        "a..b@example.com",
        Some(
            r#""a..b@example.com" is not a valid email address: the part before the @ must be dot-separated runs of letters, digits and !#$%&'*+/=?^_`{|}~-"#,
        ),
    ),
    (
        "a,b@example.com",
        Some(
            r#""a,b@example.com" is not a valid email address: the part before the @ must be dot-separated runs of letters, digits and !#$%&'*+/=?^_`{|}~-"#,
        ),
    ),
    (
        r"a\b@example.com",
        Some(
            r#""a\\b@example.com" is not a valid email address: the part before the @ must be dot-separated runs of letters, digits and !#$%&'*+/=?^_`{|}~-"#,
        ),
    ),
    // Not host names.
    (
        "ann@",
        Some(
            r#""ann@" is not a valid email address: the domain must be dot-separated labels of letters, digits and hyphens (not first or last)"#,
        ),
    ),
    (
        "a@b@example.com",
        Some(
            r#""a@b@example.com" is not a valid email address: the domain must be dot-separated labels of letters, digits and hyphens (not first or last)"#,
        ),
    ),
    (
        "ann@-example.com",
        Some(
            r#""ann@-example.com" is not a valid email address: the domain must be dot-separated labels of letters, digits and hyphens (not first or last)"#,
        ),
    ),
    (
        "ann@example-.com",
        Some(
            r#""ann@example-.com" is not a valid email address: the domain must be dot-separated labels of letters, digits and hyphens (not first or last)"#,
        ),
    ),
    (
        "ann@example..com",
        Some(
            r#""ann@example..com" is not a valid email address: the domain must be dot-separated labels of letters, digits and hyphens (not first or last)"#,
        ),
    ),
    (
        "ann@example.com.",
        Some(
            r#""ann@example.com." is not a valid email address: the domain must be dot-separated labels of letters, digits and hyphens (not first or last)"#,
        ),
    ),
    (
        "ann@exa_mple.com",
        Some(
            r#""ann@exa_mple.com" is not a valid email address: the domain must be dot-separated labels of letters, digits and hyphens (not first or last)"#,
        ),
    ),
    (
        "ann@exa(mple.com",
        Some(
            r#""ann@exa(mple.com" is not a valid email address: the domain must be dot-separated labels of letters, digits and hyphens (not first or last)"#,
        ),
    ),
    // Lengths: 64 bytes of local part and 63 of a label are the most; the echo is cut at 64
    // characters.
    (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com",
        None,
    ),
    (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com",
        Some(
            r#""aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"… is not a valid email address: the part before the @ is over 64 bytes"#,
        ),
    ),
    (
        "a@bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.com",
        None,
    ),
    (
        "a@bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.com",
        Some(
            r#""a@bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"… is not a valid email address: a label of the domain is over 63 bytes"#,
        ),
    ),
    // Bytes, not characters: 22 three-byte characters are 66 bytes.
    (
        "名名名名名名名名名名名名名名名名名名名名名名@example.com",
        Some(
            r#""名名名名名名名名名名名名名名名名名名名名名名@example.com" is not a valid email address: the part before the @ is over 64 bytes"#,
        ),
    ),
    // Checked before the grammar, in the same words as before.
    (
        "ann@exa mple.com",
        Some("must not contain whitespace, found U+0020 at byte 7"),
    ),
    (
        "a\u{2028}b@c.de",
        Some("must not contain whitespace, found U+2028 at byte 1"),
    ),
    (
        "ann@example.com\r\nBcc: x@y.z",
        Some("must not contain control characters, found U+000D at byte 15"),
    ),
];
