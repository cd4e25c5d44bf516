//! The `Notification` builder, its identity key, and the validation every enqueue runs first.
//!
//! Building is infallible so calls chain; [`Notification::validate`] checks everything before any
//! SQL runs and names the offending field. Invariants of a [`Validated`] notification:
//! - each key part (tenant, user_id, type, business_id) is 1..=255 characters with no control
//!   characters (so no NUL either);
//! - an email destination is a dot-atom local part, `@` and a host name (see `check_email`),
//!   with no control characters or whitespace (Unicode line separators included);
//! - the payload is a JSON object nested at most [`MAX_PAYLOAD_DEPTH`] levels deep, with no NUL
//!   (`\u0000`) in any key or string (PostgreSQL's jsonb rejects it). Its size is counted by
//!   the database, in bytes of jsonb's text form, for every client alike. Depth is checked
//!   first and without recursion: every later step (the NUL search, serde_json's reader in the
//!   daemon) recurses, and a payload nested 100,000 deep would overflow the stack;
//! - `max_attempts` is within [`MAX_ATTEMPTS_RANGE`];
//! - `run_at`, when given, lies within years 1 to 9999 UTC ([`run_at_min`], [`run_at_max`]) and
//!   is no leap second.

use std::ops::RangeInclusive;

use chrono::{DateTime, Utc};
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::EnqueueError;
use crate::key::Key;
use crate::raw_payload::{ShapeProblem, check_shape};
use crate::state::Channel;

/// `tenant` when none is given.
///
/// ```
/// let n = herald::Notification::email("u", "t", "b", "ann@example.com");
/// assert_eq!(n.key().tenant, herald::DEFAULT_TENANT);
/// ```
pub const DEFAULT_TENANT: &str = "default";
/// The longest key part, in characters.
pub const MAX_KEY_PART_CHARS: usize = 255;
/// Attempts when none is given: one, then one per step of the default `retry.schedule` (a
/// test in `config::keys` holds the two together).
///
/// ```
/// assert_eq!(herald::DEFAULT_MAX_ATTEMPTS, 8);
/// ```
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Accepted values of `max_attempts` (the database enforces the same range).
pub const MAX_ATTEMPTS_RANGE: RangeInclusive<u32> = 1..=100;
/// The default payload limit: 64 KiB of jsonb's text form.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// The deepest accepted payload: the payload object itself is level 1, `{"a": {"b": []}}` is 3.
///
/// Why 64: serde_json's reader refuses documents nested 128 or more levels (its recursion
/// limit), and the daemon reads every payload back with it, so anything deeper would be stored
/// and then never delivered. Webhook receivers see it one level deeper (inside `data`), and
/// common parsers elsewhere stop sooner (Ruby's `JSON.parse` at 100). PostgreSQL's jsonb is
/// bounded only by its stack (thousands of levels), so it is not the binding limit. Real
/// notification payloads are a few levels deep; 64 leaves ample room and every reader margin.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) {
/// let mut deep = serde_json::json!({});
/// for _ in 0..herald::MAX_PAYLOAD_DEPTH {
///     deep = serde_json::json!({ "a": deep });
/// }
/// // The payload object itself is level 1: this one is one level too deep.
/// let n = herald::Notification::email("u", "t", "b", "ann@example.com").payload(deep);
/// let refused = herald::enqueue(&pool, &n).await;
/// assert!(matches!(refused, Err(herald::EnqueueError::Invalid { field: "payload", .. })));
/// # }
/// ```
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// Limits applied at enqueue; operators set them in `[limits]` of the configuration.
///
/// ```
/// assert_eq!(herald::Limits::default().max_payload_bytes, 64 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest payload, in bytes of its stored (jsonb) text. The database holds every
    /// client to the ceiling `herald migrate` recorded, whichever is smaller.
    pub max_payload_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }
}

/// Where a notification goes.
///
/// ```
/// let n = herald::Notification::email("u", "t", "b", "ann@example.com");
/// assert_eq!(n.destination(), &herald::Destination::Email("ann@example.com".into()));
/// assert_eq!(n.destination().channel(), herald::Channel::Email);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An email address.
    Email(String),
    /// A registered webhook endpoint of the same tenant.
    Webhook(Uuid),
}

impl Destination {
    /// The channel that delivers to it.
    pub fn channel(&self) -> Channel {
        match self {
            Destination::Email(_) => Channel::Email,
            Destination::Webhook(_) => Channel::Webhook,
        }
    }

    /// The `destination` column: the address, or the endpoint id.
    #[doc(hidden)]
    pub fn as_column(&self) -> String {
        match self {
            Destination::Email(address) => address.clone(),
            Destination::Webhook(endpoint) => endpoint.to_string(),
        }
    }
}

/// One notification intent, keyed by `(tenant, user_id, type, business_id)`: a builder for
/// [`enqueue`](crate::enqueue) and [`enqueue_many`](crate::enqueue_many).
///
/// ```
/// use chrono::{Duration, Utc};
///
/// let endpoint: uuid::Uuid = "0190b0a8-7c2f-7e2a-9c41-3f1b2d4e5a6b".parse()?;
/// let n = herald::Notification::webhook("user-42", "invoice.paid", "inv-7", endpoint)
///     .tenant("acme")
///     .payload(serde_json::json!({ "invoice": "inv-7", "amount_cents": 1200 }))
///     .run_at(Utc::now() + Duration::minutes(5))
///     .max_attempts(3);
/// assert_eq!(n.key().tenant, "acme");
/// # Ok::<(), uuid::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    tenant: String,
    user_id: String,
    type_: String,
    business_id: String,
    destination: Destination,
    payload: PayloadInput,
    run_at: Option<DateTime<Utc>>,
    max_attempts: u32,
}

impl Notification {
    /// An email to `to_address`, rendered from `templates/<type>/`.
    ///
    /// ```
    /// let n = herald::Notification::email("user-42", "welcome", "signup-42", "ann@example.com");
    /// assert_eq!(n.key().type_, "welcome");
    /// ```
    pub fn email(
        user_id: impl Into<String>,
        type_: impl Into<String>,
        business_id: impl Into<String>,
        to_address: impl Into<String>,
    ) -> Self {
        Self::new(
            user_id,
            type_,
            business_id,
            Destination::Email(to_address.into()),
        )
    }

    /// A webhook to the registered endpoint `endpoint_id` (`herald endpoints add` prints it);
    /// the endpoint must belong to the notification's tenant.
    ///
    /// ```
    /// let n = herald::Notification::webhook("user-42", "invoice.paid", "inv-7", uuid::Uuid::nil());
    /// assert_eq!(n.destination().channel(), herald::Channel::Webhook);
    /// ```
    pub fn webhook(
        user_id: impl Into<String>,
        type_: impl Into<String>,
        business_id: impl Into<String>,
        endpoint_id: Uuid,
    ) -> Self {
        Self::new(
            user_id,
            type_,
            business_id,
            Destination::Webhook(endpoint_id),
        )
    }

    fn new(
        user_id: impl Into<String>,
        type_: impl Into<String>,
        business_id: impl Into<String>,
        destination: Destination,
    ) -> Self {
        Notification {
            tenant: DEFAULT_TENANT.to_owned(),
            user_id: user_id.into(),
            type_: type_.into(),
            business_id: business_id.into(),
            destination,
            payload: PayloadInput::Value(Value::Object(Default::default())),
            run_at: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// The data delivered with the notification: a JSON object (default `{}`). A webhook carries
    /// it as `data`; an email's templates see its fields.
    ///
    /// A `Value` holds numbers as `f64`, `i64` or `u64`; for numbers beyond those (more than
    /// 17 significant digits, or past `f64`'s range) use [`Notification::payload_raw`].
    ///
    /// ```
    /// let n = herald::Notification::email("u", "order_shipped", "order-1001", "ann@example.com")
    ///     .payload(serde_json::json!({ "order": "1001", "items": 3 }));
    /// # let _ = n;
    /// ```
    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = PayloadInput::Value(payload);
        self
    }

    /// The payload as JSON text, delivered with every number exactly as written (jsonb may
    /// change only its spelling: `1e2` becomes `100`).
    ///
    /// ```
    /// let payload = serde_json::from_str(r#"{"amount": 123456789012345678901234567890}"#)?;
    /// let n = herald::Notification::email("u", "t", "b", "ann@example.com").payload_raw(payload);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn payload_raw(mut self, payload: Box<RawValue>) -> Self {
        self.payload = PayloadInput::Raw(payload);
        self
    }

    /// The tenant part of the key (default `"default"`).
    ///
    /// ```
    /// let n = herald::Notification::email("u", "t", "b", "ann@example.com").tenant("acme");
    /// assert_eq!(n.key().tenant, "acme");
    /// ```
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// Deliver no earlier than `run_at` (default: as soon as the enqueue commits). It must lie
    /// within the years 1 to 9999.
    ///
    /// ```
    /// let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);
    /// let n = herald::Notification::email("u", "reminder", "b", "ann@example.com").run_at(tomorrow);
    /// # let _ = n;
    /// ```
    pub fn run_at(mut self, run_at: DateTime<Utc>) -> Self {
        self.run_at = Some(run_at);
        self
    }

    /// How many delivery attempts before the notification is `dead` (default 8; 1 to 100).
    ///
    /// ```
    /// let n = herald::Notification::email("u", "otp", "login-9", "ann@example.com").max_attempts(1);
    /// # let _ = n;
    /// ```
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The notification's key (see [`Key`]).
    ///
    /// ```
    /// let n = herald::Notification::email("user-42", "welcome", "signup-42", "ann@example.com");
    /// assert_eq!(n.key().user_id, "user-42");
    /// ```
    pub fn key(&self) -> Key {
        Key {
            tenant: self.tenant.clone(),
            user_id: self.user_id.clone(),
            type_: self.type_.clone(),
            business_id: self.business_id.clone(),
        }
    }

    /// Where it goes (see [`Destination`]).
    ///
    /// ```
    /// let n = herald::Notification::email("u", "t", "b", "ann@example.com");
    /// assert!(matches!(n.destination(), herald::Destination::Email(to) if to == "ann@example.com"));
    /// ```
    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    /// Checks everything the database would refuse, and more, before any SQL runs.
    #[doc(hidden)]
    pub fn validate(&self, limits: &Limits) -> Result<Validated, EnqueueError> {
        check_key_part("tenant", &self.tenant)?;
        check_key_part("user_id", &self.user_id)?;
        check_key_part("type", &self.type_)?;
        check_key_part("business_id", &self.business_id)?;
        if let Destination::Email(address) = &self.destination {
            check_email(address)?;
        }
        let payload = check_payload(&self.payload)?;
        if !MAX_ATTEMPTS_RANGE.contains(&self.max_attempts) {
            return Err(invalid(
                "max_attempts",
                format!(
                    "must be between {} and {}, got {}",
                    MAX_ATTEMPTS_RANGE.start(),
                    MAX_ATTEMPTS_RANGE.end(),
                    self.max_attempts
                ),
            ));
        }
        if let Some(run_at) = self.run_at {
            check_run_at(run_at)?;
        }
        let destination = self.destination.as_column();
        let channel = self.destination.channel();
        Ok(Validated {
            id: Uuid::now_v7(),
            key: self.key(),
            channel,
            destination,
            endpoint_id: match self.destination {
                Destination::Webhook(id) => Some(id),
                Destination::Email(_) => None,
            },
            payload,
            max_payload_bytes: limits.max_payload_bytes,
            run_at: self.run_at,
            max_attempts: self.max_attempts as i32,
        })
    }
}

/// A notification that passed validation, with everything the insert needs.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The id it gets if this enqueue creates it (UUIDv7).
    pub id: Uuid,
    pub key: Key,
    pub channel: Channel,
    pub destination: String,
    pub endpoint_id: Option<Uuid>,
    /// The payload as JSON text (compact when it was given as a `Value`).
    pub payload: Box<RawValue>,
    /// The limit on the payload, in bytes of jsonb's text form. PostgreSQL checks it
    /// (`herald._payload_problem`), the one place that knows that text form.
    pub max_payload_bytes: usize,
    pub run_at: Option<DateTime<Utc>>,
    pub max_attempts: i32,
}

impl Validated {
    /// The address, for an email.
    pub fn email(&self) -> Option<&str> {
        match self.channel {
            Channel::Email => Some(&self.destination),
            Channel::Webhook => None,
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> EnqueueError {
    EnqueueError::Invalid {
        field,
        message: message.into(),
    }
}

/// Shared by key parts and other short strings: 1..=255 characters, no control characters.
pub fn check_key_part(field: &'static str, value: &str) -> Result<(), EnqueueError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    let chars = value.chars().count();
    if chars > MAX_KEY_PART_CHARS {
        return Err(invalid(
            field,
            format!("must be at most {MAX_KEY_PART_CHARS} characters, got {chars}"),
        ));
    }
    check_no_control(field, value)
}

fn check_no_control(field: &'static str, value: &str) -> Result<(), EnqueueError> {
    match value.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, c)) => Err(invalid(
            field,
            format!(
                "must not contain control characters, found U+{:04X} at byte {at}",
                c as u32
            ),
        )),
        None => Ok(()),
    }
}

/// An address herald can deliver to as written: a dot-atom local part (RFC 5322 atext, and
/// any non-ASCII character for SMTPUTF8) of at most 64 bytes, `@`, and a host name: dot-separated
/// labels of letters, digits and hyphens (not first or last), or non-ASCII characters (IDN), of at
/// most 63 bytes each. Quoted local parts (`"a,b"@c.com`, `"a\r\nb"@c.com`) and address literals
/// (`a@[127.0.0.1]`) are refused: mail software disagrees on their escapes and commas (lettre
/// sent one to a different mailbox), and literals bypass the MX lookup. `herald._email_problem`
/// in migrations/0004 is this check in SQL, message for message.
fn check_email(address: &str) -> Result<(), EnqueueError> {
    check_no_control("email", address)?;
    // Unicode line and paragraph separators (U+2028, U+2029) are whitespace that some mail
    // software treats as line breaks; no unquoted address holds whitespace.
    if let Some((at, c)) = address.char_indices().find(|(_, c)| c.is_whitespace()) {
        return Err(invalid(
            "email",
            format!(
                "must not contain whitespace, found U+{:04X} at byte {at}",
                c as u32
            ),
        ));
    }
    if address.len() > 254 {
        return Err(invalid("email", "must be at most 254 bytes (RFC 5321)"));
    }
    let refuse = |why: &str| {
        Err(invalid(
            "email",
            format!("{} is not a valid email address: {why}", echo(address)),
        ))
    };
    let Some((local, domain)) = address.split_once('@') else {
        return refuse("it has no @");
    };
    if local.starts_with('"') {
        return refuse("quoted local parts are not accepted");
    }
    if domain.starts_with('[') {
        return refuse("address literals are not accepted, only host names");
    }
    if local.len() > 64 {
        return refuse("the part before the @ is over 64 bytes");
    }
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    if local
        .split('.')
        .any(|atom| atom.is_empty() || !atom.chars().all(|c| atext(c) || !c.is_ascii()))
    {
        return refuse(
            "the part before the @ must be dot-separated runs of letters, digits and !#$%&'*+/=?^_`{|}~-",
        );
    }
    if domain.split('.').any(|label| label.len() > 63) {
        return refuse("a label of the domain is over 63 bytes");
    }
    let label_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii();
    if domain.split('.').any(|label| {
        label.is_empty()
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(label_char)
    }) {
        return refuse(
            "the domain must be dot-separated labels of letters, digits and hyphens (not first or last)",
        );
    }
    Ok(())
}

/// User input quoted in a message: as a JSON string, cut to its first [`ECHO_CHARS`] characters
/// (then ending in `…`). `herald._echo` in SQL words it the same.
pub fn echo(text: &str) -> String {
    let prefix: String = text.chars().take(ECHO_CHARS).collect();
    let mut quoted = serde_json::to_string(&prefix).expect("a string serialises");
    if prefix.len() < text.len() {
        quoted.push('…');
    }
    quoted
}

/// The most characters of user input that a message quotes.
pub const ECHO_CHARS: usize = 64;

/// The earliest accepted `run_at`: 0001-01-01T00:00:00Z.
pub fn run_at_min() -> DateTime<Utc> {
    DateTime::from_timestamp(-62_135_596_800, 0).expect("0001-01-01 is within chrono's range")
}

/// The latest accepted `run_at`: the last instant of 9999 (stored as ….999999, PostgreSQL keeping
/// microseconds).
pub fn run_at_max() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 999_999_999)
        .expect("9999-12-31 is within chrono's range")
}

/// `run_at` within years 1 to 9999 (UTC), as `herald.enqueue`, `herald.enqueue_many` and the
/// table's CHECK require: later times are refused by other clients of the table (chrono reads
/// at most ±262,000 years, JavaScript's Date ±275,760, RFC 3339 has 4-digit years), and a
/// leap second (second 60) is no instant PostgreSQL stores.
fn check_run_at(run_at: DateTime<Utc>) -> Result<(), EnqueueError> {
    use chrono::Timelike;
    if run_at.nanosecond() >= 1_000_000_000 {
        return Err(invalid("run_at", "must not be a leap second (second 60)"));
    }
    if run_at < run_at_min() || run_at > run_at_max() {
        return Err(invalid("run_at", RUN_AT_RANGE_PROBLEM));
    }
    Ok(())
}

/// The message for a `run_at` out of range; the SQL functions word it the same.
const RUN_AT_RANGE_PROBLEM: &str =
    "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z";

/// The payload as JSON text, once its shape is valid: an object, nested at most
/// [`MAX_PAYLOAD_DEPTH`] levels, without NUL. Its size is checked by the database.
fn check_payload(payload: &PayloadInput) -> Result<Box<RawValue>, EnqueueError> {
    match payload {
        PayloadInput::Raw(raw) => {
            check_shape(raw, MAX_PAYLOAD_DEPTH).map_err(shape_error)?;
            Ok(raw.clone())
        }
        PayloadInput::Value(value) => {
            if !value.is_object() {
                return Err(shape_error(ShapeProblem::NotAnObject));
            }
            // Before anything that recurses (see the module docs).
            if exceeds_depth(value, MAX_PAYLOAD_DEPTH) {
                return Err(shape_error(ShapeProblem::TooDeep));
            }
            if let Some(path) = find_nul(value, &mut String::from("$")) {
                return Err(shape_error(ShapeProblem::Nul(path)));
            }
            serde_json::value::to_raw_value(value)
                .map_err(|e| invalid("payload", format!("cannot be written as JSON ({e})")))
        }
    }
}

fn shape_error(problem: ShapeProblem) -> EnqueueError {
    invalid(
        "payload",
        match problem {
            ShapeProblem::NotAnObject => "must be a JSON object".to_owned(),
            ShapeProblem::TooDeep => {
                format!("must be nested at most {MAX_PAYLOAD_DEPTH} levels deep")
            }
            ShapeProblem::Nul(path) => format!("must not contain NUL (\\u0000), found at {path}"),
        },
    )
}

/// A payload as the application gave it.
#[derive(Debug, Clone)]
enum PayloadInput {
    Value(Value),
    Raw(Box<RawValue>),
}

impl PartialEq for PayloadInput {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PayloadInput::Value(a), PayloadInput::Value(b)) => a == b,
            (PayloadInput::Raw(a), PayloadInput::Raw(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

/// Whether `value` nests arrays and objects more than `limit` levels deep (a scalar is level 0,
/// `{}` level 1). An explicit stack, not recursion, so no input can overflow the call stack; it
/// stops at the first container past the limit.
fn exceeds_depth(value: &Value, limit: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((value, depth)) = stack.pop() {
        let is_container = matches!(value, Value::Array(_) | Value::Object(_));
        if is_container && depth > limit {
            return true;
        }
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|item| (item, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|item| (item, depth + 1))),
            _ => {}
        }
    }
    false
}

/// The JSON path of the first key or string holding a NUL, if any.
fn find_nul(value: &Value, path: &mut String) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(path.clone()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = find_nul(item, path);
            path.truncate(len);
            found
        }),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let len = path.len();
            path.push('.');
            path.push_str(&key.replace('\0', "\\u0000"));
            let found = if key.contains('\0') {
                Some(path.clone())
            } else {
                find_nul(item, path)
            };
            path.truncate(len);
            found
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(n: &Notification) -> (&'static str, String) {
        match n.validate(&Limits::default()) {
            Err(EnqueueError::Invalid { field, message }) => (field, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn email() -> Notification {
        Notification::email("u1", "welcome", "b1", "ann@example.com")
    }

    #[test]
    fn a_well_formed_notification_passes() {
        let v = email()
            .payload(json!({"x": 1}))
            .validate(&Limits::default())
            .unwrap();
        assert_eq!(v.key.tenant, "default");
        assert_eq!(v.channel, Channel::Email);
        assert_eq!(v.payload.get(), r#"{"x":1}"#);
        assert_eq!(v.id.get_version_num(), 7);
    }

    #[test]
    fn key_parts_are_checked_by_name() {
        assert_eq!(
            field_of(&email().tenant("")),
            ("tenant", "must not be empty".into())
        );
        let long = "x".repeat(256);
        let (field, message) = field_of(&Notification::email("u", &long, "b", "a@b.co"));
        assert_eq!(field, "type");
        assert_eq!(message, "must be at most 255 characters, got 256");
        // 255 multi-byte characters are fine: the limit counts characters, not bytes.
        assert!(
            Notification::email("é".repeat(255), "t", "b", "a@b.co")
                .validate(&Limits::default())
                .is_ok()
        );
        let (field, message) = field_of(&Notification::email("u", "t", "b\0", "a@b.co"));
        assert_eq!(field, "business_id");
        assert!(message.contains("U+0000"), "{message}");
        assert_eq!(
            field_of(&Notification::email("u\n", "t", "b", "a@b.co")).0,
            "user_id"
        );
        assert_eq!(
            field_of(&Notification::email("u", "t", "b\u{85}", "a@b.co")).0,
            "business_id"
        );
    }

    #[test]
    fn email_addresses_are_parsed() {
        for bad in [
            "no-at-sign",
            "a@b@c",
            "x@exa mple.com",
            "a@b.co\r\nBcc: x@y.z",
            "a\u{2028}b@c.de",
            "a@b.co\u{2029}",
            "\"a b\"@c.de",
            "",
        ] {
            let n = Notification::email("u", "t", "b", bad);
            assert_eq!(field_of(&n).0, "email", "{bad:?}");
        }
    }

    #[test]
    fn payload_must_be_an_object_without_nul() {
        assert_eq!(
            field_of(&email().payload(json!([1]))).1,
            "must be a JSON object"
        );
        let (field, message) = field_of(&email().payload(json!({"a": [{"b": "x\u{0}y"}]})));
        assert_eq!(field, "payload");
        assert_eq!(message, "must not contain NUL (\\u0000), found at $.a[0].b");
        let (_, message) = field_of(&email().payload(json!({"k\u{0}": 1})));
        assert!(message.ends_with("$.k\\u0000"), "{message}");
        // The same checks on a payload given as text, whose numbers no `Value` could hold.
        let raw = |text: &str| email().payload_raw(serde_json::from_str(text).unwrap());
        assert_eq!(field_of(&raw("[1]")).1, "must be a JSON object");
        assert_eq!(
            field_of(&raw(r#"{"a": [{"b": "x\u0000y"}]}"#)).1,
            "must not contain NUL (\\u0000), found at $.a[0].b"
        );
        let exact = raw(r#"{"n": 123456789012345678901234567890, "m": 1e400}"#)
            .validate(&Limits::default())
            .unwrap();
        assert_eq!(
            exact.payload.get(),
            r#"{"n": 123456789012345678901234567890, "m": 1e400}"#
        );
    }

    /// `{"a": {"a": … {}}}` with `depth` objects, built and torn down without recursion: the
    /// `Drop` of a deeply nested `Value` recurses, so the tests dismantle theirs by hand.
    fn nested(depth: usize) -> Value {
        // Not `json!({"a": value})`: the macro serialises an embedded value, recursively.
        let mut value = json!({});
        for _ in 1..depth {
            value = Value::Object(serde_json::Map::from_iter([("a".to_owned(), value)]));
        }
        value
    }

    fn dismantle(mut value: Value) {
        while let Value::Object(map) = &mut value {
            match map.remove("a") {
                Some(inner) => value = inner,
                None => break,
            }
        }
    }

    #[test]
    fn payload_depth_is_limited_without_recursion() {
        let edge = nested(MAX_PAYLOAD_DEPTH);
        assert!(email().payload(edge).validate(&Limits::default()).is_ok());
        let (field, message) = field_of(&email().payload(nested(MAX_PAYLOAD_DEPTH + 1)));
        assert_eq!(field, "payload");
        assert_eq!(message, "must be nested at most 64 levels deep");
        let arrays = json!({"a": (0..MAX_PAYLOAD_DEPTH).fold(json!(1), |v, _| json!([v]))});
        assert_eq!(field_of(&email().payload(arrays)).0, "payload");
        // Deep enough to overflow any stack if validation, canonical JSON or the NUL search
        // recursed before the depth check.
        let n = email().payload(nested(100_000));
        assert!(matches!(
            n.validate(&Limits::default()),
            Err(EnqueueError::Invalid {
                field: "payload",
                ..
            })
        ));
        if let PayloadInput::Value(value) = n.payload {
            dismantle(value);
        }
    }

    #[test]
    fn the_deepest_payload_survives_the_readers_that_follow() {
        // The daemon reads payloads back with serde_json, and receivers get them inside `data`.
        let body = json!({"type": "t", "data": nested(MAX_PAYLOAD_DEPTH)});
        let text = serde_json::to_string(&body).unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_ok());
    }

    #[test]
    fn run_at_lies_within_years_1_to_9999() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        let refused = "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z";
        for text in [
            "0000-12-31T23:59:59.999999Z",
            "0001-01-01T00:00:00+00:01",
            "9999-12-31T23:00:00-01:00",
        ] {
            assert_eq!(
                field_of(&email().run_at(at(text))),
                ("run_at", refused.into()),
                "{text}"
            );
        }
        let far = DateTime::<Utc>::MAX_UTC;
        assert_eq!(field_of(&email().run_at(far)), ("run_at", refused.into()));
        for text in ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z"] {
            assert!(
                email()
                    .run_at(at(text))
                    .validate(&Limits::default())
                    .is_ok(),
                "{text}"
            );
        }
        assert_eq!(
            field_of(&email().run_at(at("2026-12-01T09:00:60Z"))),
            ("run_at", "must not be a leap second (second 60)".into())
        );
    }

    #[test]
    fn max_attempts_has_a_range() {
        assert_eq!(
            field_of(&email().max_attempts(0)).1,
            "must be between 1 and 100, got 0"
        );
        assert_eq!(field_of(&email().max_attempts(101)).0, "max_attempts");
        assert!(
            email()
                .max_attempts(100)
                .validate(&Limits::default())
                .is_ok()
        );
    }
}
