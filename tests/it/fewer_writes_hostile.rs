//! Migration 0007 (fewer writes) against hostile and unlucky input: rows a plain-SQL writer
//! stored before it with ids of another kind, sessions that set `herald.queues_itself`, windows
//! of a century, type names outside ASCII, enqueues that fail inside a caller's exception block.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use uuid::Uuid;

use crate::support::daemon::{Daemon, env_with};
use crate::support::db::{SECRET, migrated};
use crate::support::receiver::{Receiver, Reply};

/// The database as migrations before `upto` left it (e.g. "0007": 0001-0006).
async fn migrated_before(pool: &PgPool, upto: &str) {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir("migrations").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < upto {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    let mut old = Migrator::new(dir.path()).await.unwrap();
    old.create_schema("herald");
    old.dangerous_set_table_name(herald::MIGRATIONS_TABLE);
    old.run(pool).await.unwrap();
}

/// An endpoint as the schema before 0007 stores it (herald's own helpers expect the newest).
async fn old_schema_endpoint(pool: &PgPool, url: &str) -> Uuid {
    let endpoint = Uuid::now_v7();
    sqlx::query(
        "insert into herald.webhook_endpoints (id, tenant, url, secret) values ($1, 'default', $2, $3)",
    )
    .bind(endpoint)
    .bind(url)
    .bind(SECRET)
    .execute(pool)
    .await
    .unwrap();
    endpoint
}

/// A plain-SQL writer of release 0006 (the statement trigger queues it), with an id of its own
/// choosing: `gen_random_uuid()`, the obvious choice in PostgreSQL (the id had no default).
async fn legacy_v4_row(pool: &PgPool, business_id: &str, endpoint: Uuid) -> Uuid {
    sqlx::query_scalar(
        "insert into herald.intents (id, tenant, user_id, type, business_id, fingerprint,
             channel, destination, payload, max_attempts)
         values (gen_random_uuid(), 'default', 'u', 'legacy', $1,
                 herald.fingerprint('webhook', $2::text, '{}'), 'webhook', $2::text, '{}', 3)
         returning id",
    )
    .bind(business_id)
    .bind(endpoint)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A pending notification stored before 0007 with an id that is not a UUIDv7 is delivered once
/// and finishes: only inserts must carry a UUIDv7 (a CHECK, even NOT VALID, would refuse every
/// update of such a row, and the daemon would deliver it again and again).
#[sqlx::test(migrations = false)]
async fn a_legacy_pending_row_with_a_v4_id_is_delivered_once_and_finishes(pool: PgPool) {
    migrated_before(&pool, "0007").await;
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let endpoint = old_schema_endpoint(&pool, &receiver.url()).await;
    let legacy = legacy_v4_row(&pool, "legacy-v4", endpoint).await;
    assert_eq!(legacy.get_version_num(), 4);
    let pool = migrated(pool).await;

    let daemon = Daemon::spawn(
        &pool,
        &[],
        &env_with(&[
            ("HERALD_DISPATCHER__LEASE", "3s"),
            ("HERALD_WEBHOOK__TIMEOUT", "1s"),
            ("HERALD_SMTP__TIMEOUT", "1s"),
        ]),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    daemon.terminate().await;
    let log = daemon.log();
    let _ = daemon.wait(Duration::from_secs(30)).await;

    let state: String = sqlx::query_scalar("select state from herald.notifications where id = $1")
        .bind(legacy)
        .fetch_one(&pool)
        .await
        .unwrap();
    let sent = receiver.requests().len();
    assert!(
        state == "delivered" && sent == 1,
        "legacy v4 row: state {state}, delivered {sent} times; daemon log:\n{}",
        log.lines().take(12).collect::<Vec<_>>().join("\n")
    );
}

/// An operator can cancel such a row.
#[sqlx::test(migrations = false)]
async fn a_legacy_pending_row_with_a_v4_id_can_be_cancelled(pool: PgPool) {
    migrated_before(&pool, "0007").await;
    let endpoint = old_schema_endpoint(&pool, "https://example.com/h").await;
    let legacy = legacy_v4_row(&pool, "legacy-v4", endpoint).await;
    let pool = migrated(pool).await;
    let run = crate::support::cli::herald(&pool)
        .args(&["cancel", &legacy.to_string()])
        .run()
        .await;
    assert_eq!(run.code, 0, "herald cancel of a legacy v4 row: {run:?}");
}

/// The rescue of expired leases is one statement for a batch of them: a legacy row on its last
/// attempt among them goes dead with the others rescued (were its update refused, no expired
/// lease would ever be rescued again).
#[sqlx::test(migrations = false)]
async fn a_legacy_v4_row_going_dead_does_not_block_the_rescue_of_other_leases(pool: PgPool) {
    use crate::support::db::{At, lease};
    migrated_before(&pool, "0007").await;
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let endpoint = old_schema_endpoint(&pool, &receiver.url()).await;
    let legacy = legacy_v4_row(&pool, "legacy-v4", endpoint).await;
    sqlx::query("update herald.intents set max_attempts = 1 where id = $1")
        .bind(legacy)
        .execute(&pool)
        .await
        .unwrap();
    let pool = migrated(pool).await;
    // A normal notification enqueued after the upgrade.
    let (normal,): (Uuid,) =
        sqlx::query_as("select id from herald.enqueue('u', 'normal', 'n1', webhook => $1)")
            .bind(endpoint)
            .fetch_one(&pool)
            .await
            .unwrap();
    // A daemon that crashed held both leases; the legacy one was its last attempt.
    lease(
        &pool,
        legacy,
        "crashed",
        At::Ago("2 minutes"),
        At::Ago("90 seconds"),
    )
    .await;
    lease(
        &pool,
        normal,
        "crashed",
        At::Ago("2 minutes"),
        At::Ago("60 seconds"),
    )
    .await;

    let daemon = Daemon::spawn(&pool, &[], &env_with(&[]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut state = String::new();
    while tokio::time::Instant::now() < deadline {
        state = sqlx::query_scalar("select state from herald.notifications where id = $1")
            .bind(normal)
            .fetch_one(&pool)
            .await
            .unwrap();
        if state == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.terminate().await;
    let log = daemon.log();
    let _ = daemon.wait(Duration::from_secs(30)).await;
    let direct = herald::store::dispatch::rescue_expired(&mut pool.acquire().await.unwrap(), 1000)
        .await
        .map(|r| r.count);
    assert_eq!(
        state,
        "delivered",
        "the normal notification's expired lease was never rescued (the rescue statement, run \
         directly: {direct:?}); daemon log:\n{}",
        log.lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(4)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// `herald._uuid_v7_floor` of a time before 1970 is not below every
/// UUIDv7: to_hex of a negative millisecond count has 16 digits and `lpad(…, 12)` keeps its
/// first 12 (`ffff…`), so the bound jumps to near the top of the id space. Windows are allowed
/// up to 100 years; when every window is longer than ~56 years (e.g. `retention = "100y"`,
/// "keep everything"), each sweep (every 10 minutes by default) walks the whole primary key,
/// pending rows included, in one statement, where the finished_at index of 0006 read nothing.
#[sqlx::test(migrations = false)]
async fn the_sweep_bound_of_a_long_window_is_below_the_ids_of_now(pool: PgPool) {
    let pool = migrated(pool).await;
    let (long, now): (Uuid, Uuid) = sqlx::query_as(
        "select herald._uuid_v7_floor(now() - make_interval(secs => 100 * 365.25 * 86400)),
                herald._uuid_v7_floor(now())",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        long < now,
        "the floor of 100 years ago ({long}) is above the floor of now ({now}): the sweep reads every id"
    );
    // What a sweep with retention = 100y reads: every row, the pending ones too.
    sqlx::query("select herald.enqueue('u', 't', 'pending-now', email => 'a@b.co')")
        .execute(&pool)
        .await
        .unwrap();
    let in_range: i64 = sqlx::query_scalar(
        "select count(*) from herald.intents
         where id < herald._uuid_v7_floor(now() - make_interval(secs => 100 * 365.25 * 86400))",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        in_range, 0,
        "a row enqueued now is inside the 100-year sweep range"
    );
}

/// An enqueue that fails inside a caller's plpgsql EXCEPTION block (its
/// `herald.queues_itself = on` is rolled back with the block's subtransaction): a plain insert
/// in the handler, and one after the block, are still queued by the trigger.
#[sqlx::test(migrations = false)]
async fn an_enqueue_caught_in_an_exception_block_leaves_later_inserts_queued(pool: PgPool) {
    let pool = migrated(pool).await;
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("select herald.enqueue('u', 't', 'held', email => 'a@b.co')")
        .execute(&mut *holder)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "do $$
         begin
             begin
                 perform * from herald._enqueue_one_in_group('default', 'u', 't', 'held',
                     'a@b.co', null, '{}', null, 8, 65536, false);
                 raise exception 'the enqueue should have timed out';
             exception when lock_not_available then
                 raise notice 'queues_itself in handler: %',
                     current_setting('herald.queues_itself', true);
                 insert into herald.intents (tenant, user_id, type, business_id, fingerprint,
                     channel, destination, payload, max_attempts)
                 values ('default', 'u', 't', 'in-handler', decode(repeat('00', 32), 'hex'),
                         'email', 'a@b.co', '{}', 3);
             end;
             insert into herald.intents (tenant, user_id, type, business_id, fingerprint,
                 channel, destination, payload, max_attempts)
             values ('default', 'u', 't', 'after-block', decode(repeat('00', 32), 'hex'),
                     'email', 'a@b.co', '{}', 3);
         end $$",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let unqueued: Vec<String> = sqlx::query_scalar(
        "select i.business_id from herald.intents i left join herald.queue q on q.id = i.id
         where i.state = 'pending' and q.id is null order by 1",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert!(
        unqueued.is_empty(),
        "pending intents without a queue row: {unqueued:?}"
    );
    tx.rollback().await.unwrap();
    holder.rollback().await.unwrap();
}

/// A type's own window applies to its rows whatever their letters. Type names were lowercased twice, by
/// Rust (`str::to_lowercase`, for the configuration's keys) and by PostgreSQL (`lower(n.type)`,
/// under the database's LC_CTYPE), and the two disagree outside ASCII: Rust lowers 'İ' to
/// "i̇" (two code points), glibc to "i"; under LC_CTYPE=C PostgreSQL lowers no non-ASCII
/// letter at all. The type's own (longer) window is then ignored and its rows are swept after
/// the default window.
#[sqlx::test(migrations = false)]
async fn a_type_window_matches_its_rows_whatever_the_letters(pool: PgPool) {
    use crate::support::finished_rows;
    let pool = migrated(pool).await;
    finished_rows(&pool, 2, "İnvoice", "delivered", "2 days").await;
    let config = herald::config::SweeperConfig {
        retention: Duration::from_secs(86400),
        retention_by_type: [("İnvoice".to_string(), Duration::from_secs(3650 * 86400))]
            .into_iter()
            .collect(),
        ..herald::config::SweeperConfig::default()
    };
    assert_eq!(
        herald::sweeper::dry_run(&pool, &config).await.unwrap(),
        0,
        "rows of type İnvoice (kept 10 years by their own window) would be swept after 1 day"
    );
}

/// `herald.queues_itself` is an ordinary user-settable placeholder: set by hand it must not
/// make herald's own batch entry points skip the queue. A login with only
/// `herald_enqueue` (or a session/role/database default, a pooler's connect options) that has
/// it on makes herald's own batch API, `herald.enqueue_many`, insert pending intents with no
/// queue row: no daemon ever claims them, the key is held forever (a replay is a "duplicate",
/// pending), and the sweeper never frees it.
#[sqlx::test(migrations = false)]
async fn an_enqueue_many_caller_cannot_leave_its_intents_unqueued(pool: PgPool) {
    use crate::support::logins::Login;
    let pool = migrated(pool).await;
    let app = Login::create(&pool, Some("herald_enqueue")).await;
    let app_pool = app.pool().await;
    let mut conn = app_pool.acquire().await.unwrap();
    sqlx::query("set herald.queues_itself = on")
        .execute(&mut *conn)
        .await
        .unwrap();
    let (id, status): (Uuid, String) = sqlx::query_as(
        "select id, status from herald.enqueue_many(
             '[{\"user_id\": \"u\", \"type\": \"t\", \"business_id\": \"batch\", \"email\": \"a@b.co\"}]')",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(status, "created");
    // The same through the group commit's function.
    let (grouped,): (Uuid,) = sqlx::query_as(
        "select id from herald._enqueue_group(
             '[{\"user_id\": \"u\", \"type\": \"t\", \"business_id\": \"group\", \"email\": \"a@b.co\"}]',
             65536, false)",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    app_pool.close().await;
    let unqueued: Vec<Uuid> = sqlx::query_scalar(
        "select i.id from herald.intents i left join herald.queue q on q.id = i.id
         where i.state = 'pending' and q.id is null and i.id = any($1) order by i.id",
    )
    .bind(vec![id, grouped])
    .fetch_all(&pool)
    .await
    .unwrap();
    app.drop(&pool).await;
    assert!(
        unqueued.is_empty(),
        "pending intents that no daemon will ever claim: {unqueued:?}"
    );
}
