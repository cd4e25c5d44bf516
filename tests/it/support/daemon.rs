//! Running `herald run` against a test database: to idleness, or in the background to be
//! signalled.

use std::process::Stdio;
use std::time::Duration;

use sqlx::PgPool;
use tokio::io::AsyncReadExt;

use super::{Run, command, url_of};

/// Settings that make the daemon quick to test against loopback receivers: loopback allowed
/// as a webhook target, short retries and polling.
pub const FAST: &[(&str, &str)] = &[
    ("HERALD_WEBHOOK__ALLOWED_NETWORKS", "127.0.0.0/8,::1/128"),
    (
        "HERALD_RETRY__SCHEDULE",
        "100ms,100ms,100ms,100ms,100ms,100ms,100ms",
    ),
    ("HERALD_RETRY__JITTER", "0"),
    ("HERALD_DISPATCHER__POLL_INTERVAL", "100ms"),
    ("HERALD_SMTP__TLS", "none"),
];

/// `FAST` plus `extra` (later entries win).
pub fn env_with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = FAST.to_vec();
    env.extend_from_slice(extra);
    env
}

/// `herald run --until-idle`; fails the test if it has not exited after two minutes.
pub async fn run_until_idle(pool: &PgPool, env: &[(&str, &str)]) -> Run {
    let daemon = Daemon::spawn(pool, &["--until-idle"], env);
    daemon.wait(Duration::from_secs(120)).await
}

/// A daemon running in the background; its output is read as it comes, so a chatty daemon
/// never blocks on a full pipe.
pub struct Daemon {
    child: tokio::process::Child,
    stdout: tokio::task::JoinHandle<String>,
    stderr: tokio::task::JoinHandle<String>,
}

fn drain(
    mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text).await;
        text
    })
}

impl Daemon {
    pub fn spawn(pool: &PgPool, args: &[&str], env: &[(&str, &str)]) -> Self {
        let url = url_of(pool);
        let mut all = vec!["--database-url", url.as_str(), "run"];
        all.extend_from_slice(args);
        let mut child = command(&all, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("herald run starts");
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        Daemon {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends SIGTERM.
    pub async fn terminate(&self) {
        let status = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit, reading its output; fails the test after `limit`.
    pub async fn wait(mut self, limit: Duration) -> Run {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = self.child.kill().await;
                let stderr = self.stderr.await.unwrap_or_default();
                panic!("herald run did not exit within {limit:?}; its log:\n{stderr}");
            }
        };
        Run {
            code: status.code().unwrap_or(-1),
            stdout: self.stdout.await.unwrap_or_default(),
            stderr: self.stderr.await.unwrap_or_default(),
        }
    }
}
