//! Every configuration key, once: its name, its default and what it means.
//!
//! [`KEYS`] is the only place a default is written. From it come
//! - the defaults layer of the loader ([`defaults_toml`], fed to it below the file), and so
//!   `Config::default()` and every section's `Default`;
//! - `config/herald.toml`, which is [`defaults_toml`] byte for byte;
//! - the key table of `docs/operating.md`, between `<!-- config-keys:start -->` and
//!   `<!-- config-keys:end -->` ([`docs_table`]);
//! - which keys take comma-separated lists in the environment (those whose default is a list).
//!
//! Tests check both files against the table and the table against `Config`'s fields.
//! After changing the table, rewrite the files with
//! `HERALD_BLESS=1 cargo test --locked --lib config::keys`.
//!
//! Rules that a default alone cannot say (ranges, keys that depend on each other) are enforced
//! by `Config::validate`; [`Key::doc`] states them for people.

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// `section.name`, as in the file; the environment variable is `HERALD_SECTION__NAME`.
    pub key: &'static str,
    pub value: Value,
    /// What the key means and the values it accepts, in one paragraph (Markdown).
    pub doc: &'static str,
}

/// A key's built-in value.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    /// This default, written as TOML.
    Toml(&'static str),
    /// Not set unless configured; the shipped file shows `example` commented out.
    Unset { example: &'static str },
    /// A table of entries, empty by default, written as its own `[section.name]` table; the
    /// shipped file shows `examples` (TOML entries) commented out.
    Table { examples: &'static [&'static str] },
}

use Value::{Table, Toml, Unset};

pub const KEYS: &[Key] = &[
    Key {
        key: "database.url",
        value: Toml(r#""postgres://postgres@127.0.0.1:5432/herald""#),
        doc: "The PostgreSQL URL. May carry a password; herald never prints it (errors name host, \
              port and database only). Must name its database, as must `--database-url` and \
              `DATABASE_URL` (a URL ending in `:5432/` is refused rather than using `postgres`).",
    },
    Key {
        key: "database.max_connections",
        value: Toml("10"),
        doc: "Pool size per herald process; at least 2 (the daemon's wake-up listener uses a \
              connection of its own on top of these).",
    },
    Key {
        key: "database.listen_url",
        value: Toml(r#""""#),
        doc: "A direct connection to the same database, for when `url` goes through a \
              transaction-mode pooler such as PgBouncer (`pool_mode = transaction`). Setting it \
              turns on transaction pooling: the daemon's LISTEN and the migrations (which hold a \
              session advisory lock) use this URL, and every other statement is unnamed and \
              runs inside a transaction (`docs/pgbouncer.md`). Checked like `url`: it must name \
              its database; never printed. Empty: off, everything uses `url`.",
    },
    Key {
        key: "dispatcher.workers",
        value: Toml("64"),
        doc: "Concurrent deliveries per daemon, at least 1. Claimed rows count from the moment \
              their claim is sent, so twice `batch_size` keeps two claims in flight.",
    },
    Key {
        key: "dispatcher.lease",
        value: Toml(r#""60s""#),
        doc: "How long a claim is held without a heartbeat. Must exceed `webhook.timeout` and \
              `smtp.timeout`, else a slow delivery could be reclaimed by another daemon \
              mid-flight.",
    },
    Key {
        key: "dispatcher.poll_interval",
        value: Toml(r#""1s""#),
        doc: "How often a daemon looks for due work, more than 0s. Polling is the truth; NOTIFY \
              only wakes an idle daemon sooner.",
    },
    Key {
        key: "dispatcher.batch_size",
        value: Toml("32"),
        doc: "Notifications claimed per round trip, at least 1.",
    },
    Key {
        key: "dispatcher.shutdown_grace",
        value: Toml(r#""30s""#),
        doc: "On SIGINT/SIGTERM: time given to in-flight deliveries before their leases are \
              released.",
    },
    Key {
        key: "retry.schedule",
        value: Toml(r#"["5s", "5m", "30m", "2h", "5h", "10h", "10h"]"#),
        doc: "Delay before each retry, each more than 0s; attempts = steps + 1, at most 100 (the \
              default is 8 attempts over about 28 hours; `[]` is no retries).",
    },
    Key {
        key: "retry.jitter",
        value: Toml("0.2"),
        doc: "Each delay is scaled by a random factor in [1 - jitter, 1 + jitter]; 0 to 1.",
    },
    Key {
        key: "webhook.timeout",
        value: Toml(r#""15s""#),
        doc: "Total time for one request: connect, send, response headers and body; more than 0s.",
    },
    Key {
        key: "webhook.allowed_networks",
        value: Toml("[]"),
        doc: "Targets resolving to non-global addresses (loopback, private, link-local, CGNAT, \
              ULA, ...) are refused unless inside one of these networks, e.g. \
              `[\"10.1.0.0/16\", \"127.0.0.0/8\"]`.",
    },
    Key {
        key: "webhook.https_only",
        value: Toml("false"),
        doc: "Refuse `http://` endpoint URLs.",
    },
    Key {
        key: "webhook.secret_rotation_grace",
        value: Toml(r#""24h""#),
        doc: "`herald endpoints rotate-secret` keeps the old secret signing beside the new one \
              this long, so receivers can switch without losing a delivery (the default of its \
              `--grace`).",
    },
    Key {
        key: "smtp.host",
        value: Toml(r#""127.0.0.1""#),
        doc: "The SMTP server's host name or IP address.",
    },
    Key {
        key: "smtp.port",
        value: Toml("587"),
        doc: "The SMTP server's port.",
    },
    Key {
        key: "smtp.tls",
        value: Toml(r#""starttls""#),
        doc: "`\"starttls\"` (upgrade required), `\"tls\"` (TLS from the first byte, usually port \
              465), or `\"none\"`.",
    },
    Key {
        key: "smtp.username",
        value: Unset {
            example: r#""herald""#,
        },
        doc: "SMTP login; set `username` and `password` both or neither.",
    },
    Key {
        key: "smtp.password",
        value: Unset {
            example: r#""...""#,
        },
        doc: "SMTP password; better given in the environment as `HERALD_SMTP__PASSWORD`.",
    },
    Key {
        key: "smtp.from",
        value: Toml(r#""herald <herald@localhost>""#),
        doc: "The sender, a mailbox such as `\"herald <herald@example.com>\"`.",
    },
    Key {
        key: "smtp.message_id_domain",
        value: Toml(r#""herald.localhost""#),
        doc: "`Message-ID: <notification-id@message_id_domain>`, the same on every retry.",
    },
    Key {
        key: "smtp.timeout",
        value: Toml(r#""30s""#),
        doc: "The whole SMTP conversation of one message (lettre's own timeout covers only the \
              connect); more than 0s.",
    },
    Key {
        key: "sweeper.schedule",
        value: Toml(r#""0 */10 * * * *""#),
        doc: "Cron with seconds, evaluated in UTC: sec min hour day-of-month month day-of-week \
              (five fields and numeric days of the week are refused, with the expression to use \
              instead).",
    },
    Key {
        key: "sweeper.retention",
        value: Toml(r#""30d""#),
        doc: "A finished notification (delivered, dead, cancelled) blocks duplicates of its key \
              this long.",
    },
    Key {
        key: "sweeper.batch_size",
        value: Toml("1000"),
        doc: "Rows deleted per short transaction, at least 1.",
    },
    Key {
        key: "sweeper.retention_by_type",
        value: Table {
            examples: &[r#"order_shipped = "90d""#, r#"login_code = "1h""#],
        },
        doc: "Retention per notification type (type = duration), overriding `retention`; type \
              names match with ASCII letters case-insensitive (so two names differing only in \
              that are refused).",
    },
    Key {
        key: "templates.dir",
        value: Toml(r#""templates""#),
        doc: "Email templates: `<dir>/<type>/subject.txt`, `body.txt` and optionally `body.html`.",
    },
    Key {
        key: "limits.max_payload_bytes",
        value: Toml("65536"),
        doc: "Largest payload accepted at enqueue, in bytes of jsonb's text form; at least 1. \
              `herald migrate` (and `herald run`, when its login owns herald) records it in the \
              database as the ceiling of every enqueue function, so no caller can name a larger \
              limit.",
    },
    Key {
        key: "log.format",
        value: Toml(r#""text""#),
        doc: "`\"text\"` (one line per event, for people) or `\"json\"` (one object per line, \
              every field at the top level, for log shippers). The older variable \
              `HERALD_LOG_FORMAT` is still read as an alias of `HERALD_LOG__FORMAT` \
              (deprecated). Filtering stays with `RUST_LOG`.",
    },
    Key {
        key: "metrics.listen",
        value: Toml(r#""""#),
        doc: "Serve `GET /metrics` (Prometheus), `/healthz` and `/readyz` on this IP address and \
              port, e.g. `\"127.0.0.1:9464\"` (`\"[::]:9464\"` or `\"0.0.0.0:9464\"` for every \
              interface). Empty: off.",
    },
    Key {
        key: "metrics.state_refresh",
        value: Toml(r#""15s""#),
        doc: "The notifications-by-state gauges are one GROUP BY over the table: a scrape \
              recounts them only when the last count is older than this; more than 0s.",
    },
    Key {
        key: "metrics.header_timeout",
        // A scraper or probe on a working network sends its few hundred bytes at once.
        value: Toml(r#""5s""#),
        doc: "The time a client may take to send a request's head, from connecting or from its \
              first byte (a slowloris is cut off); more than 0s.",
    },
    Key {
        key: "metrics.idle_timeout",
        value: Toml(r#""30s""#),
        doc: "The time a connection with no request in progress may stay silent, more than 0s \
              (longer than a 15-second scrape interval, so Prometheus keeps its connection).",
    },
    Key {
        key: "metrics.max_connections",
        // Scrapers keep one connection each and probes open one at a time: a few dozen is room
        // to spare, and 64 descriptors is little beside the 1024 of the usual soft limit that
        // deliveries (one socket per worker) and the pool share.
        value: Toml("64"),
        doc: "Connections served at once, 1 to 10000; further ones wait in the kernel's listen \
              backlog, unaccepted, holding no descriptor of herald's. With the two timeouts, this \
              keeps any client from taking the file descriptors deliveries need.",
    },
    Key {
        key: "breaker.failures",
        value: Toml("5"),
        doc: "Consecutive `failed` or `unknown` attempts at one destination (a webhook endpoint, \
              or the SMTP relay) that open its circuit breaker, 1 to 1000. Not counted: a `429`, \
              a notification's own problem (a missing template, a refused recipient), and for \
              the relay anything but connection, TLS, timeout and whole-session (`421`) \
              failures. While open, the destination's due notifications wait and spend no \
              attempts.",
    },
    Key {
        key: "breaker.probe_interval",
        value: Toml(r#""30s""#),
        doc: "How long an open breaker waits before one notification is tried as a probe \
              (`half_open`); each failed probe doubles the wait, up to `max_probe_interval`. A \
              successful probe closes the breaker. More than 0s.",
    },
    Key {
        key: "breaker.max_probe_interval",
        value: Toml(r#""10m""#),
        doc: "The longest wait between probes; at least `probe_interval`.",
    },
    Key {
        key: "breaker.disable_after",
        value: Toml(r#""5d""#),
        doc: "A webhook endpoint whose probes keep failing this long (from the first failed \
              probe to the latest, every one in between failing; a probe lost with its daemon \
              starts the count again) is disabled, and its waiting notifications go `dead` with `last_error` \
              `endpoint <id> disabled: <reason>`. The SMTP relay's breaker never disables \
              anything. More than 0s.",
    },
    Key {
        key: "alerts.endpoint",
        value: Toml(r#""""#),
        doc: "The id of one of herald's webhook endpoints that receives operational events \
              (`herald.endpoint.breaker_opened`, `herald.endpoint.recovered`, \
              `herald.endpoint.disabled`, `herald.notification.dead`), signed and retried like \
              any notification. Empty: off.",
    },
    Key {
        key: "api.listen",
        value: Toml(r#""""#),
        doc: "Serve the HTTP API (`/v1`), `/healthz` and `/readyz` on this IP address and port, \
              e.g. `\"127.0.0.1:8080\"` (`\"[::]:8080\"` for every interface), with `herald \
              serve`. Empty: off (`herald serve` then exits 2). Callers present tokens from \
              `herald tokens add`.",
    },
    Key {
        key: "api.header_timeout",
        value: Toml(r#""10s""#),
        doc: "The time a client may take to send a request's head, from connecting or from its \
              first byte (a slowloris is cut off); more than 0s.",
    },
    Key {
        key: "api.idle_timeout",
        value: Toml(r#""60s""#),
        doc: "The time a connection may move no byte while no request is being handled, more than \
              0s.",
    },
    Key {
        key: "api.body_timeout",
        value: Toml(r#""30s""#),
        doc: "The time a client may take to send a request's whole body, from its head; a slower \
              one is answered 408 and nothing is written. More than 0s.",
    },
    Key {
        key: "api.max_connections",
        // Clients of an enqueue API keep connections alive; a few hundred descriptors beside the
        // usual soft limit of 1024 leaves room for the pool and, under `herald run`, deliveries.
        value: Toml("256"),
        doc: "Connections served at once, 1 to 10000; further ones wait in the kernel's listen \
              backlog, holding no descriptor of herald's.",
    },
    Key {
        key: "api.max_body_bytes",
        value: Toml("1048576"),
        doc: "The largest request body read, 1 to 268435456 bytes; a larger one is answered 413 \
              unread. A batch of many large payloads needs more than the default 1 MiB.",
    },
];

/// The opening comment of `config/herald.toml`.
const FILE_HEADER: &str = "\
# herald configuration. Every key is optional; the values below are the built-in defaults.
#
# Precedence (later wins): built-in defaults < this file < environment < command-line flags.
#   file:        --config FILE, else $HERALD_CONFIG, else config/herald.toml when present
#   environment: HERALD_<SECTION>__<KEY>, e.g. HERALD_SMTP__PORT=2525,
#                lists comma-separated: HERALD_WEBHOOK__ALLOWED_NETWORKS=127.0.0.0/8,::1/128
#                (an empty item is refused; so is an empty HERALD_RETRY__SCHEDULE)
#   database:    --database-url, else $DATABASE_URL, else database.url below
# Durations are strings: \"250ms\", \"15s\", \"5m\", \"2h\", \"30d\", at most \"100y\". Unknown keys are
# refused.
#
# This file is generated from the key table in src/config/keys.rs, where the defaults are
# defined; after changing that table: HERALD_BLESS=1 cargo test --locked --lib config::keys
";

/// Comment lines are wrapped to this many characters.
const WIDTH: usize = 100;

impl Key {
    /// The section, `smtp` of `smtp.port`.
    pub fn section(&self) -> &'static str {
        self.key
            .split_once('.')
            .map_or(self.key, |(section, _)| section)
    }

    /// The key within its section, `port` of `smtp.port`.
    pub fn name(&self) -> &'static str {
        self.key.split_once('.').map_or(self.key, |(_, name)| name)
    }

    /// Whether the environment gives this key as a comma-separated list.
    pub fn is_list(&self) -> bool {
        matches!(self.value, Toml(toml) if toml.starts_with('['))
    }
}

/// The sections in the order of [`KEYS`].
fn sections() -> Vec<&'static str> {
    let mut sections: Vec<&str> = Vec::new();
    for key in KEYS {
        if !sections.contains(&key.section()) {
            sections.push(key.section());
        }
    }
    sections
}

/// `text` as `# ` comment lines of at most [`WIDTH`] characters (a longer word stays whole).
fn comment(text: &str, out: &mut String) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

/// `config/herald.toml`: every key with its default and its description, as TOML. This is also
/// the loader's defaults layer.
pub fn defaults_toml() -> String {
    let mut out = String::from(FILE_HEADER);
    for section in sections() {
        let keys = || KEYS.iter().filter(move |k| k.section() == section);
        out.push_str(&format!("\n[{section}]\n"));
        for key in keys() {
            match key.value {
                Toml(toml) => {
                    comment(key.doc, &mut out);
                    out.push_str(&format!("{} = {toml}\n", key.name()));
                }
                Unset { example } => {
                    comment(key.doc, &mut out);
                    out.push_str(&format!("# {} = {example}\n", key.name()));
                }
                Table { .. } => {}
            }
        }
        for key in keys() {
            if let Table { examples } = key.value {
                out.push('\n');
                comment(key.doc, &mut out);
                out.push_str(&format!("[{}]\n", key.key));
                for example in examples {
                    out.push_str(&format!("# {example}\n"));
                }
            }
        }
    }
    out
}

/// The key table of `docs/operating.md`: one row per key, in the order of [`KEYS`].
pub fn docs_table() -> String {
    let cell = |text: &str| text.replace('|', "\\|");
    let mut out = String::from(
        "<!-- Generated from src/config/keys.rs: HERALD_BLESS=1 cargo test --locked --lib \
         config::keys -->\n| key | default | meaning |\n|---|---|---|\n",
    );
    for key in KEYS {
        let default = match key.value {
            Toml(toml) => format!("`{toml}`"),
            Unset { .. } => "unset".to_owned(),
            Table { .. } => "empty table".to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            key.key,
            cell(&default),
            cell(key.doc)
        ));
    }
    out
}

/// Where the generated table sits in `docs/operating.md`.
pub const DOCS_START: &str = "<!-- config-keys:start -->";
pub const DOCS_END: &str = "<!-- config-keys:end -->";

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::*;
    use crate::config::Config;

    fn repository_file(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
    }

    /// Compares a generated file with the one in the repository; with `HERALD_BLESS=1`, writes
    /// the generated one instead.
    fn check_or_bless(path: &str, generated: &str) {
        let file = repository_file(path);
        if std::env::var_os("HERALD_BLESS").is_some_and(|v| v == "1") {
            std::fs::write(&file, generated).unwrap();
            return;
        }
        let current = std::fs::read_to_string(&file).unwrap();
        if current != generated {
            let line = current
                .lines()
                .zip(generated.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| current.lines().count().min(generated.lines().count()));
            panic!(
                "{path} differs from the key table in src/config/keys.rs from line {}; \
                 regenerate it with HERALD_BLESS=1 cargo test --locked --lib config::keys",
                line + 1
            );
        }
    }

    #[test]
    fn the_shipped_file_is_generated_from_the_table() {
        check_or_bless(crate::config::load::DEFAULT_FILE, &defaults_toml());
    }

    #[test]
    fn the_docs_key_table_is_generated_from_the_table() {
        let path = "docs/operating.md";
        let text = std::fs::read_to_string(repository_file(path)).unwrap();
        let (before, rest) = text
            .split_once(DOCS_START)
            .unwrap_or_else(|| panic!("{path} has no {DOCS_START}"));
        let (_, after) = rest
            .split_once(DOCS_END)
            .unwrap_or_else(|| panic!("{path} has no {DOCS_END} after {DOCS_START}"));
        let generated = format!("{before}{DOCS_START}\n{}{DOCS_END}{after}", docs_table());
        check_or_bless(path, &generated);
    }

    /// The field names of every section of `Config`, as `section.name`, read from its derived
    /// pretty `Debug` (sections at depth 1, their fields at depth 2): a field added to a section
    /// shows up here whatever its type, including an `Option` that deserializing the defaults
    /// would quietly leave `None`.
    fn config_fields() -> BTreeSet<String> {
        let debug = format!("{:#?}", Config::default());
        let mut fields = BTreeSet::new();
        let mut section = String::new();
        for line in debug.lines() {
            let indent = line.len() - line.trim_start().len();
            let Some((name, _)) = line.trim_start().split_once(": ") else {
                continue;
            };
            match indent {
                4 => section = name.to_owned(),
                8 => {
                    fields.insert(format!("{section}.{name}"));
                }
                _ => {}
            }
        }
        fields
    }

    #[test]
    fn the_table_names_every_field_of_config_once() {
        let table: Vec<&str> = KEYS.iter().map(|k| k.key).collect();
        let unique: BTreeSet<String> = table.iter().map(|k| k.to_string()).collect();
        assert_eq!(unique.len(), table.len(), "a key is listed twice");
        let fields = config_fields();
        assert!(fields.len() > 30, "the Debug reading broke: {fields:?}");
        assert_eq!(unique, fields, "KEYS and Config's fields differ");
    }

    #[test]
    fn sections_are_contiguous() {
        // The file writes each section once, so the table keeps a section's keys together.
        let mut seen = Vec::new();
        for key in KEYS {
            if seen.last() != Some(&key.section()) {
                assert!(
                    !seen.contains(&key.section()),
                    "{} is apart from its section",
                    key.key
                );
                seen.push(key.section());
            }
        }
    }

    #[test]
    fn the_defaults_pass_validation() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn defaults_defined_elsewhere_agree() {
        use secrecy::ExposeSecret;
        let config = Config::default();
        assert_eq!(
            config.database.url.expose_secret(),
            crate::config::DEFAULT_DATABASE_URL
        );
        assert_eq!(
            config.limits.max_payload_bytes,
            crate::notification::DEFAULT_MAX_PAYLOAD_BYTES
        );
        // The library's default attempts: one first attempt and one per retry step.
        assert_eq!(
            config.retry.schedule.len() + 1,
            crate::notification::DEFAULT_MAX_ATTEMPTS as usize
        );
    }

    #[test]
    fn the_list_keys_are_the_lists() {
        let lists: Vec<&str> = KEYS.iter().filter(|k| k.is_list()).map(|k| k.key).collect();
        assert_eq!(lists, ["retry.schedule", "webhook.allowed_networks"]);
    }

    #[test]
    fn comments_wrap_at_the_width() {
        for line in defaults_toml().lines() {
            assert!(line.chars().count() <= WIDTH, "{line}");
        }
    }
}
