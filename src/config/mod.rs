//! herald's configuration: built-in defaults < TOML file < `HERALD_<SECTION>__<KEY>` environment
//! variables < command-line flags, validated once at start.
//!
//! Every key, its default and its description are defined once, in [`keys::KEYS`]; the
//! defaults layer, `config/herald.toml` and the key table of `docs/operating.md` come from it.
//!
//! Invariants of a loaded [`Config`]: every key is known (unknown keys are refused, naming the
//! key), every value parsed, and the cross-key rules of [`Config::validate`] hold (for example,
//! the lease outlasts the longest delivery timeout). Secrets are `SecretString`s: their `Debug`
//! prints `[REDACTED]`, so a config can be logged.

pub mod keys;
mod load;
pub mod schedule;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use load::{ConfigError, ConfigSource, LEGACY_LOG_FORMAT, load, load_unvalidated};

use crate::net::bounded_server::Bounds;
use crate::notification::Limits;

/// The longest duration any key accepts: longer ones overflow date arithmetic and mean nothing.
/// 100 years as a duration string counts them (`"100y"`, years of 365.25 days), so that value is
/// accepted and errors print the limit in the same unit as the value.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// The database a bare `herald` uses: the local server's `postgres` role, database `herald`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/herald";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub dispatcher: DispatcherConfig,
    pub retry: RetryConfig,
    pub webhook: WebhookConfig,
    pub smtp: SmtpConfig,
    pub sweeper: SweeperConfig,
    pub templates: TemplatesConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub breaker: BreakerConfig,
    pub alerts: AlertsConfig,
    pub api: ApiConfig,
}

/// The built-in defaults, every key's value in [`keys::KEYS`]: the loader's bottom layer alone.
impl Default for Config {
    fn default() -> Self {
        static DEFAULTS: LazyLock<Config> = LazyLock::new(|| {
            load::defaults_only().expect("the key table deserializes (tested in config::keys)")
        });
        DEFAULTS.clone()
    }
}

/// Each section's `Default` is its part of [`Config::default`].
macro_rules! section_defaults {
    ($($section:ident: $type:ty),* $(,)?) => {
        $(impl Default for $type {
            fn default() -> Self {
                Config::default().$section
            }
        })*
    };
}

section_defaults! {
    database: DatabaseConfig,
    dispatcher: DispatcherConfig,
    retry: RetryConfig,
    webhook: WebhookConfig,
    smtp: SmtpConfig,
    sweeper: SweeperConfig,
    templates: TemplatesConfig,
    limits: LimitsConfig,
    log: LogConfig,
    metrics: MetricsConfig,
    breaker: BreakerConfig,
    alerts: AlertsConfig,
    api: ApiConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// May carry a password: never printed (errors name host, port and database only).
    pub url: SecretString,
    pub max_connections: u32,
    /// A direct connection (LISTEN, migrations) when `url` goes through a transaction-mode
    /// pooler; empty: off. May carry a password, like `url`.
    pub listen_url: SecretString,
}

impl DatabaseConfig {
    /// `listen_url` when set: herald then runs behind a transaction-mode pooler.
    pub fn listen_url(&self) -> Option<&str> {
        let url = self.listen_url.expose_secret().trim();
        (!url.is_empty()).then_some(url)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherConfig {
    /// Concurrent deliveries per daemon. Claimed rows count against it from the moment their
    /// claim is sent, so fast channels need more workers than a batch: twice `batch_size` keeps
    /// two claims in flight.
    pub workers: usize,
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Notifications claimed per round trip.
    pub batch_size: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Delay before each retry; attempts = schedule length + 1.
    #[serde(deserialize_with = "durations")]
    pub schedule: Vec<Duration>,
    /// Each delay is scaled by a random factor in `[1 - jitter, 1 + jitter]`.
    pub jitter: f64,
}

/// A list of humane durations, `["5s", "5m"]`.
fn durations<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| {
            humantime::parse_duration(text)
                .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a duration ({e})")))
        })
        .collect()
}

impl RetryConfig {
    /// `max_attempts` of a notification enqueued without one: schedule length + 1.
    pub fn default_max_attempts(&self) -> u32 {
        self.schedule.len() as u32 + 1
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Total time for one request, connect to last body byte.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Non-global networks that webhooks may target anyway (e.g. `"10.1.0.0/16"`).
    pub allowed_networks: Vec<IpNet>,
    pub https_only: bool,
    /// How long `endpoints rotate-secret` keeps the old secret signing beside the new one.
    #[serde(with = "humantime_serde")]
    pub secret_rotation_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No encryption: local test servers only.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub from: String,
    /// Right-hand side of `Message-ID: <{id}@{message_id_domain}>`.
    pub message_id_domain: String,
    /// The whole SMTP conversation of one message, not just the connect.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweeperConfig {
    /// Cron with seconds, evaluated in UTC: `sec min hour day-of-month month day-of-week`.
    pub schedule: String,
    /// How long a finished notification keeps blocking duplicates.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Rows deleted per short transaction.
    pub batch_size: u32,
    /// Retention per notification type, overriding `retention` (type names match with ASCII
    /// letters case-insensitive).
    #[serde(deserialize_with = "duration_map")]
    pub retention_by_type: BTreeMap<String, Duration>,
}

/// A table of humane durations, `{ invoice = "7y" }`.
fn duration_map<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Duration>, D::Error> {
    let texts = BTreeMap::<String, String>::deserialize(deserializer)?;
    texts
        .into_iter()
        .map(|(key, text)| {
            humantime::parse_duration(&text)
                .map(|d| (key.clone(), d))
                .map_err(|e| {
                    serde::de::Error::custom(format!("{key}: {text:?} is not a duration ({e})"))
                })
        })
        .collect()
}

/// Two keys of `retention_by_type` that differ only in case, if any: both would apply to the
/// same notifications, and which one wins would depend on iteration order.
fn colliding_type_names(by_type: &BTreeMap<String, Duration>) -> Option<(&str, &str)> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for name in by_type.keys() {
        if let Some(first) = seen.insert(name.to_ascii_lowercase(), name) {
            return Some((first, name));
        }
    }
    None
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatesConfig {
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest payload accepted at enqueue, in bytes of canonical JSON.
    pub max_payload_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colour when stderr is a terminal).
    Text,
    /// One JSON object per line, every field at the top level, for log shippers.
    Json,
}

/// `log.format`'s default, also the format of a command whose configuration failed to load.
impl Default for LogFormat {
    fn default() -> Self {
        Config::default().log.format
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `IP:port` for `/metrics`, `/healthz` and `/readyz`; empty (the default) serves nothing.
    pub listen: String,
    /// How old the notifications-by-state gauges may be before a scrape recounts them (one
    /// GROUP BY over the table, so not on every scrape).
    #[serde(with = "humantime_serde")]
    pub state_refresh: Duration,
    /// How long a client may take to send a request's head (slowloris).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long a connection with no request in progress may stay silent (keep-alive).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog, holding no descriptor.
    pub max_connections: usize,
}

/// `herald serve`'s HTTP API and console (`docs/api.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// `IP:port`; empty (the default) serves nothing, and `herald serve` refuses to start.
    pub listen: String,
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The longest a request's body may take to arrive, whole.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    pub max_connections: usize,
    /// The largest request body read; a larger one is answered 413 unread.
    pub max_body_bytes: usize,
}

impl ApiConfig {
    pub fn bounds(&self) -> Bounds {
        Bounds {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
        }
    }

    /// The address to serve on, `None` when the API is off. Validated at load.
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        listen_addr(&self.listen)
    }
}

/// A server section's `listen`: `None` when empty (off), or when it does not parse (load has
/// refused that already).
fn listen_addr(listen: &str) -> Option<std::net::SocketAddr> {
    let listen = listen.trim();
    if listen.is_empty() {
        return None;
    }
    listen.parse().ok()
}

/// Per-destination circuit breakers (`docs/operating.md`, "Delivery isolation").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive counted failures that open a breaker.
    pub failures: u32,
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub max_probe_interval: Duration,
    /// An endpoint whose breaker stays open this long is disabled.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
}

/// Operational events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// The endpoint id that receives them; empty: off.
    pub endpoint: String,
}

impl AlertsConfig {
    /// The alerts endpoint, `None` when off. Validated at load.
    pub fn endpoint_id(&self) -> Option<uuid::Uuid> {
        uuid::Uuid::parse_str(self.endpoint.trim()).ok()
    }
}

impl MetricsConfig {
    pub fn bounds(&self) -> Bounds {
        Bounds {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
        }
    }

    /// The address to serve on, `None` when metrics are off. Validated at load, so an
    /// unparsable value here is treated as off.
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        listen_addr(&self.listen)
    }
}

impl Config {
    /// When breakers open and probe.
    pub fn breaker_policy(&self) -> crate::store::dispatch::BreakerPolicy {
        crate::store::dispatch::BreakerPolicy {
            failures: self.breaker.failures,
            probe_interval: self.breaker.probe_interval,
            max_probe_interval: self.breaker.max_probe_interval,
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_payload_bytes: self.limits.max_payload_bytes,
        }
    }

    /// Rules that span keys or ranges serde cannot express; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, problem: String| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                problem,
            })
        };
        if let Err(e) = crate::database::parse_url(self.database.url.expose_secret()) {
            return bad("database.url", e.problem());
        }
        if let Some(url) = self.database.listen_url()
            && let Err(e) = crate::database::parse_url(url)
        {
            return bad("database.listen_url", e.problem());
        }
        if self.database.max_connections < 2 {
            // `herald run` needs one for claims and one for recording outcomes at the same time.
            return bad("database.max_connections", "must be at least 2".into());
        }
        let mut durations: Vec<(String, Duration)> = vec![
            ("dispatcher.lease".into(), self.dispatcher.lease),
            (
                "dispatcher.poll_interval".into(),
                self.dispatcher.poll_interval,
            ),
            (
                "dispatcher.shutdown_grace".into(),
                self.dispatcher.shutdown_grace,
            ),
            ("webhook.timeout".into(), self.webhook.timeout),
            (
                "webhook.secret_rotation_grace".into(),
                self.webhook.secret_rotation_grace,
            ),
            ("smtp.timeout".into(), self.smtp.timeout),
            ("sweeper.retention".into(), self.sweeper.retention),
            ("metrics.state_refresh".into(), self.metrics.state_refresh),
            ("metrics.header_timeout".into(), self.metrics.header_timeout),
            ("metrics.idle_timeout".into(), self.metrics.idle_timeout),
            ("api.header_timeout".into(), self.api.header_timeout),
            ("api.idle_timeout".into(), self.api.idle_timeout),
            ("api.body_timeout".into(), self.api.body_timeout),
            ("breaker.probe_interval".into(), self.breaker.probe_interval),
            (
                "breaker.max_probe_interval".into(),
                self.breaker.max_probe_interval,
            ),
            ("breaker.disable_after".into(), self.breaker.disable_after),
        ];
        durations.extend(
            self.retry
                .schedule
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("retry.schedule[{i}]"), *d)),
        );
        durations.extend(
            self.sweeper
                .retention_by_type
                .iter()
                .map(|(t, d)| (format!("sweeper.retention_by_type.{t}"), *d)),
        );
        if let Some((key, d)) = durations.iter().find(|(_, d)| *d > MAX_DURATION) {
            return bad(
                key,
                format!(
                    "must be at most {}, got {}",
                    humantime::format_duration(MAX_DURATION),
                    humantime::format_duration(*d)
                ),
            );
        }
        if let Some((a, b)) = colliding_type_names(&self.sweeper.retention_by_type) {
            return bad(
                "sweeper.retention_by_type",
                format!(
                    "{a:?} and {b:?} name the same type (type names match case-insensitively): keep one"
                ),
            );
        }
        if self.dispatcher.workers == 0 {
            return bad("dispatcher.workers", "must be at least 1".into());
        }
        if self.dispatcher.batch_size == 0 {
            return bad("dispatcher.batch_size", "must be at least 1".into());
        }
        if self.dispatcher.poll_interval.is_zero() {
            return bad("dispatcher.poll_interval", "must be more than 0s".into());
        }
        // A lease shorter than a delivery's timeout lets another daemon reclaim a slow send
        // mid-flight and deliver it twice.
        let longest = self.webhook.timeout.max(self.smtp.timeout);
        if self.dispatcher.lease <= longest {
            return bad(
                "dispatcher.lease",
                format!(
                    "must exceed the longest delivery timeout ({}), got {}",
                    humantime::format_duration(longest),
                    humantime::format_duration(self.dispatcher.lease)
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.retry.jitter) {
            return bad(
                "retry.jitter",
                format!("must be between 0 and 1, got {}", self.retry.jitter),
            );
        }
        if let Some(i) = self.retry.schedule.iter().position(Duration::is_zero) {
            return bad(
                &format!("retry.schedule[{i}]"),
                "must be more than 0s".into(),
            );
        }
        let attempts = self.retry.default_max_attempts();
        if !crate::notification::MAX_ATTEMPTS_RANGE.contains(&attempts) {
            return bad(
                "retry.schedule",
                format!(
                    "has {} steps; at most 99 (100 attempts)",
                    self.retry.schedule.len()
                ),
            );
        }
        if self.webhook.timeout.is_zero() {
            return bad("webhook.timeout", "must be more than 0s".into());
        }
        if self.smtp.timeout.is_zero() {
            return bad("smtp.timeout", "must be more than 0s".into());
        }
        if self.smtp.from.parse::<lettre::message::Mailbox>().is_err() {
            return bad(
                "smtp.from",
                format!(
                    "{:?} is not a mailbox (e.g. \"herald <herald@example.com>\")",
                    self.smtp.from
                ),
            );
        }
        if self.smtp.username.is_some() != self.smtp.password.is_some() {
            return bad(
                "smtp.username",
                "username and password must be set together".into(),
            );
        }
        schedule::parse(&self.sweeper.schedule).map_err(|e| ConfigError::Invalid {
            key: "sweeper.schedule".into(),
            problem: e
                .to_string()
                .trim_start_matches("sweeper.schedule: ")
                .to_owned(),
        })?;
        if self.sweeper.batch_size == 0 {
            return bad("sweeper.batch_size", "must be at least 1".into());
        }
        if !(1..=1000).contains(&self.breaker.failures) {
            return bad(
                "breaker.failures",
                format!("must be between 1 and 1000, got {}", self.breaker.failures),
            );
        }
        if self.breaker.probe_interval.is_zero() {
            return bad("breaker.probe_interval", "must be more than 0s".into());
        }
        if self.breaker.max_probe_interval < self.breaker.probe_interval {
            return bad(
                "breaker.max_probe_interval",
                format!(
                    "must be at least breaker.probe_interval ({}), got {}",
                    humantime::format_duration(self.breaker.probe_interval),
                    humantime::format_duration(self.breaker.max_probe_interval)
                ),
            );
        }
        if self.breaker.disable_after.is_zero() {
            return bad("breaker.disable_after", "must be more than 0s".into());
        }
        let alerts = self.alerts.endpoint.trim();
        if !alerts.is_empty() && uuid::Uuid::parse_str(alerts).is_err() {
            return bad(
                "alerts.endpoint",
                format!("{alerts:?} is not an endpoint id (a UUID), or empty for off"),
            );
        }
        if self.limits.max_payload_bytes == 0 {
            return bad("limits.max_payload_bytes", "must be at least 1".into());
        }
        let listen = self.metrics.listen.trim();
        if !listen.is_empty() && listen.parse::<std::net::SocketAddr>().is_err() {
            return bad(
                "metrics.listen",
                format!(
                    "{listen:?} is not an IP address and port (e.g. \"127.0.0.1:9464\", or \"[::]:9464\" for every interface)"
                ),
            );
        }
        if self.metrics.state_refresh.is_zero() {
            return bad("metrics.state_refresh", "must be more than 0s".into());
        }
        check_bounds("metrics", &self.metrics.bounds())?;
        let listen = self.api.listen.trim();
        if !listen.is_empty() && listen.parse::<std::net::SocketAddr>().is_err() {
            return bad(
                "api.listen",
                format!(
                    "{listen:?} is not an IP address and port (e.g. \"127.0.0.1:8080\", or \"[::]:8080\" for every interface)"
                ),
            );
        }
        if !(1..=MAX_API_BODY_BYTES).contains(&self.api.max_body_bytes) {
            return bad(
                "api.max_body_bytes",
                format!("must be 1 to {MAX_API_BODY_BYTES}"),
            );
        }
        check_bounds("api", &self.api.bounds())?;
        if self.api.body_timeout.is_zero() {
            return bad("api.body_timeout", "must be more than 0s".into());
        }
        Ok(())
    }
}

/// The largest `api.max_body_bytes`: a batch of 1,000 notifications at the largest payload
/// `limits.max_payload_bytes` allows is far below it, and a body is held in memory whole.
pub const MAX_API_BODY_BYTES: usize = 256 * 1024 * 1024;

/// The most connections a server section may allow: each holds a descriptor, and past the
/// process's limit the bound would protect nothing.
pub const MAX_SERVER_CONNECTIONS: usize = 10_000;

/// The rules for a server section's `header_timeout`, `idle_timeout` and `max_connections`
/// (their upper limit as durations is checked with every duration).
fn check_bounds(section: &str, bounds: &Bounds) -> Result<(), ConfigError> {
    let bad = |key: &str, problem: String| {
        Err(ConfigError::Invalid {
            key: format!("{section}.{key}"),
            problem,
        })
    };
    if bounds.header_timeout.is_zero() {
        return bad("header_timeout", "must be more than 0s".into());
    }
    if bounds.idle_timeout.is_zero() {
        return bad("idle_timeout", "must be more than 0s".into());
    }
    if !(1..=MAX_SERVER_CONNECTIONS).contains(&bounds.max_connections) {
        return bad(
            "max_connections",
            format!(
                "must be between 1 and {MAX_SERVER_CONNECTIONS}, got {}",
                bounds.max_connections
            ),
        );
    }
    Ok(())
}
