//! A real PgBouncer in transaction mode in front of the server under test, for the tests of
//! herald behind a transaction pooler: Debian's `pgbouncer` (1.18 on Debian 12, installed by
//! `.ci/run`), started as the `postgres` user (it refuses to run as root) on a spare loopback
//! port, with its configuration, log and pid file in a directory of its own; killed on drop.
//!
//! Every database name is routed to the server of `DATABASE_URL` (a `*` entry), so the fresh
//! database of a `#[sqlx::test]` is reachable through it by name. Its pool is small on purpose
//! (`default_pool_size`), so that clients really share server connections: a statement that
//! relies on its session (a named prepared statement, a LISTEN) breaks as it would in
//! production.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use sqlx::Connection;

use crate::scrape::free_addr;

pub struct PgBouncer {
    pub port: u16,
    /// Killed on drop, before its directory goes.
    child: tokio::process::Child,
    dir: tempfile::TempDir,
}

impl PgBouncer {
    /// Starts PgBouncer with `pool_size` server connections per database and user, and waits
    /// until it answers a query. Fails the test when `pgbouncer` is not installed: `.ci/run`
    /// installs it (`apt-get install pgbouncer`).
    pub async fn start(pool_size: u32) -> Self {
        let binary = binary();
        let server = url::Url::parse(&std::env::var("DATABASE_URL").expect("DATABASE_URL is set"))
            .expect("DATABASE_URL is a URL");
        let (host, server_port) = (
            server.host_str().unwrap_or("127.0.0.1").to_owned(),
            server.port().unwrap_or(5432),
        );
        let user = match server.username() {
            "" => "postgres".to_owned(),
            user => user.to_owned(),
        };
        let dir = tempfile::Builder::new()
            .prefix("herald-pgbouncer-")
            .tempdir()
            .unwrap();
        let port = free_addr().port();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        let config = format!(
            "[databases]\n\
             * = host={host} port={server_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {auth}\n\
             pool_mode = transaction\n\
             default_pool_size = {pool_size}\n\
             min_pool_size = 0\n\
             reserve_pool_size = 0\n\
             max_client_conn = 500\n\
             ignore_startup_parameters = extra_float_digits\n\
             logfile = {log}\n\
             pidfile = {pid}\n",
            auth = path("userlist.txt"),
            log = path("pgbouncer.log"),
            pid = path("pgbouncer.pid"),
        );
        std::fs::write(dir.path().join("pgbouncer.ini"), config).unwrap();
        std::fs::write(
            dir.path().join("userlist.txt"),
            format!("\"{user}\" \"\"\n"),
        )
        .unwrap();
        let status = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres", dir.path().to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success(), "chown of PgBouncer's directory");
        let child = spawn(&binary, dir.path());
        let mut bouncer = PgBouncer { port, child, dir };
        bouncer.wait_until_ready(&user).await;
        bouncer
    }

    /// Kills PgBouncer (SIGKILL: every client and server connection drops at once), waits
    /// `down`, and starts it again on the same port with the same configuration.
    pub async fn kill_and_restart(&mut self, down: Duration) {
        self.child.kill().await.ok();
        let _ = self.child.wait().await;
        tokio::time::sleep(down).await;
        let _ = std::fs::remove_file(self.dir.path().join("pgbouncer.pid"));
        self.child = spawn(&binary(), self.dir.path());
        let user = url::Url::parse(&std::env::var("DATABASE_URL").unwrap())
            .map(|u| match u.username() {
                "" => "postgres".to_owned(),
                user => user.to_owned(),
            })
            .unwrap();
        self.wait_until_ready(&user).await;
    }

    /// The URL of `database` through PgBouncer.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// PgBouncer's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    async fn wait_until_ready(&mut self, user: &str) {
        let url = format!("postgres://{user}@127.0.0.1:{}/postgres", self.port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "pgbouncer exited at start ({status}); its log:\n{}",
                    self.log()
                );
            }
            // A query that reaches the server (a simple-protocol message: fine in any mode).
            let answered = async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                sqlx::raw_sql("select 1").execute(&mut conn).await?;
                conn.close().await
            }
            .await;
            if answered.is_ok() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "pgbouncer did not answer within 30 s ({answered:?}); its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// pgbouncer itself, as `postgres` (no `runuser` in between, so that killing the child kills
/// PgBouncer), with the configuration in `dir`.
fn spawn(binary: &std::path::Path, dir: &std::path::Path) -> tokio::process::Child {
    let (uid, gid) = (id_of("-u"), id_of("-g"));
    tokio::process::Command::new(binary)
        .arg(dir.join("pgbouncer.ini"))
        .uid(uid)
        .gid(gid)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
}

/// `pgbouncer` on the PATH, or where Debian puts it (`/usr/sbin`, not on every PATH).
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|candidate| candidate.is_file())
        .expect(
            "pgbouncer is not installed: the PgBouncer tests need it (`apt-get install pgbouncer`; `.ci/run` installs it)",
        )
}

/// The `postgres` user's uid (`-u`) or gid (`-g`).
fn id_of(flag: &str) -> u32 {
    let out = std::process::Command::new("id")
        .args([flag, "postgres"])
        .output()
        .unwrap();
    assert!(out.status.success(), "a `postgres` user exists");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
