//! `herald doctor`: every check an operator would otherwise run by hand before starting (or
//! when a daemon misbehaves), in one table: the configuration, the database and its
//! migrations (and, when `database.listen_url` is set, the direct connection beside the
//! pooler), SMTP, each email template, the sweeper's schedule.
//!
//! Invariants: every check runs, whatever the others found (a check that needs what an earlier
//! one could not provide is `skipped`, not silently dropped); nothing is written anywhere; exit
//! 0 when no check found a problem, else exit 1 with one line on stderr naming the checks that
//! did. The configuration is taken unvalidated, so a broken key is reported beside everything
//! else instead of stopping the run.

use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::Context;
use super::error::CliError;
use super::output::{emit, print_json, table};
use crate::channel::email;
use crate::channel::templates::Templates;
use crate::config::ConfigError;
use crate::{database, store};

/// The longest the SMTP check waits (less when `smtp.timeout` is shorter).
const SMTP_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Fire times of the sweeper listed.
const NEXT_FIRES: usize = 3;

#[derive(Debug, Clone, Copy, Args)]
pub struct DoctorArgs {
    /// Print one JSON object: {"ok": bool, "checks": [{"check", "status", "detail"}]}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Problem,
    /// Not run: it needs what an earlier check could not provide.
    Skipped,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Problem => "problem",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Serialize)]
struct Finding {
    check: String,
    status: Status,
    detail: String,
}

fn finding(check: &str, status: Status, detail: impl Into<String>) -> Finding {
    Finding {
        check: check.to_owned(),
        status,
        detail: detail.into(),
    }
}

#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    checks: &'a [Finding],
}

pub async fn run(ctx: Result<&Context, ConfigError>, args: DoctorArgs) -> Result<(), CliError> {
    let findings = match ctx {
        Ok(ctx) => examine(ctx).await,
        Err(e) => {
            let why = "the configuration did not load";
            vec![
                finding("config", Status::Problem, e.to_string()),
                finding("database", Status::Skipped, why),
                finding("migrations", Status::Skipped, why),
                finding("smtp", Status::Skipped, why),
                finding("templates", Status::Skipped, why),
                finding("cron", Status::Skipped, why),
            ]
        }
    };
    let problems: Vec<&str> = findings
        .iter()
        .filter(|f| f.status == Status::Problem)
        .map(|f| f.check.as_str())
        .collect();
    if args.json {
        print_json(&Report {
            ok: problems.is_empty(),
            checks: &findings,
        })?;
    } else {
        let rows: Vec<Vec<String>> = findings
            .iter()
            .map(|f| vec![f.check.clone(), f.status.as_str().into(), f.detail.clone()])
            .collect();
        emit(&table(&["CHECK", "STATUS", "DETAIL"], &rows))?;
    }
    match problems.len() {
        0 => Ok(()),
        n => Err(CliError::runtime(format!(
            "doctor found {n} problem{}: {}",
            if n == 1 { "" } else { "s" },
            problems.join(", ")
        ))),
    }
}

async fn examine(ctx: &Context) -> Vec<Finding> {
    let config = &ctx.config;
    let mut findings = vec![match config.validate() {
        Ok(()) => finding("config", Status::Ok, format!("from {}", ctx.source)),
        Err(e) => finding("config", Status::Problem, e.to_string()),
    }];
    findings.extend(check_database(ctx).await);
    findings.extend(check_listen_url(ctx).await);
    findings.push(check_smtp(config).await);
    findings.extend(check_templates(&config.templates.dir));
    findings.push(check_schedule(&config.sweeper.schedule));
    findings
}

/// The `database` and `migrations` rows.
async fn check_database(ctx: &Context) -> Vec<Finding> {
    // Two connections whatever `database.max_connections` says: it may be the invalid key.
    let pool = match database::connect(&ctx.database_url, 2, false).await {
        Ok(pool) => pool,
        Err(e) => {
            return vec![
                finding("database", Status::Problem, e.to_string()),
                finding("migrations", Status::Skipped, "no database connection"),
            ];
        }
    };
    let (_, target) = match database::parse_url(&ctx.database_url) {
        Ok(parsed) => parsed,
        Err(e) => return vec![finding("database", Status::Problem, e.to_string())],
    };
    let checked = async {
        let mut conn = pool.acquire().await?;
        let version = store::health::server_version(&mut conn).await?;
        let status = crate::migrate::status(&mut conn).await?;
        Ok::<_, sqlx::Error>((version, status))
    }
    .await;
    pool.close().await;
    let (version, status) = match checked {
        Ok(found) => found,
        Err(e) => {
            return vec![
                finding("database", Status::Problem, database::reason_of(&e)),
                finding("migrations", Status::Skipped, "no database connection"),
            ];
        }
    };
    let database = finding(
        "database",
        Status::Ok,
        format!(
            "PostgreSQL {} at {}:{}, database {:?}",
            version.split_whitespace().next().unwrap_or(&version),
            target.host,
            target.port,
            target.database
        ),
    );
    let total = status.applied + status.pending.len();
    let migrations = if !status.pending.is_empty() {
        finding(
            "migrations",
            Status::Problem,
            format!(
                "{} of {total} applied; pending: {} (run `herald migrate`)",
                status.applied,
                status.pending.join(", ")
            ),
        )
    } else if !status.unknown.is_empty() {
        let versions: Vec<String> = status.unknown.iter().map(i64::to_string).collect();
        finding(
            "migrations",
            Status::Problem,
            format!(
                "the database has migrations this herald does not know ({}): a newer herald migrated it; upgrade this one",
                versions.join(", ")
            ),
        )
    } else {
        finding(
            "migrations",
            Status::Ok,
            format!("{} of {total} applied", status.applied),
        )
    };
    vec![database, migrations]
}

/// The `listen_url` row, only when `database.listen_url` is set: the direct connection that
/// LISTEN and migrations use while `database.url` goes through a transaction-mode pooler. It
/// must answer, and reach the same database as the URL.
async fn check_listen_url(ctx: &Context) -> Option<Finding> {
    const CHECK: &str = "listen_url";
    let url = ctx.listen_url()?;
    let direct = match database::connect(url, 1, false).await {
        Ok(pool) => pool,
        Err(e) => return Some(finding(CHECK, Status::Problem, e.to_string())),
    };
    let (_, target) = database::parse_url(url).ok()?;
    let reached =
        async { store::health::database_identity(&mut *direct.acquire().await?).await }.await;
    direct.close().await;
    let reached = match reached {
        Ok(name) => name,
        Err(e) => return Some(finding(CHECK, Status::Problem, database::reason_of(&e))),
    };
    // What the URL reaches (through the pooler); the `database` row reports a failure.
    let pooled = match database::connect(&ctx.database_url, 1, false).await {
        Ok(pool) => {
            let name =
                async { store::health::database_identity(&mut *pool.acquire().await?).await }
                    .await
                    .ok();
            pool.close().await;
            name
        }
        Err(_) => None,
    };
    if let Some(pooled) = pooled.filter(|pooled| *pooled != reached) {
        return Some(finding(
            CHECK,
            Status::Problem,
            format!(
                "reaches {reached}, but the database URL reaches {pooled}: both must name the same database"
            ),
        ));
    }
    Some(finding(
        CHECK,
        Status::Ok,
        format!(
            "transaction pooling: LISTEN and migrations connect directly to {}:{}, database {:?}; other statements are unnamed, each in a transaction",
            target.host, target.port, reached.name
        ),
    ))
}

async fn check_smtp(config: &crate::config::Config) -> Finding {
    let smtp = &config.smtp;
    let within = smtp.timeout.min(SMTP_CHECK_TIMEOUT);
    match email::check_connection(smtp, within).await {
        Ok(()) => finding(
            "smtp",
            Status::Ok,
            format!(
                "{}:{} answered (tls: {}{})",
                smtp.host,
                smtp.port,
                format!("{:?}", smtp.tls).to_lowercase(),
                if smtp.username.is_some() {
                    ", authenticated"
                } else {
                    ""
                }
            ),
        ),
        Err(e) => finding(
            "smtp",
            Status::Problem,
            format!("{}:{}: {e}", smtp.host, smtp.port),
        ),
    }
}

/// One row per template type (`template <type>`), or one `templates` row when none could be
/// read.
fn check_templates(dir: &std::path::Path) -> Vec<Finding> {
    let (templates, loaded) = match Templates::load(dir) {
        Ok(found) => found,
        Err(e) => return vec![finding("templates", Status::Problem, e.to_string())],
    };
    if loaded.is_empty() {
        return vec![finding(
            "templates",
            Status::Ok,
            format!(
                "none in {}: email notifications would go dead (fine if you send webhooks only)",
                dir.display()
            ),
        )];
    }
    loaded
        .iter()
        .map(|t| {
            let check = format!("template {}", t.type_);
            match templates.check(&t.type_) {
                Ok(found) => {
                    let fields = if found.payload_fields.is_empty() {
                        "reads no payload field".to_owned()
                    } else {
                        format!("reads payload fields {}", found.payload_fields.join(", "))
                    };
                    let empty = match found.empty_payload_error {
                        None => "renders with an empty payload".to_owned(),
                        Some(e) => format!("an empty payload fails: {e}"),
                    };
                    finding(&check, Status::Ok, format!("{fields}; {empty}"))
                }
                Err(e) => finding(&check, Status::Problem, e.to_string()),
            }
        })
        .collect()
}

fn check_schedule(expression: &str) -> Finding {
    match crate::config::schedule::parse(expression) {
        Ok(schedule) => {
            let next: Vec<String> = crate::config::schedule::next_fires(&schedule, NEXT_FIRES)
                .iter()
                .map(|t| super::output::time(*t))
                .collect();
            finding(
                "cron",
                Status::Ok,
                format!(
                    "sweeper.schedule {expression:?} fires next at {}",
                    next.join(", ")
                ),
            )
        }
        Err(e) => finding("cron", Status::Problem, e.to_string()),
    }
}
