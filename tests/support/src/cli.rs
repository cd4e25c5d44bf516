//! The `herald` binary as a user runs it: [`Cli`] builds one invocation, [`Key`] the arguments
//! that name a notification's key, [`Run`] is what the run did.
//!
//! ```ignore
//! let key = Key::new("u", "t", "b");
//! let run = herald(&pool).enqueue(&key).args(&["--email", "ann@example.com"]).run().await;
//! ```

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::{Output, Stdio};

use serde_json::Value;
use sqlx::PgPool;

use crate::db::url_of;

/// `herald --database-url <the database behind pool>`: where most invocations start.
pub fn herald(pool: &PgPool) -> Cli {
    Cli::at(&url_of(pool))
}

/// One invocation of `herald`: its arguments and extra environment. It runs away from any
/// config file, without the test's own `DATABASE_URL`, `HERALD_CONFIG` or `RUST_LOG`, with
/// stdin closed. Arguments and values need not be UTF-8 (the hostile-input tests send some
/// that are not).
#[derive(Debug, Clone, Default)]
pub struct Cli {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl Cli {
    /// `herald`, no arguments yet (no database either: see [`Cli::at`] and [`herald`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// `herald --database-url <url>`.
    pub fn at(url: &str) -> Self {
        Self::new().args(&["--database-url", url])
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends `args` (a slice of `&str`, so `&["show", &id]` mixes literals and `String`s;
    /// [`Cli::arg`] takes one that is not UTF-8).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(OsString::from));
        self
    }

    /// `enqueue` and the arguments of `key`; the destination and the rest follow.
    pub fn enqueue(self, key: &Key) -> Self {
        self.arg("enqueue").args(&key.args())
    }

    /// `explain` and the arguments of `key`; the candidate's payload and destination follow.
    pub fn explain(self, key: &Key) -> Self {
        self.arg("explain").args(&key.args())
    }

    /// Sets one environment variable for the run (later settings win); the value need not be
    /// UTF-8.
    pub fn env(mut self, name: &str, value: impl AsRef<OsStr>) -> Self {
        self.env.push((name.into(), value.as_ref().to_owned()));
        self
    }

    /// Sets each of `vars`, in order (later settings win).
    pub fn envs(self, vars: &[(&str, &str)]) -> Self {
        vars.iter()
            .fold(self, |cli, (name, value)| cli.env(name, value))
    }

    /// The command, to spawn with its own pipes (see [`crate::daemon::Daemon`]).
    pub fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(binary());
        command
            .args(&self.args)
            .env_remove("DATABASE_URL")
            .env_remove("HERALD_CONFIG")
            .env_remove("RUST_LOG")
            // Away from config/herald.toml, so the built-in defaults apply.
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    /// Runs it to the end. The future holds its own command, so `run` may end a chain of
    /// builder calls on a temporary.
    pub fn run(&self) -> impl Future<Output = Run> + use<> {
        let mut command = self.command();
        async move {
            let out = command.output().await.expect("the herald binary runs");
            Run::from(out)
        }
    }
}

/// The `herald` binary of this package. Cargo names it in `CARGO_BIN_EXE_herald` when it runs
/// the package's tests; a test binary started by hand (in `target/<profile>/deps/`) finds it
/// in the directory above its own.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_herald") {
        return path.into();
    }
    let test = std::env::current_exe().expect("the test binary knows its path");
    let profile = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps");
    profile.join("herald")
}

/// A notification's key as `enqueue` and `explain` take it: `--user`, `--type`,
/// `--business-id`, and `--tenant` when one is given.
#[derive(Debug, Clone)]
pub struct Key {
    user: String,
    type_: String,
    business_id: String,
    tenant: Option<String>,
}

impl Key {
    pub fn new(
        user: impl Into<String>,
        type_: impl Into<String>,
        business_id: impl Into<String>,
    ) -> Self {
        Key {
            user: user.into(),
            type_: type_.into(),
            business_id: business_id.into(),
            tenant: None,
        }
    }

    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// `--user <user> --type <type> --business-id <business id> [--tenant <tenant>]`.
    pub fn args(&self) -> Vec<&str> {
        let mut args = vec![
            "--user",
            &self.user,
            "--type",
            &self.type_,
            "--business-id",
            &self.business_id,
        ];
        if let Some(tenant) = &self.tenant {
            args.extend(["--tenant", tenant]);
        }
        args
    }
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out
                .status
                .code()
                .expect("herald exits rather than dying of a signal"),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }

    /// Asserts a failure: the exit code, exactly one line on stderr containing `needle`, and
    /// nothing on stdout.
    pub fn assert_error(&self, code: i32, needle: &str) {
        assert_eq!(self.code, code, "{self:?}");
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "one line on stderr: {self:?}"
        );
        assert!(
            self.stderr.contains(needle),
            "stderr should mention {needle:?}: {self:?}"
        );
        assert!(!self.stderr.contains("panicked"), "{self:?}");
        assert_eq!(self.stdout, "", "{self:?}");
    }
}
