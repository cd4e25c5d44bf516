//! The writes of a notification (migration 0007): an intent's terminal update touches no index,
//! so it can be heap-only; the sweep finds expired rows by their UUIDv7 id, and only by a bound;
//! a single enqueue writes its queue row itself, and every other insert still gets one.

use herald::config::SweeperConfig;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::support::{finished_rows, migrated};

/// The columns of `herald.intents` that change after enqueue.
const MUTABLE: [&str; 6] = [
    "state",
    "finished_at",
    "attempts",
    "attempted_at",
    "last_error",
    "run_at",
];

#[sqlx::test(migrations = false)]
async fn no_index_of_intents_covers_a_column_that_changes_after_enqueue(pool: PgPool) {
    let pool = migrated(pool).await;
    // Key columns, INCLUDE columns and columns in index expressions or predicates alike.
    let covered: Vec<(String, String)> = sqlx::query_as(
        "select ic.relname::text, a.attname::text
         from pg_index x
         join pg_class ic on ic.oid = x.indexrelid
         join pg_attribute a on a.attrelid = x.indrelid and a.attnum > 0
         where x.indrelid = 'herald.intents'::regclass
           and (a.attnum = any(x.indkey)
                or pg_get_expr(x.indexprs, x.indrelid) ~ ('\\m' || a.attname || '\\M')
                or pg_get_expr(x.indpred, x.indrelid) ~ ('\\m' || a.attname || '\\M'))
         order by 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!covered.is_empty(), "the query sees the table's indexes");
    let mutable: Vec<_> = covered
        .iter()
        .filter(|(_, column)| MUTABLE.contains(&column.as_str()))
        .collect();
    assert!(
        mutable.is_empty(),
        "terminal updates would not be heap-only: {mutable:?}"
    );
    let fillfactor: Option<Vec<String>> = sqlx::query_scalar(
        "select reloptions from pg_class where oid = 'herald.intents'::regclass",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(fillfactor, Some(vec!["fillfactor=80".to_string()]));
}

#[sqlx::test(migrations = false)]
async fn an_id_that_is_not_a_uuid_v7_is_refused(pool: PgPool) {
    let pool = migrated(pool).await;
    let err = sqlx::query(
        "insert into herald.intents (id, tenant, user_id, type, business_id, fingerprint,
             channel, destination, payload, max_attempts)
         values (gen_random_uuid(), 'default', 'u', 't', 'b', decode(repeat('00', 32), 'hex'),
                 'email', 'ann@example.com', '{}', 3)",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    let db = err.as_database_error().expect("a database error");
    assert_eq!(db.code().as_deref(), Some("23514"), "{db}");
    assert_eq!(db.constraint(), Some("intents_id_is_uuid_v7"), "{db}");
    // Left out, the id is minted as a UUIDv7.
    let version: String = sqlx::query_scalar(
        "insert into herald.intents (tenant, user_id, type, business_id, fingerprint,
             channel, destination, payload, max_attempts)
         values ('default', 'u', 't', 'b', decode(repeat('00', 32), 'hex'),
                 'email', 'ann@example.com', '{}', 3)
         returning substr(id::text, 15, 1)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(version, "7");
}

#[sqlx::test(migrations = false)]
async fn an_old_notification_finished_recently_is_kept_and_old_pending_work_is_passed_over(
    pool: PgPool,
) {
    let pool = migrated(pool).await;
    // Created 40 days ago; half of them finished only yesterday (retried, or scheduled late).
    finished_rows(&pool, 6, "welcome", "delivered", "40 days").await;
    sqlx::query(
        "update herald.intents set finished_at = now() - interval '1 day'
         where id in (select id from herald.intents order by id limit 3)",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Pending work created 400 days ago sits first in the id range the sweep reads.
    sqlx::query(
        "insert into herald.intents (id, tenant, user_id, type, business_id, fingerprint,
             channel, destination, payload, max_attempts, run_at)
         values (herald._uuid_v7_at(now() - interval '400 days'), 'default', 'u', 'welcome',
                 'pending-old', decode(repeat('00', 32), 'hex'), 'email', 'a@b.co', '{}', 3,
                 now() + interval '1 day')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let config = SweeperConfig {
        batch_size: 1,
        ..SweeperConfig::default()
    };
    assert_eq!(herald::sweeper::dry_run(&pool, &config).await.unwrap(), 3);
    let report = herald::sweeper::sweep(&pool, &config, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.deleted, 3);
    assert_eq!(
        report.batches, 4,
        "three of one row, then one that found none"
    );
    let left: Vec<(String, i64)> = sqlx::query_as(
        "select state, count(*) from herald.notifications
         where state = 'pending' or finished_at > now() - interval '2 days'
         group by state order by state",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        left,
        [("delivered".to_string(), 3), ("pending".to_string(), 1)]
    );
    assert_eq!(
        sqlx::query_scalar::<_, i64>("select count(*) from herald.notifications")
            .fetch_one(&pool)
            .await
            .unwrap(),
        4
    );
}

/// A plain-SQL writer's insert, in the caller's transaction: its queue row comes from the
/// statement trigger.
const PLAIN_INSERT: &str = "insert into herald.intents (tenant, user_id, type, business_id,
        fingerprint, channel, destination, payload, max_attempts)
    values ('default', 'u', 't', $1, decode(repeat('00', 32), 'hex'), 'email', 'a@b.co', '{}', 3)
    returning id";

async fn queued(conn: &mut sqlx::PgConnection, id: uuid::Uuid) -> bool {
    sqlx::query_scalar("select exists (select from herald.queue where id = $1)")
        .bind(id)
        .fetch_one(conn)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn every_new_intent_is_queued_whoever_inserted_it(pool: PgPool) {
    let pool = migrated(pool).await;
    let mut tx = pool.begin().await.unwrap();
    // The single enqueue writes its own queue row; a refusal and a duplicate write none.
    let (created, status): (uuid::Uuid, String) =
        sqlx::query_as("select id, status from herald.enqueue('u', 't', 'one', email => 'a@b.co')")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(status, "created");
    let (again, status): (uuid::Uuid, String) =
        sqlx::query_as("select id, status from herald.enqueue('u', 't', 'one', email => 'a@b.co')")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!((again, status.as_str()), (created, "duplicate"));
    assert!(queued(&mut tx, created).await);
    // Whatever the enqueue did, the next plain insert in the transaction is queued too.
    let plain: uuid::Uuid = sqlx::query_scalar(PLAIN_INSERT)
        .bind("plain")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert!(queued(&mut tx, plain).await, "the trigger queued it");
    let rows: i64 = sqlx::query_scalar("select count(*) from herald.queue")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(rows, 2, "one queue row each, none twice");
    tx.commit().await.unwrap();
}

#[sqlx::test(migrations = false)]
async fn an_enqueue_that_fails_in_its_insert_leaves_later_inserts_queued(pool: PgPool) {
    let pool = migrated(pool).await;
    // Another transaction holds the key: the group's enqueue gives up on its lock_timeout in
    // the middle of its insert.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("select herald.enqueue('u', 't', 'held', email => 'a@b.co')")
        .execute(&mut *holder)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("savepoint before_enqueue")
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = sqlx::query(
        "select * from herald._enqueue_one_in_group('default', 'u', 't', 'held', 'a@b.co', null,
             '{}', null, 8, 65536, false)",
    )
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("55P03"),
        "{err}"
    );
    sqlx::query("rollback to savepoint before_enqueue")
        .execute(&mut *tx)
        .await
        .unwrap();
    let plain: uuid::Uuid = sqlx::query_scalar(PLAIN_INSERT)
        .bind("after-the-failure")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert!(queued(&mut tx, plain).await, "the trigger queued it");
    tx.commit().await.unwrap();
    holder.rollback().await.unwrap();
}
