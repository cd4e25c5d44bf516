//! The `herald` binary: argument parsing, configuration, and one module per command group.
//!
//! Invariants: every failure is one line on stderr with a documented exit code (see
//! [`error`]); commands that print data take `--json` and then write exactly one JSON
//! document to stdout.

mod actions;
mod bench;
mod doctor;
mod endpoints;
mod enqueue;
pub mod error;
mod explain;
mod key_args;
mod notifications;
mod output;
mod run;
mod serve;
mod stats;
mod sweep;
mod tokens;
mod utf8;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use secrecy::ExposeSecret;
use sqlx::PgPool;

use crate::config::{self, Config, ConfigError, ConfigSource, LogFormat};
use crate::database;
use error::CliError;
use output::outln;

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    // Without a command, say so in one line rather than printing the help as an error.
    arg_required_else_help = false,
    about = "Durable, idempotent notification dispatcher on PostgreSQL",
    long_about = "Durable, idempotent notification dispatcher on PostgreSQL.\n\n\
        Exit codes: 0 success (a duplicate enqueue is a success), 1 runtime failure, \
        2 usage or invalid input, 3 idempotency conflict, 4 not found."
)]
pub struct Cli {
    /// PostgreSQL URL [env: DATABASE_URL; else database.url from the config]
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "DATABASE_URL",
        hide_env = true,
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Configuration file [env: HERALD_CONFIG; else config/herald.toml when present]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the database if missing, apply herald's migrations, create herald's database roles
    /// when this login may, and grant each its rights (idempotent).
    Migrate,
    /// herald's database roles: `--sql` prints the idempotent SQL a DBA runs to create them.
    Roles(RolesArgs),
    /// Run the dispatcher daemon: claim due notifications, deliver, retry.
    Run(run::RunArgs),
    /// Serve the HTTP API on api.listen (tokens from `herald tokens add`).
    Serve(serve::ServeArgs),
    /// Enqueue one notification; a replay of the same intent is a duplicate, not an error.
    Enqueue(enqueue::EnqueueArgs),
    /// List notifications, newest first.
    List(notifications::ListArgs),
    /// Show one notification with its attempt log.
    Show(notifications::ShowArgs),
    /// Put a dead or cancelled notification back to pending: same id (so the same delivery id
    /// reaches the receiver), due now, with a fresh budget of attempts.
    Retry(actions::IdArgs),
    /// Cancel a pending notification (anything else is refused).
    Cancel(actions::IdArgs),
    /// Counts by state and channel, the oldest due notification, deliveries and failures and
    /// latency over the last hour.
    Stats(stats::StatsArgs),
    /// Explain a key: which notification holds it, its state, when its dedup window ends, and
    /// whether a payload would be a duplicate or a conflict (naming the JSON paths that differ).
    Explain(explain::ExplainArgs),
    /// Run the retention sweeper once.
    Sweep(sweep::SweepArgs),
    /// Measure herald on the configured server, in a scratch database it creates and drops.
    Bench(bench::BenchArgs),
    /// Manage webhook endpoints.
    #[command(subcommand)]
    Endpoints(endpoints::EndpointsCommand),
    /// Tokens for `herald serve`'s HTTP API and console: add (printed once), list, revoke.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Check the configuration, the database and its migrations, SMTP, the email templates and
    /// the sweeper's schedule; exit 0 when all is well, else 1 with the list of problems.
    Doctor(doctor::DoctorArgs),
}

/// What every command gets: the validated configuration and the database to use.
pub struct Context {
    pub config: Config,
    /// Where the configuration file layer came from.
    pub source: ConfigSource,
    database_url: String,
    /// Where `database_url` came from (`--database-url`, `DATABASE_URL` or `database.url`), for
    /// errors.
    url_origin: &'static str,
}

impl Context {
    /// `--database-url` (or `DATABASE_URL`) when given, else `database.url`; `database_url`
    /// carries the name of where it came from.
    pub fn new(
        config: Config,
        source: ConfigSource,
        database_url: Option<(String, &'static str)>,
    ) -> Self {
        let (database_url, url_origin) = database_url
            .filter(|(url, _)| !url.is_empty())
            .unwrap_or_else(|| {
                (
                    config.database.url.expose_secret().to_owned(),
                    "database.url",
                )
            });
        Context {
            config,
            source,
            database_url,
            url_origin,
        }
    }

    /// Refuses a URL that cannot be used (no database name, say) before the command starts,
    /// naming where it came from.
    fn check_database_url(&self) -> Result<(), CliError> {
        database::parse_url(&self.database_url)
            .map(drop)
            .map_err(|e| CliError::usage(format!("{}: {e}", self.url_origin)))
    }

    /// Connects; `create_if_missing` is for the commands that own the database's life.
    pub async fn pool(&self, create_if_missing: bool) -> Result<PgPool, CliError> {
        let pool = database::connect(
            &self.database_url,
            self.config.database.max_connections,
            create_if_missing,
        )
        .await?;
        Ok(pool)
    }

    /// `database.listen_url`: set when `database.url` goes through a transaction-mode pooler.
    pub fn listen_url(&self) -> Option<&str> {
        self.config.database.listen_url()
    }

    /// A pool to migrate with: `database.listen_url` when set (sqlx's migrator holds a session
    /// advisory lock, which a transaction-mode pooler cannot keep), once it is shown to reach
    /// the database `database.url` reaches; else the database URL's, created if missing, as
    /// [`Self::pool`]. Behind a pooler the database exists already: a `listen_url` that names
    /// another is a mistake, never a database to create.
    pub async fn migration_pool(&self) -> Result<PgPool, CliError> {
        let Some(url) = self.listen_url() else {
            return self.pool(true).await;
        };
        let direct = database::connect(url, 2, false).await.map_err(|e| match e {
            database::ConnectError::MissingDatabase { target } => CliError::usage(format!(
                "database.listen_url: database {:?} does not exist on {}:{}; listen_url must be \
                 a direct connection to the database database.url reaches",
                target.database, target.host, target.port
            )),
            e => {
                let e = CliError::from(e);
                CliError {
                    message: format!("database.listen_url: {}", e.message),
                    ..e
                }
            }
        })?;
        let pooled = self.pool(false).await?;
        let identity = async |pool: &PgPool| {
            crate::store::health::database_identity(&mut *pool.acquire().await?).await
        };
        let (through_url, through_listen) = tokio::try_join!(identity(&pooled), identity(&direct))?;
        pooled.close().await;
        if through_url != through_listen {
            direct.close().await;
            return Err(CliError::usage(format!(
                "database.listen_url reaches {through_listen}, but database.url reaches \
                 {through_url}: listen_url must be a direct connection to the same database"
            )));
        }
        Ok(direct)
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let (cli, url_origin) = match parse_arguments() {
        Ok(parsed) => parsed,
        Err(e) if e.kind() == clap::error::ErrorKind::InvalidUtf8 => {
            let args: Vec<_> = std::env::args_os().collect();
            let place = utf8::non_utf8_argument(&args)
                // Clap reads only the arguments and DATABASE_URL.
                .unwrap_or_else(|| "environment variable DATABASE_URL".to_owned());
            eprintln!("error: {place} is not valid UTF-8");
            return error::Exit::Usage.into();
        }
        Err(e) if e.use_stderr() => {
            let line = elide_echoes(&e, one_line(&e.render().to_string()));
            eprintln!("{}", database::redact_passwords(&line));
            return error::Exit::Usage.into();
        }
        // --help and --version.
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    // Not `std::env::vars()`, which panics on a variable that is not UTF-8.
    let env: HashMap<String, String> = match utf8::environment(std::env::vars_os()) {
        Ok(env) => env,
        Err(message) => {
            eprintln!("error: {message}");
            return error::Exit::Usage.into();
        }
    };
    // The configuration comes first: it chooses the log format. `doctor` reports the
    // cross-key rules as one of its checks, so it takes the configuration unvalidated.
    let doctor = matches!(cli.command, Command::Doctor(_));
    let loaded = if doctor {
        config::load_unvalidated(cli.config.as_deref(), &env)
    } else {
        config::load(cli.config.as_deref(), &env)
    };
    let daemon = matches!(cli.command, Command::Run(_) | Command::Serve(_));
    let format = loaded
        .as_ref()
        .map(|(config, _)| config.log.format)
        .unwrap_or_default();
    init_logging(daemon, format);
    if daemon && env.contains_key(config::LEGACY_LOG_FORMAT) {
        tracing::warn!(
            "{} is deprecated: use HERALD_LOG__FORMAT or log.format",
            config::LEGACY_LOG_FORMAT
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return error::Exit::Runtime.into();
        }
    };
    let url = cli.database_url.map(|url| (url, url_origin));
    let loaded = loaded.map(|(config, source)| Context::new(config, source, url));
    let result = runtime.block_on(run(cli.command, loaded));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: {}",
                database::redact_passwords(&one_line(&e.message))
            );
            e.exit.into()
        }
    }
}

/// The arguments, and the name of where `--database-url`'s value came from: the flag or
/// `DATABASE_URL`.
fn parse_arguments() -> Result<(Cli, &'static str), clap::Error> {
    let matches = Cli::command().try_get_matches()?;
    let origin = match matches.value_source("database_url") {
        Some(clap::parser::ValueSource::EnvVariable) => "DATABASE_URL",
        _ => "--database-url",
    };
    Ok((Cli::from_arg_matches(&matches)?, origin))
}

/// Runs `command`. Only `doctor` runs with a configuration that failed to load: it reports
/// that as one of its findings.
async fn run(command: Command, loaded: Result<Context, ConfigError>) -> Result<(), CliError> {
    if let Command::Roles(args) = &command {
        return roles(args);
    }
    let ctx = match loaded {
        Ok(ctx) => ctx,
        Err(e) => match command {
            Command::Doctor(args) => return doctor::run(Err(e), args).await,
            _ => return Err(e.into()),
        },
    };
    let ctx = &ctx;
    // Behind a transaction-mode pooler, every statement is unnamed and runs in a transaction.
    crate::set_transaction_pooling(ctx.listen_url().is_some());
    // `doctor` reports a bad URL as one of its findings.
    if !matches!(command, Command::Doctor(_)) {
        ctx.check_database_url()?;
    }
    match command {
        Command::Migrate => migrate(ctx).await,
        Command::Roles(args) => roles(&args),
        Command::Run(args) => run::run(ctx, args).await,
        Command::Serve(args) => serve::run(ctx, args).await,
        Command::Enqueue(args) => enqueue::run(ctx, args).await,
        Command::List(args) => notifications::list(ctx, args).await,
        Command::Show(args) => notifications::show(ctx, args).await,
        Command::Retry(args) => actions::retry(ctx, args).await,
        Command::Cancel(args) => actions::cancel(ctx, args).await,
        Command::Stats(args) => stats::run(ctx, args).await,
        Command::Explain(args) => explain::run(ctx, args).await,
        Command::Sweep(args) => sweep::run(ctx, args).await,
        Command::Endpoints(command) => endpoints::run(ctx, command).await,
        Command::Tokens(command) => tokens::run(ctx, command).await,
        Command::Doctor(args) => doctor::run(Ok(ctx), args).await,
        Command::Bench(args) => bench::run(ctx, args).await,
    }
}

async fn migrate(ctx: &Context) -> Result<(), CliError> {
    let pool = ctx.migration_pool().await?;
    let report = crate::migrate::migrate_and_grant(&pool).await?;
    run::record_payload_ceiling(&pool, ctx.config.limits.max_payload_bytes).await?;
    let (_, target) = database::parse_url(&ctx.database_url)?;
    outln!("migrations applied to database {:?}", target.database);
    for role in &report.created {
        outln!("created role {role}");
    }
    for role in &report.missing {
        outln!(
            "role {role} does not exist and this login may not create it: nothing granted to it; \
             a DBA can create every role with the SQL of `herald roles --sql`"
        );
    }
    if let Some(why) = &report.owner_not_transferred {
        outln!("herald's objects stay owned by this login: {why}");
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
struct RolesArgs {
    /// Print the idempotent SQL that creates herald's group roles.
    #[arg(long)]
    sql: bool,
}

fn roles(args: &RolesArgs) -> Result<(), CliError> {
    if !args.sql {
        return Err(CliError::usage(
            "herald roles: give --sql to print the SQL that creates herald's database roles",
        ));
    }
    output::emit(&crate::roles::roles_sql())
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings and errors, plus herald's own
/// info lines for the daemon: one per attempt), as text or, with `log.format = "json"`, one JSON
/// object per line with every field at the top level.
fn init_logging(daemon: bool, format: LogFormat) {
    // One-shot commands keep stderr for their own error line: sqlx's slow-statement warnings
    // (a bulk statement of `herald bench` or a long sweep batch) are not the user's concern.
    let default = if daemon {
        "warn,herald=info"
    } else {
        "warn,sqlx::query=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// The most characters of a user's value that an error line quotes.
const ECHO_CHARS: usize = 64;

/// `text` cut to its first [`ECHO_CHARS`] characters, then `…`.
pub(crate) fn elide(text: &str) -> String {
    match text.char_indices().nth(ECHO_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Clap quotes the offending value or argument whole ("invalid value '<20 KB of JSON>' for
/// '--payload `<JSON>`'"); the line quotes a short prefix instead.
fn elide_echoes(e: &clap::Error, line: String) -> String {
    use clap::error::{ContextKind, ContextValue};
    let mut line = line;
    for kind in [
        ContextKind::InvalidValue,
        ContextKind::InvalidArg,
        ContextKind::InvalidSubcommand,
    ] {
        if let Some(ContextValue::String(value)) = e.get(kind)
            && value.chars().count() > ECHO_CHARS
        {
            line = line.replace(value.as_str(), &elide(value));
        }
    }
    line
}

/// Folds a multi-line message (clap's errors carry usage and tips) into its first paragraph on
/// one line.
fn one_line(text: &str) -> String {
    text.lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn clap_errors_quote_a_short_prefix_of_the_value() {
        let long = format!("--limit={}", "9".repeat(20_000));
        let e = Cli::try_parse_from(["herald", "list", long.as_str()]).unwrap_err();
        let line = elide_echoes(&e, one_line(&e.render().to_string()));
        assert!(line.contains(&format!("'{}…'", "9".repeat(64))), "{line}");
        assert!(line.len() < 300, "{line}");
        assert_eq!(elide("short"), "short");
        assert_eq!(elide(&"é".repeat(65)), format!("{}…", "é".repeat(64)));
    }

    #[test]
    fn clap_errors_fold_to_one_line() {
        let text = "error: the following required arguments were not provided:\n  --user <USER>\n\nUsage: herald enqueue --user <USER>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(text),
            "error: the following required arguments were not provided: --user <USER>"
        );
    }
}
