//! Fair delivery: one destination's (or one tenant's) backlog never makes everyone else wait.
//! A real `herald run` daemon delivers to real loopback receivers; the tests assert on the
//! ORDER in which requests arrive and on COUNTS at a given arrival, never on how long anything
//! took. Each receiver stamps a request as it arrives (under the lock that records it), so "how
//! many of X had arrived when Y's last one did" is read off the stamps, not sampled by a poll.
//!
//! - [`a_healthy_endpoint_is_not_starved_by_a_slow_ones_backlog`]: 160 notifications to a slow
//!   endpoint S (each answered after 1 s), enqueued first, then 40 to a healthy endpoint H of the
//!   same tenant; 16 workers. H's 40 all arrive before half of S's 160 have been sent. It proves
//!   that the dispatcher shares its workers among due destinations: S can hold at most what its
//!   share gives it, and H is served in claims made while S's deliveries are in flight. A
//!   dispatcher that claims strictly oldest-first puts every worker on S for the whole backlog
//!   (ten rounds of 1 s) and sends H's first request only after all 160 of S's.
//! - [`a_trickle_tenant_is_not_starved_by_a_burst_tenant`]: tenant A has 600 notifications
//!   over 40 endpoints (each answering in 0.2 s) and the daemon is busy with them; then tenant B
//!   enqueues 20 to its own endpoint. B's 20 all arrive before half of A's 600 have been sent. It
//!   proves isolation between tenants, not just between destinations: B's one endpoint is one
//!   of 41 due destinations, so taking destinations in turn alone would give B one row in 41 and
//!   send B's 20th after about 800 of A's, i.e. after A's whole burst; B must get a share as a
//!   tenant. Oldest-first sends all 600 of A's before any of B's.
//!
//! Neither test drains the slow side: once the observation is made, the daemon is stopped
//! (SIGTERM, which lets the deliveries in flight finish).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use herald::Notification;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::daemon::{Daemon, env_with};
use crate::support::receiver::{Receiver, Reply};
use crate::support::{herald, migrated};

const LOOPBACK: &str = "127.0.0.1/32";

/// Registers a webhook endpoint of `tenant` with `herald endpoints add`, as an operator would.
async fn add_endpoint(pool: &PgPool, tenant: &str, url: &str) -> Uuid {
    let run = herald(pool)
        .args(&[
            "endpoints",
            "add",
            "--url",
            url,
            "--tenant",
            tenant,
            "--json",
        ])
        .env("HERALD_WEBHOOK__ALLOWED_NETWORKS", LOOPBACK)
        .run()
        .await;
    assert_eq!(run.code, 0, "endpoints add {url}: {run:?}");
    run.json()["id"]
        .as_str()
        .expect("endpoints add --json prints the id")
        .parse()
        .expect("the id is a UUID")
}

/// Enqueues `n` webhook notifications of `tenant` to `hook`, in one transaction (so they share
/// one `run_at`, later than anything enqueued before the call).
async fn enqueue(pool: &PgPool, tenant: &str, hook: Uuid, label: &str, n: usize) {
    let batch: Vec<Notification> = (0..n)
        .map(|i| {
            Notification::webhook(
                format!("user-{i}"),
                "fairness",
                format!("{label}-{i}"),
                hook,
            )
            .tenant(tenant)
            .payload(json!({"i": i}))
        })
        .collect();
    herald::enqueue_many(pool, &batch).await.unwrap();
}

/// The daemon under test: loopback targets allowed, `workers` concurrent deliveries, running
/// until stopped.
fn daemon(pool: &PgPool, workers: &str) -> Daemon {
    let env = env_with(&[("HERALD_WEBHOOK__ALLOWED_NETWORKS", LOOPBACK)]);
    Daemon::spawn(pool, &["--workers", workers], &env)
}

/// Stops the daemon (SIGTERM: in-flight deliveries finish, nothing new is claimed) and checks
/// it exits cleanly.
async fn stop(daemon: Daemon) {
    daemon.terminate().await;
    let run = daemon.wait(Duration::from_secs(60)).await;
    assert_eq!(run.code, 0, "the daemon stops cleanly on SIGTERM: {run:?}");
}

/// Distinct notifications (by `webhook-id`) that reached `receivers` at or before `moment`;
/// all of them when `moment` is `None`.
fn arrived(receivers: &[&Receiver], moment: Option<Instant>) -> usize {
    receivers
        .iter()
        .flat_map(|r| r.requests())
        .filter(|r| moment.is_none_or(|m| r.at <= m))
        .map(|r| r.header("webhook-id"))
        .collect::<HashSet<_>>()
        .len()
}

/// When the `n`th distinct notification reached `receiver`, if it has.
fn nth_arrival(receiver: &Receiver, n: usize) -> Option<Instant> {
    let mut seen = HashSet::new();
    receiver
        .requests()
        .into_iter()
        .find(|r| seen.insert(r.header("webhook-id")) && seen.len() == n)
        .map(|r| r.at)
}

/// Waits until `n` distinct notifications have reached `receiver`; returns when the `n`th
/// arrived. Generous (three minutes): on a dispatcher without fairness the wait is the other
/// side's whole backlog, and the failure should then be the counts, not a timeout. `progress`
/// describes the rest of the scene for a timeout's message.
async fn wait_for_arrivals(
    receiver: &Receiver,
    n: usize,
    what: &str,
    progress: impl Fn() -> String,
) -> Instant {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(at) = nth_arrival(receiver, n) {
            return at;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {n} of {what}'s notifications (arrived: {}; {})",
            arrived(&[receiver], None),
            progress()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrations = false)]
async fn a_healthy_endpoint_is_not_starved_by_a_slow_ones_backlog(pool: PgPool) {
    const SLOW: usize = 160;
    const HEALTHY: usize = 40;
    const WORKERS: &str = "16";
    let pool = migrated(pool).await;
    // S answers after 1 s, far longer than a claim and a loopback delivery to H take; every
    // request beyond the script (a retry, should there be one) is answered at once.
    let slow = Receiver::start(vec![Reply::status(200).after(Duration::from_secs(1)); SLOW]).await;
    let healthy = Receiver::start(vec![]).await;
    let s = add_endpoint(&pool, "default", &slow.url()).await;
    let h = add_endpoint(&pool, "default", &healthy.url()).await;
    // Two transactions: S's rows are strictly older than H's.
    enqueue(&pool, "default", s, "slow", SLOW).await;
    enqueue(&pool, "default", h, "healthy", HEALTHY).await;

    let daemon = daemon(&pool, WORKERS);
    let last_of_h = wait_for_arrivals(&healthy, HEALTHY, "H", || {
        format!("S had received {} of {SLOW}", arrived(&[&slow], None))
    })
    .await;
    let s_before = arrived(&[&slow], Some(last_of_h));
    // The scene was real: S is reachable and served too.
    slow.wait_for_requests(1).await;
    stop(daemon).await;

    assert!(
        s_before < SLOW / 2,
        "H's {HEALTHY}th request arrived after {s_before} of S's {SLOW} (S answers in 1 s, \
         {WORKERS} workers): the healthy endpoint waited behind the slow one's backlog; fair \
         delivery sends all of H's before half of S's"
    );
}

#[sqlx::test(migrations = false)]
async fn a_trickle_tenant_is_not_starved_by_a_burst_tenant(pool: PgPool) {
    const ENDPOINTS: usize = 40;
    const PER_ENDPOINT: usize = 15;
    const BURST: usize = ENDPOINTS * PER_ENDPOINT;
    const TRICKLE: usize = 20;
    const WORKERS: &str = "16";
    let pool = migrated(pool).await;

    let mut burst = Vec::with_capacity(ENDPOINTS);
    for _ in 0..ENDPOINTS {
        let script = vec![Reply::status(200).after(Duration::from_millis(200)); PER_ENDPOINT];
        burst.push(Receiver::start(script).await);
    }
    // Registered side by side (one `herald` process each), then A's backlog is enqueued.
    let urls: Vec<String> = burst.iter().map(Receiver::url).collect();
    let hooks = join_all(urls.iter().map(|url| add_endpoint(&pool, "a", url))).await;
    for (i, hook) in hooks.into_iter().enumerate() {
        enqueue(&pool, "a", hook, &format!("burst-{i}"), PER_ENDPOINT).await;
    }
    let burst: Vec<&Receiver> = burst.iter().collect();
    let trickle = Receiver::start(vec![]).await;
    let b = add_endpoint(&pool, "b", &trickle.url()).await;

    // The daemon is busy with A's burst when B's notifications come in.
    let daemon = daemon(&pool, WORKERS);
    crate::support::wait_until("A's first delivery", || arrived(&burst, None) > 0).await;
    let a_at_enqueue = arrived(&burst, None);
    enqueue(&pool, "b", b, "trickle", TRICKLE).await;

    let last_of_b = wait_for_arrivals(&trickle, TRICKLE, "B", || {
        format!("A had received {} of {BURST}", arrived(&burst, None))
    })
    .await;
    let a_before = arrived(&burst, Some(last_of_b));
    stop(daemon).await;

    assert!(
        a_before < BURST / 2,
        "B's {TRICKLE}th request arrived after {a_before} of A's {BURST} ({a_at_enqueue} of them \
         before B enqueued; A's {ENDPOINTS} endpoints answer in 0.2 s, {WORKERS} workers): the \
         trickle tenant waited behind the burst tenant's backlog; fair delivery sends all of B's \
         before half of A's"
    );
}
