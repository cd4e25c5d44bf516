//! The SSRF guard at delivery: targets that are not global are refused before any connection
//! is opened, whether the URL names them by IP literal or by a host name that resolves to them.

use herald::Notification;
use sqlx::PgPool;

use crate::support::daemon::{env_with, run_until_idle};
use crate::support::receiver::Receiver;
use crate::support::{endpoint_at, migrated};

/// Enqueues one webhook to each of `urls`, drains them with the default guard (no allowed
/// networks), asserts that no connection reached `receiver`, and returns each notification's
/// `(state, attempts, last_error)` in the order of `urls`.
async fn delivered_with_the_default_guard(
    pool: &PgPool,
    receiver: &Receiver,
    urls: &[String],
) -> Vec<(String, i32, String)> {
    let mut ids = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let hook = endpoint_at(pool, "default", url).await;
        let n = Notification::webhook("u", "t", format!("b{i}"), hook).max_attempts(3);
        ids.push(herald::enqueue(pool, &n).await.unwrap().id());
    }
    let run = run_until_idle(pool, &env_with(&[("HERALD_WEBHOOK__ALLOWED_NETWORKS", "")])).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        receiver.connections(),
        0,
        "no connection reached the receiver"
    );
    let mut outcomes = Vec::new();
    for id in ids {
        outcomes.push(
            sqlx::query_as(
                "select state, attempts, last_error from herald.notifications where id = $1",
            )
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap(),
        );
    }
    outcomes
}

#[sqlx::test(migrations = false)]
async fn non_global_targets_are_refused_before_connecting(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let port = receiver.addr.port();
    let targets = [
        (format!("http://127.0.0.1:{port}/hook"), "loopback"),
        (format!("http://localhost:{port}/hook"), "loopback"),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/hook"),
            "127.0.0.1",
        ),
        (format!("http://[::1]:{port}/hook"), "loopback"),
        ("http://10.1.2.3/hook".to_string(), "private"),
        ("http://192.168.1.1/hook".to_string(), "private"),
        (
            "http://169.254.169.254/latest/meta-data".to_string(),
            "link-local",
        ),
        ("http://100.64.0.1/hook".to_string(), "CGNAT"),
        ("http://[fd00::1]/hook".to_string(), "unique-local"),
    ];
    let urls: Vec<String> = targets.iter().map(|(url, _)| url.clone()).collect();
    let outcomes = delivered_with_the_default_guard(&pool, &receiver, &urls).await;
    for ((state, attempts, error), (url, class)) in outcomes.iter().zip(&targets) {
        assert_eq!(
            (state.as_str(), *attempts),
            ("dead", 1),
            "{url}: refused at once, not retried"
        );
        assert!(
            error.starts_with("refused before connecting"),
            "{url}: {error}"
        );
        assert!(error.contains(class), "{url}: {error}");
    }
}

#[sqlx::test(migrations = false)]
async fn allowed_networks_open_the_guard(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint_at(
        &pool,
        "default",
        &format!("http://localhost:{}/hook", receiver.addr.port()),
    )
    .await;
    herald::enqueue(&pool, &Notification::webhook("u", "t", "b", hook))
        .await
        .unwrap();
    let run = run_until_idle(
        &pool,
        &env_with(&[("HERALD_WEBHOOK__ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")]),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(receiver.requests().len(), 1);
}

/// Host names from /etc/hosts (besides `localhost`) that map to a loopback or private address:
/// resolved by the system resolver like any DNS name, without DNS.
fn private_names_from_the_hosts_file() -> Vec<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let ip: std::net::IpAddr = fields.next()?.parse().ok()?;
            herald::net::ssrf::non_global_class(ip)?;
            Some(fields.map(str::to_owned).collect::<Vec<_>>())
        })
        .flatten()
        .filter(|name| !name.starts_with("localhost") && !name.starts_with("ip6-"))
        .collect()
}

#[sqlx::test(migrations = false)]
async fn names_that_resolve_to_loopback_are_refused_however_spelled(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let port = receiver.addr.port();
    let mut names = vec!["LocalHost".to_owned()];
    names.extend(private_names_from_the_hosts_file());
    let urls: Vec<String> = names
        .iter()
        .map(|name| format!("http://{name}:{port}/hook"))
        .collect();
    let outcomes = delivered_with_the_default_guard(&pool, &receiver, &urls).await;
    for ((state, _, error), name) in outcomes.iter().zip(&names) {
        assert_eq!(state, "dead", "{name}");
        assert!(
            error.contains("resolves only to forbidden addresses"),
            "{name}: {error}"
        );
    }
}
