//! The schema: herald's migrations beside a host application's own sqlx migrations, repeated
//! and concurrent runs, and the constraints that guard plain-SQL writers.

use sqlx::PgPool;
use sqlx::migrate::Migrator;

use crate::support::migrated;

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
    migrated(&pool).await;
    let n = herald::Notification::email("u", "t", "b", "ann@example.com");
    herald::enqueue(&pool, &n).await.unwrap();
    let set = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query(sql).execute(&pool).await }
    };
    let err = set("update herald.notifications set state = 'delivered'")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("notifications_finished_at_iff_finished"),
        "{err}"
    );
    let err = set("update herald.notifications set finished_at = now()")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("notifications_finished_at_iff_finished"),
        "{err}"
    );
    set("update herald.notifications set state = 'cancelled', finished_at = now()")
        .await
        .unwrap();
    let err = set("update herald.notifications set state = 'running', finished_at = null")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("notifications_lease_iff_running"),
        "a running row needs a lease: {err}"
    );
}

#[sqlx::test(migrations = false)]
async fn plain_sql_writers_meet_the_same_key_rules(pool: PgPool) {
    migrated(&pool).await;
    let err = crate::support::insert_raw(&pool, "", "email", "a@b.co")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("notifications_user_id_valid"),
        "{err}"
    );
}

#[sqlx::test(migrations = false)]
async fn a_webhook_destination_must_be_an_endpoint_id(pool: PgPool) {
    migrated(&pool).await;
    let err = crate::support::insert_raw(&pool, "u", "webhook", "not-a-uuid")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("notifications_webhook_destination_is_an_endpoint_id"),
        "{err}"
    );
}
