//! The schema: herald's migrations beside a host application's own sqlx migrations, repeated
//! and concurrent runs, and the constraints that guard plain-SQL writers.

use sqlx::PgPool;
use sqlx::migrate::Migrator;

use crate::support::{At, Cli, Rows, finish, insert_raw, migrated};

/// A host application's migrations directory with the given files.
fn host_migrations(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in files {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    dir
}

#[sqlx::test(migrations = false)]
async fn herald_and_the_host_application_migrate_the_same_database(pool: PgPool) {
    let dir = host_migrations(&[(
        "20240101000000_orders.sql",
        "create table orders (id text primary key);",
    )]);
    Migrator::new(dir.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .expect("host migrates first");
    herald::migrate(&pool)
        .await
        .expect("herald migrates beside the host");

    std::fs::write(
        dir.path().join("20240201000000_customers.sql"),
        "create table customers (id text primary key);",
    )
    .unwrap();
    Migrator::new(dir.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .expect("host migrates again after herald");
    herald::migrate(&pool).await.expect("herald again");

    let host_versions: Vec<i64> =
        sqlx::query_scalar("select version from public._sqlx_migrations order by version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        host_versions,
        [20240101000000, 20240201000000],
        "the host's table holds only its own"
    );
    let herald_versions: Vec<i64> =
        sqlx::query_scalar("select version from herald._sqlx_migrations order by version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(herald_versions.first(), Some(&1));
}

#[sqlx::test(migrations = false)]
async fn concurrent_migrations_all_succeed(pool: PgPool) {
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { herald::migrate(&pool).await })
        })
        .collect();
    for run in runs {
        run.await
            .unwrap()
            .expect("every concurrent migrate succeeds");
    }
    let applied: i64 = sqlx::query_scalar("select count(*) from herald._sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied, herald_migration_count());
}

fn herald_migration_count() -> i64 {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count() as i64
}

#[sqlx::test(migrations = false)]
async fn finished_at_is_set_exactly_when_finished(pool: PgPool) {
    let pool = migrated(pool).await;
    let n = herald::Notification::email("u", "t", "b", "ann@example.com");
    herald::enqueue(&pool, &n).await.unwrap();
    let set = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query(sql).execute(&pool).await }
    };
    let finished = "notifications_finished_at_iff_finished";
    let delivered = set("update herald.intents set state = 'delivered'").await;
    assert_violates(delivered, finished, "finished without a finished_at");
    let stamped = set("update herald.intents set finished_at = now()").await;
    assert_violates(stamped, finished, "a finished_at while pending");
    assert_eq!(finish(&pool, Rows::All, "cancelled", At::Now).await, 1);
    // Running is a leased queue row, never a state of the intent; and a lease is whole.
    let running = "update herald.intents set state = 'running', finished_at = null";
    let leaseless = set(running).await;
    assert_violates(
        leaseless,
        "intents_state_check",
        "a running row needs a lease (a leased queue row is what running is)",
    );
    herald::enqueue(
        &pool,
        &herald::Notification::email("u", "t", "b2", "ann@example.com"),
    )
    .await
    .unwrap();
    let ownerless = set("update herald.queue set lease_token = gen_random_uuid()").await;
    assert_violates(ownerless, "queue_lease_complete", "a lease names its owner");
    let tokenless = set("update herald.queue set lease_owner = 'host:1:x'").await;
    assert_violates(tokenless, "queue_lease_complete", "an owner holds a token");
}

/// Asserts that `result` is the error of a statement that broke `constraint`.
fn assert_violates<T: std::fmt::Debug>(
    result: Result<T, sqlx::Error>,
    constraint: &str,
    why: &str,
) {
    let err = result.unwrap_err();
    assert!(err.to_string().contains(constraint), "{why}: {err}");
}

#[sqlx::test(migrations = false)]
async fn plain_sql_writers_meet_the_same_key_rules(pool: PgPool) {
    let pool = migrated(pool).await;
    let no_user = insert_raw(&pool, "", "email", "a@b.co").await;
    assert_violates(no_user, "notifications_user_id_valid", "an empty user_id");
}

#[sqlx::test(migrations = false)]
async fn a_webhook_destination_must_be_an_endpoint_id(pool: PgPool) {
    let pool = migrated(pool).await;
    let not_an_id = insert_raw(&pool, "u", "webhook", "not-a-uuid").await;
    let constraint = "notifications_webhook_destination_is_an_endpoint_id";
    assert_violates(
        not_an_id,
        constraint,
        "a destination that is no endpoint id",
    );
}

/// Upgrading from a herald whose library computed fingerprints itself (scheme v1, over its own
/// canonical JSON): migration 0002 recomputes every stored fingerprint with the database's
/// function, so replays of old notifications stay duplicates rather than turning into conflicts.
#[sqlx::test(migrations = false)]
async fn upgrading_recomputes_stored_fingerprints(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        "migrations/0001_create_herald.sql",
        dir.path().join("0001_create_herald.sql"),
    )
    .unwrap();
    let mut first_release = Migrator::new(dir.path()).await.unwrap();
    first_release.create_schema("herald");
    first_release.dangerous_set_table_name(herald::MIGRATIONS_TABLE);
    first_release.run(&pool).await.unwrap();
    // A row as the first release wrote it: SHA-256 of the v1 scheme over compact, key-sorted JSON.
    use sha2::Digest;
    let v1 =
        sha2::Sha256::digest(b"herald-fingerprint-v1\0email\0ann@example.com\0{\"a\":1,\"b\":[2]}");
    sqlx::query(
        "insert into herald.notifications
             (id, tenant, user_id, type, business_id, fingerprint, channel, destination,
              payload, max_attempts)
         values (gen_random_uuid(), 'default', 'u', 't', 'b', $1, 'email', 'ann@example.com',
                 '{\"b\": [2], \"a\": 1}', 8)",
    )
    .bind(&v1[..])
    .execute(&pool)
    .await
    .unwrap();
    let pool = migrated(pool).await;
    let stale: i64 = sqlx::query_scalar(
        "select count(*) from herald.notifications
          where fingerprint <> herald.fingerprint(channel, destination, payload)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stale, 0, "every stored fingerprint is recomputed");
    let replay = herald::Notification::email("u", "t", "b", "ann@example.com")
        .payload(serde_json::json!({"a": 1, "b": [2]}));
    let out = herald::enqueue(&pool, &replay).await.unwrap();
    assert!(
        !out.is_created(),
        "the old notification's replay is a duplicate: {out:?}"
    );
    let changed = herald::Notification::email("u", "t", "b", "ann@example.com")
        .payload(serde_json::json!({"a": 2}));
    assert!(matches!(
        herald::enqueue(&pool, &changed).await,
        Err(herald::EnqueueError::Conflict { .. })
    ));
}

/// Several `herald migrate` (or `herald run`) starting together against a database that does
/// not exist yet: one creates it, the others find it created, and all succeed.
#[tokio::test]
async fn concurrent_migrates_create_a_missing_database_once() {
    let name = format!("herald_test_{}", uuid::Uuid::new_v4().simple());
    let url = crate::support::url_for(&name);
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Cli::at(&url).arg("migrate").run().await })
        })
        .collect();
    let mut codes = Vec::new();
    for run in runs {
        let run = run.await.unwrap();
        codes.push((run.code, run.stderr));
    }
    <sqlx::Postgres as sqlx::migrate::MigrateDatabase>::force_drop_database(&url)
        .await
        .unwrap();
    assert_eq!(
        codes,
        vec![(0, String::new()); 4],
        "every concurrent migrate succeeds"
    );
}
