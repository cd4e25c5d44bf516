//! Email templates: `<dir>/<type>/subject.txt`, `body.txt` and optionally `body.html`, rendered
//! with minijinja.
//!
//! Invariants: undefined variables are errors (strict), never empty strings; `.html` templates
//! are HTML-escaped automatically, `.txt` ones are not; the rendered subject has no control
//! characters (no header folding or injection through a payload). A notification type names a
//! directory only if it is a plain name (letters, digits, `_`, `-`, `.`, not starting with `.`),
//! so no type can reach outside the templates directory. Templates are read from disk when
//! first used, so a type added after start is found without a restart. A template file is read
//! only if it is a regular file (symlinks followed) of at most [`MAX_TEMPLATE_BYTES`]: a FIFO
//! or a device (`/dev/zero`) linked in cannot block a worker or fill memory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use minijinja::{Environment, ErrorKind, TemplateSource, UndefinedBehavior};
use serde::Serialize;

/// The largest template file read.
pub const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;

/// The three parts of an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// A type directory found at start, and whether it has an HTML body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedType {
    pub type_: String,
    pub html: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("missing template {0}")]
    Missing(PathBuf),
    #[error("type {0:?} cannot name a template directory (letters, digits, '_', '-', '.')")]
    UnsafeType(String),
    #[error("template {path}: {message}")]
    Broken { path: PathBuf, message: String },
}

pub struct Templates {
    env: Environment<'static>,
    dir: PathBuf,
}

impl Templates {
    /// Prepares `dir` and compiles every template found in it, so a syntax error stops the
    /// start rather than a delivery. Returns the types found.
    pub fn load(dir: &Path) -> Result<(Self, Vec<LoadedType>), TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let root = dir.to_owned();
        env.set_loader(move |name| load(&root, name));
        let templates = Templates {
            env,
            dir: dir.to_owned(),
        };
        let mut loaded = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok((templates, loaded));
        };
        let mut types: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| is_safe_type(name))
            .collect();
        types.sort();
        for type_ in types {
            let mut html = false;
            for file in ["subject.txt", "body.txt", "body.html"] {
                match templates.compile(&type_, file) {
                    Ok(()) => html |= file == "body.html",
                    Err(TemplateError::Missing(_)) if file == "body.html" => {}
                    Err(e) => return Err(e),
                }
            }
            loaded.push(LoadedType { type_, html });
        }
        Ok((templates, loaded))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn compile(&self, type_: &str, file: &str) -> Result<(), TemplateError> {
        self.env
            .get_template(&format!("{type_}/{file}"))
            .map(|_| ())
            .map_err(|e| self.error(type_, file, e))
    }

    /// Renders the email of `type_` with `context`.
    pub fn render(&self, type_: &str, context: &impl Serialize) -> Result<Rendered, TemplateError> {
        if !is_safe_type(type_) {
            return Err(TemplateError::UnsafeType(type_.to_owned()));
        }
        let context = minijinja::Value::from(minijinja::value::Serde(context));
        let render = |file: &str| -> Result<String, TemplateError> {
            let template = self
                .env
                .get_template(&format!("{type_}/{file}"))
                .map_err(|e| self.error(type_, file, e))?;
            template
                .render(&context)
                .map_err(|e| self.error(type_, file, e))
        };
        let subject = clean_subject(&render("subject.txt")?);
        let text = render("body.txt")?;
        let html = match render("body.html") {
            Ok(html) => Some(html),
            Err(TemplateError::Missing(_)) => None,
            Err(e) => return Err(e),
        };
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }

    fn error(&self, type_: &str, file: &str, e: minijinja::Error) -> TemplateError {
        let path = self.dir.join(type_).join(file);
        if e.kind() == ErrorKind::TemplateNotFound {
            return TemplateError::Missing(path);
        }
        // With its cause: "could not read template" alone does not say the file is not UTF-8.
        let mut message = super::error_chain(&e);
        if let Some(line) = e.line()
            && !message.contains(&format!(":{line}"))
        {
            message.push_str(&format!(" (line {line})"));
        }
        TemplateError::Broken { path, message }
    }
}

/// minijinja's `path_loader` (same path rule, same reload on change), except that it reads
/// with the checks of [`read_capped`]: `path_loader` reads any file whole.
fn load(dir: &Path, name: &str) -> Result<Option<TemplateSource>, minijinja::Error> {
    let mut path = dir.to_owned();
    for segment in name.split('/') {
        if segment.starts_with('.') || segment.contains('\\') {
            return Ok(None);
        }
        path.push(segment);
    }
    // Stamped before reading, so a change racing with the read is seen by the next check.
    let stamp = file_stamp(&path);
    match read_capped(&path) {
        Ok(text) => {
            let mut source = TemplateSource::new(text);
            if let Some(stamp) = stamp {
                source = source.with_uptodate_check(move || file_stamp(&path) == Some(stamp));
            }
            Ok(Some(source))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("could not read template {name}"),
        )
        .with_source(e)),
    }
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// The text of `path` if it is a regular file of at most [`MAX_TEMPLATE_BYTES`] in UTF-8.
/// Opened non-blocking (a FIFO would block `open` until a writer came) and checked on the open
/// file, so a swap between a check and the open changes nothing; read through a limit, so a
/// file growing meanwhile is still cut off.
fn read_capped(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let too_large = || {
        Error::new(
            ErrorKind::InvalidData,
            format!("larger than {MAX_TEMPLATE_BYTES} bytes, the limit for a template"),
        )
    };
    if metadata.len() > MAX_TEMPLATE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(MAX_TEMPLATE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_TEMPLATE_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes)
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("not valid UTF-8 ({e})")))
}

/// The fields a template set reads from `herald`, beside the payload's (see `email::context`).
pub const HERALD_FIELDS: [&str; 6] = ["id", "type", "user_id", "business_id", "tenant", "attempt"];

/// What `herald doctor` learns about one type's templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeCheck {
    /// The payload fields the templates read (`order`, `customer.name`), sorted, whether or not
    /// they are optional (`| default(..)`, `is defined`).
    pub payload_fields: Vec<String>,
    /// Why rendering with an empty payload fails (strictly, as a delivery renders), if it does:
    /// a field that is not optional.
    pub empty_payload_error: Option<String>,
}

impl Templates {
    /// Renders every template of `type_` with an empty payload, undefined variables allowed, so
    /// that what fails is what no payload can fix (an unknown filter, a bad operation, a
    /// `herald.` field that does not exist); returns the payload fields the templates read.
    pub fn check(&self, type_: &str) -> Result<TypeCheck, TemplateError> {
        if !is_safe_type(type_) {
            return Err(TemplateError::UnsafeType(type_.to_owned()));
        }
        let mut lenient = self.env.clone();
        lenient.set_undefined_behavior(UndefinedBehavior::Chainable);
        let sample: serde_json::Map<String, serde_json::Value> = HERALD_FIELDS
            .iter()
            .map(|f| (f.to_string(), serde_json::Value::from("x")))
            .collect();
        let context = serde_json::json!({ "herald": sample });
        let context_value = minijinja::Value::from(minijinja::value::Serde(&context));
        let mut fields = std::collections::BTreeSet::new();
        for file in ["subject.txt", "body.txt", "body.html"] {
            let template = match lenient.get_template(&format!("{type_}/{file}")) {
                Ok(template) => template,
                Err(e) if e.kind() == ErrorKind::TemplateNotFound && file == "body.html" => {
                    continue;
                }
                Err(e) => return Err(self.error(type_, file, e)),
            };
            for variable in template.undeclared_variables(true) {
                match variable.strip_prefix("herald") {
                    Some("") => {}
                    Some(field) => {
                        let field = field.trim_start_matches('.');
                        let known = field
                            .split('.')
                            .next()
                            .is_some_and(|f| HERALD_FIELDS.contains(&f));
                        if !known {
                            return Err(TemplateError::Broken {
                                path: self.dir.join(type_).join(file),
                                message: format!(
                                    "herald.{field} does not exist (herald has {})",
                                    HERALD_FIELDS.join(", ")
                                ),
                            });
                        }
                    }
                    None => {
                        fields.insert(variable);
                    }
                }
            }
            template
                .render(&context_value)
                .map_err(|e| self.error(type_, file, e))?;
        }
        Ok(TypeCheck {
            payload_fields: fields.into_iter().collect(),
            empty_payload_error: self.render(type_, &context).err().map(|e| e.to_string()),
        })
    }
}

fn is_safe_type(type_: &str) -> bool {
    !type_.is_empty()
        && !type_.starts_with('.')
        && type_
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// One line: control characters (CR, LF, tabs, …) become spaces, runs of spaces collapse.
fn clean_subject(subject: &str) -> String {
    subject
        .split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, path: &str, text: &str) {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "shipped/subject.txt",
            "Order {{ order }}\r\nBcc: evil@example.com\n",
        );
        write(
            dir.path(),
            "shipped/body.txt",
            "Hi {{ name }}, order {{ order }} <b>shipped</b>.",
        );
        write(dir.path(), "shipped/body.html", "<p>Hi {{ name }}</p>");
        write(dir.path(), "plain/subject.txt", "Plain");
        write(dir.path(), "plain/body.txt", "Just text");
        dir
    }

    #[test]
    fn renders_subject_text_and_escaped_html() {
        let dir = fixture();
        let (templates, loaded) = Templates::load(dir.path()).unwrap();
        assert_eq!(
            loaded,
            [
                LoadedType {
                    type_: "plain".into(),
                    html: false
                },
                LoadedType {
                    type_: "shipped".into(),
                    html: true
                }
            ]
        );
        let r = templates
            .render(
                "shipped",
                &json!({"order": "1001", "name": "<script>x</script>"}),
            )
            .unwrap();
        assert_eq!(
            r.subject, "Order 1001 Bcc: evil@example.com",
            "one line, no header injection"
        );
        assert_eq!(
            r.text, "Hi <script>x</script>, order 1001 <b>shipped</b>.",
            "text is not escaped"
        );
        assert_eq!(
            r.html.unwrap(),
            "<p>Hi &lt;script&gt;x&lt;&#x2f;script&gt;</p>"
        );
        assert_eq!(templates.render("plain", &json!({})).unwrap().html, None);
    }

    #[test]
    fn undefined_variables_are_errors_naming_the_file() {
        let dir = fixture();
        let (templates, _) = Templates::load(dir.path()).unwrap();
        let err = templates
            .render("shipped", &json!({"order": "1"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("shipped/body.txt"), "{err}");
        assert!(err.contains("undefined"), "{err}");
    }

    #[test]
    fn missing_templates_name_the_path() {
        let dir = fixture();
        let (templates, _) = Templates::load(dir.path()).unwrap();
        let err = templates.render("nope", &json!({})).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "missing template {}",
                dir.path().join("nope/subject.txt").display()
            )
        );
    }

    #[test]
    fn types_cannot_escape_the_directory() {
        let dir = fixture();
        let (templates, _) = Templates::load(dir.path()).unwrap();
        for bad in ["../etc", ".hidden", "a/b", ""] {
            assert!(
                matches!(
                    templates.render(bad, &json!({})),
                    Err(TemplateError::UnsafeType(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn syntax_errors_stop_the_load() {
        let dir = fixture();
        write(dir.path(), "broken/subject.txt", "{{ unclosed");
        write(dir.path(), "broken/body.txt", "x");
        let err = Templates::load(dir.path()).err().unwrap().to_string();
        assert!(err.contains("broken/subject.txt"), "{err}");
    }

    #[test]
    fn check_lists_payload_fields_and_finds_what_no_payload_fixes() {
        let dir = fixture();
        write(dir.path(), "shouty/subject.txt", "{{ name | shout }}");
        write(dir.path(), "shouty/body.txt", "x");
        write(dir.path(), "typo/subject.txt", "{{ herald.idd }}");
        write(dir.path(), "typo/body.txt", "{{ herald.id }}");
        let (templates, _) = Templates::load(dir.path()).unwrap();
        let check = templates.check("shipped").unwrap();
        assert_eq!(check.payload_fields, ["name", "order"]);
        let empty = check.empty_payload_error.unwrap();
        assert!(
            empty.contains("shipped/subject.txt") && empty.contains("undefined"),
            "{empty}"
        );
        let plain = templates.check("plain").unwrap();
        assert_eq!(plain.payload_fields, Vec::<String>::new());
        assert_eq!(plain.empty_payload_error, None);
        let err = templates.check("shouty").unwrap_err().to_string();
        assert!(
            err.contains("shouty/subject.txt") && err.contains("shout"),
            "{err}"
        );
        let err = templates.check("typo").unwrap_err().to_string();
        assert!(err.contains("herald.idd does not exist"), "{err}");
    }

    /// Loads `dir` on another thread: a read that blocks (a FIFO opened for reading waits for a
    /// writer) fails the test instead of hanging it.
    fn load_within_a_minute(dir: &Path) -> Result<(), String> {
        let dir = dir.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(Templates::load(&dir).map(|_| ()).map_err(|e| e.to_string()));
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("loading the templates blocked")
    }

    #[test]
    fn a_device_or_fifo_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "zero/body.txt", "x");
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero/subject.txt")).unwrap();
        let err = load_within_a_minute(dir.path()).unwrap_err();
        assert!(
            err.contains("zero/subject.txt") && err.contains("not a regular file"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "fifo/body.txt", "x");
        let fifo = dir.path().join("fifo/subject.txt");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let err = load_within_a_minute(dir.path()).unwrap_err();
        assert!(
            err.contains("fifo/subject.txt") && err.contains("not a regular file"),
            "{err}"
        );
    }

    #[test]
    fn a_template_over_the_size_limit_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "big/subject.txt", "Hi");
        let at_limit = "x".repeat(MAX_TEMPLATE_BYTES as usize);
        write(dir.path(), "big/body.txt", &at_limit);
        let (templates, _) = Templates::load(dir.path()).unwrap();
        assert_eq!(templates.render("big", &json!({})).unwrap().text, at_limit);

        write(dir.path(), "big/body.html", &format!("{at_limit}x"));
        let err = load_within_a_minute(dir.path()).unwrap_err();
        assert!(
            err.contains("big/body.html") && err.contains("larger than 1048576 bytes"),
            "{err}"
        );
    }

    #[test]
    fn the_shipped_templates_render() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let (templates, loaded) = Templates::load(&dir).unwrap();
        assert!(!loaded.is_empty());
        let context = json!({
            "order": "1001", "name": "Ann", "carrier": "DHL", "tracking_url": "https://track.example/1",
            "herald": {"id": "0", "type": "t", "user_id": "u", "business_id": "b", "tenant": "default", "attempt": 1}
        });
        for t in loaded {
            let r = templates
                .render(&t.type_, &context)
                .unwrap_or_else(|e| panic!("{}: {e}", t.type_));
            assert!(!r.subject.is_empty() && !r.text.is_empty());
        }
    }
}
