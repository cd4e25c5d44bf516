//! Template rendering with arbitrary payload strings: never panics, the HTML body never holds
//! a payload's `<`, `>`, `&`, `"` or `'` unescaped (in text or in an attribute), and the
//! subject is always one line.

use std::path::Path;

use herald::channel::templates::Templates;
use proptest::prelude::*;
use serde_json::json;

const HTML_BEFORE: &str = "<p>";
const HTML_MIDDLE: &str = "</p><a title=\"";
const HTML_AFTER: &str = "\">link</a>";

fn fixture() -> (tempfile::TempDir, Templates) {
    let dir = tempfile::tempdir().unwrap();
    let write = |file: &str, text: &str| {
        let path = dir.path().join("t").join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("subject.txt", "Re: {{ s }} ({{ n.inner }})");
    write("body.txt", "{{ s }}");
    write(
        "body.html",
        &format!("{HTML_BEFORE}{{{{ s }}}}{HTML_MIDDLE}{{{{ s }}}}{HTML_AFTER}"),
    );
    let (templates, _) = Templates::load(Path::new(dir.path())).unwrap();
    (dir, templates)
}

/// The escaped text back to the original: proves the value was escaped, not dropped.
fn unescape(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}

/// Strings with a good share of HTML and header metacharacters, and anything else.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop_oneof![
                Just("<".to_owned()),
                Just(">".to_owned()),
                Just("&".to_owned()),
                Just("\"".to_owned()),
                Just("'".to_owned()),
                Just("\r\n".to_owned()),
                Just("\u{2028}".to_owned()),
                Just("&amp;".to_owned()),
                Just("{{".to_owned()),
                any::<char>().prop_map(String::from),
            ],
            0..24,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn rendering_escapes_html_and_keeps_the_subject_on_one_line(s in hostile(), inner in hostile()) {
        let (_dir, templates) = fixture();
        let rendered = templates.render("t", &json!({"s": s, "n": {"inner": inner}})).unwrap();

        let html = rendered.html.unwrap();
        let escaped = html
            .strip_prefix(HTML_BEFORE)
            .and_then(|rest| rest.strip_suffix(HTML_AFTER))
            .and_then(|rest| rest.split_once(HTML_MIDDLE))
            .map(|(text, attribute)| (text.to_owned(), attribute.to_owned()));
        let (text, attribute) = escaped.expect("the template's own markup is intact");
        for part in [&text, &attribute] {
            prop_assert!(!part.contains(['<', '>', '"', '\'']), "{:?}", part);
            // Every `&` begins an entity herald's escaper writes.
            let entities = ["&lt;", "&gt;", "&quot;", "&#x27;", "&#x2f;", "&amp;"];
            for (at, _) in part.match_indices('&') {
                prop_assert!(entities.iter().any(|e| part[at..].starts_with(e)), "{:?}", part);
            }
            prop_assert_eq!(unescape(part), s.clone());
        }

        prop_assert_eq!(&rendered.text, &s, "plain text is not escaped");
        prop_assert!(
            !rendered.subject.chars().any(|c| c.is_control() || (c.is_whitespace() && c != ' ')),
            "{:?}", rendered.subject
        );
    }
}
