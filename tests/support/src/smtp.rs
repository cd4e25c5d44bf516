//! A real SMTP server for the email tests: aiosmtpd (installed by `.ci/run`) running
//! `tests/support/smtp_sink.py`, plus a hostile server that never sends its greeting; and what
//! a daemon needs to send email to them: settings and a directory of templates.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

use crate::daemon::env_with;

/// `FAST` (see [`env_with`]) plus what sends email to the SMTP server on 127.0.0.1:`port`,
/// rendered from the templates in `templates`.
pub fn email_env<'a>(port: &'a str, templates: &'a Path) -> Vec<(&'a str, &'a str)> {
    env_with(&[
        ("HERALD_SMTP__HOST", "127.0.0.1"),
        ("HERALD_SMTP__PORT", port),
        ("HERALD_TEMPLATES__DIR", templates.to_str().unwrap()),
    ])
}

/// A directory of email templates holding `files`, each `(path below it, text)`:
/// `("welcome/subject.txt", "Hi {{ name }}")`.
pub fn templates(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
    dir
}

pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    _server: tokio::process::Child,
}

impl SmtpSink {
    /// `replies`: DATA answers in order, e.g. "451" then 250s, or "550,550".
    pub async fn start(replies: &str) -> Self {
        Self::start_with(replies, &[]).await
    }

    /// A sink that reads a `drop_ratio` share of messages whole and then hangs up without an
    /// answer (the sender cannot tell whether it was accepted); `seed` makes the choice repeatable.
    pub async fn dropping(drop_ratio: f64, seed: u64) -> Self {
        let ratio = drop_ratio.to_string();
        let seed = seed.to_string();
        Self::start_with("", &["--drop-ratio", &ratio, "--seed", &seed]).await
    }

    async fn start_with(replies: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp_sink.py");
        let mut server = tokio::process::Command::new("python3")
            .arg(script)
            .arg("--out")
            .arg(dir.path())
            .arg("--replies")
            .arg(replies)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs (aiosmtpd is installed by .ci/run)");
        let stdout = server.stdout.take().unwrap();
        let mut first = String::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            BufReader::new(stdout).read_line(&mut first),
        )
        .await
        .expect("the SMTP sink starts")
        .unwrap();
        let port = first.trim().parse().unwrap_or_else(|_| {
            panic!("SMTP sink printed {first:?}, not a port (is aiosmtpd installed?)")
        });
        SmtpSink {
            port,
            dir,
            _server: server,
        }
    }

    /// Accepted messages, raw, oldest first.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// DATA answers given so far, in order ("451", "250", …).
    pub fn answers(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("attempts.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl SmtpSink {
    /// Every message read, in order: the answer given ("250", "451", "550" or "drop") and the
    /// message's `Message-ID` header.
    pub fn received(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.dir.path().join("received.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(answer, id)| (answer.to_owned(), id.to_owned()))
            .collect()
    }
}

/// Accepts connections and never says a word: lettre's own timeout does not cover this.
pub async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

/// A received message as a mail reader sees it, decoded by Python's `email` package
/// (`tests/support/decode_email.py`): `subject`, `subject_legacy`, `to`, `from`,
/// `longest_header_line`.
pub async fn decode(raw: &str) -> serde_json::Value {
    use tokio::io::AsyncWriteExt;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("decode_email.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(raw.as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "decode_email.py failed on {raw}");
    serde_json::from_slice(&output.stdout).unwrap()
}
