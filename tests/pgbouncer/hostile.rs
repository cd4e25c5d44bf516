//! Transaction pooling against hostile and unlucky use: an application's own raw `BEGIN`, a
//! migration through the pooler, a `listen_url` of another database, other clients' session
//! settings on a shared server connection, and the pooler or its server connections killed
//! while the daemon delivers.

use std::collections::HashMap;
use std::time::Duration;

use herald::Notification;
use serde_json::json;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool, Row};

use super::{database_of, pooled, switch};
use crate::support::daemon::{Daemon, env_with};
use crate::support::pgbouncer::PgBouncer;
use crate::support::receiver::{Receiver, Reply};
use crate::support::{Cli, endpoint_at, migrated, url_for, url_of, wait_for_sql};

fn notification(business_id: &str) -> Notification {
    Notification::email("user-1", "order_shipped", business_id, "ann@example.com")
        .payload(json!({"order": business_id}))
}

async fn scalar_i64(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// The application's own table, in `public`.
async fn app_orders_table(direct: &PgPool) {
    sqlx::raw_sql("create table public.app_orders (id int)")
        .execute(direct)
        .await
        .unwrap();
}

/// After the application rolled back: neither its orders nor the notification were committed.
async fn assert_nothing_committed(direct: &PgPool) {
    let orders = scalar_i64(direct, "select count(*) from public.app_orders").await;
    let notifications = scalar_i64(direct, "select count(*) from herald.notifications").await;
    assert_eq!(
        (orders, notifications),
        (0, 0),
        "the application rolled back its transaction, yet {orders} order(s) and {notifications} notification(s) were committed: herald's COMMIT ended it"
    );
}

/// `show search_path` on a fresh client connection of the pooler (the next client of the
/// server connection herald used).
async fn search_path_of_next_client(url: &str) -> String {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let row = sqlx::raw_sql("show search_path")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let path: String = row.get(0);
    conn.close().await.ok();
    path
}

// ---------------------------------------------------------------------------------------------
// An application transaction opened with a raw BEGIN: refused, never committed by herald.
// ---------------------------------------------------------------------------------------------

/// sqlx counts only the transactions it opened. An application that opened its transaction
/// with plain SQL (`BEGIN`) on the connection it passes would get herald's own transaction and
/// its `COMMIT`, which would end the application's in the middle: herald refuses instead, with
/// a message saying what to do, and the application's rollback undoes everything.
#[sqlx::test(migrations = false)]
async fn enqueue_after_a_raw_begin_must_not_commit_the_applications_transaction(pool: PgPool) {
    let direct = migrated(pool).await;
    app_orders_table(&direct).await;
    let bouncer = PgBouncer::start(2).await;
    let _on = switch(true).await;
    let app = pooled(&bouncer, &direct, 2).await;
    let mut conn = app.acquire().await.unwrap();
    sqlx::raw_sql("begin; insert into public.app_orders values (1)")
        .execute(&mut *conn)
        .await
        .unwrap();
    let refused = herald::enqueue(&mut *conn, &notification("raw-begin-1"))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("plain BEGIN"), "{refused}");
    sqlx::raw_sql("insert into public.app_orders values (2); rollback")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    assert_nothing_committed(&direct).await;
}

/// The same with `enqueue_many`, with the switch *off* too: a batch always runs in a
/// transaction (or a savepoint of the caller's sqlx transaction).
#[sqlx::test(migrations = false)]
async fn enqueue_many_after_a_raw_begin_must_not_commit_the_applications_transaction(pool: PgPool) {
    let direct = migrated(pool).await;
    app_orders_table(&direct).await;
    let _off = switch(false).await;
    let mut conn = direct.acquire().await.unwrap();
    sqlx::raw_sql("begin; insert into public.app_orders values (1)")
        .execute(&mut *conn)
        .await
        .unwrap();
    let refused = herald::enqueue_many(&mut *conn, &[notification("raw-many-1")])
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("plain BEGIN"), "{refused}");
    sqlx::raw_sql("rollback").execute(&mut *conn).await.unwrap();
    drop(conn);
    assert_nothing_committed(&direct).await;
}

// ---------------------------------------------------------------------------------------------
// herald::migrate on a pooled pool, as at every start, leaves no session setting behind.
// ---------------------------------------------------------------------------------------------

/// `herald::migrate` reads the schema's status with `search_path` pinned for that transaction
/// only: through a transaction-mode pooler a session setting would stay on the server
/// connection for every later client of the pool, and their unqualified names would stop
/// resolving.
#[sqlx::test(migrations = false)]
async fn migrate_through_the_pooler_must_not_leave_session_state(pool: PgPool) {
    let direct = migrated(pool).await;
    app_orders_table(&direct).await;
    let bouncer = PgBouncer::start(1).await;
    let url = bouncer.url(&database_of(&direct));
    let before = search_path_of_next_client(&url).await;
    let _on = switch(true).await;
    let app = pooled(&bouncer, &direct, 2).await;
    let migrated = herald::migrate(&app).await;
    app.close().await;
    let after = search_path_of_next_client(&url).await;
    let mut next = PgConnection::connect(&url).await.unwrap();
    let orders = sqlx::raw_sql("select count(*) from app_orders")
        .fetch_one(&mut next)
        .await;
    assert!(
        after == before && orders.is_ok(),
        "herald::migrate through the pooler ({migrated:?}) left search_path {after:?} (was {before:?}) on the shared server connection; the next client's `select count(*) from app_orders`: {orders:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// listen_url naming another database than url: refused.
// ---------------------------------------------------------------------------------------------

/// `herald migrate` with `listen_url` naming database B and the URL (flag or DATABASE_URL)
/// naming A would migrate B and LISTEN there while claiming on A: it exits 2 naming both, and
/// creates nothing.
#[sqlx::test(migrations = false)]
async fn migrate_with_listen_url_on_another_database_is_refused(pool: PgPool) {
    let a = database_of(&pool);
    // Short: a test database's name is 63 bytes already, and PostgreSQL truncates longer ones.
    let b = format!("hl_{}", &a[a.len() - 20..]);
    let migrate = Cli::at(&url_of(&pool))
        .env("HERALD_DATABASE__LISTEN_URL", url_for(&b))
        .arg("migrate")
        .run()
        .await;
    let a_migrated: bool =
        sqlx::query_scalar("select pg_catalog.to_regclass('herald.notifications') is not null")
            .fetch_one(&pool)
            .await
            .unwrap();
    let b_exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&b)
            .fetch_one(&pool)
            .await
            .unwrap();
    if b_exists {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "drop database \"{b}\" with (force)"
        )))
        .execute(&pool)
        .await
        .unwrap();
    }
    assert_eq!(migrate.code, 2, "{migrate:?}");
    assert!(
        migrate.stderr.contains("database.listen_url") && migrate.stderr.contains("database.url"),
        "{migrate:?}"
    );
    assert!(
        !a_migrated && !b_exists,
        "nothing migrated, nothing created"
    );
}

// ---------------------------------------------------------------------------------------------
// Another client's session setting cannot silence herald's wake-ups.
// ---------------------------------------------------------------------------------------------

/// `herald.quiet` counts only when it names the current transaction: through a transaction-mode
/// pooler a client that sets it for its session leaves it on the server connection, and every
/// enqueue of other clients landing there would commit without its NOTIFY.
#[sqlx::test(migrations = false)]
async fn another_clients_session_setting_must_not_silence_wakeups(pool: PgPool) {
    let direct = migrated(pool).await;
    let bouncer = PgBouncer::start(1).await;
    let url = bouncer.url(&database_of(&direct));
    let mut listener = PgListener::connect_with(&direct).await.unwrap();
    listener.listen("herald_wake").await.unwrap();
    let enqueue = async |business_id: &str| {
        let mut client = PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "select * from herald.enqueue('u', 't', '{business_id}', email => 'ann@example.com')"
        )))
        .execute(&mut client)
        .await
        .unwrap();
        client.close().await.ok();
    };
    let woke = async |listener: &mut PgListener| {
        tokio::time::timeout(Duration::from_secs(3), listener.recv())
            .await
            .is_ok()
    };
    enqueue("quiet-control").await;
    assert!(woke(&mut listener).await, "control: an enqueue wakes");

    // Another client of the pool (the same login, as PgBouncer pools per database and user).
    let mut other = PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("set herald.quiet = on")
        .execute(&mut other)
        .await
        .unwrap();
    other.close().await.ok();
    enqueue("quiet-victim").await;
    assert!(
        woke(&mut listener).await,
        "an enqueue committed without its NOTIFY: another client's session `herald.quiet` was left on the shared server connection"
    );
}

// ---------------------------------------------------------------------------------------------
// Failure handling: PgBouncer killed and restarted under load, with a pool of one server
// connection and many workers.
// ---------------------------------------------------------------------------------------------

#[sqlx::test(migrations = false)]
async fn pgbouncer_killed_twice_mid_run_every_notification_delivered_once(pool: PgPool) {
    let direct = migrated(pool).await;
    let mut bouncer = PgBouncer::start(1).await;
    let receiver = Receiver::start(vec![]).await;
    receiver.reply_from_now_on(Reply::status(204).after(Duration::from_millis(100)));
    let hook = endpoint_at(&direct, "default", &receiver.url()).await;
    const N: usize = 400;
    let batch: Vec<_> = (0..N)
        .map(|i| Notification::webhook(format!("u-{}", i % 37), "t", format!("k-{i}"), hook))
        .collect();
    herald::enqueue_many(&direct, &batch).await.unwrap();
    let url = bouncer.url(&database_of(&direct));
    let listen_url = url_of(&direct);
    let env = env_with(&[
        ("HERALD_DATABASE__LISTEN_URL", listen_url.as_str()),
        ("HERALD_DISPATCHER__WORKERS", "32"),
        ("HERALD_DISPATCHER__BATCH_SIZE", "16"),
        ("HERALD_DISPATCHER__LEASE", "60s"),
    ]);
    let daemon = Daemon::spawn_url(&url, &[], &env);
    if tokio::time::timeout(Duration::from_secs(20), receiver.wait_for_requests(60))
        .await
        .is_err()
    {
        panic!(
            "{} request(s) in 20 s before any fault; daemon log:\n{}\nPgBouncer log:\n{}",
            receiver.requests().len(),
            daemon.log(),
            bouncer.log()
        );
    }
    bouncer.kill_and_restart(Duration::from_millis(500)).await;
    receiver.wait_for_requests(200).await;
    bouncer.kill_and_restart(Duration::from_millis(1500)).await;
    wait_for_sql(
        &direct,
        "every notification delivered",
        "select count(*) filter (where state = 'delivered') = 400 from herald.notifications",
    )
    .await;
    let log = daemon.log();
    daemon.terminate().await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in receiver.requests() {
        *seen.entry(r.header("webhook-id")).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    let felt = log.lines().filter(|l| l.contains("WARN")).count();
    assert!(
        felt > 1,
        "the faults were felt (warnings in the log):\n{log}"
    );
    assert_eq!(seen.len(), N, "every notification reached the receiver");
    assert!(
        twice.is_empty(),
        "delivered more than once though every answer was 204 and the outage was far shorter than the lease: {twice:?}\n{log}"
    );
}

/// Server connections behind the pooler terminated over and over while the daemon delivers
/// (`pg_terminate_backend` on every backend of the test database but the test's own): the
/// pooler drops the clients whose transactions were cut, herald retries.
#[sqlx::test(migrations = false)]
async fn server_connections_terminated_mid_run_every_notification_delivered_once(pool: PgPool) {
    let direct = migrated(pool).await;
    let bouncer = PgBouncer::start(2).await;
    let receiver = Receiver::start(vec![]).await;
    receiver.reply_from_now_on(Reply::status(204).after(Duration::from_millis(150)));
    let hook = endpoint_at(&direct, "default", &receiver.url()).await;
    const N: usize = 400;
    let batch: Vec<_> = (0..N)
        .map(|i| Notification::webhook(format!("u-{}", i % 37), "t", format!("k-{i}"), hook))
        .collect();
    herald::enqueue_many(&direct, &batch).await.unwrap();
    let url = bouncer.url(&database_of(&direct));
    let listen_url = url_of(&direct);
    let env = env_with(&[
        ("HERALD_DATABASE__LISTEN_URL", listen_url.as_str()),
        ("HERALD_DISPATCHER__WORKERS", "8"),
        ("HERALD_DISPATCHER__BATCH_SIZE", "4"),
        ("HERALD_DISPATCHER__LEASE", "60s"),
    ]);
    let daemon = Daemon::spawn_url(&url, &[], &env);
    receiver.wait_for_requests(20).await;
    let mut killed = 0_i64;
    for _ in 0..20 {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity
             where datname = current_database() and pid <> pg_backend_pid()
               and backend_type = 'client backend') t",
        )
        .fetch_one(&direct)
        .await
        .unwrap();
        killed += n;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at_end_of_faults = receiver.requests().len();
    wait_for_sql(
        &direct,
        "every notification delivered",
        "select count(*) filter (where state = 'delivered') = 400 from herald.notifications",
    )
    .await;
    let log = daemon.log();
    daemon.terminate().await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in receiver.requests() {
        *seen.entry(r.header("webhook-id")).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(killed > 0);
    assert!(
        at_end_of_faults < N,
        "the faults lasted past the last delivery: {at_end_of_faults}"
    );
    eprintln!(
        "terminated {killed} backends; {at_end_of_faults} requests when the faults ended; {} warnings",
        log.lines().filter(|l| l.contains("WARN")).count()
    );
    assert_eq!(seen.len(), N, "every notification reached the receiver");
    assert!(
        twice.is_empty(),
        "delivered more than once ({killed} backends terminated): {twice:?}\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// listen_url's password: never printed, whatever fails.
// ---------------------------------------------------------------------------------------------

#[sqlx::test(migrations = false)]
async fn listen_url_password_never_printed(pool: PgPool) {
    let direct = migrated(pool).await;
    let bouncer = PgBouncer::start(1).await;
    let url = bouncer.url(&database_of(&direct));
    let db = database_of(&direct);
    let bad = [
        format!("postgres://herald:CANARY-pw@127.0.0.1:1/{db}"),
        format!(
            "postgres://herald:CANARY-pw@127.0.0.1:{}/{db}",
            bouncer.port
        ),
        format!("postgres://herald:CANARY-pw@127.0.0.1:5432/{db}?sslmode=bogus"),
        format!("postgres://herald:CANARY%ZZpw@127.0.0.1:5432/{db}"),
        "postgres://herald:CANARY-pw@[::1/x".to_owned(),
    ];
    let mut leaks = Vec::new();
    for listen_url in &bad {
        for args in [
            &["migrate"][..],
            &["doctor"][..],
            &["run", "--until-idle"][..],
            &["list"][..],
        ] {
            let out = Cli::at(&url)
                .env("HERALD_DATABASE__LISTEN_URL", listen_url)
                .env("RUST_LOG", "debug")
                .args(args)
                .run()
                .await;
            if out.stdout.contains("CANARY") || out.stderr.contains("CANARY") {
                let line = out
                    .stdout
                    .lines()
                    .chain(out.stderr.lines())
                    .find(|l| l.contains("CANARY"))
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect::<String>();
                leaks.push(format!("{args:?} with {listen_url}: {line}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{leaks:#?}");
}

// ---------------------------------------------------------------------------------------------
// The operator endpoints and the sweeper through a pool of one server connection, while
// another client holds session state there (search_path = an attacker's schema).
// ---------------------------------------------------------------------------------------------

#[sqlx::test(migrations = false)]
async fn readyz_metrics_and_claims_through_a_hijacked_shared_server_connection(pool: PgPool) {
    use crate::support::scrape::{get, sample, wait_for_status};
    let direct = migrated(pool).await;
    // An attacker's overloads, as in tests/it/search_path.rs (a subset), in a schema of its own.
    sqlx::raw_sql(
        r#"create schema evil;
        create table evil.pwned (via text);
        create function evil.now() returns timestamptz language plpgsql as
          $$ begin insert into evil.pwned values ('now'); return pg_catalog.now(); end $$;
        create function evil.evil_eq(a text, b text) returns boolean language plpgsql as
          $$ begin insert into evil.pwned values ('operator ='); return a operator(pg_catalog.=) b; end $$;
        create operator evil.= (leftarg = text, rightarg = text, function = evil.evil_eq);
        create function evil.evil_cat(a text, b integer) returns text language plpgsql as
          $$ begin insert into evil.pwned values ('operator || text int'); return a operator(pg_catalog.||) b::text; end $$;
        create operator evil.|| (leftarg = text, rightarg = integer, function = evil.evil_cat);
        create function evil.evil_mul(a numeric, b integer) returns numeric language plpgsql as
          $$ begin insert into evil.pwned values ('operator *'); return a operator(pg_catalog.*) b::numeric; end $$;
        create operator evil.* (leftarg = numeric, rightarg = integer, function = evil.evil_mul);"#,
    )
    .execute(&direct)
    .await
    .unwrap();
    let bouncer = PgBouncer::start(1).await;
    let url = bouncer.url(&database_of(&direct));
    // Another client of the pool leaves its session path on the only server connection.
    let mut other = PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("set search_path = evil, pg_catalog, public")
        .execute(&mut other)
        .await
        .unwrap();
    other.close().await.ok();
    assert_eq!(
        search_path_of_next_client(&url).await,
        "evil, pg_catalog, public"
    );

    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint_at(&direct, "default", &receiver.url()).await;
    let batch: Vec<_> = (0..30)
        .map(|i| Notification::webhook("u", "t", format!("hijack-{i}"), hook))
        .collect();
    herald::enqueue_many(&direct, &batch).await.unwrap();
    let listen_url = url_of(&direct);
    let (daemon, addr) = Daemon::listening_url(
        &url,
        &[],
        &[
            ("HERALD_DATABASE__LISTEN_URL", listen_url.as_str()),
            ("HERALD_SWEEPER__SCHEDULE", "* * * * * *"),
            ("HERALD_METRICS__STATE_REFRESH", "1s"),
        ],
    );
    receiver.wait_for_requests(30).await;
    wait_for_status(addr, "/readyz", 200).await;
    let mut gauges = None;
    for _ in 0..20 {
        if let Some((200, body)) = get(addr, "/metrics").await {
            gauges = sample(
                &body,
                "herald_notifications{state=\"delivered\",channel=\"webhook\"}",
            );
            if gauges == Some(30.0) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // herald's own CLI too.
    for args in [
        &["stats", "--json"][..],
        &["list", "--json"][..],
        &["doctor"][..],
    ] {
        Cli::at(&url)
            .env("HERALD_DATABASE__LISTEN_URL", &listen_url)
            .args(args)
            .run()
            .await;
    }
    let log = daemon.log();
    daemon.terminate().await;
    let fired: Vec<String> = sqlx::query_scalar("select via from evil.pwned")
        .fetch_all(&direct)
        .await
        .unwrap();
    assert!(fired.is_empty(), "the attacker's overloads ran: {fired:?}");
    assert_eq!(
        gauges,
        Some(30.0),
        "state gauges through the pooler; log:\n{log}"
    );
}

/// The same with a database B that exists: the two connections reach different databases,
/// so `herald migrate` exits 2 naming both keys and migrates neither.
#[sqlx::test(migrations = false)]
async fn migrate_with_listen_url_on_another_existing_database_is_refused(pool: PgPool) {
    let a = database_of(&pool);
    let b = format!("hx_{}", &a[a.len() - 20..]);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database \"{b}\"")))
        .execute(&pool)
        .await
        .unwrap();
    let migrate = Cli::at(&url_of(&pool))
        .env("HERALD_DATABASE__LISTEN_URL", url_for(&b))
        .arg("migrate")
        .run()
        .await;
    let mut in_b = PgConnection::connect(&url_for(&b)).await.unwrap();
    let b_migrated: bool =
        sqlx::query_scalar("select to_regclass('herald.notifications') is not null")
            .fetch_one(&mut in_b)
            .await
            .unwrap();
    in_b.close().await.ok();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "drop database \"{b}\" with (force)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(migrate.code, 2, "{migrate:?}");
    let listen_reaches = format!("database.listen_url reaches database \"{b}\"");
    assert!(
        migrate.stderr.contains(&listen_reaches)
            && migrate.stderr.contains("but database.url reaches database"),
        "{migrate:?}"
    );
    assert!(!b_migrated, "nothing migrated");
}

/// `database.url` through the pooler without `listen_url`: herald's named statements collide
/// on the shared server connection, and the daemon's warnings say what to set.
#[sqlx::test(migrations = false)]
async fn without_listen_url_the_daemon_says_to_set_it(pool: PgPool) {
    let direct = migrated(pool).await;
    let bouncer = PgBouncer::start(1).await;
    for i in 0..20 {
        herald::enqueue(&direct, &notification(&format!("no-listen-url-{i}")))
            .await
            .unwrap();
    }
    let env = env_with(&[("HERALD_DISPATCHER__POLL_INTERVAL", "100ms")]);
    let mut daemon = Daemon::spawn_url(&bouncer.url(&database_of(&direct)), &[], &env);
    crate::support::wait_until("a warning naming database.listen_url", || {
        daemon
            .log()
            .contains("set database.listen_url to a direct connection")
    })
    .await;
    daemon.kill9().await;
}
