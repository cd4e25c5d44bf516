//! Connecting to PostgreSQL with errors a person can act on.
//!
//! Invariant: no error or log line built here contains the database password. Errors name the
//! host, port and database only, taken from the parsed connect options, never the URL.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres};

/// How long to wait for a connection before calling the server unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a URL points, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub database: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PostgreSQL at {}:{}, database {:?}",
            self.host, self.port, self.database
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error(
        "cannot connect to {target}: {reason}. Is PostgreSQL running? Start it (Debian: `pg_ctlcluster --skip-systemctl-redirect 15 main start`) or point --database-url / DATABASE_URL at your server"
    )]
    Unreachable { target: Target, reason: String },
    #[error("database {:?} does not exist on {}:{}; `herald migrate` creates it", .target.database, .target.host, .target.port)]
    MissingDatabase { target: Target },
    #[error("cannot use {target}: {reason}")]
    Refused { target: Target, reason: String },
}

impl ConnectError {
    /// The problem without the "invalid database URL" prefix, for messages that name where the
    /// URL came from.
    pub fn problem(&self) -> String {
        match self {
            ConnectError::InvalidUrl(problem) => problem.clone(),
            other => other.to_string(),
        }
    }
}

/// Parses a URL without echoing it back in errors (it may carry a password).
pub fn parse_url(url: &str) -> Result<(PgConnectOptions, Target), ConnectError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConnectError::InvalidUrl(
            "must start with postgres:// or postgresql://".into(),
        ));
    }
    let options = PgConnectOptions::from_str(url).map_err(|e| {
        // sqlx's parse errors describe the problem, not the URL; keep only the first line.
        ConnectError::InvalidUrl(e.to_string().lines().next().unwrap_or_default().to_owned())
    })?;
    if !names_a_database(url) {
        return Err(ConnectError::InvalidUrl(
            "no database name: add one after the host and port, as in postgres://127.0.0.1:5432/herald (herald never falls back to a default database)".into(),
        ));
    }
    let target = Target {
        host: options.get_host().to_owned(),
        port: options.get_port(),
        database: options
            .get_database()
            .unwrap_or_else(|| options.get_username())
            .to_owned(),
    };
    Ok((options, target))
}

/// Whether `url` names its database, in its path or as `?dbname=`. Without one, PostgreSQL
/// would pick the user's own database (`postgres`, usually), and `herald migrate` would install
/// herald there.
fn names_a_database(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    !parsed.path().trim_matches('/').is_empty()
        || parsed
            .query_pairs()
            .any(|(key, value)| key == "dbname" && !value.is_empty())
}

/// Opens a pool after checking, with one direct connection, that the server answers: the
/// pool itself would retry a refused connection until its timeout and then report only that it
/// timed out. With `create_if_missing`, a missing database is created first (as `herald
/// migrate` and `herald run` do).
pub async fn connect(
    url: &str,
    max_connections: u32,
    create_if_missing: bool,
) -> Result<PgPool, ConnectError> {
    let (options, target) = parse_url(url)?;
    match probe(&options).await {
        Ok(()) => {}
        Err(e) if is_missing_database(&e) && create_if_missing => {
            create_database(url, &target).await?;
            probe(&options).await.map_err(|e| classify(e, &target))?;
        }
        Err(e) => return Err(classify(e, &target)),
    }
    Ok(pool_options()
        .max_connections(max_connections)
        .acquire_timeout(CONNECT_TIMEOUT)
        // sqlx pings every connection it hands out by default: one more round trip for each
        // statement, which doubled the cost of an enqueue. A dead connection is found by the
        // statement itself instead; every caller in herald retries or reports it.
        .test_before_acquire(false)
        .connect_lazy_with(options))
}

/// Options for every pool herald opens: each connection resolves names against
/// `pg_catalog, pg_temp` only.
///
/// herald's own statements name their tables `herald.…` but call built-ins and operators
/// unqualified. On the server's default path (`"$user", public`), a role that may create objects
/// in `public` could add an operator or function that matches one of those calls better than the
/// built-in (`public.||(text, integer)`, `public.<>(oid, regrole)`) and run its code as the
/// daemon (which reads endpoint secrets), an operator, or the superuser running `herald migrate`
/// (CVE-2018-1058). Nothing herald uses lives outside `pg_catalog` and `herald`.
///
/// Behind a transaction-mode pooler ([`crate::pooling`]) a session setting would land on
/// whichever server connection the pooler chose, and stay there for its other clients: there
/// each transaction herald opens pins the path for itself instead (`pooling::begin`).
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new().after_connect(|conn, _| {
        Box::pin(async move {
            if crate::pooling::transaction_pooling() {
                return Ok(());
            }
            pin_search_path(conn).await
        })
    })
}

/// Sets the session's `search_path` to `pg_catalog, pg_temp` (see [`pool_options`]). One
/// simple-protocol message: no statement is prepared.
pub async fn pin_search_path(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("select pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)")
        .execute(conn)
        .await
        .map(|_| ())
}

async fn probe(options: &PgConnectOptions) -> Result<(), sqlx::Error> {
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    conn.close().await
}

async fn create_database(url: &str, target: &Target) -> Result<(), ConnectError> {
    match Postgres::create_database(url).await {
        Ok(()) => {
            tracing::info!(database = %target.database, "created database");
            Ok(())
        }
        // Another process created it in the meantime: duplicate_database, or unique_violation
        // when the two creations race in the catalog.
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {
            Ok(())
        }
        Err(e) => Err(ConnectError::Refused {
            target: target.clone(),
            reason: format!("could not create the database: {}", reason_of(&e)),
        }),
    }
}

fn is_missing_database(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000"))
}

fn classify(e: sqlx::Error, target: &Target) -> ConnectError {
    let target = target.clone();
    match &e {
        _ if is_missing_database(&e) => ConnectError::MissingDatabase { target },
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => {
            ConnectError::Unreachable {
                target,
                reason: reason_of(&e),
            }
        }
        _ => ConnectError::Refused {
            target,
            reason: reason_of(&e),
        },
    }
}

/// How a statement failed, as the HTTP API and the console answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The input cannot be read by PostgreSQL (a NUL, a lone surrogate, bytes that are not
    /// UTF-8): the caller's fault, answered 400.
    Unreadable,
    /// The statement ran past its `statement_timeout`.
    TooSlow,
    /// The connected role lacks a privilege: no retry helps.
    Denied,
    /// Anything else: the database did not answer as it should; a retry may.
    Unavailable,
}

/// What kind of failure `e` is (see [`Failure`]).
pub fn failure_of(e: &sqlx::Error) -> Failure {
    match e.as_database_error().and_then(|db| db.code()).as_deref() {
        Some("22P02" | "22P05" | "22021") => Failure::Unreadable,
        Some("57014") => Failure::TooSlow,
        Some("42501") => Failure::Denied,
        _ => Failure::Unavailable,
    }
}

/// A one-line reason from a sqlx error.
pub fn reason_of(e: &sqlx::Error) -> String {
    let text = match e {
        sqlx::Error::Database(db) if names_a_lost_statement(db.code().as_deref(), db.message()) => {
            format!(
                "{} (a prepared statement was missing or already there: database.url seems to go \
                 through a transaction-mode pooler such as PgBouncer; set database.listen_url to a \
                 direct connection)",
                db.message()
            )
        }
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::PoolTimedOut => format!(
            "no connection within {}s (the server does not answer, or every pooled connection is busy: see database.max_connections)",
            CONNECT_TIMEOUT.as_secs()
        ),
        other => other.to_string(),
    };
    text.lines().next().unwrap_or_default().to_owned()
}

/// A statement named by sqlx (`sqlx_s_…`) that the server connection does not have, or has
/// already: what a transaction-mode pooler does to named statements of several clients.
fn names_a_lost_statement(code: Option<&str>, message: &str) -> bool {
    matches!(code, Some("42P05" | "26000")) && message.contains("\"sqlx_s_")
}

/// `text` with the password of every `scheme://user:password@host` in it replaced by `***`.
///
/// The last line of defence for what the CLI prints: errors are built without the URL, but
/// a message that quotes user input (a URL typed where a command was expected, say) must not
/// echo a password either. The userinfo runs to the last `@` before whitespace or a quote, as
/// a password may hold an unescaped `/` or `@`; over-redacting a message is harmless.
pub fn redact_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '`' | '<' | '>'))
            .unwrap_or(after.len());
        let token = &after[..end];
        match (token.find(':'), token.rfind('@')) {
            (Some(colon), Some(at_sign)) if colon < at_sign => {
                out.push_str(&token[..colon]);
                out.push_str(":***");
                out.push_str(&token[at_sign..]);
            }
            _ => out.push_str(token),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_named_statement_points_at_listen_url() {
        assert!(names_a_lost_statement(
            Some("42P05"),
            "prepared statement \"sqlx_s_1\" already exists"
        ));
        assert!(names_a_lost_statement(
            Some("26000"),
            "prepared statement \"sqlx_s_12\" does not exist"
        ));
        assert!(!names_a_lost_statement(
            Some("26000"),
            "prepared statement \"mine\" does not exist"
        ));
        assert!(!names_a_lost_statement(Some("23505"), "\"sqlx_s_1\""));
    }

    #[test]
    fn passwords_in_urls_are_redacted_wherever_they_appear() {
        let cases = [
            (
                "unexpected argument 'postgres://ann:s3cret@db/app' found",
                "unexpected argument 'postgres://ann:***@db/app' found",
            ),
            (
                "postgresql://a:p/w@d@h:5432/x y",
                "postgresql://a:***@h:5432/x y",
            ),
            (
                "postgres://ann@db/app and http://h:80/p",
                "postgres://ann@db/app and http://h:80/p",
            ),
            ("two: x://u:1@h, y://v:2@k", "two: x://u:***@h, y://v:***@k"),
            ("no url here", "no url here"),
            ("trailing ://", "trailing ://"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_passwords(input), expected, "{input}");
        }
    }

    #[test]
    fn targets_never_carry_the_password() {
        let (_, target) = parse_url("postgres://ann:s3cret@db.example:6543/app").unwrap();
        assert_eq!(
            target,
            Target {
                host: "db.example".into(),
                port: 6543,
                database: "app".into()
            }
        );
        assert!(!target.to_string().contains("s3cret"));
    }

    #[test]
    fn a_url_must_name_its_database() {
        for url in [
            "postgres://127.0.0.1:5432/",
            "postgres://127.0.0.1:5432",
            "postgresql://ann:s3cret@db",
            "postgres://db:5432/?sslmode=disable",
            "postgres://db:5432//",
            "postgres://db/?dbname=",
        ] {
            let err = parse_url(url).unwrap_err().to_string();
            assert!(
                err.starts_with("invalid database URL: no database name"),
                "{url}: {err}"
            );
            assert!(!err.contains("s3cret"), "{err}");
        }
        let (_, target) = parse_url("postgres://db:5432/?dbname=app").unwrap();
        assert_eq!(target.database, "app");
        let (_, target) = parse_url("postgres://db/postgres").unwrap();
        assert_eq!(target.database, "postgres", "named explicitly, so allowed");
    }

    #[test]
    fn bad_urls_do_not_echo_the_url() {
        let err = parse_url("mysql://ann:s3cret@h/db")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid database URL"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
