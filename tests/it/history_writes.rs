//! The history's writes (migration 0007): an intent's terminal update touches no index, so it
//! can be heap-only; the sweep finds expired rows by their UUIDv7 id, and only by a bound.

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
