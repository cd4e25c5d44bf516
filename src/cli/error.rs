//! Exit codes and the one-line errors of the `herald` binary.
//!
//! 0 success (a duplicate enqueue is a success); 1 runtime failure; 2 usage or invalid input;
//! 3 idempotency conflict; 4 not found. Every error is one line on stderr; nothing is written.

use std::process::ExitCode;

use crate::config::ConfigError;
use crate::database::{ConnectError, reason_of};
use crate::error::EnqueueError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Runtime = 1,
    Usage = 2,
    Conflict = 3,
    NotFound = 4,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// A failed command: how to exit and the line to print.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            exit: Exit::Usage,
            message: message.into(),
        }
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        CliError {
            exit: Exit::Runtime,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        CliError {
            exit: Exit::NotFound,
            message: message.into(),
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::usage(e.to_string())
    }
}

impl From<ConnectError> for CliError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::InvalidUrl(_) => CliError::usage(e.to_string()),
            _ => CliError::runtime(e.to_string()),
        }
    }
}

impl From<sqlx::Error> for CliError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            // undefined_table / invalid_schema_name: the database was never migrated.
            if matches!(db.code().as_deref(), Some("42P01" | "3F000")) {
                return CliError::runtime(
                    "herald's schema is missing from this database: run `herald migrate` first",
                );
            }
        }
        CliError::runtime(format!("database error: {}", reason_of(&e)))
    }
}

impl From<sqlx::migrate::MigrateError> for CliError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        let line = e.to_string();
        CliError::runtime(format!(
            "migration failed: {}",
            line.lines().next().unwrap_or_default()
        ))
    }
}

impl From<EnqueueError> for CliError {
    fn from(e: EnqueueError) -> Self {
        match e {
            EnqueueError::Invalid { field, message } => {
                CliError::usage(format!("invalid {field} ({}): {message}", flag_of(field)))
            }
            EnqueueError::Conflict { .. } => CliError {
                exit: Exit::Conflict,
                message: e.to_string(),
            },
            EnqueueError::Database(db) => db.into(),
        }
    }
}

/// The command-line flag that sets a library field, for error messages.
fn flag_of(field: &str) -> &'static str {
    match field {
        "tenant" => "--tenant",
        "user_id" => "--user",
        "type" => "--type",
        "business_id" => "--business-id",
        "email" => "--email",
        "endpoint" => "--webhook",
        "payload" => "--payload",
        "max_attempts" => "--max-attempts",
        "run_at" => "--run-at",
        _ => "input",
    }
}
