//! Layering: built-in defaults < the TOML file < `HERALD_<SECTION>__<KEY>` environment variables.
//! The defaults are a TOML layer too, generated from [`super::keys::KEYS`], so every key always
//! has a value and the structs need no `Default` of their own.
//!
//! The file is `--config FILE`, else `$HERALD_CONFIG`, else `config/herald.toml` when it exists,
//! else none. A file named explicitly must exist. The environment is passed in as a map, so
//! tests need not mutate the process environment.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use config::{Environment, File, FileFormat};

use super::Config;
use super::keys;

/// The file read when none is named.
pub const DEFAULT_FILE: &str = "config/herald.toml";

/// The largest config file read: the shipped one, which documents every key, is under 8 KiB.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Keys whose environment value is a comma-separated list: those whose default is a list.
fn list_keys() -> impl Iterator<Item = &'static str> {
    keys::KEYS.iter().filter(|k| k.is_list()).map(|k| k.key)
}

/// The built-in defaults as the loader's bottom layer.
fn defaults_layer() -> File<config::FileSourceString, FileFormat> {
    File::from_str(&keys::defaults_toml(), FileFormat::Toml)
}

/// The configuration of the defaults layer alone: `Config::default()`.
pub(super) fn defaults_only() -> Result<Config, config::ConfigError> {
    config::Config::builder()
        .add_source(defaults_layer())
        .build()?
        .try_deserialize()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {problem}")]
    File { path: PathBuf, problem: String },
    #[error("config: {key}: {problem}")]
    Invalid { key: String, problem: String },
    #[error("config: {0}")]
    Parse(String),
    #[error("config from the environment (HERALD_<SECTION>__<KEY>): {0}")]
    Environment(String),
}

/// Where the file layer came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    Flag(PathBuf),
    Env(PathBuf),
    DefaultFile(PathBuf),
    BuiltIn,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::Flag(p) => write!(f, "{} (--config)", p.display()),
            ConfigSource::Env(p) => write!(f, "{} ($HERALD_CONFIG)", p.display()),
            ConfigSource::DefaultFile(p) => write!(f, "{}", p.display()),
            ConfigSource::BuiltIn => f.write_str("built-in defaults"),
        }
    }
}

/// The name `log.format` had before it was a config key; still read, as an alias of
/// `HERALD_LOG__FORMAT` (which wins when both are set).
pub const LEGACY_LOG_FORMAT: &str = "HERALD_LOG_FORMAT";

/// Loads and validates the configuration.
pub fn load(
    flag: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<(Config, ConfigSource), ConfigError> {
    let (config, source) = load_unvalidated(flag, env)?;
    config.validate()?;
    Ok((config, source))
}

/// Loads the configuration with every value parsed, without the cross-key rules of
/// [`Config::validate`]: for `herald doctor`, which reports those problems next to its other
/// checks instead of stopping at the first.
pub fn load_unvalidated(
    flag: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<(Config, ConfigSource), ConfigError> {
    let env = &with_legacy_aliases(env);
    let source = choose_file(flag, env);
    let file_text = match &source {
        ConfigSource::Flag(path) | ConfigSource::Env(path) | ConfigSource::DefaultFile(path) => {
            let text = read_capped(path).map_err(|problem| ConfigError::File {
                path: path.clone(),
                problem,
            })?;
            check_syntax(&text).map_err(|problem| ConfigError::File {
                path: path.clone(),
                problem,
            })?;
            Some(text)
        }
        ConfigSource::BuiltIn => None,
    };
    let lists = list_variables(env)?;
    let layered = |with_environment: bool| {
        let mut builder = config::Config::builder().add_source(defaults_layer());
        if let Some(text) = &file_text {
            builder = builder.add_source(File::from_str(text, FileFormat::Toml));
        }
        if with_environment {
            builder = builder.add_source(environment_layer(env));
            for (key, items) in &lists {
                builder = builder.set_override(*key, items.clone())?;
            }
        }
        builder.build().and_then(|c| c.try_deserialize::<Config>())
    };
    let config = layered(true).map_err(|e| {
        // Blame the layer that broke it: if the file alone is fine, the environment did.
        // The loader quotes values of the wrong type, which may be a URL with a password
        // (`database = "postgres://…"`).
        let message = crate::database::redact_passwords(&e.to_string());
        match (&source, layered(false)) {
            (_, Ok(_)) => ConfigError::Environment(message),
            (ConfigSource::BuiltIn, Err(_)) => ConfigError::Parse(message),
            (
                ConfigSource::Flag(path)
                | ConfigSource::Env(path)
                | ConfigSource::DefaultFile(path),
                Err(_),
            ) => ConfigError::File {
                path: path.clone(),
                problem: message,
            },
        }
    })?;
    Ok((config, source))
}

/// The file's text, refused past [`MAX_FILE_BYTES`]: `--config /dev/zero` (or a log file named
/// by mistake) must not be read until memory runs out.
fn read_capped(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err("larger than 1 MiB".into());
    }
    String::from_utf8(bytes).map_err(|_| "stream did not contain valid UTF-8".into())
}

/// `HERALD_LOG_FORMAT=json` (any case) as `HERALD_LOG__FORMAT=json`, unless the latter is set.
fn with_legacy_aliases(env: &HashMap<String, String>) -> HashMap<String, String> {
    let mut env = env.clone();
    let modern = variable_of("log.format");
    if !env.contains_key(&modern)
        && let Some(value) = env.get(LEGACY_LOG_FORMAT)
    {
        let value = value.trim().to_lowercase();
        env.insert(modern, value);
    }
    env
}

/// TOML syntax, checked before the config loader sees the file: its errors quote the offending
/// source line, which may hold a password. This one names the line and column only.
fn check_syntax(text: &str) -> Result<(), String> {
    let Err(e) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    let at = e.span().map(|span| span.start).unwrap_or(0).min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count() + 1)
        .unwrap_or(1);
    let message: Vec<&str> = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Err(format!(
        "TOML syntax error at line {line}, column {column}: {}",
        message.join("; ")
    ))
}

fn choose_file(flag: Option<&Path>, env: &HashMap<String, String>) -> ConfigSource {
    if let Some(path) = flag {
        return ConfigSource::Flag(path.to_owned());
    }
    if let Some(path) = env.get("HERALD_CONFIG").filter(|p| !p.is_empty()) {
        return ConfigSource::Env(PathBuf::from(path));
    }
    let default = Path::new(DEFAULT_FILE);
    if default.is_file() {
        return ConfigSource::DefaultFile(default.to_owned());
    }
    ConfigSource::BuiltIn
}

/// The environment variable that sets `key`: `smtp.port` → `HERALD_SMTP__PORT`.
fn variable_of(key: &str) -> String {
    format!("HERALD_{}", key.to_uppercase().replace('.', "__"))
}

/// List keys set in the environment, split on commas. An empty item (`1s,,2s`, a trailing
/// comma) is refused rather than dropped. An empty value is an empty list, except for
/// `retry.schedule`, where it would silently turn retries off: that takes `schedule = []` in
/// the file.
fn list_variables(
    env: &HashMap<String, String>,
) -> Result<Vec<(&'static str, Vec<String>)>, ConfigError> {
    let mut lists = Vec::new();
    for key in list_keys() {
        let variable = variable_of(key);
        let Some(value) = env.get(&variable) else {
            continue;
        };
        let invalid = |problem: String| ConfigError::Invalid {
            key: key.to_owned(),
            problem,
        };
        if value.trim().is_empty() {
            if key == "retry.schedule" {
                return Err(invalid(format!(
                    "{variable} is empty; for no retries, set `schedule = []` under [retry] in the config file"
                )));
            }
            lists.push((key, Vec::new()));
            continue;
        }
        let items: Vec<String> = value
            .split(',')
            .map(|item| item.trim().to_owned())
            .collect();
        if let Some(i) = items.iter().position(String::is_empty) {
            return Err(invalid(format!(
                "{variable} has an empty item (item {} of {})",
                i + 1,
                items.len()
            )));
        }
        lists.push((key, items));
    }
    Ok(lists)
}

/// `HERALD_SMTP__PORT=2525` sets `smtp.port`. Values stay strings (a password of `0123` must not
/// become the number 123); the loader converts them where a key wants a number or a boolean.
/// Variables without the `__` section separator (such as `HERALD_CONFIG`) are not keys, and list
/// keys are handled by [`list_variables`].
fn environment_layer(env: &HashMap<String, String>) -> Environment {
    let lists: Vec<String> = list_keys().map(variable_of).collect();
    let keys: HashMap<String, String> = env
        .iter()
        .filter(|(name, _)| name.starts_with("HERALD_") && name.contains("__"))
        .filter(|(name, _)| !lists.contains(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    Environment::with_prefix("HERALD")
        .prefix_separator("_")
        .separator("__")
        .try_parsing(false)
        .source(Some(keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::time::Duration;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
        let f = file(text);
        load(Some(f.path()), &env(vars))
            .map(|(c, _)| c)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_shipped_file_is_the_defaults() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_FILE);
        let (config, _) = load(Some(&shipped), &HashMap::new()).unwrap();
        assert_eq!(format!("{config:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn no_file_and_no_environment_is_the_defaults() {
        let empty = file("");
        let (config, _) = load(Some(empty.path()), &HashMap::new()).unwrap();
        assert_eq!(format!("{config:?}"), format!("{:?}", Config::default()));
        assert_eq!(config.smtp.port, 587);
        assert!(config.smtp.username.is_none() && config.smtp.password.is_none());
    }

    #[test]
    fn file_then_environment_override_defaults() {
        let config = load_text(
            "[smtp]\nport = 2525\nhost = \"mail.local\"\n[retry]\nschedule = [\"1s\", \"2m\"]\n",
            &[
                ("HERALD_SMTP__PORT", "2600"),
                ("HERALD_WEBHOOK__ALLOWED_NETWORKS", "127.0.0.0/8,::1/128"),
            ],
        )
        .unwrap();
        assert_eq!(config.smtp.port, 2600, "environment beats the file");
        assert_eq!(config.smtp.host, "mail.local", "the file beats the default");
        assert_eq!(
            config.retry.schedule,
            [Duration::from_secs(1), Duration::from_secs(120)]
        );
        assert_eq!(config.retry.default_max_attempts(), 3);
        assert_eq!(config.webhook.allowed_networks.len(), 2);
        assert_eq!(
            config.dispatcher.lease,
            Duration::from_secs(60),
            "untouched keys keep defaults"
        );
    }

    #[test]
    fn retention_by_type_and_the_schedule_are_checked() {
        let config = load_text("[sweeper.retention_by_type]\nlogin_code = \"1h\"\n", &[]).unwrap();
        assert_eq!(
            config.sweeper.retention_by_type["login_code"],
            Duration::from_secs(3600)
        );
        let err =
            load_text("[sweeper.retention_by_type]\nlogin_code = \"soon\"\n", &[]).unwrap_err();
        assert!(
            err.contains("login_code") && err.contains("sweeper.retention_by_type"),
            "{err}"
        );
        let err = load_text("", &[("HERALD_SWEEPER__SCHEDULE", "*/5 * * * *")]).unwrap_err();
        assert!(
            err.starts_with("config: sweeper.schedule: \"*/5 * * * *\" has 5 fields"),
            "{err}"
        );
        assert!(err.ends_with("use \"0 */5 * * * *\""), "{err}");
    }

    #[test]
    fn retention_by_type_names_that_differ_only_in_case_are_refused() {
        let err = load_text(
            "[sweeper.retention_by_type]\nt = \"0s\"\nT = \"99y\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(
            err,
            "config: sweeper.retention_by_type: \"T\" and \"t\" name the same type (type names match case-insensitively): keep one"
        );
        let config =
            load_text("[sweeper.retention_by_type]\nt = \"1h\"\nu = \"2h\"\n", &[]).unwrap();
        assert_eq!(config.sweeper.retention_by_type.len(), 2);
    }

    #[test]
    fn empty_items_in_list_variables_are_refused() {
        let err = load_text("", &[("HERALD_RETRY__SCHEDULE", "")]).unwrap_err();
        assert_eq!(
            err,
            "config: retry.schedule: HERALD_RETRY__SCHEDULE is empty; for no retries, set `schedule = []` under [retry] in the config file"
        );
        let err = load_text("", &[("HERALD_RETRY__SCHEDULE", "1s,,2s")]).unwrap_err();
        assert_eq!(
            err,
            "config: retry.schedule: HERALD_RETRY__SCHEDULE has an empty item (item 2 of 3)"
        );
        let err = load_text("", &[("HERALD_RETRY__SCHEDULE", "1s,2s,")]).unwrap_err();
        assert!(err.starts_with("config: retry.schedule: "), "{err}");
        let err = load_text(
            "",
            &[("HERALD_WEBHOOK__ALLOWED_NETWORKS", "10.0.0.0/8,,::1/128")],
        )
        .unwrap_err();
        assert!(
            err.starts_with("config: webhook.allowed_networks: HERALD_WEBHOOK__ALLOWED_NETWORKS has an empty item"),
            "{err}"
        );
        let config = load_text("[retry]\nschedule = []\n", &[]).unwrap();
        assert_eq!(
            config.retry.default_max_attempts(),
            1,
            "no retries, said in the file"
        );
    }

    #[test]
    fn the_duration_limit_and_the_value_are_printed_alike() {
        let config = load_text("[sweeper]\nretention = \"100y\"\n", &[]).unwrap();
        assert_eq!(config.sweeper.retention, crate::config::MAX_DURATION);
        let err = load_text("[sweeper]\nretention = \"101y\"\n", &[]).unwrap_err();
        assert_eq!(
            err,
            "config: sweeper.retention: must be at most 100years, got 101years"
        );
    }

    #[test]
    fn durations_read_as_humane_strings() {
        let config = load_text(
            "[sweeper]\nretention = \"30d\"\n[dispatcher]\nlease = \"5m\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.sweeper.retention, Duration::from_secs(30 * 86400));
        assert_eq!(config.dispatcher.lease, Duration::from_secs(300));
        let config = load_text("", &[("HERALD_DISPATCHER__POLL_INTERVAL", "250ms")]).unwrap();
        assert_eq!(config.dispatcher.poll_interval, Duration::from_millis(250));
        let config = load_text(
            "[webhook]\nallowed_networks = [\"10.0.0.0/8\"]\n",
            &[("HERALD_WEBHOOK__ALLOWED_NETWORKS", "")],
        )
        .unwrap();
        assert!(
            config.webhook.allowed_networks.is_empty(),
            "an empty variable empties the list"
        );
    }

    #[test]
    fn toml_syntax_errors_do_not_quote_the_file() {
        let err =
            load_text("[smtp]\nusername = \"u\"\npassword = hunter2-secret\n", &[]).unwrap_err();
        assert!(
            err.contains("TOML syntax error at line 3, column 12"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        let err =
            load_text("[database]\nurl = \"postgres://app:S3cretPw@db/app\n", &[]).unwrap_err();
        assert!(!err.contains("S3cretPw"), "{err}");
    }

    #[test]
    fn values_quoted_in_errors_lose_their_passwords() {
        let err = load_text("database = \"postgres://app:S3cretPw@db/app\"\n", &[]).unwrap_err();
        assert!(err.contains("postgres://app:***@db/app"), "{err}");
        assert!(!err.contains("S3cretPw"), "{err}");
    }

    #[test]
    fn numeric_looking_strings_stay_as_typed() {
        let config = load_text(
            "[smtp]\nusername = \"u\"\n",
            &[
                ("HERALD_SMTP__PASSWORD", "0123"),
                ("HERALD_TEMPLATES__DIR", "1.50"),
                ("HERALD_SMTP__PORT", "2525"),
                ("HERALD_WEBHOOK__HTTPS_ONLY", "true"),
                ("HERALD_RETRY__JITTER", "0.5"),
            ],
        )
        .unwrap();
        assert_eq!(
            config.smtp.password.as_ref().unwrap().expose_secret(),
            "0123"
        );
        assert_eq!(config.templates.dir, std::path::PathBuf::from("1.50"));
        assert_eq!(config.smtp.port, 2525, "numbers are still read as numbers");
        assert!(config.webhook.https_only);
        assert_eq!(config.retry.jitter, 0.5);
    }

    #[test]
    fn secrets_from_the_environment_stay_strings_and_stay_hidden() {
        let config = load_text(
            "[smtp]\nusername = \"u\"\n",
            &[
                ("HERALD_SMTP__PASSWORD", "12345"),
                ("HERALD_DATABASE__URL", "postgres://a:CANARY@h/d"),
            ],
        )
        .unwrap();
        assert_eq!(
            config.smtp.password.as_ref().unwrap().expose_secret(),
            "12345"
        );
        assert!(!format!("{config:?}").contains("CANARY"));
    }

    #[test]
    fn listen_url_is_off_when_empty_and_checked_like_url() {
        assert_eq!(Config::default().database.listen_url(), None);
        let config = load_text(
            "",
            &[(
                "HERALD_DATABASE__LISTEN_URL",
                "postgres://a:CANARY@h:5432/d",
            )],
        )
        .unwrap();
        assert_eq!(
            config.database.listen_url(),
            Some("postgres://a:CANARY@h:5432/d")
        );
        assert!(!format!("{config:?}").contains("CANARY"));
        for (text, problem) in [
            (
                "[database]\nlisten_url = \"mysql://a:CANARY@h/d\"\n",
                "config: database.listen_url: must start with postgres:// or postgresql://",
            ),
            (
                "[database]\nlisten_url = \"postgres://a:CANARY@h:5432/\"\n",
                "config: database.listen_url: no database name: add one after the host and port",
            ),
        ] {
            let err = load_text(text, &[]).unwrap_err();
            assert!(err.starts_with(problem), "{err}");
            assert!(!err.contains("CANARY"), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = load_text("[smtp]\nprot = 25\n", &[]).unwrap_err();
        assert!(err.contains("prot"), "{err}");
        let err = load_text("[smpt]\nport = 25\n", &[]).unwrap_err();
        assert!(err.contains("smpt"), "{err}");
        let err = load_text("", &[("HERALD_SMTP__PROT", "25")]).unwrap_err();
        assert!(
            err.starts_with(
                "config from the environment (HERALD_<SECTION>__<KEY>): unknown field `prot`"
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_refused_by_key() {
        let err = load_text("[smtp]\nport = \"twenty\"\n", &[]).unwrap_err();
        assert!(err.contains("smtp.port"), "{err}");
        let err = load_text("[dispatcher]\nlease = \"soon\"\n", &[]).unwrap_err();
        assert!(err.contains("dispatcher.lease"), "{err}");
        let err = load_text("[dispatcher]\nlease = \"10s\"\n", &[]).unwrap_err();
        assert_eq!(
            err,
            "config: dispatcher.lease: must exceed the longest delivery timeout (30s), got 10s"
        );
        let err = load_text("[retry]\njitter = 1.5\n", &[]).unwrap_err();
        assert_eq!(
            err,
            "config: retry.jitter: must be between 0 and 1, got 1.5"
        );
        let err = load_text("[smtp]\ntls = \"ssl\"\n", &[]).unwrap_err();
        assert!(err.contains("smtp.tls"), "{err}");
        let err = load_text("[webhook]\nallowed_networks = [\"10.0.0.0/33\"]\n", &[]).unwrap_err();
        assert!(err.contains("webhook.allowed_networks"), "{err}");
        let err = load_text("[database]\nmax_connections = 1\n", &[]).unwrap_err();
        assert_eq!(err, "config: database.max_connections: must be at least 2");
        let err = load_text("[sweeper]\nretention = \"300000years\"\n", &[]).unwrap_err();
        assert!(
            err.starts_with("config: sweeper.retention: must be at most 100years, got "),
            "{err}"
        );
        let err = load_text("[sweeper.retention_by_type]\nx = \"200y\"\n", &[]).unwrap_err();
        assert!(
            err.starts_with("config: sweeper.retention_by_type.x: must be at most 100years, got "),
            "{err}"
        );
        let err = load_text("[smtp]\nfrom = \"not a mailbox\"\n", &[]).unwrap_err();
        assert!(err.starts_with("config: smtp.from:"), "{err}");
    }

    #[test]
    fn log_format_and_metrics_listen_are_keys() {
        let config = load_text(
            "[log]\nformat = \"json\"\n[metrics]\nlisten = \"127.0.0.1:9464\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.log.format, crate::config::LogFormat::Json);
        assert_eq!(
            config.metrics.listen_addr(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(
            Config::default().metrics.listen_addr(),
            None,
            "off by default"
        );
        let config = load_text("", &[("HERALD_LOG__FORMAT", "json")]).unwrap();
        assert_eq!(config.log.format, crate::config::LogFormat::Json);
        let err = load_text("[log]\nformat = \"yaml\"\n", &[]).unwrap_err();
        assert!(err.contains("log.format"), "{err}");
        let err = load_text("", &[("HERALD_METRICS__LISTEN", "localhost:9464")]).unwrap_err();
        assert_eq!(
            err,
            "config: metrics.listen: \"localhost:9464\" is not an IP address and port (e.g. \"127.0.0.1:9464\", or \"[::]:9464\" for every interface)"
        );
        let err = load_text("[metrics]\nstate_refresh = \"0s\"\n", &[]).unwrap_err();
        assert_eq!(err, "config: metrics.state_refresh: must be more than 0s");
    }

    #[test]
    fn the_metrics_listener_bounds_are_keys_and_checked() {
        let config = load_text(
            "[metrics]\nheader_timeout = \"2s\"\nidle_timeout = \"10s\"\nmax_connections = 8\n",
            &[],
        )
        .unwrap();
        let bounds = config.metrics.bounds();
        assert_eq!(bounds.header_timeout, Duration::from_secs(2));
        assert_eq!(bounds.idle_timeout, Duration::from_secs(10));
        assert_eq!(bounds.max_connections, 8);
        for (variable, value, error) in [
            (
                "HERALD_METRICS__HEADER_TIMEOUT",
                "0s",
                "config: metrics.header_timeout: must be more than 0s",
            ),
            (
                "HERALD_METRICS__IDLE_TIMEOUT",
                "0s",
                "config: metrics.idle_timeout: must be more than 0s",
            ),
            (
                "HERALD_METRICS__MAX_CONNECTIONS",
                "0",
                "config: metrics.max_connections: must be between 1 and 10000, got 0",
            ),
            (
                "HERALD_METRICS__MAX_CONNECTIONS",
                "20000",
                "config: metrics.max_connections: must be between 1 and 10000, got 20000",
            ),
            (
                "HERALD_METRICS__IDLE_TIMEOUT",
                "200y",
                "config: metrics.idle_timeout: must be at most 100years, got 200years",
            ),
        ] {
            assert_eq!(load_text("", &[(variable, value)]).unwrap_err(), error);
        }
        let err = load_text("", &[("HERALD_METRICS__HEADER_TIMEOUT", "soon")]).unwrap_err();
        assert!(err.contains("metrics.header_timeout"), "{err}");
        let err = load_text("", &[("HERALD_METRICS__MAX_CONNECTIONS", "-1")]).unwrap_err();
        assert!(err.contains("metrics.max_connections"), "{err}");
    }

    #[test]
    fn the_old_log_format_variable_is_an_alias() {
        let config = load_text("", &[("HERALD_LOG_FORMAT", "JSON")]).unwrap();
        assert_eq!(config.log.format, crate::config::LogFormat::Json);
        let config = load_text(
            "",
            &[
                ("HERALD_LOG_FORMAT", "json"),
                ("HERALD_LOG__FORMAT", "text"),
            ],
        )
        .unwrap();
        assert_eq!(
            config.log.format,
            crate::config::LogFormat::Text,
            "the key's own variable wins"
        );
        let config = load_text(
            "[log]\nformat = \"json\"\n",
            &[("HERALD_LOG_FORMAT", "text")],
        )
        .unwrap();
        assert_eq!(
            config.log.format,
            crate::config::LogFormat::Text,
            "the environment beats the file"
        );
    }

    #[test]
    fn a_named_file_must_exist() {
        let missing = Path::new("/nonexistent/herald.toml");
        let err = load(Some(missing), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config file /nonexistent/herald.toml: "),
            "{err}"
        );
        let err = load(None, &env(&[("HERALD_CONFIG", "/nonexistent/h.toml")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config file /nonexistent/h.toml: "),
            "{err}"
        );
    }

    #[test]
    fn a_file_larger_than_1_mib_is_refused_unread() {
        let err = load(Some(Path::new("/dev/zero")), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "config file /dev/zero: larger than 1 MiB");
        let at_the_limit = "#".repeat(MAX_FILE_BYTES as usize - 1) + "\n";
        let f = file(&at_the_limit);
        load(Some(f.path()), &HashMap::new()).expect("1 MiB is read");
        let f = file(&(at_the_limit + "\n"));
        let err = load(Some(f.path()), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("config file {}: larger than 1 MiB", f.path().display())
        );
    }

    #[test]
    fn herald_config_is_not_mistaken_for_a_key() {
        let f = file("");
        let vars = env(&[
            ("HERALD_CONFIG", f.path().to_str().unwrap()),
            ("HERALD_LOG", "x"),
        ]);
        let (config, source) = load(None, &vars).unwrap();
        assert_eq!(source, ConfigSource::Env(f.path().to_owned()));
        assert_eq!(config.smtp.port, 587);
    }
}
