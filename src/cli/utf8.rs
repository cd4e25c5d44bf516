//! Arguments and environment variables that are not UTF-8, reported by name.
//!
//! Every herald value (key parts, addresses, URLs, JSON) is text, so bytes that are not UTF-8
//! are refused, with one line naming where they were: clap's own error says only that "one or
//! more arguments" were bad, and `std::env::vars` would panic on such a variable.
//! File paths (`--config`) may be any bytes, as paths on Unix may.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// Flags whose value is a path, which need not be UTF-8.
const PATH_FLAGS: [&str; 1] = ["--config"];

/// Names the first argument (after the program name) that is not UTF-8, e.g. "the value of
/// --user" (`--user=…`), "argument 4 (after --user)" or "argument 2"; None when every argument
/// that must be text is.
pub fn non_utf8_argument(args: &[OsString]) -> Option<String> {
    let mut previous: Option<&str> = None;
    for (index, arg) in args.iter().enumerate().skip(1) {
        let Some(text) = arg.to_str() else {
            let bytes = arg.as_bytes();
            // `--flag=value`: the flag is named before the `=`.
            if bytes.starts_with(b"--")
                && let Some(eq) = bytes.iter().position(|b| *b == b'=')
            {
                let flag = String::from_utf8_lossy(&bytes[..eq]).into_owned();
                if PATH_FLAGS.contains(&flag.as_str()) {
                    previous = None;
                    continue;
                }
                return Some(format!("the value of {flag}"));
            }
            match previous {
                Some(flag) if PATH_FLAGS.contains(&flag) => {
                    previous = None;
                    continue;
                }
                Some(flag) => return Some(format!("argument {index} (after {flag})")),
                None => return Some(format!("argument {index}")),
            }
        };
        previous = (text.starts_with('-') && !text.contains('=')).then_some(text);
    }
    None
}

/// The environment as text. A variable herald reads (`HERALD_*`, `DATABASE_URL`) that is not
/// UTF-8 is an error naming it; any other such variable is none of herald's business and is
/// left out.
pub fn environment(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<HashMap<String, String>, String> {
    let mut env = HashMap::new();
    for (name, value) in vars {
        let Ok(name) = name.into_string() else {
            continue;
        };
        match value.into_string() {
            Ok(value) => {
                env.insert(name, value);
            }
            Err(_) if name.starts_with("HERALD_") || name == "DATABASE_URL" => {
                return Err(format!("environment variable {name} is not valid UTF-8"));
            }
            Err(_) => {}
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn args(parts: &[&[u8]]) -> Vec<OsString> {
        parts
            .iter()
            .map(|p| OsStr::from_bytes(p).to_owned())
            .collect()
    }

    #[test]
    fn names_the_flag_whose_value_is_not_utf8() {
        let bad: &[u8] = b"a\xffb";
        let found = |parts: &[&[u8]]| non_utf8_argument(&args(parts));
        assert_eq!(
            found(&[b"herald", b"enqueue", b"--user", bad, b"--type", b"t"]),
            Some("argument 3 (after --user)".into())
        );
        assert_eq!(
            found(&[b"herald", b"list", b"--tenant=\xff"]),
            Some("the value of --tenant".into())
        );
        assert_eq!(found(&[b"herald", b"show", bad]), Some("argument 2".into()));
        assert_eq!(
            found(&[b"herald", b"list", b"--json", bad]),
            Some("argument 3 (after --json)".into()),
            "a flag without a value is still the nearest landmark"
        );
        assert_eq!(found(&[b"herald", b"list", b"--user", b"ann"]), None);
    }

    #[test]
    fn paths_may_be_any_bytes() {
        let found = |parts: &[&[u8]]| non_utf8_argument(&args(parts));
        assert_eq!(
            found(&[b"herald", b"--config", b"/tmp/\xff.toml", b"list"]),
            None
        );
        assert_eq!(
            found(&[b"herald", b"--config=/tmp/\xff.toml", b"list"]),
            None
        );
        assert_eq!(
            found(&[
                b"herald",
                b"--config",
                b"/tmp/\xff",
                b"list",
                b"--user",
                b"\xff"
            ]),
            Some("argument 5 (after --user)".into())
        );
    }

    #[test]
    fn only_herald_variables_must_be_utf8() {
        let bad = OsStr::from_bytes(b"\xff").to_owned();
        let var = |name: &str, value: &OsString| (OsString::from(name), value.clone());
        let ok = OsString::from("2525");
        let env = environment([var("LS_COLORS", &bad), var("HERALD_SMTP__PORT", &ok)]).unwrap();
        assert_eq!(env.len(), 1);
        assert_eq!(env["HERALD_SMTP__PORT"], "2525");
        assert_eq!(
            environment([var("HERALD_SMTP__PASSWORD", &bad)]).unwrap_err(),
            "environment variable HERALD_SMTP__PASSWORD is not valid UTF-8"
        );
        assert_eq!(
            environment([var("DATABASE_URL", &bad)]).unwrap_err(),
            "environment variable DATABASE_URL is not valid UTF-8"
        );
    }
}
