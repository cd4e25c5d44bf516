//! Running `herald run` against a test database: to idleness, or in the background to be
//! watched and signalled.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{Cli, Run};
use crate::db::url_of;
use crate::scrape::free_addr;

/// Settings that make the daemon quick to test against loopback receivers: loopback allowed
/// as a webhook target, short retries and polling, plain SMTP, and breakers that do not open
/// (tests of retries fail an endpoint many times in a row; the breaker's own tests set
/// `HERALD_BREAKER__FAILURES`).
pub const FAST: &[(&str, &str)] = &[
    ("HERALD_WEBHOOK__ALLOWED_NETWORKS", "127.0.0.0/8,::1/128"),
    (
        "HERALD_RETRY__SCHEDULE",
        "100ms,100ms,100ms,100ms,100ms,100ms,100ms",
    ),
    ("HERALD_RETRY__JITTER", "0"),
    ("HERALD_DISPATCHER__POLL_INTERVAL", "100ms"),
    ("HERALD_SMTP__TLS", "none"),
    ("HERALD_BREAKER__FAILURES", "1000"),
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

/// A daemon running in the background. Its output is read as it comes, so a chatty daemon
/// never blocks on a full pipe, and a test can watch its log.
pub struct Daemon {
    child: tokio::process::Child,
    stdout: tokio::task::JoinHandle<String>,
    stderr: tokio::task::JoinHandle<String>,
    log: Arc<Mutex<String>>,
}

fn drain(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = into.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
        into.lock().unwrap().clone()
    })
}

impl Daemon {
    pub fn spawn(pool: &PgPool, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_url(&url_of(pool), args, env)
    }

    /// Like [`Daemon::spawn`], serving the operator endpoints (`metrics.listen`) on a fresh
    /// loopback address, which it returns; `env` comes after `FAST` (see [`env_with`]).
    pub fn listening(pool: &PgPool, args: &[&str], env: &[(&str, &str)]) -> (Self, SocketAddr) {
        Self::listening_url(&url_of(pool), args, env)
    }

    pub fn listening_url(url: &str, args: &[&str], env: &[(&str, &str)]) -> (Self, SocketAddr) {
        let addr = free_addr();
        let listen = addr.to_string();
        let mut all = env_with(&[("HERALD_METRICS__LISTEN", &listen)]);
        all.extend_from_slice(env);
        (Self::spawn_url(url, args, &all), addr)
    }

    pub fn spawn_url(url: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_command(url, "run", args, env)
    }

    /// A long-running herald `command` (`run`, `serve`) against `url`.
    pub fn spawn_command(url: &str, command: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Cli::at(url)
            .arg(command)
            .args(args)
            .envs(env)
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("herald run starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stdout = drain(
            child.stdout.take().unwrap(),
            Arc::new(Mutex::new(String::new())),
        );
        let stderr = drain(child.stderr.take().unwrap(), log.clone());
        Daemon {
            child,
            stdout,
            stderr,
            log,
        }
    }

    /// The log (stderr) so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub async fn terminate(&self) {
        self.signal("TERM").await;
    }

    /// Sends the signal named `name` (`TERM`, `STOP`, `CONT`, …) with kill(1).
    pub async fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running");
        let status = tokio::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .await
            .unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// `kill -9`: the process dies at once, mid-delivery, without releasing its leases or
    /// recording outcomes. Returns once it is gone.
    pub async fn kill9(&mut self) {
        self.child.kill().await.expect("SIGKILL is delivered");
    }

    /// Waits for the exit; fails the test (showing the log) after `limit`.
    pub async fn wait(mut self, limit: Duration) -> Run {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!(
                    "herald run did not exit within {limit:?}; its log:\n{}",
                    self.log()
                );
            }
        };
        Run {
            code: status.code().unwrap_or(-1),
            stdout: self.stdout.await.unwrap_or_default(),
            stderr: self.stderr.await.unwrap_or_default(),
        }
    }
}
