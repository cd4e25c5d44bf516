//! Shared helpers: migrated test databases, running the `herald` binary, small queries.

use std::process::Stdio;

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// Applies herald's schema to a fresh test database.
pub async fn migrated(pool: &PgPool) {
    herald::migrate(pool)
        .await
        .expect("herald migrations apply");
}

/// A URL for the same server as `DATABASE_URL`, pointing at `database`.
pub fn url_for(database: &str) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let mut url = url::Url::parse(&base).expect("DATABASE_URL is a URL");
    url.set_path(database);
    url.to_string()
}

/// The URL of the database behind `pool`.
pub fn url_of(pool: &PgPool) -> String {
    let database = pool
        .connect_options()
        .get_database()
        .expect("test pools name a database")
        .to_owned();
    url_for(&database)
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
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

/// Runs `herald` with `args` and extra environment, outside any config file.
pub async fn herald_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("HERALD_CONFIG")
        .env_remove("RUST_LOG")
        // Away from config/herald.toml, so the built-in defaults apply.
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().await.expect("the herald binary runs");
    Run {
        code: out
            .status
            .code()
            .expect("herald exits rather than dying of a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// Runs `herald --database-url <pool's database> args…`.
pub async fn herald(pool: &PgPool, args: &[&str]) -> Run {
    herald_with(pool, args, &[]).await
}

pub async fn herald_with(pool: &PgPool, args: &[&str], env: &[(&str, &str)]) -> Run {
    let url = url_of(pool);
    let mut all = vec!["--database-url", url.as_str()];
    all.extend_from_slice(args);
    herald_env(&all, env).await
}

pub async fn count_notifications(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from herald.notifications")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Registers an enabled endpoint of `tenant` directly, as `endpoints add` would.
pub async fn endpoint(pool: &PgPool, tenant: &str) -> Uuid {
    let id = Uuid::now_v7();
    herald::store::endpoints::insert(
        &mut pool.acquire().await.unwrap(),
        id,
        tenant,
        "https://hooks.example.com/herald",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
    .await
    .unwrap();
    id
}

pub async fn disable_endpoint(pool: &PgPool, id: Uuid, reason: &str) {
    sqlx::query(
        "update herald.webhook_endpoints set enabled = false, disabled_reason = $2 where id = $1",
    )
    .bind(id)
    .bind(reason)
    .execute(pool)
    .await
    .unwrap();
}
